"""A loopback fake of FMCSA QCMobile (shared/reference/fmcsa-qcmobile.md), and the vcrpy cassette tooling for the
`carrier_safety` puller.

    with FakeFMCSA(web_key="k-123", latency=0.01) as fmcsa:
        config = {"base_url": fmcsa.base_url, "web_key": "${FMCSA_WEB_KEY}", "carriers": {"from": "list", ...}}
        fmcsa.fail_next(5, 429); fmcsa.html_next(1); fmcsa.unknown_dots.add(404)

Served under ``/qc/services`` (so ``base_url`` = ``http://127.0.0.1:<port>/qc/services``), GET only, JSON only:
* ``/carriers/{dot}`` → ``{"content": {"carrier": {...}, "_links": {...}}, "retrievalDate": "...+0000"}``;
  an unknown DOT number (``unknown_dots``, and every number ending in 404) → 200 ``{"content": null, ...}``;
* ``/carriers/{dot}/basics``, ``/oos``, ``/authority`` → ``{"content": [...], "retrievalDate": ...}``;
* ``webKey`` query parameter required: missing → 404 ``{"content": "Must provide Webkey"}``, wrong → 404
  ``{"content": "Webkey not found"}`` (as reported for the live service, instead of 401).

The data is deterministic per DOT number and deliberately mixes what the reference warns about:
even DOT numbers answer with the LIVE field names (``allowedToOperate``, ``phyZipcode``, ``oosDate``, BASICs wrapped
in ``{"basic": {"basicsType": {...}, "basicsPercentile": "Not Public", ...}}`` with ISO ``basicsRunDate``), odd ones
with the DOCUMENTED names (``allowToOperate``, ``phyZip``, ``outOfServiceDate`` as MM/DD/YYYY, flat BASICs with
``basicShortDesc``, ``percentile`` as a number or "insufficient data"/"inconclusive"/"no violations",
``snapShotDate`` as MM/DD/YYYY). Every 7th carrier has a broken ``safetyRatingDate`` ("00/00/0000") and
``totalDrivers: "N/A"``. The ``/oos`` shape is OUR GUESS (the reference does not spell it out):
``[{"oos": {"type": "Driver"|"Vehicle"|"Hazmat", "inspections", "oosInspections", "oosRate", "nationalAverage"}}]``.

Hooks (from LoopbackServer in fake_greenscreens.py): ``fail_next(n, status, headers={"Retry-After": "1"})``,
``html_next(n)`` (a 200 maintenance page), ``malformed_next``, ``drop_next``, ``stall_next``, ``latency``,
``rate_limit`` (at most this many requests in any 1-second window, else an immediate 429 with ``Retry-After``: the
whole seconds until there is room, or ``retry_after`` seconds, or none if ``retry_after=None``; see RollingWindowLimit),
``requests`` (the log, with each request's query), ``max_in_flight``.

Cassettes: ``python -m tests.fakes.fake_fmcsa record`` rewrites fixtures/cassettes/fmcsa/*.yaml from this fake
(the webKey is stored as ``****``). **Recorded from this fake, not from the real QCMobile service.**
"""
from __future__ import annotations

import copy
import json
import random
import re
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from tests.support import cassettes as _cassettes
from tests.support.cli import ROOT
from tests.support.net import RETRY_AFTER_WHOLE_SECONDS, LoopbackServer, RollingWindowLimit

PREFIX = "/qc/services"
RETRIEVAL = "2025-01-15T13:24:24.953+0000"
_BASICS = [
    (11, "Unsafe Driving", "Unsafe Driving", "65"),
    (12, "HOS Compliance", "Hours-of-Service Compliance", "65"),
    (13, "Driver Fitness", "Driver Fitness", "80"),
    (14, "Drugs/Alcohol", "Controlled Substances/&#8203;Alcohol", "80"),
    (15, "Vehicle Maint.", "Vehicle Maintenance", "80"),
]
_WORDS = ["insufficient data", "inconclusive", "no violations"]
_CITIES = [("EVANSVILLE", "IN", "47711"), ("DALLAS", "TX", "75204"), ("FRESNO", "CA", "93721"), ("ATLANTA", "GA", "30303"),
           ("OMAHA", "NE", "68102"), ("BOSTON", "MA", "02116"), ("MEMPHIS", "TN", "38103")]


def _mdy(d) -> str:
    return f"{d.month:02d}/{d.day:02d}/{d.year}"


