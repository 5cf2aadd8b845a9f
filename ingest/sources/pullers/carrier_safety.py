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
4. **parsing never fails the load**: dates in any of FMCSA's formats (01/26/2024, 2024-01-26, 2017-01-27T05:00:00.000+0000,
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
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from ...errors import SyncError
from ...secrets import REDACTOR
from ..base import Source
from . import (airbyte_stream, is_incremental, json_value, log_message, query_rows, record_message, state_message,
               stream_state)
from .http import (Cancelled, FatalHTTPError, HttpClient, HttpPolicy, RetryableHTTPError, as_sync_error, clean_text,
                   ordered_map, parse_date, parse_datetime, parse_flag, parse_int, parse_number,
                   policy_spec_properties, scrub)

NAME = "carrier_safety"
BASE_URL = "https://mobile.fmcsa.dot.gov/qc/services"
SNAPSHOTS, BASICS, OOS, AUTHORITY, LOOKUP_ERRORS = "snapshots", "basics", "out_of_service", "authority", "lookup_errors"
ENDPOINTS = {BASICS: "basics", OOS: "oos", AUTHORITY: "authority"}  # stream -> sub-resource of /carriers/{dot}
NO_DATA_WORDS = {"insufficient data", "not public", "inconclusive", "no violations", "n/a", "na", "none", "-",
                 "not available", "no data", "u", "unknown", "-1"}
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
                {
                    "title": "list", "type": "object", "required": ["from", "dot_numbers"], "additionalProperties": False,
                    "properties": {
                        "from": {"const": "list"},
                        "dot_numbers": {"type": "array", "minItems": 1, "items": {"type": ["integer", "string"]}},
                    },
                },
                {
                    "title": "warehouse", "type": "object", "required": ["from", "query"], "additionalProperties": False,
                    "properties": {
                        "from": {"const": "warehouse"},
                        "query": {"type": "string", "minLength": 1, "description": (
                            "SQL run on the block's destination; the DOT numbers are the `dot_number` column (or the first column).")},
                    },
                },
            ],
        },
        "snapshot_date": {"type": "string", "format": "date", "description": "Date the rows are filed under (default: today, UTC)."},
        "checkpoint_every": {"type": "integer", "minimum": 1, "default": 100,
                             "description": "Commit rows + state after this many carriers."},
        **policy_spec_properties(requests_per_second=4, max_concurrency=4, max_retries=6, backoff_base=1.0,
                                 backoff_max=60.0, timeout=30.0),
    },
}

_S = {"type": ["string", "null"]}
_I = {"type": ["integer", "null"]}
_N = {"type": ["number", "null"]}
_B = {"type": ["boolean", "null"]}
_D = {"type": ["string", "null"], "format": "date"}
_O = {"type": ["object", "null"]}
_COMMON = {
    "dot_number": {"type": "integer"},
    "snapshot_date": {"type": "string", "format": "date"},
    "retrieved_at": {"type": ["string", "null"], "format": "date-time"},
}
_TRAILER = {"unparsed": _O, "extra": _O}

