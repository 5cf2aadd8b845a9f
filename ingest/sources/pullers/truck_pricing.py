"""truck_pricing: what a lane cost, from the Greenscreens (Triumph Intelligence) prediction API v3.

"Take the shipments we care about from the past, ask the API what the price was, write it back":
1. **lanes** come from the block's warehouse (`lanes: {from: warehouse, query: "SELECT ... FROM shipments"}`, run
   on the block's destination) or a CSV file (`lanes: {from: csv, path: lanes.csv}`); columns are matched by name
   (see lanes.py), rows for the same lane and pickup date are priced once;
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
The schema and each of its columns carry a `description` (units, currency, ranges): the warehouse's table and column
comments.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Iterator

from ...errors import SyncError
from ...secrets import REDACTOR
from . import is_incremental, read_csv_rows, stream_state
from .base import Plan, Puller, input_choice
from .greenscreens import (ClientCredentials, error_record, errors_by_index, explain_error, faulty_indexes,
                           ok_record)
from .http import (HttpClient, HttpPolicy, RetryableHTTPError, as_sync_error, backoff_seconds, policy_spec_properties,
                   scrub)
from .lanes import Lane, lane_from_row, merge_lanes
from .values import clean_text, parse_datetime, parse_int

NAME = "truck_pricing"
STREAM = "lane_rates"
PROD_URL = "https://api.greenscreens.ai"
DEV_URL = "https://testapi.greenscreens.ai"
BATCH_PATH = "/v3/prediction/batch-rates"
SINGLE_PATH = "/v3/prediction/rates"
MAX_BATCH = 1000  # the API's limit per batch-rates call
ITEM_RETRY_ROUNDS = 3  # extra rounds for lanes whose batch item failed with a 5xx/429 errorObject
SPLIT_BUDGET = 64  # extra calls per batch to narrow a refused (400/422/424) batch down to the lanes at fault
LANE_STATUSES = (400, 422, 424)  # answers about the lanes sent: they become ERROR rows, never a failed sync

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
                input_choice("warehouse", "query", {"type": "string", "minLength": 1, "description": (
                    "SQL run on the block's destination. Columns by name: pickup_date, transport_type (or "
                    "equipment_type), origin_city, origin_state, origin_zip, destination_city, destination_state, "
                    "destination_zip; optional shipment_id, origin_country/destination_country (default US), "
                    "commodity, currency.")}),
                input_choice("csv", "path", {"type": "string", "minLength": 1,
                                             "description": "CSV file (relative to connectors.yaml), same columns."}),
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


def _described(prop: dict, description: str) -> dict:
    """`prop` with its `description`: the column comment in the warehouse (destinations/descriptions.description_text)."""
    return {**prop, "description": description}


def _stop_columns(end: str) -> dict:
    """The four columns of one stop (origin or destination), as sent to the API."""
    label = end.capitalize()
    return {
        f"{end}_country": _described(_NULLABLE_STRING, f"{label} country: ISO 3166-1 alpha-2 code, upper-case (from the "
                                     "input; US when the input has none)."),
        f"{end}_state": _described(_NULLABLE_STRING, f"{label} state or province code as given in the input, upper-case "
                                   "(the API expects two letters, e.g. IL)."),
        f"{end}_city": _described(_NULLABLE_STRING, f"{label} city as given in the input (whitespace collapsed; upper-case "
                                  "only inside lane_id)."),
        f"{end}_zip": _described(_NULLABLE_STRING, f"{label} ZIP/postal code as text, leading zeros restored (2116 -> 02116); "
                                 "NULL when the input has none (the lane is then priced by city and state)."),
    }


_PER_MILE = "per mile, fuel included, in `currency`; NULL on ERROR rows"
SCHEMA: dict = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "description": (
        "Truck buy-rate predictions from the Greenscreens (Triumph Intelligence) prediction API v3 for the lanes of "
        "our shipments: one row per lane and pickup date (lane_id). Rates are what a carrier is paid to haul the "
        "load, per mile with fuel included, in `currency`; target_buy_total is the whole trip. Lanes that could not "
        "be priced are kept as status = ERROR rows with the reason in error_*."),
    "type": "object",
    "additionalProperties": True,
    "properties": {
        "lane_id": _described({"type": "string"}, (
            "Primary key: '<pickup date>|<transport type>|<origin>|<destination>', each stop "
            "COUNTRY-STATE-CITY-ZIP upper-case, e.g. 2024-03-01|VAN|US-IL-CHICAGO-60611|US-TX-DALLAS-75204. "
            "Commodity is not part of it; an unreadable pickup date shows as '?<input value>'.")),
        "pickup_date": _described({"type": ["string", "null"], "format": "date"}, (
            "Pickup date of the shipments (the date part of their pickup time); the incremental cursor. NULL on the "
            "ERROR row of an input without a readable date.")),
        "pickup_datetime": _described(_NULLABLE_STRING, (
            "pickupDateTime as sent to the API: UTC, YYYY-MM-DDTHH:MM:SSZ; midnight when the input has only a date. "
            "The API ignores the time zone.")),
        "transport_type": _described(_NULLABLE_STRING, (
            "Equipment priced: VAN (dry van), REEFER (refrigerated), FLATBED or HOTSHOT, mapped from the input's "
            "equipment names; an unrecognised input value is kept upper-case on an ERROR row.")),
        **_stop_columns("origin"),
        **_stop_columns("destination"),
        "commodity": _described(_NULLABLE_STRING, (
            "Free-text commodity from the input, sent with the request (of the first input row when several "
            "shipments share the lane); not part of lane_id.")),
        "status": _described({"type": "string"}, (
            "OK: the API returned a prediction; ERROR: no prediction, see error_http_code, error_code and "
            "error_message (the rate columns are then NULL).")),
        "prediction_id": _described(_NULLABLE_STRING, "The API's id of this prediction (a UUID); NULL on ERROR rows."),
        "target_buy_rate": _described(_NULLABLE_NUMBER, (
            f"Predicted target buy rate - what to pay the carrier - {_PER_MILE}. Multiply by distance for the trip "
            "(target_buy_total).")),
        "low_buy_rate": _described(_NULLABLE_NUMBER, f"Low end of the predicted buy-rate range, {_PER_MILE}."),
        "high_buy_rate": _described(_NULLABLE_NUMBER, f"High end of the predicted buy-rate range, {_PER_MILE}."),
        "start_buy_rate": _described(_NULLABLE_NUMBER, (
            f"Suggested opening offer for negotiating with the carrier, {_PER_MILE}.")),
        "fuel_rate": _described(_NULLABLE_NUMBER, (
            "Fuel surcharge per mile in `currency`, as the API reports it; already included in the buy rates, not "
            "added on top. NULL on ERROR rows.")),
        "distance": _described(_NULLABLE_NUMBER, "Total trip distance in miles, as the API computed it; NULL on ERROR rows."),
        "target_buy_total": _described(_NULLABLE_NUMBER, (
            "Predicted cost of the whole trip in `currency`, fuel included: target_buy_rate x distance, rounded to "
            "cents (computed by ingest, not returned by the API). NULL on ERROR rows.")),
        "confidence_level": _described({"type": ["integer", "null"]}, (
            "How confident the API is in this prediction, from 0 (lowest) to 100 (highest). NULL on ERROR rows.")),
        "acceptance_rates": _described({"type": ["array", "null"], "items": {"type": "number"}}, (
            "JSON array of buy rates per mile (in `currency`), each the rate at which a carrier accepts the load with "
            "probability X%, X equally spaced from 0% to 100% (11 items = 0, 10, ..., 100%). May be empty; NULL on "
            "ERROR rows.")),
        "currency": _described(_NULLABLE_STRING, (
            "ISO 4217 code of every money column of the row, as the API answered: the currency requested (the input's "
            "currency column, else the block's `currency` setting), else the API account's default. On ERROR rows: "
            "the input's currency, if any.")),
        "notes": _described({"type": ["object", "null"]}, (
            "JSON object of the API's caveats about the rate, e.g. shortHaulRateInaccurate {distanceLessThan} or "
            "multistopDistanceOutlierRateInaccurate; a note that is present and not null applies. NULL when none.")),
        "tag": _described(_NULLABLE_STRING, (
            "Tag sent with the request and echoed by the API to match answers to lanes: 'ingest-' + the first 16 hex "
            "digits of sha1(lane_id).")),
        "error_http_code": _described({"type": ["integer", "null"]}, (
            "On ERROR rows, the HTTP status that explains the failure: the batch item's errorObject.httpCode or the "
            "status of the refused call (400, 422, 424). NULL on OK rows and for invalid_input / no_response.")),
        "error_code": _described(_NULLABLE_STRING, (
            "On ERROR rows: the API's error code (e.g. not_found_distance, request_validation), or ingest's own: "
            "invalid_input (the input row cannot be priced as given; not sent) or no_response (the batch answer had no "
            "prediction for this lane). NULL on OK rows.")),
        "error_message": _described(_NULLABLE_STRING, (
            "On ERROR rows, why the lane has no price, in words (the API's message with its field errors, or what is "
            "wrong with the input row); secrets masked. NULL on OK rows.")),
        "shipment_ids": _described({"type": ["array", "null"], "items": {"type": "string"}}, (
            "JSON array of the input shipment ids (shipment_id, load_id, ... column) priced as this lane and pickup "
            "date; join back to shipments on it. NULL when the input has no id column.")),
        "priced_at": _described({"type": "string", "format": "date-time"}, (
            "When ingest asked the API for this price (UTC; the start of the batch call). A lane priced again gets a "
            "new value.")),
    },
}


# ---------------------------------------------------------------------------------------------- the puller


@dataclass
class PricingPlan(Plan):
    """One read's lanes in batches, and the tallies for its closing summary."""

    counts: dict[str, int] = field(default_factory=lambda: {"OK": 0, "ERROR": 0})
    error_codes: dict[str, int] = field(default_factory=dict)

    def tally(self, record: dict) -> dict:
        self.counts[record["status"]] = self.counts.get(record["status"], 0) + 1
        if record["status"] != "OK":
            key = " ".join(str(x) for x in (record.get("error_http_code"), record.get("error_code") or "error") if x)
            self.error_codes[key] = self.error_codes.get(key, 0) + 1
        return record


