"""truck_pricing: what a lane cost, from the Greenscreens (Triumph Intelligence) prediction API v3.

"Take the shipments we care about from the past, ask the API what the price was, write it back":
1. **lanes** come from the block's warehouse (`lanes: {from: warehouse, query: "SELECT ... FROM shipments"}`, run
   on the block's destination) or a CSV file (`lanes: {from: csv, path: lanes.csv}`); columns are matched by name
   (see COLUMN_ALIASES), rows for the same lane and pickup date are priced once;
2. **auth**: OAuth2 client credentials (`POST /v1/auth/token`, form-encoded), the token cached in memory and
   fetched again before it expires or on a 401; the access token is registered with the redactor;
3. **pricing**: `POST /v3/prediction/batch-rates` with up to `batch_size` (<= 1000) lanes per call, `max_concurrency`
   calls in flight, paced to `requests_per_second`; `batch_size: 1` uses `POST /v3/prediction/rates` per lane.
   Per-lane `status: ERROR` items become rows with the error (a 5xx/429 item error is retried first); a whole
   batch answered 400/422/424 is split (by the 422's `requests[i]` field paths when given, else in halves) until
   the lanes at fault are alone, and those become rows explaining the 4xx. 429/5xx/timeouts/non-JSON bodies are
   retried with backoff + jitter (http.py); a credentials problem or an exhausted retry budget fails the sync
   (data and state committed before it are kept);
4. **state**: lanes are priced in `lane_id` order (pickup date first); every `checkpoint_lanes` lanes the records
   are followed by a STATE `{"pickup_date", "lane_id"}` (the last lane priced), which the runner commits together
   with them. The next run prices only lanes after that cursor (plus `lookback_days` before it).

Stream `lane_rates`, primary key `lane_id` = "<pickup date>|<transport type>|<origin>|<destination>" (each stop
as COUNTRY-STATE-CITY-ZIP, upper-case), cursor `pickup_date`. Pricing a lane/date again upserts its row (dedup).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from ...errors import SyncError
from ...secrets import REDACTOR
from ..base import Source
from . import (airbyte_stream, is_incremental, json_value, log_message, query_rows, read_csv_rows, record_message,
               state_message, stream_state)
from .http import (Cancelled, FatalHTTPError, HttpClient, HttpPolicy, RetryableHTTPError, as_sync_error,
                   backoff_seconds, clean_text, ordered_map, parse_datetime, parse_int, parse_number,
                   policy_spec_properties, scrub)

NAME = "truck_pricing"
STREAM = "lane_rates"
PROD_URL = "https://api.greenscreens.ai"
DEV_URL = "https://testapi.greenscreens.ai"
TOKEN_PATH = "/v1/auth/token"
BATCH_PATH = "/v3/prediction/batch-rates"
SINGLE_PATH = "/v3/prediction/rates"
MAX_BATCH = 1000  # the API's limit per batch-rates call
TRANSPORT_TYPES = ("VAN", "REEFER", "FLATBED", "HOTSHOT")
EARLIEST_PICKUP = dt.date(2015, 1, 1)  # the API refuses earlier pickup dates
ITEM_RETRY_ROUNDS = 3  # extra rounds for lanes whose batch item failed with a 5xx/429 errorObject
SPLIT_BUDGET = 64  # extra calls per batch to narrow a refused (400/422/424) batch down to the lanes at fault
LANE_STATUSES = (400, 422, 424)  # answers about the lanes sent: they become ERROR rows, never a failed sync

# Input column (normalized: lowercase, snake_case) -> names accepted for it, first match wins.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "shipment_id": ("shipment_id", "load_id", "id", "pro_number", "reference"),
    "pickup_date": ("pickup_date", "pickup_datetime", "pickup_at", "pickup_time", "ship_date", "pickupdatetime"),
    "transport_type": ("transport_type", "equipment_type", "equipment", "transporttype", "mode"),
    "origin_city": ("origin_city", "orig_city", "from_city"),
    "origin_state": ("origin_state", "orig_state", "from_state"),
    "origin_zip": ("origin_zip", "origin_postal_code", "origin_zipcode", "orig_zip", "from_zip"),
    "origin_country": ("origin_country", "orig_country", "from_country"),
    "destination_city": ("destination_city", "dest_city", "to_city"),
    "destination_state": ("destination_state", "dest_state", "to_state"),
    "destination_zip": ("destination_zip", "destination_postal_code", "destination_zipcode", "dest_zip", "to_zip"),
    "destination_country": ("destination_country", "dest_country", "to_country"),
    "commodity": ("commodity",),
    "currency": ("currency",),
}
EQUIPMENT = {
    "VAN": "VAN", "V": "VAN", "DRY VAN": "VAN", "DRYVAN": "VAN", "DRY_VAN": "VAN", "53' VAN": "VAN",
    "REEFER": "REEFER", "R": "REEFER", "REFRIGERATED": "REEFER", "TEMP CONTROLLED": "REEFER",
    "FLATBED": "FLATBED", "F": "FLATBED", "FLAT": "FLATBED", "FLAT BED": "FLATBED", "FB": "FLATBED",
    "HOTSHOT": "HOTSHOT", "HOT SHOT": "HOTSHOT", "HS": "HOTSHOT",
}

SPEC: dict = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Truck pricing (Greenscreens prediction API v3)",
    "type": "object",
    "required": ["client_id", "client_secret", "lanes"],
    "additionalProperties": False,
    "properties": {
        "base_url": {
            "type": "string", "pattern": "^https?://", "default": PROD_URL, "examples": [PROD_URL, DEV_URL],
            "description": "API host: https://api.greenscreens.ai (production) or https://testapi.greenscreens.ai (dev).",
        },
        "client_id": {"type": "string", "minLength": 1, "description": "OAuth2 client id issued by Greenscreens."},
        "client_secret": {"type": "string", "minLength": 1, "airbyte_secret": True,
                          "description": "OAuth2 client secret: a reference like ${GREENSCREENS_CLIENT_SECRET}."},
        "lanes": {
            "description": "Where the lanes (shipments) to price come from.",
            "oneOf": [
                {
                    "title": "warehouse", "type": "object", "required": ["from", "query"], "additionalProperties": False,
                    "properties": {
                        "from": {"const": "warehouse"},
                        "query": {"type": "string", "minLength": 1, "description": (
                            "SQL run on the block's destination. Columns by name: pickup_date, transport_type (or "
                            "equipment_type), origin_city, origin_state, origin_zip, destination_city, destination_state, "
                            "destination_zip; optional shipment_id, origin_country/destination_country (default US), "
                            "commodity, currency.")},
                    },
                },
                {
                    "title": "csv", "type": "object", "required": ["from", "path"], "additionalProperties": False,
                    "properties": {
                        "from": {"const": "csv"},
                        "path": {"type": "string", "minLength": 1, "description": "CSV file (relative to connectors.yaml), same columns."},
                    },
                },
            ],
        },
        "start_date": {"type": "string", "format": "date", "description": "Ignore lanes picked up before this date."},
        "lookback_days": {"type": "integer", "minimum": 0, "default": 0,
                          "description": "Also re-price lanes up to this many days before the saved cursor (late shipments)."},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code for the rates (default: the account's)."},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": MAX_BATCH, "default": MAX_BATCH,
                       "description": "Lanes per batch-rates call (<= 1000); 1 prices lane by lane with /v3/prediction/rates."},
        "checkpoint_lanes": {"type": "integer", "minimum": 1, "default": 1000,
                             "description": "Commit records + state at least every this many lanes."},
        **policy_spec_properties(requests_per_second=5, max_concurrency=4, max_retries=6, backoff_base=1.0,
                                 backoff_max=60.0, timeout=120.0),
    },
}

_NULLABLE_STRING = {"type": ["string", "null"]}
_NULLABLE_NUMBER = {"type": ["number", "null"]}
SCHEMA: dict = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": True,
    "properties": {
        "lane_id": {"type": "string", "description": "pickup date|transport type|origin|destination (the primary key)"},
        "pickup_date": {"type": ["string", "null"], "format": "date"},
        "pickup_datetime": _NULLABLE_STRING,
        "transport_type": _NULLABLE_STRING,
        "origin_country": _NULLABLE_STRING, "origin_state": _NULLABLE_STRING, "origin_city": _NULLABLE_STRING,
        "origin_zip": _NULLABLE_STRING,
        "destination_country": _NULLABLE_STRING, "destination_state": _NULLABLE_STRING,
        "destination_city": _NULLABLE_STRING, "destination_zip": _NULLABLE_STRING,
        "commodity": _NULLABLE_STRING,
        "status": {"type": "string", "description": "OK, or ERROR (see error_*)"},
        "prediction_id": _NULLABLE_STRING,
        "target_buy_rate": _NULLABLE_NUMBER, "low_buy_rate": _NULLABLE_NUMBER, "high_buy_rate": _NULLABLE_NUMBER,
        "start_buy_rate": _NULLABLE_NUMBER, "fuel_rate": _NULLABLE_NUMBER,
        "distance": _NULLABLE_NUMBER,
        "target_buy_total": {"type": ["number", "null"], "description": "target_buy_rate x distance"},
        "confidence_level": {"type": ["integer", "null"]},
        "acceptance_rates": {"type": ["array", "null"], "items": {"type": "number"}},
        "currency": _NULLABLE_STRING,
        "notes": {"type": ["object", "null"]},
        "tag": _NULLABLE_STRING,
        "error_http_code": {"type": ["integer", "null"]},
        "error_code": _NULLABLE_STRING,
        "error_message": _NULLABLE_STRING,
        "shipment_ids": {"type": ["array", "null"], "items": {"type": "string"}},
        "priced_at": {"type": "string", "format": "date-time"},
    },
}


# ---------------------------------------------------------------------------------------------- lanes


@dataclass
class Lane:
    lane_id: str
    pickup_date: dt.date | None
    pickup_datetime: str | None
    transport_type: str | None
    origin: dict
    destination: dict
    commodity: str | None = None
    currency: str | None = None
    shipment_ids: list[str] = field(default_factory=list)
    problem: str | None = None  # why the lane cannot be priced (it becomes an ERROR row without an API call)

    @property
    def tag(self) -> str:
        return "ingest-" + hashlib.sha1(self.lane_id.encode()).hexdigest()[:16]

    def request(self, currency: str | None) -> dict:
        body = {
            "pickupDateTime": self.pickup_datetime,
            "transportType": self.transport_type,
            "stops": [{"order": 0, **_stop(self.origin)}, {"order": 1, **_stop(self.destination)}],
            "tag": self.tag,
        }
        if self.commodity:
            body["commodity"] = self.commodity
        if self.currency or currency:
            body["currency"] = self.currency or currency
        return body

    def columns(self) -> dict:
        return {
            "lane_id": self.lane_id,
            "pickup_date": self.pickup_date.isoformat() if self.pickup_date else None,
            "pickup_datetime": self.pickup_datetime,
            "transport_type": self.transport_type,
            **{f"origin_{k}": self.origin.get(k) for k in ("country", "state", "city", "zip")},
            **{f"destination_{k}": self.destination.get(k) for k in ("country", "state", "city", "zip")},
            "commodity": self.commodity,
            "tag": self.tag,
            "shipment_ids": list(self.shipment_ids) or None,
        }


def _stop(place: dict) -> dict:
    return {k: place[k] for k in ("country", "city", "state", "zip") if place.get(k)}


def _pick(row: dict, column: str) -> Any:
    for name in COLUMN_ALIASES[column]:
        if name in row and row[name] not in (None, ""):
            return row[name]
    return None


def _text(value: Any) -> str | None:
    value = json_value(value)
    if value is None:
        return None
    text = re.sub(r"\s+", " ", str(value)).strip()
    return text or None


def _zip(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    if re.fullmatch(r"\d{1,4}(\.0)?", text):  # a ZIP stored as a number lost its leading zeros
        text = text.split(".")[0].zfill(5)
    elif re.fullmatch(r"\d{5}\.0", text):
        text = text[:5]
    return text.upper()


def lane_from_row(row: dict) -> Lane:
    """One input row → a Lane (never raises: what is wrong goes to `problem`)."""
    problems = []
    raw_pickup = _pick(row, "pickup_date")
    pickup = parse_datetime(raw_pickup)
    pickup_date = pickup.date() if pickup else None
    has_time = isinstance(raw_pickup, dt.datetime) or (isinstance(raw_pickup, str) and re.search(r"\d[T ]\d{1,2}:\d{2}", raw_pickup))
    pickup_datetime = None
    if pickup is not None:
        pickup_datetime = (pickup.astimezone(dt.timezone.utc) if has_time else dt.datetime.combine(pickup_date, dt.time(), dt.timezone.utc)) \
            .strftime("%Y-%m-%dT%H:%M:%SZ")
    if raw_pickup is None:
        problems.append("pickup_date is missing")
    elif pickup_date is None:
        problems.append(f"pickup_date {_text(raw_pickup)!r} is not a date")
    elif pickup_date < EARLIEST_PICKUP:
        problems.append(f"pickup_date {pickup_date} is before {EARLIEST_PICKUP}, the earliest the API prices")
    raw_type = _text(_pick(row, "transport_type"))
    transport = EQUIPMENT.get(raw_type.upper()) if raw_type else None
    if raw_type is None:
        problems.append("transport_type is missing")
    elif transport is None:
        problems.append(f"transport_type {raw_type!r} is not one of {', '.join(TRANSPORT_TYPES)}")
        transport = raw_type.upper()
    places = {}
    for end in ("origin", "destination"):
        place = {
            "country": (_text(_pick(row, f"{end}_country")) or "US").upper(),
            "state": (_text(_pick(row, f"{end}_state")) or "").upper() or None,
            "city": _text(_pick(row, f"{end}_city")),
            "zip": _zip(_pick(row, f"{end}_zip")),
        }
        missing = [k for k in ("city", "state") if not place[k]]
        if missing:
            problems.append(f"{end} {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing")
        places[end] = place
    date_part = pickup_date.isoformat() if pickup_date else f"?{_text(raw_pickup) or ''}"
    lane_id = "|".join([date_part, transport or "?", _place_key(places["origin"]), _place_key(places["destination"])])
    shipment = _text(_pick(row, "shipment_id"))
    currency = _text(_pick(row, "currency"))
    return Lane(
        lane_id=lane_id, pickup_date=pickup_date, pickup_datetime=pickup_datetime, transport_type=transport,
        origin=places["origin"], destination=places["destination"], commodity=_text(_pick(row, "commodity")),
        currency=currency.upper() if currency else None, shipment_ids=[shipment] if shipment else [],
        problem="; ".join(problems) or None,
    )


def _place_key(place: dict) -> str:
    return "-".join((place.get(k) or "").upper() for k in ("country", "state", "city", "zip"))


def merge_lanes(lanes: list[Lane]) -> list[Lane]:
    """Rows for the same lane and pickup date are priced once; their shipment ids are kept together."""
    by_id: dict[str, Lane] = {}
    for lane in lanes:
        seen = by_id.get(lane.lane_id)
        if seen is None:
            by_id[lane.lane_id] = lane
        else:
            seen.shipment_ids.extend(s for s in lane.shipment_ids if s not in seen.shipment_ids)
    return list(by_id.values())


# ---------------------------------------------------------------------------------------------- auth


class ClientCredentials:
    """OAuth2 client-credentials token for HttpClient: fetched lazily, cached in memory, refreshed shortly before
    `expires_in` runs out or when a call answers 401 (`invalidate`). One fetch at a time across threads."""

    def __init__(self, client: HttpClient, client_id: str, client_secret: str):
        self.client, self.client_id, self.client_secret = client, client_id, client_secret
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def apply(self) -> tuple[dict, str]:
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at:
                self._fetch()
            return {"Authorization": f"Bearer {self._token}"}, self._token

    def invalidate(self, token: str | None) -> None:
        with self._lock:
            if token is not None and token == self._token:
                self._token = None

    def _fetch(self) -> None:
        self.client.stats.count("token_fetches")
        resp = self.client.request(
            "POST", TOKEN_PATH, authenticated=False, rate_limited=False, accept=(400, 401, 403),
            data={"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret},
        )
        body = resp.body if isinstance(resp.body, dict) else {}
        if resp.status != 200 or not body.get("access_token"):
            detail = _error_text(resp.body) or "no access_token in the answer"
            raise FatalHTTPError(
                f"Greenscreens refused the client credentials (POST {TOKEN_PATH}: HTTP {resp.status}: {detail}); "
                "check client_id and the secret behind client_secret", status=resp.status, failure_type="config_error")
        token = str(body["access_token"])
        REDACTOR.add(token)
        expires_in = parse_number(body.get("expires_in")) or 300.0
        self._token = token
        self._expires_at = time.monotonic() + expires_in - min(60.0, expires_in * 0.1)


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("code", "error", "message", "error_description") if body.get(k)]
        return scrub(" ".join(parts))
    return scrub(str(body)[:200]) if body else ""


def explain_error(status: int, body: Any) -> tuple[str | None, str]:
    """(code, human message) for a 400/422/424 answer, with the field errors of a 422 spelled out."""
    if not isinstance(body, dict):
        return None, f"HTTP {status}: {scrub(str(body)[:200]) if body else 'empty body'}"
    code = body.get("code")
    message = body.get("message") or ""
    details = []
    for err in body.get("errors") or []:
        if isinstance(err, dict):
            value = f" (value {err.get('value')!r})" if err.get("value") is not None else ""
            details.append(f"{err.get('field')}: {err.get('message')}{value}")
    meaning = {422: "the request was refused by validation", 424: "a dependency failed (e.g. distance calculation)",
               400: "bad request"}.get(status, "")
    text = f"HTTP {status}{' (' + meaning + ')' if meaning else ''}: {message}".rstrip(": ")
    if details:
        text += " — " + "; ".join(details)
    return code, scrub(text)


# ---------------------------------------------------------------------------------------------- the puller


class TruckPricingPuller(Source):
    SPEC = SPEC

    def __init__(self, block):
        self.block = block
        self.config = dict(block.config or {})
        self._query = None

    # -- wiring

    def use_warehouse(self, query) -> None:
        self._query = query

    def _policy(self) -> HttpPolicy:
        return HttpPolicy.from_config(self.config, requests_per_second=5, max_concurrency=4, timeout=120.0)

    def _client(self) -> HttpClient:
        base = re.sub(r"/v\d+/?$", "", str(self.config.get("base_url") or PROD_URL).rstrip("/"))
        client = HttpClient(base, self._policy(), name=NAME)
        secret = str(self.config.get("client_secret") or "")
        REDACTOR.add(secret)
        client.auth = ClientCredentials(client, str(self.config.get("client_id") or ""), secret)
        return client

    # -- Source protocol

    def spec(self) -> dict:
        return SPEC

    def check(self) -> tuple[bool, str | None]:
        client = self._client()
        try:
            client.auth.apply()
        except Exception as exc:  # noqa: BLE001 - a failed check is an answer, not a crash
            return False, str(as_sync_error(exc, what="authentication"))
        finally:
            client.close()
        lanes = self.config.get("lanes") or {}
        if lanes.get("from") == "csv":
            path = self.block.path(lanes.get("path"))
            if not path or not path.is_file():
                return False, f"lanes.path: file not found: {path}"
        return True, None

    def discover(self, *, for_sync: bool = False):
        from . import models

        m = models()
        return m.AirbyteCatalog(streams=[airbyte_stream(STREAM, SCHEMA, ["lane_id"], "pickup_date")])

    # -- reading

    def load_lanes(self) -> list[Lane]:
        lanes_cfg = self.config.get("lanes") or {}
        if lanes_cfg.get("from") == "csv":
            path = self.block.path(lanes_cfg.get("path"))
            try:
                rows = read_csv_rows(path)
            except (OSError, UnicodeDecodeError) as exc:
                raise SyncError(f"lanes.path: cannot read {path}: {type(exc).__name__}: {exc}", failure_type="config_error") from None
        else:
            rows = query_rows(self._query, str(lanes_cfg.get("query") or ""), "lanes.query")
        return merge_lanes([lane_from_row(r) for r in rows])

    def select(self, lanes: list[Lane], cursor: dict) -> tuple[list[Lane], list[Lane], int]:
        """(lanes without a usable date, lanes to price in order, how many the cursor skips)."""
        start = parse_datetime(self.config.get("start_date"))
        start_date = start.date() if start else None
        after = cursor.get("lane_id")
        floor = None
        if after and cursor.get("pickup_date") and int(self.config.get("lookback_days") or 0) > 0:
            d = parse_datetime(cursor["pickup_date"])
            floor = d.date() - dt.timedelta(days=int(self.config["lookback_days"])) if d else None
        undated, todo, skipped = [], [], 0
        for lane in sorted(lanes, key=lambda lane: lane.lane_id):
            if lane.pickup_date is None:
                undated.append(lane)
            elif start_date and lane.pickup_date < start_date:
                skipped += 1
            elif after and lane.lane_id <= after and not (floor and lane.pickup_date >= floor):
                skipped += 1
            else:
                todo.append(lane)
        return undated, todo, skipped

    def read(self, catalog, state: list) -> Iterator[Any]:
        wanted = {cs.stream.name: cs for cs in catalog.streams}
        if STREAM not in wanted:
            return
        cursor = stream_state(state, STREAM) if is_incremental(wanted[STREAM]) else {}
        lanes = self.load_lanes()
        undated, todo, skipped = self.select(lanes, cursor)
        invalid = sum(1 for lane in todo if lane.problem) + len(undated)
        yield log_message(
            f"{NAME}: {len(lanes):,} distinct lanes in the input; {len(todo):,} to price"
            + (f", {skipped:,} before the cursor {cursor.get('lane_id')!r} or start_date" if skipped else "")
            + (f", {invalid:,} not priceable as given (kept as ERROR rows)" if invalid else ""))
        priced_at = dt.datetime.now(dt.timezone.utc).isoformat()
        counts = {"OK": 0, "ERROR": 0}
        error_codes: dict[str, int] = {}

        def tally(record: dict) -> None:
            counts[record["status"]] = counts.get(record["status"], 0) + 1
            if record["status"] != "OK":
                key = " ".join(str(x) for x in (record.get("error_http_code"), record.get("error_code") or "error") if x)
                error_codes[key] = error_codes.get(key, 0) + 1

        for lane in undated:
            record = _error_record(lane, priced_at, None, "invalid_input", lane.problem)
            tally(record)
            yield record_message(STREAM, record)

        batch_size = max(1, min(MAX_BATCH, int(self.config.get("batch_size") or MAX_BATCH)))
        every = max(1, int(self.config.get("checkpoint_lanes") or 1000))
        batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
        client = self._client() if todo else None
        last_state = dict(cursor) if cursor else None
        since_checkpoint = 0
        try:
            if client is not None:
                work = ordered_map(lambda batch: self._price(client, batch), batches, client.policy.max_concurrency,
                                   name=NAME, cancelled=client.cancelled)
                for batch, records in zip(batches, work):
                    for record in records:
                        tally(record)
                        yield record_message(STREAM, record)
                    last = batch[-1]
                    if last_state is None or last.lane_id > last_state.get("lane_id", ""):
                        # (lanes re-priced for lookback_days sort before the saved cursor: it never moves back)
                        last_state = {"pickup_date": last.pickup_date.isoformat(), "lane_id": last.lane_id}
                    since_checkpoint += len(batch)
                    if since_checkpoint >= every:
                        since_checkpoint = 0
                        yield state_message(STREAM, last_state)
        except (FatalHTTPError, RetryableHTTPError, Cancelled) as exc:
            raise as_sync_error(exc, stream=STREAM) from None
        except SyncError:
            raise
        except Exception as exc:  # noqa: BLE001 - never a stack trace for the user; the message says what failed
            raise as_sync_error(exc, stream=STREAM, what=f"{NAME} failed") from None
        finally:
            if client is not None:
                client.close()
        if last_state is not None:
            yield state_message(STREAM, last_state)
        summary = f"{NAME}: {counts.get('OK', 0):,} lanes priced, {counts.get('ERROR', 0):,} ERROR rows"
        if error_codes:
            summary += " (" + ", ".join(f"{k} x{v}" for k, v in sorted(error_codes.items())) + ")"
        if client is not None:
            summary += f"; {client.stats.summary()}"
        yield log_message(summary, "WARN" if counts.get("ERROR") else "INFO")

    # -- pricing (runs on the worker threads)

    def _price(self, client: HttpClient, batch: list[Lane]) -> list[dict]:
        priced_at = dt.datetime.now(dt.timezone.utc).isoformat()
        out: dict[str, dict] = {}
        valid = []
        for lane in batch:
            if lane.problem:
                out[lane.lane_id] = _error_record(lane, priced_at, None, "invalid_input", lane.problem)
            else:
                valid.append(lane)
        if valid:
            if int(self.config.get("batch_size") or MAX_BATCH) == 1:
                for lane in valid:
                    out.update(self._price_one(client, lane, priced_at))
            else:
                out.update(self._price_batch(client, valid, priced_at))
        return [out[lane.lane_id] for lane in batch]

    def _currency(self) -> str | None:
        return self.config.get("currency")

    def _price_one(self, client: HttpClient, lane: Lane, priced_at: str) -> dict[str, dict]:
        resp = client.request("POST", SINGLE_PATH, json=lane.request(self._currency()), accept=LANE_STATUSES)
        if resp.status == 200 and isinstance(resp.body, dict):
            return {lane.lane_id: _ok_record(lane, priced_at, resp.body)}
        code, message = explain_error(resp.status, resp.body)
        return {lane.lane_id: _error_record(lane, priced_at, resp.status, code, message)}

    def _price_batch(self, client: HttpClient, lanes: list[Lane], priced_at: str, round_: int = 0,
                     budget: list[int] | None = None) -> dict[str, dict]:
        budget = budget if budget is not None else [SPLIT_BUDGET]
        resp = client.request("POST", BATCH_PATH, json={"requests": [lane.request(self._currency()) for lane in lanes]},
                              accept=LANE_STATUSES)
        if resp.status != 200:
            return self._split(client, lanes, priced_at, resp, round_, budget)
        body = resp.body if isinstance(resp.body, dict) else {}
        responses = body.get("responses")
        if not isinstance(responses, list):
            raise RetryableHTTPError(f"POST {resp.url}: HTTP 200 without a 'responses' list", status=200, reason="bad-body")
        by_tag = {item.get("tag"): item for item in responses if isinstance(item, dict) and item.get("tag")}
        positional = len(responses) == len(lanes)
        out: dict[str, dict] = {}
        again: list[Lane] = []
        for i, lane in enumerate(lanes):
            item = by_tag.get(lane.tag)
            if item is None and positional and isinstance(responses[i], dict) and not responses[i].get("tag"):
                item = responses[i]
            if item is None:
                out[lane.lane_id] = _error_record(lane, priced_at, None, "no_response",
                                                  "the batch answer had no prediction for this lane")
                continue
            status = str(item.get("status") or ("ERROR" if item.get("errorObject") else "OK")).upper()
            if status == "OK":
                out[lane.lane_id] = _ok_record(lane, priced_at, item)
                continue
            err = item.get("errorObject") if isinstance(item.get("errorObject"), dict) else {}
            http_code = parse_int(err.get("httpCode"))
            if http_code is not None and (http_code >= 500 or http_code == 429) and round_ < ITEM_RETRY_ROUNDS:
                again.append(lane)
                continue
            out[lane.lane_id] = _error_record(lane, priced_at, http_code, clean_text(err.get("code")),
                                              clean_text(err.get("message")) or "the API answered status ERROR")
        if again:
            client._sleep(backoff_seconds(round_ + 1, client.policy.backoff_base, client.policy.backoff_max))
            client.stats.retry("item-error")
            out.update(self._price_batch(client, again, priced_at, round_ + 1, budget))
        return out

    def _split(self, client: HttpClient, lanes: list[Lane], priced_at: str, resp, round_: int, budget: list[int]) -> dict[str, dict]:
        """A whole batch was refused (400/422/424): find the lanes at fault, price the others.

        A 422 that names `requests[i]` fields marks those lanes directly; otherwise the batch is halved until the
        refused lanes are alone. `budget` caps the extra calls per batch: a refusal that is not about single lanes
        (every lane refused) must not turn into ~2 calls per lane; what is left then gets the batch's explanation."""
        code, message = explain_error(resp.status, resp.body)
        if len(lanes) == 1:
            return {lanes[0].lane_id: _error_record(lanes[0], priced_at, resp.status, code, message)}
        at_fault = _faulty_indexes(resp.body, len(lanes))
        out: dict[str, dict] = {}
        if at_fault:
            by_index = _errors_by_index(resp.body)
            for i in sorted(at_fault):
                detail = "; ".join(by_index.get(i, [])) or message
                out[lanes[i].lane_id] = _error_record(lanes[i], priced_at, resp.status, code,
                                                      scrub(f"HTTP {resp.status}: {detail}"))
            rest = [lane for i, lane in enumerate(lanes) if i not in at_fault]
            groups = [rest] if rest else []
        else:
            mid = len(lanes) // 2
            groups = [lanes[:mid], lanes[mid:]]
        for group in groups:
            if budget[0] <= 0:
                for lane in group:
                    out[lane.lane_id] = _error_record(lane, priced_at, resp.status, code,
                                                      f"{message} (refused in a batch of {len(lanes)}; not narrowed down further)")
                continue
            budget[0] -= 1
            out.update(self._price_batch(client, group, priced_at, round_, budget))
        return out