# column -> (kind, names to read, first present wins). Kinds: text, int, number, flag, date.
SNAPSHOT_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "legal_name": ("text", ("legalName",)),
    "dba_name": ("text", ("dbaName",)),
    "status_code": ("text", ("statusCode",)),
    "allowed_to_operate": ("flag", ("allowedToOperate", "allowToOperate")),
    "out_of_service": ("flag", ("outOfService",)),
    "out_of_service_date": ("date", ("outOfServiceDate", "oosDate")),
    "safety_rating": ("text", ("safetyRating",)),
    "safety_rating_date": ("date", ("safetyRatingDate",)),
    "safety_review_date": ("date", ("safetyReviewDate", "reviewDate")),
    "safety_review_type": ("text", ("safetyReviewType", "reviewType")),
    "carrier_operation_code": ("text", ("carrierOperation.carrierOperationCode", "carrierOperationCode")),
    "carrier_operation_desc": ("text", ("carrierOperation.carrierOperationDesc", "carrierOperationDesc")),
    "census_type": ("text", ("censusTypeId.censusTypeDesc", "censusType")),
    "mc_number": ("text", ("mcNumber",)),
    "phy_street": ("text", ("phyStreet",)),
    "phy_city": ("text", ("phyCity",)),
    "phy_state": ("text", ("phyState",)),
    "phy_zip": ("text", ("phyZipcode", "phyZip")),
    "phy_country": ("text", ("phyCountry",)),
    "telephone": ("text", ("telephone", "phone")),
    "total_drivers": ("int", ("totalDrivers",)),
    "total_power_units": ("int", ("totalPowerUnits",)),
    "crash_total": ("int", ("crashTotal",)),
    "fatal_crash": ("int", ("fatalCrash",)),
    "inj_crash": ("int", ("injCrash",)),
    "towaway_crash": ("int", ("towawayCrash",)),
    "driver_insp": ("int", ("driverInsp",)),
    "driver_oos_insp": ("int", ("driverOosInsp",)),
    "driver_oos_rate": ("number", ("driverOosRate",)),
    "driver_oos_rate_national_average": ("number", ("driverOosRateNationalAverage",)),
    "vehicle_insp": ("int", ("vehicleInsp",)),
    "vehicle_oos_insp": ("int", ("vehicleOosInsp",)),
    "vehicle_oos_rate": ("number", ("vehicleOosRate",)),
    "vehicle_oos_rate_national_average": ("number", ("vehicleOosRateNationalAverage",)),
    "hazmat_insp": ("int", ("hazmatInsp",)),
    "hazmat_oos_insp": ("int", ("hazmatOosInsp",)),
    "hazmat_oos_rate": ("number", ("hazmatOosRate",)),
    "hazmat_oos_rate_national_average": ("number", ("hazmatOosRateNationalAverage",)),
    "oos_rate_national_average_year": ("text", ("oosRateNationalAverageYear",)),
    "bipd_insurance_on_file": ("number", ("bipdInsuranceOnFile",)),
    "bipd_insurance_required": ("flag", ("bipdInsuranceRequired",)),
    "bipd_required_amount": ("number", ("bipdRequiredAmount",)),
    "cargo_insurance_on_file": ("number", ("cargoInsuranceOnFile",)),
    "cargo_insurance_required": ("flag", ("cargoInsuranceRequired",)),
    "bond_insurance_on_file": ("number", ("bondInsuranceOnFile",)),
    "bond_insurance_required": ("flag", ("bondInsuranceRequired",)),
    "common_authority_status": ("text", ("commonAuthorityStatus",)),
    "contract_authority_status": ("text", ("contractAuthorityStatus",)),
    "broker_authority_status": ("text", ("brokerAuthorityStatus",)),
    "is_passenger_carrier": ("flag", ("isPassengerCarrier",)),
    "mcs150_outdated": ("flag", ("mcs150Outdated",)),
    "complaint_count": ("int", ("complaintCount",)),
}
BASIC_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "basic_id": ("int", ("id.basicsId", "basicsType.basicsId", "basicsId", "basicId", "id")),
    "basic_code": ("text", ("basicsType.basicsCode", "basicsCode", "basicCode")),
    "basic_short_desc": ("text", ("basicsType.basicsShortDesc", "basicsShortDesc", "basicShortDesc")),
    "basic_long_desc": ("text", ("basicsType.basicsLongDesc", "basicsLongDesc", "basicLongDesc", "basicDesc")),
    "measure_value": ("number", ("measureValue", "measure", "basicsValue")),
    "violation_threshold": ("number", ("basicsViolationThreshold", "violationThreshold", "threshold")),
    "exceeded_intervention_threshold": ("flag", ("exceededFMCSAInterventionThreshold", "basicsExceedFlag", "overIndicator")),
    "on_road_deficient": ("flag", ("rdDeficient", "onRoadPerformanceThresholdViolationIndicator")),
    "serious_violation_deficient": ("flag", ("svDeficient", "seriousViolationFromInvestigationPast12MonthIndicator")),
    "rdsv_deficient": ("flag", ("rdsvDeficient",)),
    "total_inspections_with_violation": ("int", ("totalInspectionWithViolation", "totalInspectionsWithViolation")),
    "total_violations": ("int", ("totalViolation", "totalViolations")),
    "run_date": ("date", ("snapShotDate", "snapshotDate", "basicsRunDate", "runDate")),
}
PERCENTILE_NAMES = ("basicsPercentile", "percentile")
OOS_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "oos_type": ("text", ("type", "oosType", "inspectionType", "category")),
    "inspections": ("int", ("inspections", "insp", "totalInspections", "inspectionCount")),
    "oos_inspections": ("int", ("oosInspections", "oosInsp", "outOfServiceInspections")),
    "oos_rate": ("number", ("oosRate", "rate", "oosPercent")),
    "national_average": ("number", ("nationalAverage", "oosRateNationalAverage", "nationalAvg")),
    "oos_date": ("date", ("oosDate", "outOfServiceDate", "date")),
    "oos_reason": ("text", ("oosReasonDescription", "oosReason", "reason")),
    "status": ("text", ("status", "oosStatus")),
    "rescind_date": ("date", ("rescindDate",)),
}
AUTHORITY_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "docket_number": ("int", ("docketNumber",)),
    "prefix": ("text", ("prefix",)),
    "applicant_id": ("int", ("applicantID", "applicantId")),
    "common_authority_status": ("text", ("commonAuthorityStatus",)),
    "contract_authority_status": ("text", ("contractAuthorityStatus",)),
    "broker_authority_status": ("text", ("brokerAuthorityStatus",)),
    "authorized_for_property": ("flag", ("authorizedForProperty",)),
    "authorized_for_passenger": ("flag", ("authorizedForPassenger",)),
    "authorized_for_household_goods": ("flag", ("authorizedForHouseholdGoods",)),
    "authorized_for_broker": ("flag", ("authorizedForBroker",)),
}
_KIND_SCHEMA = {"text": _S, "int": _I, "number": _N, "flag": _B, "date": _D}