class FakeFMCSA(LoopbackServer):
    def __init__(self, *, web_key: str = "fmcsa-test-webkey-7f3a", latency: float = 0.0, rate_limit: float | None = None,
                 retry_after: float | str | None = RETRY_AFTER_WHOLE_SECONDS):
        super().__init__(latency)
        self.web_key = web_key
        self.unknown_dots: set[int] = set()
        self.rate_limit = RollingWindowLimit(rate_limit, retry_after) if rate_limit else None

    @property
    def base_url(self) -> str:
        return self.origin + PREFIX

    def default_error_body(self, status: int) -> Any:
        return {"content": "Too many requests" if status == 429 else "Internal server error", "retrievalDate": RETRIEVAL}

    def is_known(self, dot: int) -> bool:
        return dot not in self.unknown_dots and dot % 1000 != 404

    # -- routing

    def handle(self, method, path, query, headers, raw):
        extra = {}
        if method != "GET" or not path.startswith(PREFIX + "/carriers/"):
            return 404, {"content": "Not Found", "retrievalDate": RETRIEVAL}, {}, extra
        if "webKey" not in query or not query["webKey"]:
            return 404, {"content": "Must provide Webkey", "retrievalDate": RETRIEVAL}, {}, extra
        if query["webKey"] != self.web_key:
            return 404, {"content": "Webkey not found", "retrievalDate": RETRIEVAL}, {}, extra
        m = re.fullmatch(PREFIX + r"/carriers/(\d+)(?:/(basics|oos|authority))?/?", path)
        if not m:
            return 404, {"content": "Not Found", "retrievalDate": RETRIEVAL}, {}, extra
        dot, sub = int(m.group(1)), m.group(2)
        if not self.is_known(dot):
            return 200, {"content": None if sub is None else [], "retrievalDate": RETRIEVAL}, {}, extra
        if sub is None:
            return 200, {"content": {"carrier": carrier(dot), "_links": _links(dot)}, "retrievalDate": RETRIEVAL}, {}, extra
        return 200, {"content": {"basics": basics, "oos": oos, "authority": authority}[sub](dot), "retrievalDate": RETRIEVAL}, {}, extra


def _links(dot: int) -> dict:
    base = f"https://mobile.fmcsa.dot.gov/qc/services/carriers/{dot}"
    return {"basics": {"href": f"{base}/basics"}, "carrier active-For-hire authority": {"href": f"{base}/authority"},
            "self": {"href": base}}


def live(dot: int) -> bool:
    return dot % 2 == 0