_INDEXED_FIELD = re.compile(r"^requests\[(\d+)\]\.?(.*)$")


def _faulty_indexes(body: Any, n: int) -> set[int]:
    """Lanes a 422 names by field path (`requests[3].transportType`); empty if any error names none."""
    if not isinstance(body, dict) or not isinstance(body.get("errors"), list) or not body["errors"]:
        return set()
    found = set()
    for err in body["errors"]:
        m = _INDEXED_FIELD.match(str(err.get("field") or "")) if isinstance(err, dict) else None
        if not m or int(m.group(1)) >= n:
            return set()
        found.add(int(m.group(1)))
    return found


def _errors_by_index(body: dict) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for err in body.get("errors") or []:
        m = _INDEXED_FIELD.match(str(err.get("field") or ""))
        if m:
            value = f" (value {err.get('value')!r})" if err.get("value") is not None else ""
            out.setdefault(int(m.group(1)), []).append(f"{m.group(2) or 'request'}: {err.get('message')}{value}")
    return out


def _ok_record(lane: Lane, priced_at: str, p: dict) -> dict:
    rate, distance = parse_number(p.get("targetBuyRate")), parse_number(p.get("distance"))
    rates = p.get("acceptanceRates")
    return {
        **lane.columns(),
        "status": "OK",
        "prediction_id": clean_text(p.get("id")),
        "target_buy_rate": rate,
        "low_buy_rate": parse_number(p.get("lowBuyRate")),
        "high_buy_rate": parse_number(p.get("highBuyRate")),
        "start_buy_rate": parse_number(p.get("startBuyRate")),
        "fuel_rate": parse_number(p.get("fuelRate")),
        "distance": distance,
        "target_buy_total": round(rate * distance, 2) if rate is not None and distance is not None else None,
        "confidence_level": parse_int(p.get("confidenceLevel")),
        "acceptance_rates": [parse_number(x) for x in rates] if isinstance(rates, list) else None,
        "currency": clean_text(p.get("currency")) or lane.currency,
        "notes": p.get("notes") if isinstance(p.get("notes"), dict) and p.get("notes") else None,
        "tag": clean_text(p.get("tag")) or lane.tag,
        "error_http_code": None, "error_code": None, "error_message": None,
        "priced_at": priced_at,
    }


def _error_record(lane: Lane, priced_at: str, http_code: int | None, code: str | None, message: str | None) -> dict:
    return {
        **lane.columns(),
        "status": "ERROR",
        "prediction_id": None, "target_buy_rate": None, "low_buy_rate": None, "high_buy_rate": None,
        "start_buy_rate": None, "fuel_rate": None, "distance": None, "target_buy_total": None,
        "confidence_level": None, "acceptance_rates": None, "currency": lane.currency, "notes": None,
        "error_http_code": http_code, "error_code": code, "error_message": scrub(message) if message else None,
        "priced_at": priced_at,
    }
