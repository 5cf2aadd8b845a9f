"""A loopback fake of the Greenscreens (Triumph Intelligence) auth + prediction v3 API, written from the published
contracts in shared/reference/greenscreens/ (auth.openapi.yml, prediction-v3.openapi.yml), and the vcrpy cassette
tooling for the `truck_pricing` puller.

    with FakeGreenscreens(latency=0.05) as gs:
        config = {"base_url": gs.base_url, "client_id": gs.client_id, "client_secret": "${GS_SECRET}", ...}
        gs.fail_next(3, 429); gs.html_next(1); gs.expire_tokens(); gs.unknown_zips.add("99999")
        gs.calls_to("/v3/prediction/batch-rates")

Served (plain HTTP/1.1 keep-alive on 127.0.0.1, random port):
* ``POST /v1/auth/token`` - form ``grant_type=client_credentials&client_id=&client_secret=`` →
  ``{"access_token", "expires_in", "refresh_expires_in": 0, "token_type": "Bearer", "not-before-policy", "scope"}``;
  wrong credentials → 401 ``{"error": "invalid_client", ...}``; a JSON body instead of a form → 400.
* ``POST /v3/prediction/rates`` (one lane) and ``POST /v3/prediction/batch-rates`` (``{"requests": [...]}``, at
  most 1000) with ``Authorization: Bearer <token>`` (missing/expired/revoked → 401, empty body).
  Request validation (our reading of the contract): ``pickupDateTime`` ISO and not before 2015-01-01,
  ``transportType`` in VAN/REEFER/FLATBED/HOTSHOT, ``stops`` >= 2 each with ``order``, ``city``, ``state`` →
  otherwise 422 ``request_validation`` with ``errors[].field`` (``requests[i].transportType`` in a batch: one bad
  lane refuses the whole batch). A stop zip in ``unknown_zips`` cannot be routed: in a batch that item comes back
  ``{"status": "ERROR", "errorObject": {"httpCode": 424, "code": "not_found_distance", ...}}``; on /rates it is
  a 424 ``distance_calculation_error``. Every other lane gets a deterministic prediction (``id``, ``targetBuyRate``,
  ``lowBuyRate``, ``highBuyRate``, ``startBuyRate``, ``fuelRate``, ``distance``, ``confidenceLevel``,
  ``acceptanceRates`` (11), ``tag`` (echoed, or generated), ``currency``, ``notes``), ``status: OK`` in a batch.
* 429 is ``{"code": "too_many_requests", "message": "Request limit exceeded"}`` with NO Retry-After (as documented).

Test hooks: ``fail_next(n, status, path=, body=, headers=)``, ``html_next(n)`` (a 200 maintenance page),
``malformed_next(n)`` (a 200 with truncated JSON), ``drop_next(n)`` (connection closed, no answer),
``stall_next(n, seconds)`` (answer late: client timeouts), ``item_error_next(n, http_code=500)`` (the next n batch
items come back ERROR), ``expire_tokens()`` (every issued token answers 401 from now on), ``token_ttl``,
``latency`` (seconds before each answer), ``rate_limit`` (at most this many requests in any 1-second window, else an
immediate 429 without Retry-After: ``RollingWindowLimit``),
``requests`` (log: method, path, status, lanes, token, time), ``calls_to(path)``, ``max_in_flight``.

Cassettes: ``python -m tests.fakes.fake_greenscreens record`` rewrites fixtures/cassettes/greenscreens/*.yaml by
running the real CLI against this fake (see ``record()``); tests/support/cassettes.py replays them (``make_vcr``).
**The cassettes come from this fake, not from the real API.**
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from tests.support import cassettes as _cassettes
from tests.support.net import RollingWindowLimit, LoopbackServer

ROOT = Path(__file__).resolve().parents[2]
TOKEN_PATH = "/v1/auth/token"
RATES_PATH = "/v3/prediction/rates"
BATCH_PATH = "/v3/prediction/batch-rates"
TRANSPORT_TYPES = ("VAN", "REEFER", "FLATBED", "HOTSHOT")
EARLIEST = datetime(2015, 1, 1, tzinfo=timezone.utc)


# ================================================================================ the Greenscreens fake


class FakeGreenscreens(LoopbackServer):
    def __init__(self, *, client_id: str = "ingest-test-client", client_secret: str = "gs-test-secret-2f9c41d7",
                 token_ttl: int = 3600, latency: float = 0.0, rate_limit: float | None = None):
        super().__init__(latency)
        self.client_id, self.client_secret = client_id, client_secret
        self.token_ttl = token_ttl
        # Documented: 429 without Retry-After and no published limit.
        self.rate_limit = RollingWindowLimit(rate_limit, retry_after=None) if rate_limit else None
        self.tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.tokens_issued = 0
        self.unknown_zips: set[str] = {"00000", "99999"}
        self.item_errors: list[int] = []  # http codes for the next batch items that fail
        self.prediction_calls = 0
        self._expire_after: int | None = None

    @property
    def base_url(self) -> str:
        return self.origin

    def expire_tokens_after(self, calls: int) -> None:
        """Revoke every issued token once `calls` more prediction calls were answered (a token dying mid-run)."""
        with self.lock:
            self._expire_after = self.prediction_calls + calls

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens = {t: 0.0 for t in self.tokens}

    def item_error_next(self, n: int, http_code: int = 500) -> None:
        with self.lock:
            self.item_errors.extend([http_code] * n)

    def default_error_body(self, status: int) -> Any:
        if status == 429:
            return {"code": "too_many_requests", "message": "Request limit exceeded"}
        if status == 401:
            return None
        return {"code": "internal_error", "message": "Internal server error"}

    # -- endpoints

    def handle(self, method, path, query, headers, raw):
        if method == "POST" and path == TOKEN_PATH:
            return self._token(headers, raw)
        if method == "POST" and path in (RATES_PATH, BATCH_PATH):
            token = (headers.get("Authorization") or "").removeprefix("Bearer ").strip()
            with self.lock:
                live = token in self.tokens and self.tokens[token] > time.monotonic()
            if not live:
                return 401, None, {}, {"token": token or None}
            with self.lock:
                self.prediction_calls += 1
                if self._expire_after is not None and self.prediction_calls >= self._expire_after:
                    self._expire_after = None
                    self.tokens = {t: 0.0 for t in self.tokens}
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                return 400, {"code": "invalid_request", "message": "Malformed JSON body"}, {}, {"token": token}
            if path == RATES_PATH:
                status, answer = self._rates(body)
                return status, answer, {}, {"token": token, "lanes": 1, "body": body}
            status, answer = self._batch(body)
            n = len(body.get("requests") or []) if isinstance(body, dict) else 0
            return status, answer, {}, {"token": token, "lanes": n, "body": body}
        return 404, {"code": "not_found", "message": f"No route for {method} {path}"}, {}, {}

    def _token(self, headers, raw):
        if "application/x-www-form-urlencoded" not in (headers.get("Content-Type") or ""):
            return 400, {"error": "invalid_request", "error_description": "Expected a form-encoded body"}, {}, {}
        form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "Unsupported grant type"}, {}, {}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client", "error_description": "Invalid client credentials"}, {}, {}
        with self.lock:
            self.tokens_issued += 1
            n = self.tokens_issued
        token = "eyJhbGciOiJSUzI1NiJ9." + hashlib.sha256(f"{self.client_secret}:{n}".encode()).hexdigest() + f".fake{n}"
        with self.lock:
            self.tokens[token] = time.monotonic() + self.token_ttl
        return 200, {"access_token": token, "expires_in": self.token_ttl, "refresh_expires_in": 0, "token_type": "Bearer",
                     "not-before-policy": 1631698006, "scope": ""}, {}, {"token": token}

    def _rates(self, body):
        errors = _validate(body, "")
        if errors:
            return 422, _unprocessable(errors)
        if _unroutable(body, self.unknown_zips):
            zips = ", ".join(str(s.get("zip")) for s in body["stops"])
            return 424, {"code": "distance_calculation_error", "message": f"Unable to calculate distance between zips {zips}, reason: no route"}
        return 200, predict(body)

    def _batch(self, body):
        if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
            return 422, _unprocessable([{"field": "requests", "message": "requests: must not be null", "value": None}])
        reqs = body["requests"]
        if len(reqs) > 1000:
            return 422, _unprocessable([{"field": "requests", "message": "size must be between 0 and 1000", "value": str(len(reqs))}])
        errors = [e for i, r in enumerate(reqs) for e in _validate(r, f"requests[{i}].")]
        if errors:
            return 422, _unprocessable(errors)
        out = []
        for r in reqs:
            with self.lock:
                forced = self.item_errors.pop(0) if self.item_errors else None
            if forced is not None:
                out.append({"status": "ERROR", "tag": r.get("tag"), "errorObject": {
                    "httpCode": forced, "code": "internal_error" if forced >= 500 else "error", "message": "Prediction failed"}})
            elif _unroutable(r, self.unknown_zips):
                out.append({"status": "ERROR", "tag": r.get("tag"), "errorObject": {
                    "httpCode": 424, "code": "not_found_distance", "message": "Not found route between locations"}})
            else:
                out.append({**predict(r), "status": "OK"})
        return 200, {"responses": out}


def _unprocessable(errors: list[dict]) -> dict:
    return {"code": "request_validation", "message": "You have one or more errors in request structure", "errors": errors}


def _parse_iso(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        d = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def _validate(r: Any, prefix: str) -> list[dict]:
    if not isinstance(r, dict):
        return [{"field": prefix.rstrip(".") or "body", "message": "must be an object", "value": None}]
    errors = []
    when = _parse_iso(r.get("pickupDateTime"))
    if when is None:
        errors.append({"field": f"{prefix}pickupDateTime", "message": "pickupDateTime: must be an ISO date-time",
                       "value": None if r.get("pickupDateTime") is None else str(r.get("pickupDateTime"))})
    elif when < EARLIEST:
        errors.append({"field": f"{prefix}pickupDateTime", "message": "Earliest allowed pickup date is 2015-01-01T00:00:00Z",
                       "value": r.get("pickupDateTime")})
    if r.get("transportType") not in TRANSPORT_TYPES:
        errors.append({"field": f"{prefix}transportType",
                       "message": f"{r.get('transportType')} transportType is not supported. Valid values are [{', '.join(TRANSPORT_TYPES)}]",
                       "value": None if r.get("transportType") is None else str(r.get("transportType"))})
    stops = r.get("stops")
    if not isinstance(stops, list) or len(stops) < 2:
        errors.append({"field": f"{prefix}stops", "message": "stops: size must be at least 2", "value": None})
    else:
        for j, s in enumerate(stops):
            for key in ("order", "city", "state"):
                if not isinstance(s, dict) or s.get(key) in (None, ""):
                    errors.append({"field": f"{prefix}stops[{j}].{key}", "message": f"{key}: must not be null", "value": None})
    return errors


def _unroutable(r: dict, unknown: set[str]) -> bool:
    return any(str(s.get("zip") or "") in unknown for s in r.get("stops") or [])


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def predict(r: dict) -> dict:
    """A deterministic, plausible prediction for one request."""
    stops = r["stops"]
    a, b = stops[0], stops[-1]
    key = "|".join(f"{s.get('country', 'US')}-{s.get('state')}-{s.get('city')}-{s.get('zip') or ''}".upper() for s in (a, b))
    distance = float(80 + _h("d" + key) % 2400)
    when = _parse_iso(r["pickupDateTime"])
    season = 1 + 0.08 * math.sin((when.timetuple().tm_yday / 365.0) * 2 * math.pi)
    base = {"VAN": 2.1, "REEFER": 2.55, "FLATBED": 2.8, "HOTSHOT": 1.9}[r["transportType"]]
    haul = 1.25 if distance < 250 else 1.0
    target = round(base * season * haul + (_h("r" + key + r["pickupDateTime"][:10]) % 40) / 100.0, 2)
    low, high = round(target * 0.92, 2), round(target * 1.11, 2)
    notes = {"shortHaulRateInaccurate": {"distanceLessThan": 250}} if distance < 250 else {}
    tag = r.get("tag") or str(uuid.UUID(hashlib.md5(("t" + key).encode()).hexdigest()))
    return {
        "id": str(uuid.UUID(hashlib.md5(("id" + key + r["pickupDateTime"] + r["transportType"]).encode()).hexdigest())),
        "targetBuyRate": target, "lowBuyRate": low, "highBuyRate": high, "startBuyRate": round(target * 0.9, 2),
        "fuelRate": round(0.28 + (_h("f" + r["pickupDateTime"][:7]) % 20) / 100.0, 2), "distance": distance,
        "confidenceLevel": 40 + _h("c" + key) % 60,
        "acceptanceRates": [round(low + (high - low) * i / 10, 3) for i in range(11)],
        "tag": tag, "currency": r.get("currency") or "USD", "notes": notes,
    }


# ================================================================================ cassettes (vcrpy)

CASSETTE_DIR = ROOT / "fixtures" / "cassettes" / "greenscreens"
LANES_CSV = ROOT / "fixtures" / "pullers" / "lanes.csv"
LANES_MORE_CSV = ROOT / "fixtures" / "pullers" / "lanes_more.csv"
INITIAL = CASSETTE_DIR / "lanes_initial.yaml"
INCREMENTAL = CASSETTE_DIR / "lanes_incremental.yaml"
SITE = "https://testapi.greenscreens.ai"  # the dev host: the replayed config is a real user's dev config
CLIENT_ID = "ingest-test-client"
RECORDING_SECRET = "gs-test-secret-2f9c41d7"  # the fake's; the cassettes store '****' instead
CASSETTE_TOKEN = "cassette-access-token"  # what recorded token answers say instead of the fake's token
SECRET_ENV = "GREENSCREENS_CLIENT_SECRET"

# The block as a user writes it for the dev host. Recording adds nothing but points base_url at the fake.
PROJECT_CONFIG = """\
defaults:
  duckdb: {path: warehouse.duckdb}