def carrier(dot: int) -> dict:
    rng = random.Random(dot)
    rated = date(2015, 1, 1) + timedelta(days=rng.randrange(3500))
    city, state, zip_ = _CITIES[dot % len(_CITIES)]
    drivers = rng.randrange(1, 3000)
    insp_d, insp_v = rng.randrange(0, 2000), rng.randrange(0, 1000)
    oos_d, oos_v = rng.randrange(0, max(insp_d // 10, 1)), rng.randrange(0, max(insp_v // 4, 1))
    out_of_service = dot % 11 == 0
    c: dict[str, Any] = {
        "dotNumber": dot,
        "legalName": f"CARRIER {dot} TRUCKING LLC",
        "dbaName": None if dot % 3 else f"C{dot} FREIGHT",
        "statusCode": "A" if not out_of_service else "I",
        "safetyRating": rng.choice(["S", "C", "U", None]),
        "safetyReviewType": rng.choice(["C", "R"]),
        "carrierOperation": {"carrierOperationCode": "A", "carrierOperationDesc": "Interstate"},
        "phyStreet": f"{rng.randrange(1, 9999)} MAIN ST", "phyCity": city, "phyState": state, "phyCountry": "US",
        "totalDrivers": drivers, "totalPowerUnits": rng.randrange(1, drivers + 1),
        "crashTotal": rng.randrange(0, 60), "fatalCrash": rng.randrange(0, 3), "injCrash": rng.randrange(0, 20), "towawayCrash": rng.randrange(0, 40),
        "driverInsp": insp_d, "driverOosInsp": oos_d, "driverOosRate": (100.0 * oos_d / insp_d) if insp_d else 0,
        "driverOosRateNationalAverage": "5.51",
        "vehicleInsp": insp_v, "vehicleOosInsp": oos_v, "vehicleOosRate": (100.0 * oos_v / insp_v) if insp_v else 0,
        "vehicleOosRateNationalAverage": "20.72",
        "hazmatInsp": 0, "hazmatOosInsp": 0, "hazmatOosRate": 0, "hazmatOosRateNationalAverage": "4.5",
        "bipdInsuranceOnFile": str(rng.choice([750, 1000, 5000])), "bipdInsuranceRequired": rng.choice(["Y", "N", "u"]),
        "bipdRequiredAmount": "750", "cargoInsuranceOnFile": "5", "cargoInsuranceRequired": "u",
        "bondInsuranceOnFile": "0", "bondInsuranceRequired": "N",
        "commonAuthorityStatus": "A", "contractAuthorityStatus": rng.choice(["A", "N"]), "brokerAuthorityStatus": "N",
        "mcs150Outdated": "N", "isPassengerCarrier": "N", "ein": 100000000 + dot, "issScore": None,
        "censusTypeId": {"censusType": "C", "censusTypeDesc": "CARRIER", "censusTypeId": 1},
    }
    if live(dot):
        c.update({"allowedToOperate": "N" if out_of_service else "Y", "phyZipcode": zip_,
                  "oosDate": rated.isoformat() if out_of_service else None,
                  "safetyRatingDate": rated.isoformat(), "reviewDate": (rated - timedelta(days=5)).isoformat(),
                  "reviewType": c["safetyReviewType"], "snapshotDate": None})
    else:
        c.update({"allowToOperate": "N" if out_of_service else "Y", "phyZip": zip_,
                  "outOfService": "Y" if out_of_service else "N",
                  "outOfServiceDate": _mdy(rated) if out_of_service else None,
                  "telephone": f"(555) {dot % 1000:03d}-{dot % 10000:04d}", "complaintCount": rng.randrange(0, 5),
                  "safetyRatingDate": _mdy(rated), "safetyReviewDate": _mdy(rated - timedelta(days=5))})
    if dot % 7 == 0:
        c["safetyRatingDate"] = "00/00/0000"
        c["totalDrivers"] = "N/A"
    return c


def basics(dot: int) -> list[dict]:
    rng = random.Random(dot * 7 + 1)
    out = []
    for basic_id, code, short, threshold in _BASICS:
        total = rng.randrange(0, 500)
        if live(dot):
            pct = rng.choice(["Not Public", f"{rng.randrange(0, 100)}%", str(rng.randrange(0, 100)), rng.randrange(0, 100)])
            out.append({"basic": {
                "basicsPercentile": pct, "basicsRunDate": "2024-01-26T05:00:00.000+0000",
                "basicsType": {"basicsCode": code, "basicsCodeMcmis": None, "basicsId": basic_id, "basicsLongDesc": None, "basicsShortDesc": short},
                "basicsViolationThreshold": threshold, "exceededFMCSAInterventionThreshold": rng.choice(["-1", "Y", "N"]),
                "id": {"basicsId": basic_id, "dotNumber": dot}, "measureValue": f"{rng.random() * 5:.2f}",
                "onRoadPerformanceThresholdViolationIndicator": rng.choice(["Not Public", "Y", "N"]),
                "seriousViolationFromInvestigationPast12MonthIndicator": rng.choice(["Y", "N"]),
                "totalInspectionWithViolation": total, "totalViolation": total + rng.randrange(0, 50),
            }, "dotNumber": None, "_links": {"self": {"href": f"https://mobile.fmcsa.dot.gov/qc/services/carriers/{dot}/basics/{basic_id}"}}})
        else:
            pct = rng.choice([round(rng.random() * 100, 1), *_WORDS])
            out.append({
                "basicId": basic_id, "basicShortDesc": code, "basicDesc": short, "percentile": pct,
                "rdDeficient": rng.choice(["Y", "N"]), "rdsvDeficient": rng.choice(["Y", "N"]), "svDeficient": rng.choice(["Y", "N"]),
                "snapShotDate": "01/26/2024", "totalInspectionWithViolation": total, "totalViolation": total + 3,
            })
    return out


def oos(dot: int) -> list[dict]:
    c = carrier(dot)
    rows = []
    for kind, prefix in (("Driver", "driver"), ("Vehicle", "vehicle"), ("Hazmat", "hazmat")):
        rows.append({"oos": {"type": kind, "inspections": c[f"{prefix}Insp"], "oosInspections": c[f"{prefix}OosInsp"],
                             "oosRate": c[f"{prefix}OosRate"], "nationalAverage": c[f"{prefix}OosRateNationalAverage"]}})
    return rows


def authority(dot: int) -> list[dict]:
    rng = random.Random(dot * 3)
    out = []
    for i in range(1 + dot % 2):
        docket = 100000 + (dot * 13 + i) % 900000
        out.append({"carrierAuthority": {
            "applicantID": 1000 + i + dot % 5000, "authority": "N", "authorizedForBroker": rng.choice(["Y", "N"]),
            "authorizedForHouseholdGoods": "N", "authorizedForPassenger": "N", "authorizedForProperty": "Y",
            "brokerAuthorityStatus": "N", "commonAuthorityStatus": "A", "contractAuthorityStatus": rng.choice(["A", "N"]),
            "docketNumber": docket, "dotNumber": dot, "prefix": "MC"},
            "_links": {"self": {"href": f"https://mobile.fmcsa.dot.gov/qc/services/carriers/{dot}/authority/{1000 + i}"}}})
    return out


# ================================================================================ cassettes (vcrpy)

CASSETTE_DIR = ROOT / "fixtures" / "cassettes" / "fmcsa"
CARRIERS = CASSETTE_DIR / "carriers_snapshot.yaml"
SITE = "https://mobile.fmcsa.dot.gov"
RECORDING_KEY = "fmcsa-test-webkey-7f3a"  # the fake's; cassettes store webKey=****
KEY_ENV = "FMCSA_WEB_KEY"
SNAPSHOT_DATE = "2025-01-15"
# 10 carriers: even (live names) and odd (documented names), one with broken values (7007 % 7 == 0), two unknown
# (5404, 12404 end in 404), one input that is not a DOT number, one duplicate.
DOT_NUMBERS = [125550, 7007, 2004, 5404, 331, 1048576, 12404, 88, 731, "USDOT 4242", "n/a", 331]
PROJECT_CONFIG = """\
defaults:
  duckdb: {path: warehouse.duckdb}
connectors:
  carrier_safety:
    team: compliance
    description: FMCSA safety records (QCMobile) for the carriers we tender to.
    puller: carrier_safety
    config:
      base_url: %(base_url)s
      web_key: ${FMCSA_WEB_KEY}
      carriers:
        from: list
        dot_numbers: %(dots)s
      snapshot_date: "%(snapshot)s"
      max_concurrency: 1
      requests_per_second: 50
      checkpoint_every: 4
    streams:
      - name: snapshots
      - name: basics
      - name: out_of_service
      - name: authority
      - name: lookup_errors
"""
_LOOPBACK = re.compile(r"http://(?:127\.0\.0\.1|localhost|\[::1\]):\d+")
_KEY = re.compile(r"(?i)(webKey=)[^&]*")


def project_config(base_url: str = SITE + PREFIX) -> str:
    return PROJECT_CONFIG % {"base_url": base_url, "dots": json.dumps(DOT_NUMBERS), "snapshot": SNAPSHOT_DATE}


def make_vcr(record: bool):
    import vcr

    def before_record_request(request):
        request.uri = _KEY.sub(r"\1****", _LOOPBACK.sub(SITE, request.uri, count=1))
        return request

    def before_record_response(response):
        response = copy.deepcopy(response)
        headers = {k: v for k, v in (response.get("headers") or {}).items() if k.lower() not in ("date", "server")}
        response["headers"] = headers
        return response

    return vcr.VCR(
        record_mode="all" if record else "none",
        match_on=("method", "scheme", "host", "port", "path", "query"),
        filter_headers=["authorization", "cookie"],
        before_record_request=before_record_request,
        before_record_response=before_record_response,
        decode_compressed_response=True,
    )


def cassette_command(cassette: Path, *cli_args: str, record: bool = False) -> list[str]:
    return _cassettes.cassette_command(cassette, *cli_args, record=record, vcr="tests.fakes.fake_fmcsa:make_vcr", allow_unplayed=True)


def cassette_env(key: str) -> dict:
    return _cassettes.cassette_env({KEY_ENV: key}, ("INGEST_", "FMCSA_"))


def record() -> None:
    """Rewrite carriers_snapshot.yaml: `ingest run carrier_safety` (all five streams) against this fake."""
    CASSETTE_DIR.mkdir(parents=True, exist_ok=True)
    with FakeFMCSA(web_key=RECORDING_KEY) as fake, tempfile.TemporaryDirectory(prefix="record-fmcsa-") as tmp:
        root = Path(tmp)
        (root / "connectors.yaml").write_text(project_config(base_url=fake.base_url))
        _cassettes.record_run(CARRIERS, cassette_command(CARRIERS, "run", "carrier_safety", record=True), root,
                              cassette_env(RECORDING_KEY))
    _cassettes.check_written(CARRIERS, RECORDING_KEY, "127.0.0.1")


if __name__ == "__main__":
    sys.exit(_cassettes.recorder_main(record, __doc__))
