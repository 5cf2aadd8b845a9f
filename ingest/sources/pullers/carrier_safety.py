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
Every stream schema and column carries a `description` (STREAM_DESCRIPTIONS, *_DESCRIPTIONS below): the warehouse's
table and column comments, since nobody else documents these tables.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Iterator

from ...secrets import REDACTOR
from . import is_incremental, stream_state
from .base import Plan, Puller, input_choice
from .fmcsa import (AUTHORITY_FIELDS, BASIC_FIELDS, OOS_FIELDS, SNAPSHOT_FIELDS, authority_rows, basic_rows,
                    carrier_row, oos_rows, parse_dot, retrieval_date)
from .http import FatalHTTPError, HttpClient, HttpPolicy, as_sync_error, policy_spec_properties, scrub
from .values import json_value, parse_date, parse_int

NAME = "carrier_safety"
BASE_URL = "https://mobile.fmcsa.dot.gov/qc/services"
SNAPSHOTS, BASICS, OOS, AUTHORITY, LOOKUP_ERRORS = "snapshots", "basics", "out_of_service", "authority", "lookup_errors"
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

_S = {"type": ["string", "null"]}
_I = {"type": ["integer", "null"]}
_N = {"type": ["number", "null"]}
_B = {"type": ["boolean", "null"]}
_D = {"type": ["string", "null"], "format": "date"}
_O = {"type": ["object", "null"]}
_KIND_SCHEMA = {"text": _S, "int": _I, "number": _N, "flag": _B, "date": _D}

# What each column means: its `description` in the stream's schema, which becomes the column's comment in the
# warehouse (destinations/typing.description_text). Facts from shared/reference/fmcsa-qcmobile.md and FMCSA's CSA /
# SMS definitions; where the reference does not define a field, the text says what it holds and under which name.
_YN = "Y/N -> true/false; NULL when missing or another value"
_AUTHORITY_STATUS = "A = active, I = inactive, N = none (FMCSA's code as sent)"
_SNAPSHOT_DATE = ("Date of the snapshot this row belongs to: one pass over our carrier list, filed under the block's "
                  "snapshot_date (default: the UTC day the pass started; a resumed pass keeps its date). Part of the key.")
_COMMON_DESCRIPTIONS = {
    "dot_number": "USDOT number of the carrier: FMCSA's unique id of a motor carrier.",
    "snapshot_date": _SNAPSHOT_DATE,
    "retrieved_at": "When FMCSA produced the answer this row comes from (its retrievalDate, UTC); NULL if it sent none.",
    "unparsed": ("JSON object {column: value as sent} of values FMCSA sent that could not be read as their column's type "
                 "(e.g. a safetyRatingDate of 00/00/0000); those columns are NULL. NULL when everything was read."),
    "extra": ("JSON object of the fields of FMCSA's answer that have no column of their own (e.g. ein), as sent; NULL "
              "when none."),
}


def _inspection_descriptions(who: str, what: str, subject: str) -> dict[str, str]:
    """The four inspection columns the carrier record repeats for drivers, vehicles and hazmat (fmcsa._inspections)."""
    return {
        f"{who}_insp": f"Number of roadside inspections of the carrier that examined {subject}, as FMCSA counts them.",
        f"{who}_oos_insp": f"Of {who}_insp, the inspections that put {subject} out of service (an out-of-service order).",
        f"{who}_oos_rate": (f"{what.capitalize()} out-of-service rate in percent (0-100): {who}_oos_insp / {who}_insp x 100, "
                            "as FMCSA reports it."),
        f"{who}_oos_rate_national_average": (f"National average {what} out-of-service rate in percent, for comparison "
                                             "with the carrier's (the period is in oos_rate_national_average_year)."),
    }