def _schema(fields: dict, extra_props: dict) -> dict:
    props = {**_COMMON, **extra_props, **{c: _KIND_SCHEMA[kind] for c, (kind, _) in fields.items()}, **_TRAILER}
    return {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": True, "properties": props}


STREAMS: dict[str, tuple[dict, list[str]]] = {  # name -> (json schema, primary key)
    SNAPSHOTS: (_schema(SNAPSHOT_FIELDS, {}), ["dot_number", "snapshot_date"]),
    BASICS: (_schema(BASIC_FIELDS, {"basic": {"type": "string"}, "percentile": _N, "percentile_status": _S}),
             ["dot_number", "snapshot_date", "basic"]),
    OOS: (_schema(OOS_FIELDS, {"oos_key": {"type": "string"}}), ["dot_number", "snapshot_date", "oos_key"]),
    AUTHORITY: (_schema(AUTHORITY_FIELDS, {"authority_key": {"type": "string"}}), ["dot_number", "snapshot_date", "authority_key"]),
    LOOKUP_ERRORS: ({
        "$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": True,
        "properties": {
            "input": {"type": "string"}, "dot_number": _I, "snapshot_date": {"type": "string", "format": "date"},
            "reason": {"type": "string", "description": "not_found | invalid_dot_number"}, "message": _S,
            "retrieved_at": {"type": ["string", "null"], "format": "date-time"},
        },
    }, ["input", "snapshot_date"]),
}

# Canonical BASIC names (the `basic` key) from the names the docs and live answers use.
BASIC_NAMES = {
    "unsafe driving": "Unsafe Driving",
    "hos compliance": "HOS Compliance", "hours-of-service compliance": "HOS Compliance", "hours of service compliance": "HOS Compliance",
    "driver fitness": "Driver Fitness",
    "drugs/alcohol": "Controlled Substances/Alcohol", "controlled substances/alcohol": "Controlled Substances/Alcohol",
    "controlled substances": "Controlled Substances/Alcohol",
    "vehicle maint.": "Vehicle Maintenance", "vehicle maintenance": "Vehicle Maintenance",
    "hm compliance": "Hazardous Materials Compliance", "hazardous materials compliance": "Hazardous Materials Compliance",
    "hazmat compliance": "Hazardous Materials Compliance",
    "crash indicator": "Crash Indicator", "crash": "Crash Indicator",
}


# ---------------------------------------------------------------------------------------------- flattening


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def flatten(obj: dict, fields: dict[str, tuple[str, tuple[str, ...]]]) -> tuple[dict, dict, set[str]]:
    """(typed columns, unparsed {column: raw}, top-level keys read). The first of a column's names that holds a
    value wins (documented and live names both work). Never raises."""
    out: dict[str, Any] = {}
    unparsed: dict[str, Any] = {}
    used: set[str] = set()
    for column, (kind, names) in fields.items():
        raw = None
        for name in names:
            value = _get(obj, name)
            if value is None:
                continue
            used.add(name.split(".")[0])
            if raw is None and (kind == "text" or not isinstance(value, (dict, list))):
                raw = value
        value = _convert(raw, kind)
        if value is None and raw is not None and not _no_data(raw):
            unparsed[column] = raw
        out[column] = value
    return out, unparsed, used


def _convert(raw: Any, kind: str) -> Any:
    if raw is None:
        return None
    if kind == "text":
        return clean_text(raw)
    if kind == "int":
        return parse_int(raw)
    if kind == "number":
        return parse_number(raw)
    if kind == "flag":
        return parse_flag(raw)
    if kind == "date":
        d = parse_date(raw)
        return d.isoformat() if d else None
    return raw


def _no_data(raw: Any) -> bool:
    return isinstance(raw, str) and raw.strip().lower() in NO_DATA_WORDS or raw == ""


def _extra(obj: dict, used: set[str]) -> dict | None:
    rest = {k: v for k, v in obj.items() if k not in used and not k.startswith("_links") and v is not None}
    return rest or None


def _finish(row: dict, unparsed: dict, extra: dict | None) -> dict:
    row["unparsed"] = unparsed or None
    row["extra"] = extra
    return row


def _entries(body: Any, wrapper: str) -> list[dict]:
    """The list under `content` (or `content` itself when it is one object), each unwrapped from `wrapper`."""
    content = body.get("content") if isinstance(body, dict) else body
    if content is None or isinstance(content, str):
        return []
    items = content if isinstance(content, list) else [content]
    out = []
    for item in items:
        if isinstance(item, dict):
            inner = item.get(wrapper)
            out.append(inner if isinstance(inner, dict) else {k: v for k, v in item.items() if k != "_links"})
    return out


def _retrieved(body: Any) -> str | None:
    when = parse_datetime(body.get("retrievalDate")) if isinstance(body, dict) else None
    return when.isoformat() if when else None


def carrier_row(dot: int, snapshot: str, carrier: dict, retrieved_at: str | None) -> dict:
    row, unparsed, used = flatten(carrier, SNAPSHOT_FIELDS)
    used |= {"dotNumber"}
    if row["out_of_service"] is None and row["out_of_service_date"] is not None:
        row["out_of_service"] = True  # live answers carry only `oosDate`, no Y/N flag
    return _finish({"dot_number": dot, "snapshot_date": snapshot, "retrieved_at": retrieved_at, **row}, unparsed, _extra(carrier, used))


def basic_rows(dot: int, snapshot: str, body: Any) -> list[dict]:
    rows, seen = [], set()
    retrieved = _retrieved(body)
    for i, entry in enumerate(_entries(body, "basic")):
        row, unparsed, used = flatten(entry, BASIC_FIELDS)
        raw_pct = next((entry.get(n) for n in PERCENTILE_NAMES if entry.get(n) is not None), None)
        used |= set(PERCENTILE_NAMES)
        pct = parse_number(raw_pct)
        if raw_pct is None:
            status = None
        elif pct is not None:
            status = "numeric"
        else:
            status = clean_text(raw_pct).lower() if clean_text(raw_pct) else None
        name = row["basic_short_desc"] or row["basic_code"] or row["basic_long_desc"]
        basic = BASIC_NAMES.get((name or "").lower(), name) or (f"BASIC {row['basic_id']}" if row["basic_id"] is not None else f"BASIC #{i}")
        if basic in seen:
            basic = f"{basic} #{i}"
        seen.add(basic)
        rows.append(_finish({"dot_number": dot, "snapshot_date": snapshot, "retrieved_at": retrieved, "basic": basic,
                             "percentile": pct, "percentile_status": status, **row}, unparsed, _extra(entry, used | {"dotNumber"})))
    return rows


def oos_rows(dot: int, snapshot: str, body: Any) -> list[dict]:
    rows, seen = [], set()
    retrieved = _retrieved(body)
    for i, entry in enumerate(_entries(body, "oos")):
        row, unparsed, used = flatten(entry, OOS_FIELDS)
        key = (row["oos_type"] or "").lower() or ":".join(str(x) for x in (row["oos_date"], row["oos_reason"]) if x) or f"#{i}"
        if key in seen:
            key = f"{key} #{i}"
        seen.add(key)
        rows.append(_finish({"dot_number": dot, "snapshot_date": snapshot, "retrieved_at": retrieved, "oos_key": key, **row},
                            unparsed, _extra(entry, used | {"dotNumber", "id"})))
    return rows


def authority_rows(dot: int, snapshot: str, body: Any) -> list[dict]:
    rows, seen = [], set()
    retrieved = _retrieved(body)
    for i, entry in enumerate(_entries(body, "carrierAuthority")):
        row, unparsed, used = flatten(entry, AUTHORITY_FIELDS)
        if row["docket_number"] is not None:
            key = f"{row['prefix'] or ''}{row['docket_number']}"
        elif row["applicant_id"] is not None:
            key = f"applicant {row['applicant_id']}"
        else:
            key = f"#{i}"
        if key in seen:
            key = f"{key} #{i}"
        seen.add(key)
        rows.append(_finish({"dot_number": dot, "snapshot_date": snapshot, "retrieved_at": retrieved, "authority_key": key, **row},
                            unparsed, _extra(entry, used | {"dotNumber"})))
    return rows


ROWS = {BASICS: basic_rows, OOS: oos_rows, AUTHORITY: authority_rows}


def parse_dot(value: Any) -> int | None:
    """A DOT number from an input value (123, '123', 'USDOT 123', 123.0), or None."""
    value = json_value(value)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and value > 0 else None
    m = re.fullmatch(r"\s*(?:US\s*-?\s*DOT\s*#?\s*:?)?\s*(\d{1,9})(?:\.0)?\s*", str(value), re.I)
    return int(m.group(1)) if m and int(m.group(1)) > 0 else None


# ---------------------------------------------------------------------------------------------- the puller


@dataclass
class CarrierResult:
    dot: int
    rows: dict[str, list[dict]] = field(default_factory=dict)
    found: bool = True
    message: str | None = None
    retrieved_at: str | None = None


class CarrierSafetyPuller(Source):
    SPEC = SPEC

    def __init__(self, block):
        self.block = block
        self.config = dict(block.config or {})
        self._query = None
        self._key_ref = str(((block.spec.config or {}) if getattr(block, "spec", None) else {}).get("web_key") or "web_key")

    def use_warehouse(self, query) -> None:
        self._query = query

    def _client(self) -> HttpClient:
        key = str(self.config.get("web_key") or "")
        REDACTOR.add(key)
        policy = HttpPolicy.from_config(self.config, requests_per_second=4, max_concurrency=4, timeout=30.0)
        return HttpClient(str(self.config.get("base_url") or BASE_URL), policy, name=NAME)

    # -- Source protocol

    def spec(self) -> dict:
        return SPEC

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

    def discover(self, *, for_sync: bool = False):
        from . import models

        m = models()
        return m.AirbyteCatalog(streams=[airbyte_stream(name, schema, pk, "snapshot_date") for name, (schema, pk) in STREAMS.items()])

    # -- inputs

    def load_inputs(self) -> tuple[list[int], list[tuple[str, str]]]:
        """(DOT numbers, sorted and unique; [(input, why it is not a DOT number)])."""
        cfg = self.config.get("carriers") or {}
        if cfg.get("from") == "warehouse":
            rows = query_rows(self._query, str(cfg.get("query") or ""), "carriers.query")
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

    # -- reading

    def read(self, catalog, state: list) -> Iterator[Any]:
        wanted = {cs.stream.name: cs for cs in catalog.streams if cs.stream.name in STREAMS}
        if not wanted:
            return
        dots, invalid = self.load_inputs()
        snapshot, after, complete, note = self._plan(wanted, state)
        todo = [] if complete else [d for d in dots if after is None or d > after]
        yield log_message(f"{NAME}: {len(dots):,} carriers in the input, {len(todo):,} to fetch for the {snapshot} snapshot"
                          + (f"; {note}" if note else ""))
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        rows_out = {name: 0 for name in wanted}
        if LOOKUP_ERRORS in wanted:
            for text, why in invalid:
                rows_out[LOOKUP_ERRORS] += 1
                yield record_message(LOOKUP_ERRORS, {"input": text, "dot_number": None, "snapshot_date": snapshot,
                                                     "reason": "invalid_dot_number", "message": why, "retrieved_at": now})
        every = max(1, int(self.config.get("checkpoint_every") or 100))
        client = self._client() if todo else None
        not_found: list[int] = []
        last = after
        try:
            if client is not None:
                results = ordered_map(lambda dot: self._fetch(client, dot, snapshot, wanted), todo,
                                      client.policy.max_concurrency, name=NAME, cancelled=client.cancelled)
                for i, result in enumerate(results, 1):
                    if not result.found:
                        not_found.append(result.dot)
                        if LOOKUP_ERRORS in wanted:
                            rows_out[LOOKUP_ERRORS] += 1
                            yield record_message(LOOKUP_ERRORS, {
                                "input": str(result.dot), "dot_number": result.dot, "snapshot_date": snapshot,
                                "reason": "not_found", "message": result.message, "retrieved_at": result.retrieved_at or now})
                    for name, rows in result.rows.items():
                        rows_out[name] += len(rows)
                        for row in rows:
                            yield record_message(name, row)
                    last = result.dot
                    if i % every == 0 and i < len(todo):
                        for name in wanted:
                            yield state_message(name, {"snapshot_date": snapshot, "last_dot_number": last, "complete": False})
        except (FatalHTTPError, RetryableHTTPError, Cancelled) as exc:
            raise as_sync_error(exc) from None
        except SyncError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise as_sync_error(exc, what=f"{NAME} failed") from None
        finally:
            if client is not None:
                client.close()
        final = {"snapshot_date": snapshot, "last_dot_number": last, "complete": True}
        for name in wanted:
            yield state_message(name, final)
        if not_found or invalid:
            listed = ", ".join(str(d) for d in not_found[:20]) + (" ..." if len(not_found) > 20 else "")
            parts = []
            if not_found:
                parts.append(f"{len(not_found):,} of {len(todo):,} DOT numbers not found in FMCSA ({listed})")
            if invalid:
                parts.append(f"{len(invalid):,} input value{'s are' if len(invalid) != 1 else ' is'} not a DOT number "
                             f"({', '.join(repr(t) for t, _ in invalid[:10])})")
            where = f"; see the `{LOOKUP_ERRORS}` stream" if LOOKUP_ERRORS in wanted else ""
            yield log_message(f"{NAME}: " + "; ".join(parts) + where, "WARN")
        summary = ", ".join(f"{name} {n:,}" for name, n in rows_out.items())
        yield log_message(f"{NAME}: {len(todo) - len(not_found):,} carriers fetched ({summary} rows)"
                          + (f"; {client.stats.summary()}" if client is not None else ""))

    # -- per carrier (worker threads)

    def _get(self, client: HttpClient, path: str):
        resp = client.request("GET", path, params={"webKey": self.config.get("web_key") or ""}, accept=(404,))
        content = resp.body.get("content") if isinstance(resp.body, dict) else None
        if resp.status == 404 and isinstance(content, str) and "webkey" in content.lower():
            raise FatalHTTPError(
                f"FMCSA refused the webKey (GET {resp.url}: HTTP 404 {content!r}); check the secret behind "
                f"config.web_key ({scrub(self._key_ref)})", status=404, failure_type="config_error")
        return resp

    def _fetch(self, client: HttpClient, dot: int, snapshot: str, wanted: dict) -> CarrierResult:
        resp = self._get(client, f"carriers/{dot}")
        body = resp.body if isinstance(resp.body, dict) else {}
        content = body.get("content")
        if isinstance(content, list):
            content = content[0] if content else None
        carrier = content.get("carrier") if isinstance(content, dict) else None
        if isinstance(content, dict) and carrier is None and any(k in content for k in ("dotNumber", "legalName")):
            carrier = content  # tolerate an unwrapped record
        retrieved = _retrieved(body)
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
