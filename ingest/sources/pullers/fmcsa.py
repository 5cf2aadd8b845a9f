"""FMCSA QCMobile answers as flat typed rows for carrier_safety: what the answers look like, and how they are read.

Parsing never fails the load: dates in any of FMCSA's formats, numbers as text ("18%", "1,000"), Y/N flags and
words where numbers are expected ("insufficient data", "Not Public" → NULL number + a `percentile_status`) go
through values.py. Documented and live field names are both read (the field maps below: the first name present
wins). A value present but unreadable as its column's type is kept in the row's `unparsed` object; fields we do not
map are kept in `extra`.
"""
from __future__ import annotations

import re
from typing import Any

from .values import clean_text, json_value, parse_date, parse_datetime, parse_flag, parse_int, parse_number

NO_DATA_WORDS = {"insufficient data", "not public", "inconclusive", "no violations", "n/a", "na", "none", "-",
                 "not available", "no data", "u", "unknown", "-1"}


def _inspections(who: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The four inspection columns the carrier record repeats for drivers, vehicles and hazmat."""
    return {
        f"{who}_insp": ("int", (f"{who}Insp",)),
        f"{who}_oos_insp": ("int", (f"{who}OosInsp",)),
        f"{who}_oos_rate": ("number", (f"{who}OosRate",)),
        f"{who}_oos_rate_national_average": ("number", (f"{who}OosRateNationalAverage",)),
    }


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
    **_inspections("driver"),
    **_inspections("vehicle"),
    **_inspections("hazmat"),
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


def retrieval_date(body: Any) -> str | None:
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
    retrieved = retrieval_date(body)
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
    retrieved = retrieval_date(body)
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
    retrieved = retrieval_date(body)
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