_INSURANCE_UNIT = "in thousands of US dollars as FMCSA reports it (750 = $750,000)"
SNAPSHOT_DESCRIPTIONS = {
    "legal_name": "Carrier's legal name as registered with FMCSA.",
    "dba_name": "Carrier's doing-business-as name, if it has one.",
    "status_code": "FMCSA status code of the carrier's registration as sent: A = active, I = inactive.",
    "allowed_to_operate": f"Whether FMCSA currently allows the carrier to operate (allowedToOperate / allowToOperate, {_YN}).",
    "out_of_service": ("Whether the carrier is under an FMCSA out-of-service order (outOfService, Y/N -> true/false); "
                       "true also when FMCSA sends no flag but an out-of-service date."),
    "out_of_service_date": "Date of the carrier's out-of-service order (outOfServiceDate / oosDate); NULL when none.",
    "safety_rating": ("FMCSA safety rating from the carrier's last compliance review: S = Satisfactory, C = Conditional, "
                      "U = Unsatisfactory; NULL = not rated."),
    "safety_rating_date": "Date the current safety rating was issued.",
    "safety_review_date": "Date of the carrier's last FMCSA safety review (safetyReviewDate / reviewDate).",
    "safety_review_type": "FMCSA's code for the type of that review, as sent (safetyReviewType / reviewType).",
    "carrier_operation_code": "Carrier operation: A = interstate, B = intrastate hazmat, C = intrastate non-hazmat.",
    "carrier_operation_desc": "carrier_operation_code in words, as FMCSA sends it (e.g. Interstate).",
    "census_type": "Kind of entity in FMCSA's census, as sent (censusTypeDesc, e.g. CARRIER or BROKER).",
    "mc_number": "MC docket number when the carrier record carries one (the authority stream lists every docket).",
    "phy_street": "Street of the carrier's physical address (principal place of business).",
    "phy_city": "City of the carrier's physical address.",
    "phy_state": "State or province code of the carrier's physical address.",
    "phy_zip": "ZIP/postal code of the carrier's physical address, as text (phyZip / phyZipcode).",
    "phy_country": "Country of the carrier's physical address, as FMCSA sends it (e.g. US).",
    "telephone": "Carrier's contact telephone number as sent (not in every answer).",
    "total_drivers": "Number of drivers the carrier reported to FMCSA (MCS-150 registration).",
    "total_power_units": "Number of power units (trucks, tractors, buses) the carrier reported to FMCSA.",
    "crash_total": "Number of crashes FMCSA reports for the carrier; fatal_crash, inj_crash and towaway_crash split it by severity.",
    "fatal_crash": "Of crash_total, crashes with at least one fatality.",
    "inj_crash": "Of crash_total, crashes with at least one injury.",
    "towaway_crash": "Of crash_total, crashes in which a vehicle was towed away.",
    **_inspection_descriptions("driver", "driver", "the driver"),
    **_inspection_descriptions("vehicle", "vehicle", "the vehicle"),
    **_inspection_descriptions("hazmat", "hazardous materials", "the hazardous materials load"),
    "oos_rate_national_average_year": "Year (or period) the national average out-of-service rates refer to, as sent.",
    "bipd_insurance_on_file": f"Bodily injury and property damage (liability) insurance on file with FMCSA, {_INSURANCE_UNIT}.",
    "bipd_insurance_required": f"Whether the carrier must file BIPD liability insurance ({_YN}, e.g. u).",
    "bipd_required_amount": f"Minimum BIPD liability coverage the carrier must carry, {_INSURANCE_UNIT}.",
    "cargo_insurance_on_file": f"Cargo insurance on file with FMCSA, {_INSURANCE_UNIT}.",
    "cargo_insurance_required": f"Whether the carrier must file cargo insurance ({_YN}, e.g. u).",
    "bond_insurance_on_file": f"Surety bond or trust fund on file with FMCSA (brokers, freight forwarders), {_INSURANCE_UNIT}.",
    "bond_insurance_required": f"Whether the carrier must file a surety bond or trust fund ({_YN}, e.g. u).",
    "common_authority_status": f"Status of the carrier's common-carrier operating authority: {_AUTHORITY_STATUS}.",
    "contract_authority_status": f"Status of the carrier's contract-carrier operating authority: {_AUTHORITY_STATUS}.",
    "broker_authority_status": f"Status of the carrier's broker authority: {_AUTHORITY_STATUS}.",
    "is_passenger_carrier": f"Whether FMCSA classifies the carrier as a passenger carrier ({_YN}).",
    "mcs150_outdated": f"Whether the carrier's MCS-150 registration update (due every two years) is overdue ({_YN}).",
    "complaint_count": "Number of complaints against the carrier FMCSA has on record, as sent (not in every answer).",
}
BASIC_DESCRIPTIONS = {
    "basic": (
        "The BASIC this row scores, by canonical name. Each BASIC of FMCSA's Safety Measurement System measures one "
        "kind of behaviour from roadside inspections: Unsafe Driving (speeding, reckless or careless driving, improper "
        "lane changes, inattention), HOS Compliance (hours-of-service and logbook violations, driving while ill or "
        "fatigued), Driver Fitness (drivers unfit for lack of a valid license, medical certificate or training), "
        "Controlled Substances/Alcohol (use or possession of alcohol or drugs), Vehicle Maintenance (vehicle defects "
        "such as brakes and lights, unsecured loads). Hazardous Materials Compliance and Crash Indicator land under "
        "those names if FMCSA sends them; an unknown name is kept as sent ('BASIC <basic_id>' when there is none)."),
    "basic_id": "FMCSA's numeric id of the BASIC, as sent.",
    "basic_code": "FMCSA's code of the BASIC as sent (basicsCode, e.g. Vehicle Maint., Drugs/Alcohol).",
    "basic_short_desc": "FMCSA's short name of the BASIC as sent (basicsShortDesc / basicShortDesc).",
    "basic_long_desc": "FMCSA's longer description of the BASIC as sent (basicsLongDesc / basicDesc); often NULL.",
    "percentile": (
        "SMS percentile of the carrier in this BASIC, 0-100: how its measure ranks among carriers with a similar "
        "amount of inspection data; higher is worse. NULL when FMCSA gives a word instead (see percentile_status)."),
    "percentile_status": (
        "numeric when percentile holds FMCSA's number; otherwise FMCSA's word for why there is none, lower-case "
        "(insufficient data, inconclusive, no violations, not public). NULL when FMCSA sent no percentile."),
    "measure_value": (
        "SMS measure of the carrier in this BASIC: its time- and severity-weighted violations normalised by its "
        "inspections or its size, depending on the BASIC; higher is worse. The percentile ranks it."),
    "violation_threshold": (
        "Intervention threshold of this BASIC as a percentile (e.g. 65 or 80; basicsViolationThreshold): at or above "
        "it FMCSA may prioritise the carrier for intervention."),
    "exceeded_intervention_threshold": (
        "Whether the carrier's percentile is over the intervention threshold, i.e. an SMS alert in this BASIC "
        f"(exceededFMCSAInterventionThreshold, {_YN} such as -1)."),
    "on_road_deficient": (
        "FMCSA's on-road performance flag: the percentile from roadside inspections is over the threshold "
        f"(rdDeficient / onRoadPerformanceThresholdViolationIndicator, {_YN} such as Not Public)."),
    "serious_violation_deficient": (
        "Whether an FMCSA investigation in the past 12 months found a serious violation in this BASIC "
        f"(svDeficient / seriousViolationFromInvestigationPast12MonthIndicator, {_YN})."),
    "rdsv_deficient": (
        f"FMCSA's rdsvDeficient flag as sent ({_YN}); the reference does not define it, its name reads 'deficient on "
        "roadside performance or serious violations' (the BASIC's alert). Only the documented answer shape has it."),
    "total_inspections_with_violation": "Number of the carrier's inspections with at least one violation in this BASIC.",
    "total_violations": "Number of violations in this BASIC found in those inspections.",
    "run_date": ("Date of the SMS run (FMCSA's monthly snapshot) these figures come from (snapShotDate / basicsRunDate); "
                 "not our snapshot_date."),
}
OOS_DESCRIPTIONS = {
    "oos_key": (
        "Key of the row within the carrier's snapshot: oos_type lower-case (e.g. driver, vehicle, hazmat); for an entry "
        "without a type '<oos_date>:<oos_reason>', else '#<position>'; a repeated key gets ' #<position>' appended."),
    "oos_type": "What the entry counts, as sent (type / oosType / inspectionType / category), e.g. Driver, Vehicle, Hazmat.",
    "inspections": "Number of inspections of this type.",
    "oos_inspections": "Of those inspections, the ones that resulted in an out-of-service order.",
    "oos_rate": "Out-of-service rate in percent (0-100) as FMCSA sends it: oos_inspections / inspections x 100.",
    "national_average": "National average out-of-service rate for this type, in percent, for comparison with oos_rate.",
    "oos_date": "Date of an out-of-service order, when the entry is an order rather than a rate (oosDate / outOfServiceDate / date).",
    "oos_reason": "Reason given for that out-of-service order, as sent.",
    "status": "Status of that out-of-service order, as sent (status / oosStatus).",
    "rescind_date": "Date that out-of-service order was rescinded, if it was.",
}
AUTHORITY_DESCRIPTIONS = {
    "authority_key": (
        "Key of the row within the carrier's snapshot: prefix + docket number (e.g. MC123456); 'applicant "
        "<applicant_id>' when there is no docket number, else '#<position>'; a repeated key gets ' #<position>' appended."),
    "docket_number": "FMCSA docket number of this operating authority (the digits of an MC/FF/MX number).",
    "prefix": "Docket prefix: MC (motor carrier), FF (freight forwarder) or MX (Mexico-domiciled carrier), as sent.",
    "applicant_id": "FMCSA's applicant id of this authority, as sent (applicantID).",
    "common_authority_status": f"Status of the common-carrier authority under this docket: {_AUTHORITY_STATUS}.",
    "contract_authority_status": f"Status of the contract-carrier authority under this docket: {_AUTHORITY_STATUS}.",
    "broker_authority_status": f"Status of the broker authority under this docket: {_AUTHORITY_STATUS}.",
    "authorized_for_property": f"Whether this authority covers carrying property, i.e. freight ({_YN}).",
    "authorized_for_passenger": f"Whether this authority covers carrying passengers ({_YN}).",
    "authorized_for_household_goods": f"Whether this authority covers moving household goods ({_YN}).",
    "authorized_for_broker": f"Whether this authority covers brokering, i.e. arranging transport by other carriers ({_YN}).",
}
LOOKUP_ERROR_DESCRIPTIONS = {
    "input": "The input value as given (a DOT number as text, or the value that is not one); with snapshot_date, the key.",
    "dot_number": "The DOT number looked up; NULL for invalid_dot_number.",
    "snapshot_date": _SNAPSHOT_DATE,
    "reason": ("not_found: FMCSA has no carrier with this DOT number (it answered content: null); invalid_dot_number: "
               "the input value is not a DOT number and was not looked up."),
    "message": "What happened, in words, e.g. FMCSA has no carrier with DOT number 5404 (HTTP 200: no carrier in the answer).",
    "retrieved_at": ("When FMCSA answered (its retrievalDate, UTC), else when the run that wrote the row started "
                     "(always so for invalid_dot_number)."),
}
STREAM_DESCRIPTIONS = {
    SNAPSHOTS: (
        "FMCSA QCMobile carrier record (GET /carriers/{dot}) of the carriers we use: registration, operating status, "
        "safety rating, crashes, inspections and out-of-service rates, insurance and authority status. One row per "
        "USDOT number per snapshot_date (one pass over our carrier list, normally daily)."),
    BASICS: (
        "FMCSA CSA Safety Measurement System scores (GET /carriers/{dot}/basics): one row per carrier, snapshot_date "
        "and BASIC. A BASIC (Behavior Analysis and Safety Improvement Category) groups roadside-inspection violations "
        "of one kind; SMS turns them into a measure, ranks it as a percentile among similar carriers (higher is worse) "
        "and alerts when the percentile is over the BASIC's intervention threshold."),
    OOS: (
        "FMCSA out-of-service figures (GET /carriers/{dot}/oos): one row per entry per carrier and snapshot_date, e.g. "
        "driver, vehicle and hazmat inspections and how many ended in an out-of-service order. The answer's field names "
        "are not documented: the columns read several plausible names (the rest lands in extra); check them against a "
        "real response before relying on them."),
    AUTHORITY: (
        "FMCSA operating authority (GET /carriers/{dot}/authority): one row per docket (MC/FF/MX number) per carrier "
        "and snapshot_date, with the status of its common, contract and broker authority and what it covers."),
    LOOKUP_ERRORS: (
        "Carrier inputs without an FMCSA record in a snapshot: DOT numbers FMCSA does not know (not_found) and input "
        "values that are not DOT numbers (invalid_dot_number). One row per input value per snapshot_date."),
}


