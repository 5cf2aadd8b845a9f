"""The Greenscreens side of truck_pricing: the OAuth2 token, what its error answers mean, its predictions as rows.

* `ClientCredentials`: the `auth` hook of HttpClient (`POST /v1/auth/token`, form-encoded client credentials);
* `explain_error` and the 422 field paths (`requests[i].transportType`) that name the lanes at fault in a batch;
* `ok_record` / `error_record`: one `lane_rates` row per lane, priced or not (an ERROR row says why).
"""
from __future__ import annotations

import re
import threading
import time
from typing import Any

from ...secrets import REDACTOR
from .http import FatalHTTPError, HttpClient, scrub
from .lanes import Lane
from .values import clean_text, parse_int, parse_number

TOKEN_PATH = "/v1/auth/token"


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


_INDEXED_FIELD = re.compile(r"^requests\[(\d+)\]\.?(.*)$")


def faulty_indexes(body: Any, n: int) -> set[int]:
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


def errors_by_index(body: dict) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for err in body.get("errors") or []:
        m = _INDEXED_FIELD.match(str(err.get("field") or ""))
        if m:
            value = f" (value {err.get('value')!r})" if err.get("value") is not None else ""
            out.setdefault(int(m.group(1)), []).append(f"{m.group(2) or 'request'}: {err.get('message')}{value}")
    return out


def ok_record(lane: Lane, priced_at: str, p: dict) -> dict:
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


def error_record(lane: Lane, priced_at: str, http_code: int | None, code: str | None, message: str | None) -> dict:
    return {
        **lane.columns(),
        "status": "ERROR",
        "prediction_id": None, "target_buy_rate": None, "low_buy_rate": None, "high_buy_rate": None,
        "start_buy_rate": None, "fuel_rate": None, "distance": None, "target_buy_total": None,
        "confidence_level": None, "acceptance_rates": None, "currency": lane.currency, "notes": None,
        "error_http_code": http_code, "error_code": code, "error_message": scrub(message) if message else None,
        "priced_at": priced_at,
    }
