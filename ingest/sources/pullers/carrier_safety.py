"""carrier_safety: FMCSA QCMobile safety records for the carriers we work with, as flat typed tables.

1. **carriers**: DOT numbers from the block's warehouse (`carriers: {from: warehouse, query: "SELECT dot_number ..."}`)
   or a list (`carriers: {from: list, dot_numbers: [...]}`); de-duplicated, fetched in ascending order. Inputs that
   are not DOT numbers become `lookup_errors` rows (reason `invalid_dot_number`), not failures;
2. **per carrier**: `GET /carriers/{dot}` (the record; `content: null` = unknown DOT → a `lookup_errors` row with
   reason `not_found` and a warning with the count, never a failure), then `/basics`, `/oos`, `/authority` for the
   streams the block selects. `webKey` travels in the query string, so every URL in a log or error is scrubbed
   (http.scrub) and the key is registered with the redactor; a 404 "Webkey not found" is a config error;
3. **pacing**: one client-side rate limit (`requests_per_second`, default 4 = 250 ms apart; integrators space calls
   ~200 ms) shared by `max_concurrency` worker threads; 429s pause all threads and are retried with backoff (and
   the server's Retry-After when sent); an HTML maintenance page answered with 200, 5xx, timeouts and dropped
   connections are retried too;
4. **parsing never fails the load** (fmcsa.py, values.py): dates in any of FMCSA's formats (01/26/2024, 2024-01-26, 2017-01-27T05:00:00.000+0000,
   20240126, 26-JAN-24), numbers as text ("18%", "1,000"), Y/N flags, and words where numbers are expected
   ("insufficient data", "Not Public", "inconclusive", "no violations" → NULL number + a `percentile_status`).
   Documented and live field names are both read (allowToOperate/allowedToOperate, phyZip/phyZipcode,
   outOfServiceDate/oosDate, basicShortDesc/basicsType.basicsShortDesc, ...). A value present but unreadable as
   its column's type is kept in the row's `unparsed` object; fields we do not map are kept in `extra`;
5. **state**: a snapshot is one pass over the carrier list for a `snapshot_date` (default: today, UTC). Every
   `checkpoint_every` carriers each selected stream gets a STATE `{"snapshot_date", "last_dot_number",
   "complete": false}`, committed with the rows before it; the last one says `complete: true`. A rerun resumes an
   unfinished snapshot after `last_dot_number` (same snapshot date) and does nothing more on a day whose snapshot
   is complete; the next day starts a new snapshot.

Streams (primary key; cursor `snapshot_date` everywhere): `snapshots` (dot_number, snapshot_date), `basics`
(+ basic), `out_of_service` (+ oos_key), `authority` (+ authority_key), `lookup_errors` (input, snapshot_date).
The `/oos` answer's shape is not documented field by field; the mapping tolerates several names and keeps the rest
in `extra` — check it against one real response before relying on its columns.
Every stream schema and column carries a `description` (carrier_safety_schemas.py): the warehouse's table and
column comments, since nobody else documents these tables.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Iterator

from ...secrets import REDACTOR
from . import is_incremental, stream_state
from .base import Plan, Puller, input_choice
from .carrier_safety_schemas import AUTHORITY, BASICS, LOOKUP_ERRORS, OOS, SNAPSHOTS, STREAMS
from .fmcsa import authority_rows, basic_rows, carrier_row, oos_rows, parse_dot, retrieval_date
from .http import FatalHTTPError, HttpClient, HttpPolicy, as_sync_error, policy_spec_properties, scrub
from .values import json_value, parse_date, parse_int

NAME = "carrier_safety"
BASE_URL = "https://mobile.fmcsa.dot.gov/qc/services"
ENDPOINTS = {BASICS: "basics", OOS: "oos", AUTHORITY: "authority"}  # stream -> sub-resource of /carriers/{dot}
DOT_COLUMNS = ("dot_number", "dot", "usdot", "usdot_number", "dotnumber", "us_dot_number", "carrier_dot")

SPEC: dict = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Carrier safety (FMCSA QCMobile)",
    "type": "object",
    "required": ["web_key", "carriers"],
    "additionalProperties": False,
    "properties": {
        "base_url": {"type": "string", "pattern": "^https?://", "default": BASE_URL, "examples": [BASE_URL]},
        "web_key": {"type": "string", "minLength": 1, "airbyte_secret": True,
                    "description": "FMCSA webKey: a reference like ${FMCSA_WEB_KEY} (it is sent in the query string; never logged)."},
        "carriers": {
            "description": "Which carriers (DOT numbers) to look up.",
            "oneOf": [
                input_choice("list", "dot_numbers", {"type": "array", "minItems": 1, "items": {"type": ["integer", "string"]}}),
                input_choice("warehouse", "query", {"type": "string", "minLength": 1, "description": (
                    "SQL run on the block's destination; the DOT numbers are the `dot_number` column (or the first column).")}),
            ],
        },
        "snapshot_date": {"type": "string", "format": "date", "description": "Date the rows are filed under (default: today, UTC)."},
        "checkpoint_every": {"type": "integer", "minimum": 1, "default": 100,
                             "description": "Commit rows + state after this many carriers."},
        **policy_spec_properties(requests_per_second=4, max_concurrency=4, max_retries=6, backoff_base=1.0,
                                 backoff_max=60.0, timeout=30.0),
    },
}

ROWS = {BASICS: basic_rows, OOS: oos_rows, AUTHORITY: authority_rows}


# ---------------------------------------------------------------------------------------------- the puller


@dataclass
class CarrierResult:
    dot: int
    rows: dict[str, list[dict]] = field(default_factory=dict)
    found: bool = True
    message: str | None = None
    retrieved_at: str | None = None


@dataclass
class SnapshotPlan(Plan):
    """One read's carriers (DOT numbers in ascending order) for one snapshot date, and the tallies for the summary."""

    snapshot: str = ""
    now: str = ""  # retrieved_at of the rows FMCSA gave no date for
    invalid: list[tuple[str, str]] = field(default_factory=list)
    not_found: list[int] = field(default_factory=list)
    rows_out: dict[str, int] = field(default_factory=dict)

    def lookup_error(self, row: dict) -> tuple[str, dict]:
        self.rows_out[LOOKUP_ERRORS] += 1
        return LOOKUP_ERRORS, row