def _described(props: dict, descriptions: dict[str, str]) -> dict:
    return {name: ({**prop, "description": descriptions[name]} if name in descriptions else prop) for name, prop in props.items()}


_COMMON = _described({
    "dot_number": {"type": "integer"},
    "snapshot_date": {"type": "string", "format": "date"},
    "retrieved_at": {"type": ["string", "null"], "format": "date-time"},
}, _COMMON_DESCRIPTIONS)
_TRAILER = _described({"unparsed": _O, "extra": _O}, _COMMON_DESCRIPTIONS)


def _schema(stream: str, fields: dict, extra_props: dict, descriptions: dict[str, str]) -> dict:
    props = {**_COMMON, **_described({**extra_props, **{c: _KIND_SCHEMA[kind] for c, (kind, _) in fields.items()}}, descriptions),
             **_TRAILER}
    return {"$schema": "http://json-schema.org/draft-07/schema#", "description": STREAM_DESCRIPTIONS[stream],
            "type": "object", "additionalProperties": True, "properties": props}


STREAMS: dict[str, tuple[dict, list[str]]] = {  # name -> (json schema, primary key)
    SNAPSHOTS: (_schema(SNAPSHOTS, SNAPSHOT_FIELDS, {}, SNAPSHOT_DESCRIPTIONS), ["dot_number", "snapshot_date"]),
    BASICS: (_schema(BASICS, BASIC_FIELDS, {"basic": {"type": "string"}, "percentile": _N, "percentile_status": _S},
                     BASIC_DESCRIPTIONS),
             ["dot_number", "snapshot_date", "basic"]),
    OOS: (_schema(OOS, OOS_FIELDS, {"oos_key": {"type": "string"}}, OOS_DESCRIPTIONS), ["dot_number", "snapshot_date", "oos_key"]),
    AUTHORITY: (_schema(AUTHORITY, AUTHORITY_FIELDS, {"authority_key": {"type": "string"}}, AUTHORITY_DESCRIPTIONS),
                ["dot_number", "snapshot_date", "authority_key"]),
    LOOKUP_ERRORS: ({
        "$schema": "http://json-schema.org/draft-07/schema#", "description": STREAM_DESCRIPTIONS[LOOKUP_ERRORS],
        "type": "object", "additionalProperties": True,
        "properties": _described({
            "input": {"type": "string"}, "dot_number": _I, "snapshot_date": {"type": "string", "format": "date"},
            "reason": {"type": "string"}, "message": _S,
            "retrieved_at": {"type": ["string", "null"], "format": "date-time"},
        }, LOOKUP_ERROR_DESCRIPTIONS),
    }, ["input", "snapshot_date"]),
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