class TruckPricingPuller(Puller):
    NAME = NAME
    SPEC = SPEC
    CATALOG = {STREAM: (SCHEMA, ["lane_id"], "pickup_date")}
    FAILED_STREAM = STREAM

    def _policy(self) -> HttpPolicy:
        return HttpPolicy.from_config(self.config, requests_per_second=5, max_concurrency=4, timeout=120.0)

    def _client(self) -> HttpClient:
        base = re.sub(r"/v\d+/?$", "", str(self.config.get("base_url") or PROD_URL).rstrip("/"))
        client = HttpClient(base, self._policy(), name=NAME)
        secret = str(self.config.get("client_secret") or "")
        REDACTOR.add(secret)
        client.auth = ClientCredentials(client, str(self.config.get("client_id") or ""), secret)
        return client

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

    # -- reading (the Puller hooks)

    def inputs(self) -> list[Lane]:
        lanes_cfg = self.config.get("lanes") or {}
        if lanes_cfg.get("from") == "csv":
            path = self.block.path(lanes_cfg.get("path"))
            try:
                rows = read_csv_rows(path)
            except (OSError, UnicodeDecodeError) as exc:
                raise SyncError(f"lanes.path: cannot read {path}: {type(exc).__name__}: {exc}", failure_type="config_error") from None
        else:
            rows = self.warehouse_rows(str(lanes_cfg.get("query") or ""), "lanes.query")
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

    def plan(self, wanted: dict, state: list, lanes: list[Lane]) -> PricingPlan:
        """Batches of the lanes after the saved cursor, in lane_id order; lanes without a date are ERROR rows."""
        cursor = stream_state(state, STREAM) if is_incremental(wanted[STREAM]) else {}
        undated, todo, skipped = self.select(lanes, cursor)
        invalid = sum(1 for lane in todo if lane.problem) + len(undated)
        opening = (f"{NAME}: {len(lanes):,} distinct lanes in the input; {len(todo):,} to price"
                   + (f", {skipped:,} before the cursor {cursor.get('lane_id')!r} or start_date" if skipped else "")
                   + (f", {invalid:,} not priceable as given (kept as ERROR rows)" if invalid else ""))
        batch_size = max(1, min(MAX_BATCH, int(self.config.get("batch_size") or MAX_BATCH)))
        plan = PricingPlan(wanted=wanted, items=[todo[i:i + batch_size] for i in range(0, len(todo), batch_size)],
                           opening=opening, cursor=dict(cursor) if cursor else None,
                           checkpoint_every=max(1, int(self.config.get("checkpoint_lanes") or 1000)))
        priced_at = dt.datetime.now(dt.timezone.utc).isoformat()
        plan.before = [(STREAM, plan.tally(error_record(lane, priced_at, None, "invalid_input", lane.problem)))
                       for lane in undated]
        return plan

    def fetch(self, client: HttpClient, batch: list[Lane], plan: PricingPlan) -> list[dict]:
        return self._price(client, batch)

    def records(self, plan: PricingPlan, batch: list[Lane], records: list[dict]) -> Iterator[tuple[str, dict]]:
        for record in records:
            yield STREAM, plan.tally(record)

    def checkpoint_weight(self, batch: list[Lane]) -> int:
        return len(batch)  # checkpoint_lanes counts lanes

    def cursor_after(self, plan: PricingPlan, cursor: dict | None, batch: list[Lane], records: list[dict]) -> dict:
        last = batch[-1]
        if cursor is None or last.lane_id > cursor.get("lane_id", ""):
            # (lanes re-priced for lookback_days sort before the saved cursor: it never moves back)
            return {"pickup_date": last.pickup_date.isoformat(), "lane_id": last.lane_id}
        return cursor

    def summary(self, plan: PricingPlan, client: HttpClient | None) -> list[tuple[str, str]]:
        counts = plan.counts
        summary = f"{NAME}: {counts.get('OK', 0):,} lanes priced, {counts.get('ERROR', 0):,} ERROR rows"
        if plan.error_codes:
            summary += " (" + ", ".join(f"{k} x{v}" for k, v in sorted(plan.error_codes.items())) + ")"
        if client is not None:
            summary += f"; {client.stats.summary()}"
        return [(summary, "WARN" if counts.get("ERROR") else "INFO")]

    # -- pricing (runs on the worker threads)

    def _price(self, client: HttpClient, batch: list[Lane]) -> list[dict]:
        priced_at = dt.datetime.now(dt.timezone.utc).isoformat()
        out: dict[str, dict] = {}
        valid = []
        for lane in batch:
            if lane.problem:
                out[lane.lane_id] = error_record(lane, priced_at, None, "invalid_input", lane.problem)
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
            return {lane.lane_id: ok_record(lane, priced_at, resp.body)}
        code, message = explain_error(resp.status, resp.body)
        return {lane.lane_id: error_record(lane, priced_at, resp.status, code, message)}

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
                out[lane.lane_id] = error_record(lane, priced_at, None, "no_response",
                                                  "the batch answer had no prediction for this lane")
                continue
            status = str(item.get("status") or ("ERROR" if item.get("errorObject") else "OK")).upper()
            if status == "OK":
                out[lane.lane_id] = ok_record(lane, priced_at, item)
                continue
            err = item.get("errorObject") if isinstance(item.get("errorObject"), dict) else {}
            http_code = parse_int(err.get("httpCode"))
            if http_code is not None and (http_code >= 500 or http_code == 429) and round_ < ITEM_RETRY_ROUNDS:
                again.append(lane)
                continue
            out[lane.lane_id] = error_record(lane, priced_at, http_code, clean_text(err.get("code")),
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
            return {lanes[0].lane_id: error_record(lanes[0], priced_at, resp.status, code, message)}
        at_fault = faulty_indexes(resp.body, len(lanes))
        out: dict[str, dict] = {}
        if at_fault:
            by_index = errors_by_index(resp.body)
            for i in sorted(at_fault):
                detail = "; ".join(by_index.get(i, [])) or message
                out[lanes[i].lane_id] = error_record(lanes[i], priced_at, resp.status, code,
                                                      scrub(f"HTTP {resp.status}: {detail}"))
            rest = [lane for i, lane in enumerate(lanes) if i not in at_fault]
            groups = [rest] if rest else []
        else:
            mid = len(lanes) // 2
            groups = [lanes[:mid], lanes[mid:]]
        for group in groups:
            if budget[0] <= 0:
                for lane in group:
                    out[lane.lane_id] = error_record(lane, priced_at, resp.status, code,
                                                      f"{message} (refused in a batch of {len(lanes)}; not narrowed down further)")
                continue
            budget[0] -= 1
            out.update(self._price_batch(client, group, priced_at, round_, budget))
        return out