class CarrierSafetyPuller(Puller):
    NAME = NAME
    SPEC = SPEC
    CATALOG = {name: (schema, pk, "snapshot_date") for name, (schema, pk) in STREAMS.items()}
    CHECKPOINT_LAST_ITEM = False  # the final STATE (complete: true) follows the last carrier

    def __init__(self, block, *, warehouse=None):
        super().__init__(block, warehouse=warehouse)
        self._key_ref = str(((block.spec.config or {}) if getattr(block, "spec", None) else {}).get("web_key") or "web_key")

    def _client(self) -> HttpClient:
        key = str(self.config.get("web_key") or "")
        REDACTOR.add(key)
        policy = HttpPolicy.from_config(self.config, requests_per_second=4, max_concurrency=4, timeout=30.0)
        return HttpClient(str(self.config.get("base_url") or BASE_URL), policy, name=NAME)

    def check(self) -> tuple[bool, str | None]:
        client = self._client()
        try:
            dots = [d for d in (parse_dot(v) for v in (self.config.get("carriers") or {}).get("dot_numbers") or []) if d]
            self._get(client, f"carriers/{dots[0] if dots else 1}")
        except Exception as exc:  # noqa: BLE001 - a failed check is an answer
            return False, str(as_sync_error(exc))
        finally:
            client.close()
        return True, None

    # -- reading (the Puller hooks)

    def inputs(self) -> tuple[list[int], list[tuple[str, str]]]:
        """(DOT numbers, sorted and unique; [(input, why it is not a DOT number)])."""
        cfg = self.config.get("carriers") or {}
        if cfg.get("from") == "warehouse":
            rows = self.warehouse_rows(str(cfg.get("query") or ""), "carriers.query")
            values = []
            for row in rows:
                column = next((c for c in DOT_COLUMNS if c in row), next(iter(row), None))
                values.append(row.get(column) if column else None)
        else:
            values = list(cfg.get("dot_numbers") or [])
        dots, invalid = set(), {}
        for v in values:
            dot = parse_dot(v)
            if dot is None:
                text = "" if v is None else str(json_value(v))
                invalid.setdefault(text, f"{text!r} is not a DOT number")
            else:
                dots.add(dot)
        return sorted(dots), sorted(invalid.items())

    def _plan(self, wanted: dict, state: list) -> tuple[str, int | None, bool, str | None]:
        """(snapshot date, resume after this DOT number, snapshot already complete, a note for the log)."""
        today = dt.datetime.now(dt.timezone.utc).date().isoformat()
        configured = parse_date(self.config.get("snapshot_date"))
        fresh = not all(is_incremental(cs) for cs in wanted.values())
        blobs = [] if fresh else [stream_state(state, name) for name in wanted]
        dates = {b.get("snapshot_date") for b in blobs}
        if configured is not None:
            snapshot = configured.isoformat()
        elif len(dates) == 1 and None not in dates and not all(b.get("complete") for b in blobs):
            snapshot = dates.pop()  # finish the interrupted snapshot first
        else:
            snapshot = today
        if fresh or any(b.get("snapshot_date") != snapshot for b in blobs):
            return snapshot, None, False, None
        lasts = [parse_int(b.get("last_dot_number")) for b in blobs]
        after = None if any(x is None for x in lasts) else min(lasts)
        if all(b.get("complete") for b in blobs):
            return snapshot, after, True, f"the {snapshot} snapshot is complete; nothing to fetch until the next day (or --full-refresh)"
        note = f"resuming the {snapshot} snapshot after DOT {after}" if after is not None else None
        return snapshot, after, False, note

    def plan(self, wanted: dict, state: list, inputs: tuple[list[int], list[tuple[str, str]]]) -> SnapshotPlan:
        """The carriers still to fetch for this snapshot; inputs that are not DOT numbers are lookup_errors rows."""
        dots, invalid = inputs
        snapshot, after, complete, note = self._plan(wanted, state)
        todo = [] if complete else [d for d in dots if after is None or d > after]
        plan = SnapshotPlan(
            wanted=wanted, items=todo, cursor={"snapshot_date": snapshot, "last_dot_number": after, "complete": False},
            opening=(f"{NAME}: {len(dots):,} carriers in the input, {len(todo):,} to fetch for the {snapshot} snapshot"
                     + (f"; {note}" if note else "")),
            checkpoint_every=max(1, int(self.config.get("checkpoint_every") or 100)), snapshot=snapshot,
            now=dt.datetime.now(dt.timezone.utc).isoformat(), invalid=invalid, rows_out={name: 0 for name in wanted})
        if LOOKUP_ERRORS in wanted:
            plan.before = [plan.lookup_error({"input": text, "dot_number": None, "snapshot_date": snapshot,
                                              "reason": "invalid_dot_number", "message": why, "retrieved_at": plan.now})
                           for text, why in invalid]
        return plan

    def records(self, plan: SnapshotPlan, dot: int, result: CarrierResult) -> Iterator[tuple[str, dict]]:
        if not result.found:
            plan.not_found.append(result.dot)
            if LOOKUP_ERRORS in plan.wanted:
                yield plan.lookup_error({
                    "input": str(result.dot), "dot_number": result.dot, "snapshot_date": plan.snapshot,
                    "reason": "not_found", "message": result.message, "retrieved_at": result.retrieved_at or plan.now})
        for name, rows in result.rows.items():
            plan.rows_out[name] += len(rows)
            for row in rows:
                yield name, row

    def cursor_after(self, plan: SnapshotPlan, cursor: dict, dot: int, result: CarrierResult) -> dict:
        return {"snapshot_date": plan.snapshot, "last_dot_number": result.dot, "complete": False}

    def final_state(self, plan: SnapshotPlan, cursor: dict) -> dict:
        return {**cursor, "complete": True}

    def summary(self, plan: SnapshotPlan, client: HttpClient | None) -> list[tuple[str, str]]:
        lines = []
        not_found, invalid, todo = plan.not_found, plan.invalid, plan.items
        if not_found or invalid:
            listed = ", ".join(str(d) for d in not_found[:20]) + (" ..." if len(not_found) > 20 else "")
            parts = []
            if not_found:
                parts.append(f"{len(not_found):,} of {len(todo):,} DOT numbers not found in FMCSA ({listed})")
            if invalid:
                parts.append(f"{len(invalid):,} input value{'s are' if len(invalid) != 1 else ' is'} not a DOT number "
                             f"({', '.join(repr(t) for t, _ in invalid[:10])})")
            where = f"; see the `{LOOKUP_ERRORS}` stream" if LOOKUP_ERRORS in plan.wanted else ""
            lines.append((f"{NAME}: " + "; ".join(parts) + where, "WARN"))
        rows = ", ".join(f"{name} {n:,}" for name, n in plan.rows_out.items())
        lines.append((f"{NAME}: {len(todo) - len(not_found):,} carriers fetched ({rows} rows)"
                      + (f"; {client.stats.summary()}" if client is not None else ""), "INFO"))
        return lines

    # -- per carrier (worker threads)

    def _get(self, client: HttpClient, path: str):
        resp = client.request("GET", path, params={"webKey": self.config.get("web_key") or ""}, accept=(404,))
        content = resp.body.get("content") if isinstance(resp.body, dict) else None
        if resp.status == 404 and isinstance(content, str) and "webkey" in content.lower():
            raise FatalHTTPError(
                f"FMCSA refused the webKey (GET {resp.url}: HTTP 404 {content!r}); check the secret behind "
                f"config.web_key ({scrub(self._key_ref)})", status=404, failure_type="config_error")
        return resp

    def fetch(self, client: HttpClient, dot: int, plan: SnapshotPlan) -> CarrierResult:
        snapshot, wanted = plan.snapshot, plan.wanted
        resp = self._get(client, f"carriers/{dot}")
        body = resp.body if isinstance(resp.body, dict) else {}
        content = body.get("content")
        if isinstance(content, list):
            content = content[0] if content else None
        carrier = content.get("carrier") if isinstance(content, dict) else None
        if isinstance(content, dict) and carrier is None and any(k in content for k in ("dotNumber", "legalName")):
            carrier = content  # tolerate an unwrapped record
        retrieved = retrieval_date(body)
        if resp.status == 404 or not isinstance(carrier, dict) or not carrier:
            why = f"HTTP {resp.status}" + (f": {scrub(body.get('content'))}" if isinstance(body.get("content"), str) else ": no carrier in the answer")
            return CarrierResult(dot, found=False, message=f"FMCSA has no carrier with DOT number {dot} ({why})", retrieved_at=retrieved)
        result = CarrierResult(dot, retrieved_at=retrieved)
        if SNAPSHOTS in wanted:
            result.rows[SNAPSHOTS] = [carrier_row(dot, snapshot, carrier, retrieved)]
        for name, endpoint in ENDPOINTS.items():
            if name in wanted:
                sub = self._get(client, f"carriers/{dot}/{endpoint}")
                result.rows[name] = [] if sub.status == 404 else ROWS[name](dot, snapshot, sub.body)
        return result
