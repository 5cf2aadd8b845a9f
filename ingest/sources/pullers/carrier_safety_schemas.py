"""carrier_safety's five stream schemas, and what each column means (carrier_safety.py is the puller).

Every schema and column carries a `description`: the warehouse's table and column comments (see
destinations/descriptions.py), since nobody else documents these tables. The columns come from fmcsa.py's field maps.
"""
from __future__ import annotations

from .fmcsa import AUTHORITY_FIELDS, BASIC_FIELDS, OOS_FIELDS, SNAPSHOT_FIELDS

SNAPSHOTS, BASICS, OOS, AUTHORITY, LOOKUP_ERRORS = "snapshots", "basics", "out_of_service", "authority", "lookup_errors"

_S = {"type": ["string", "null"]}
_I = {"type": ["integer", "null"]}
_N = {"type": ["number", "null"]}
_B = {"type": ["boolean", "null"]}
_D = {"type": ["string", "null"], "format": "date"}
_O = {"type": ["object", "null"]}
_KIND_SCHEMA = {"text": _S, "int": _I, "number": _N, "flag": _B, "date": _D}

# What each column means: its `description` in the stream's schema, which becomes the column's comment in the
# warehouse (destinations/descriptions.description_text). Facts from shared/reference/fmcsa-qcmobile.md and FMCSA's CSA /
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