connectors:
  truck_prices:
    team: pricing
    description: What our lanes cost (Greenscreens prediction API v3), from shipments in lanes.csv.
    puller: truck_pricing
    config:
      base_url: %(base_url)s
      client_id: %(client_id)s
      client_secret: ${GREENSCREENS_CLIENT_SECRET}
      lanes: {from: csv, path: lanes.csv}
      batch_size: 10
      max_concurrency: 1
      requests_per_second: 50
      checkpoint_lanes: 10
    streams:
      - name: lane_rates
"""

_LOOPBACK = re.compile(r"http://(?:127\.0\.0\.1|localhost|\[::1\]):\d+")


def project_config(base_url: str = SITE, client_id: str = CLIENT_ID) -> str:
    return PROJECT_CONFIG % {"base_url": base_url, "client_id": client_id}


def _form_without_secret(body: bytes | str | None) -> str | None:
    text = body.decode() if isinstance(body, bytes) else body
    if text is None or "client_secret=" not in text:
        return None
    return re.sub(r"(client_secret=)[^&]*", r"\1****", text)


def make_vcr(record: bool):
    import vcr

    def before_record_request(request):
        request.uri = _LOOPBACK.sub(SITE, request.uri, count=1)
        form = _form_without_secret(request.body)
        if form is not None:
            request.body = form.encode()
        return request

    def before_record_response(response):
        response = copy.deepcopy(response)
        raw = response.get("body", {}).get("string")
        text = raw.decode() if isinstance(raw, bytes) else raw
        if text and '"access_token"' in text:
            data = json.loads(text)
            data["access_token"] = CASSETTE_TOKEN
            text = json.dumps(data)
        if text is not None:
            text = _LOOPBACK.sub(SITE, text)
            response["body"]["string"] = text.encode() if isinstance(raw, bytes) else text
        headers = {k: v for k, v in (response.get("headers") or {}).items() if k.lower() not in ("date", "server")}
        for k in list(headers):
            if k.lower() == "content-length" and text is not None:
                headers[k] = [str(len(text.encode()))]
        response["headers"] = headers
        return response

    def body_matcher(r1, r2):
        def norm(body):
            text = body.decode() if isinstance(body, bytes) else (body or "")
            try:
                return json.loads(text)
            except ValueError:
                return sorted(parse_qs(text).items())
        assert norm(r1.body) == norm(r2.body), "request bodies differ"

    v = vcr.VCR(
        record_mode="all" if record else "none",
        match_on=("method", "scheme", "host", "port", "path", "query", "json_body"),
        filter_headers=["authorization", "cookie"],
        before_record_request=before_record_request,
        before_record_response=before_record_response,
        decode_compressed_response=True,
    )
    v.register_matcher("json_body", body_matcher)
    return v


def cassette_command(cassette: Path, *cli_args: str, record: bool = False) -> list[str]:
    return _cassettes.cassette_command(cassette, *cli_args, record=record, vcr="tests.fakes.fake_greenscreens:make_vcr", allow_unplayed=True)


def cassette_env(secret: str) -> dict:
    return _cassettes.cassette_env({SECRET_ENV: secret}, ("INGEST_", "GREENSCREENS_"))


def record() -> None:
    """Rewrite the cassettes from this fake: lanes_initial (every lane of fixtures/pullers/lanes.csv, first run)
    and lanes_incremental (the same block after lanes_more.csv's lanes were added: only those are priced)."""
    CASSETTE_DIR.mkdir(parents=True, exist_ok=True)
    with FakeGreenscreens(client_id=CLIENT_ID, client_secret=RECORDING_SECRET) as fake, \
            tempfile.TemporaryDirectory(prefix="record-greenscreens-") as tmp:
        root = Path(tmp)
        (root / "connectors.yaml").write_text(project_config(base_url=fake.base_url))
        shutil.copyfile(LANES_CSV, root / "lanes.csv")
        for cassette, csv_file in ((INITIAL, LANES_CSV), (INCREMENTAL, LANES_MORE_CSV)):
            shutil.copyfile(csv_file, root / "lanes.csv")
            _cassettes.record_run(cassette, cassette_command(cassette, "run", "truck_prices", record=True), root,
                                  cassette_env(RECORDING_SECRET))
        for cassette in (INITIAL, INCREMENTAL):
            _cassettes.check_written(cassette, RECORDING_SECRET, "127.0.0.1", ".fake")


if __name__ == "__main__":
    sys.exit(_cassettes.recorder_main(record, __doc__))
