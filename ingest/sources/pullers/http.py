"""HTTP plumbing shared by the pullers: one `HttpClient` per sync (requests + tenacity).

What every puller call gets, without the puller having to think about it:
* **retries** (tenacity) with exponential backoff and jitter on 429, 5xx, timeouts, dropped connections and
  bodies that should be JSON but are not (an HTML maintenance page served with status 200). A `Retry-After` header
  is honoured when the server sends one (Greenscreens does not; FMCSA may). Other 4xx are not retried: the caller
  gets them as a `Response` when it said it can handle that status (`accept=`), else as a `FatalHTTPError`;
* a **client-side rate limiter** shared by all threads of the sync (pacing: at most `requests_per_second`, never
  bursting above it) that **adapts**: a 429 pauses every thread for the Retry-After (not just the one that got it)
  and lowers the shared pace, which then recovers slowly toward `requests_per_second` (pacing.RateLimiter);
* **auth** (optional): an object with `apply() -> (headers, handle)` and `invalidate(handle)`; on a 401 the token is
  refreshed once and the call repeated (a second 401 is a config error);
* **redaction**: every URL that reaches a log line or an error goes through `scrub()`, which masks secret query
  parameters (`webKey`, `client_secret`, ...) and every value registered with `ingest.secrets.REDACTOR`.
* **counters** (`client.stats`): calls, retries by reason, 429s, token fetches; for the run summary and the bench;
* **error mapping**: `as_sync_error` turns whatever a puller's HTTP work raised into one redacted `SyncError`.

Bounded concurrency (`ordered_map`) belongs to the puller skeleton (base.py); value parsing to values.py.
"""
from __future__ import annotations

import collections
import datetime as dt
import email.utils
import html
import logging
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import orjson
import requests

from ...errors import SyncError
from ...secrets import REDACTOR
from .pacing import Cancelled, RateLimiter

# Query-string parameters whose values are secrets wherever a URL is shown.
SECRET_PARAMS = ("webkey", "client_secret", "access_token", "api_key", "apikey", "token", "password", "secret", "key")
_SECRET_PARAM = re.compile(r"(?i)((?:[?&;]|%26|%3F)(?:" + "|".join(SECRET_PARAMS) + r")(?:=|%3D))[^&#\s'\"<>]*")
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
USER_AGENT = "ingest-puller/0.1 (python-requests)"


def scrub(text: object) -> str:
    """Text safe to log or raise: secret query parameters masked, registered secrets masked."""
    return REDACTOR.redact(_SECRET_PARAM.sub(r"\1****", str(text)))


# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class HttpPolicy:
    """The knobs every puller exposes in its block config (same names in both specs)."""

    timeout: float = 60.0  # seconds per request (connect + read)
    max_retries: int = 6  # retries after the first attempt, for retryable failures
    backoff_base: float = 1.0  # first backoff ~ base s, doubling each retry, jittered
    backoff_max: float = 60.0  # cap on one backoff (and on a Retry-After we honour)
    requests_per_second: float | None = None  # client-side rate limit (None/0: unlimited)
    max_concurrency: int = 4  # worker threads

    @classmethod
    def from_config(cls, config: dict, **defaults) -> "HttpPolicy":
        d = {**cls().__dict__, **defaults}
        return cls(
            timeout=float(config.get("timeout_seconds", d["timeout"])),
            max_retries=int(config.get("max_retries", d["max_retries"])),
            backoff_base=float(config.get("backoff_base_seconds", d["backoff_base"])),
            backoff_max=float(config.get("backoff_max_seconds", d["backoff_max"])),
            requests_per_second=(float(config.get("requests_per_second", d["requests_per_second"]) or 0) or None),
            max_concurrency=int(config.get("max_concurrency", d["max_concurrency"])),
        )


def policy_spec_properties(*, requests_per_second: float, max_concurrency: int, max_retries: int = 6,
                           backoff_base: float = 1.0, backoff_max: float = 60.0, timeout: float = 60.0) -> dict:
    """The JSON-schema properties for `HttpPolicy`, with a puller's own defaults."""
    return {
        "requests_per_second": {
            "type": "number", "exclusiveMinimum": 0, "default": requests_per_second,
            "description": "Client-side rate limit shared by all threads of a sync (requests per second, paced).",
        },
        "max_concurrency": {
            "type": "integer", "minimum": 1, "maximum": 64, "default": max_concurrency,
            "description": "How many requests may be in flight at once.",
        },
        "max_retries": {
            "type": "integer", "minimum": 0, "maximum": 30, "default": max_retries,
            "description": "Retries for 429, 5xx, timeouts, dropped connections and non-JSON bodies.",
        },
        "backoff_base_seconds": {
            "type": "number", "minimum": 0, "default": backoff_base,
            "description": "First retry waits about this long; each next one doubles (with jitter).",
        },
        "backoff_max_seconds": {"type": "number", "minimum": 0, "default": backoff_max, "description": "Longest single wait."},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": timeout, "description": "Per request."},
    }


# ---------------------------------------------------------------------------------------------- errors


class RetryableHTTPError(Exception):
    """A failure worth retrying (429, 5xx, timeout, dropped connection, non-JSON body)."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None, reason: str = "error"):
        super().__init__(scrub(message))
        self.status, self.retry_after, self.reason = status, retry_after, reason


class FatalHTTPError(Exception):
    """A failure retrying will not fix (4xx the caller did not accept, a second 401)."""

    def __init__(self, message: str, status: int | None = None, body: Any = None, failure_type: str = "system_error"):
        super().__init__(scrub(message))
        self.status, self.body, self.failure_type = status, body, failure_type


def as_sync_error(exc: BaseException, stream: str | None = None, what: str = "") -> SyncError:
    """Any exception from a puller's HTTP work → one clear, redacted SyncError with a failure type."""
    prefix = f"{what}: " if what else ""
    if isinstance(exc, SyncError):
        return exc
    if isinstance(exc, FatalHTTPError):
        return SyncError(scrub(prefix + str(exc)), failure_type=exc.failure_type, stream=stream)
    if isinstance(exc, RetryableHTTPError):
        return SyncError(scrub(prefix + str(exc)), failure_type="transient_error", stream=stream)
    return SyncError(scrub(f"{prefix}{type(exc).__name__}: {exc}"), failure_type="system_error", stream=stream)


# ---------------------------------------------------------------------------------------------- the client


@dataclass
class Response:
    status: int
    body: Any  # parsed JSON (or text when not JSON and the status was accepted)
    headers: dict
    url: str  # scrubbed


@dataclass
class HttpStats:
    calls: int = 0  # HTTP requests sent (including retries and token fetches)
    retries: int = 0
    retry_reasons: collections.Counter = field(default_factory=collections.Counter)
    status_counts: collections.Counter = field(default_factory=collections.Counter)
    token_fetches: int = 0
    waited_for_rate_limit: float = 0.0
    slowdowns: int = 0  # times a 429 cut the shared pace
    slowest_pace: float | None = None  # requests/s right after the deepest cut
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, attr: str, n: float = 1) -> None:
        with self._lock:
            setattr(self, attr, getattr(self, attr) + n)

    def status(self, code: int | str) -> None:
        with self._lock:
            self.status_counts[code] += 1

    def retry(self, reason: str) -> None:
        with self._lock:
            self.retries += 1
            self.retry_reasons[reason] += 1

    def slowed(self, pace: float | None) -> None:
        with self._lock:
            self.slowdowns += 1
            if pace is not None and (self.slowest_pace is None or pace < self.slowest_pace):
                self.slowest_pace = pace

    def summary(self) -> str:
        reasons = ", ".join(f"{k} x{v}" for k, v in sorted(self.retry_reasons.items(), key=lambda kv: str(kv[0])))
        text = f"{self.calls:,} HTTP calls, {self.retries:,} retries" + (f" ({reasons})" if reasons else "")
        if self.slowest_pace is not None:
            text += f", paced down {self.slowdowns}x after 429s (to {self.slowest_pace:.2f}/s at the slowest)"
        if self.token_fetches:
            text += f", {self.token_fetches} token fetch{'es' if self.token_fetches != 1 else ''}"
        return text


class HttpClient:
    def __init__(self, base_url: str, policy: HttpPolicy, *, name: str, auth=None, limiter: RateLimiter | None = None,
                 stats: HttpStats | None = None, cancelled: threading.Event | None = None):
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self.name = name
        self.auth = auth
        self.log = logging.getLogger(f"ingest.connector.{name}")
        self.limiter = limiter or RateLimiter(policy.requests_per_second)
        self.stats = stats or HttpStats()
        self.cancelled = cancelled or threading.Event()
        self.session = requests.Session()
        pool = max(10, policy.max_concurrency * 2)
        adapter = requests.adapters.HTTPAdapter(pool_connections=pool, pool_maxsize=pool, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"

    def close(self) -> None:
        self.cancelled.set()
        self.session.close()

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    # -- one call, with retries

    def request(self, method: str, path: str, *, params: dict | None = None, json: Any = None, data: dict | None = None,
                accept: Iterable[int] = (), authenticated: bool = True, rate_limited: bool = True,
                json_body: bool = True) -> Response:
        """Send with retries; return 2xx (and `accept`ed statuses) as a Response, raise otherwise.

        `json_body`: a 2xx body must be JSON; anything else (an HTML maintenance page) is retried."""
        import tenacity

        url = self.url(path)
        accept = frozenset(accept)
        started = time.monotonic()

        def attempt() -> Response:
            return self._attempt(method, url, params, json, data, accept, authenticated, rate_limited, json_body)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.policy.max_retries + 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(RetryableHTTPError),
            before_sleep=self._before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except RetryableHTTPError as exc:
            attempts = self.policy.max_retries + 1
            raise RetryableHTTPError(
                f"{method} {scrub(url)}: {exc} (gave up after {attempts} attempt{'s' if attempts != 1 else ''} "
                f"in {time.monotonic() - started:.1f}s)", status=exc.status, reason=exc.reason,
            ) from None

    def _attempt(self, method, url, params, json_, data, accept, authenticated, rate_limited, json_body) -> Response:
        if self.cancelled.is_set():
            raise Cancelled()
        reauthed = False
        while True:
            if rate_limited:
                waited = self.limiter.acquire(self.cancelled)
                if waited:
                    self.stats.count("waited_for_rate_limit", waited)
            headers, handle = ({}, None)
            if authenticated and self.auth is not None:
                headers, handle = self.auth.apply()
            self.stats.count("calls")
            sent_at = self.limiter.clock()
            try:
                resp = self.session.request(method, url, params=params, json=json_, data=data, headers=headers,
                                            timeout=self.policy.timeout)
            except requests.Timeout as exc:
                self.stats.status("timeout")
                raise RetryableHTTPError(f"timed out after {self.policy.timeout:g}s ({type(exc).__name__})", reason="timeout") from None
            except requests.ConnectionError as exc:
                self.stats.status("connection")
                raise RetryableHTTPError(f"connection failed ({_short_exc(exc)})", reason="connection") from None
            except requests.RequestException as exc:
                self.stats.status("error")
                raise RetryableHTTPError(f"request failed ({_short_exc(exc)})", reason="request") from None
            status = resp.status_code
            self.stats.status(status)
            shown = scrub(resp.url or url)
            if status == 401 and authenticated and self.auth is not None:
                self.auth.invalidate(handle)
                if not reauthed:
                    reauthed = True
                    self.log.info("%s %s: 401, fetching a new token and retrying once", method, shown)
                    continue
                raise FatalHTTPError(f"{method} {shown}: HTTP 401 even with a fresh token: {_describe_body(resp)}",
                                     status=401, failure_type="config_error")
            break
        if status in RETRYABLE_STATUSES and status not in accept:
            retry_after = _retry_after(resp.headers.get("Retry-After"))
            if status == 429:
                self._slow_down(sent_at, retry_after)
            raise RetryableHTTPError(f"HTTP {status}: {_describe_body(resp)}", status=status, retry_after=retry_after,
                                     reason=str(status))
        body = _parse_body(resp)
        if 200 <= status < 300:
            if json_body and body is _NOT_JSON:
                self.stats.status("non-json")
                raise RetryableHTTPError(f"HTTP {status} with a non-JSON body ({_content_type(resp)}: "
                                         f"{_snippet(resp.text)!r}; a maintenance page?)", status=status, reason="non-json")
            return Response(status, resp.text if body is _NOT_JSON else body, dict(resp.headers), shown)
        if status in accept:
            return Response(status, resp.text if body is _NOT_JSON else body, dict(resp.headers), shown)
        raise FatalHTTPError(f"{method} {shown}: HTTP {status}: {_describe_body(resp)}", status=status,
                             body=None if body is _NOT_JSON else body,
                             failure_type="config_error" if status in (401, 403) else "system_error")

    def _slow_down(self, sent_at: float, retry_after: float | None) -> None:
        """A 429 is about the whole client's rate, not this one call: every thread waits out the Retry-After (or
        backoff_base when the server sends none), and the shared pace drops (see RateLimiter)."""
        pause = min(retry_after if retry_after is not None else self.policy.backoff_base, self.policy.backoff_max)
        if self.limiter.throttled(sent_at, pause):
            pace = self.limiter.pace
            self.stats.slowed(pace)
            if pace is not None:
                self.log.info("HTTP 429: pacing down to %.2f requests/s (limit %g), everyone waits %.2fs%s", pace,
                              self.limiter.limit, pause, "" if retry_after is None else " (Retry-After)")

    # -- tenacity hooks

    def _wait(self, retry_state) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        return backoff_seconds(retry_state.attempt_number, self.policy.backoff_base, self.policy.backoff_max,
                               getattr(exc, "retry_after", None))

    def _before_sleep(self, retry_state) -> None:
        exc = retry_state.outcome.exception()
        self.stats.retry(getattr(exc, "reason", "error"))
        delay = retry_state.next_action.sleep if retry_state.next_action else 0
        self.log.info("retry %d/%d in %.2fs: %s", retry_state.attempt_number, self.policy.max_retries, delay, scrub(exc))

    def _sleep(self, seconds: float) -> None:
        if self.cancelled.wait(seconds):
            raise Cancelled()


def backoff_seconds(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Exponential backoff with "equal jitter": half of base*2^(n-1) fixed, half random, capped; at least the
    server's Retry-After (capped too) when it sent one."""
    ceiling = min(cap, base * (2 ** max(attempt - 1, 0)))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


_NOT_JSON = object()


def _parse_body(resp: requests.Response):
    content = resp.content
    if not content:
        return None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _content_type(resp) -> str:
    return (resp.headers.get("Content-Type") or "no content type").split(";")[0]


def _snippet(text: str, n: int = 80) -> str:
    text = re.sub(r"<[^>]+>", " ", text or "")
    text = re.sub(r"\s+", " ", html.unescape(text)).strip()
    return scrub(text[:n] + ("..." if len(text) > n else ""))


def _describe_body(resp) -> str:
    body = _parse_body(resp)
    if body is _NOT_JSON:
        return f"{_content_type(resp)} body {_snippet(resp.text)!r}"
    if isinstance(body, dict):
        code, message = body.get("code") or body.get("error"), body.get("message") or body.get("error_description")
        if code or message:
            return scrub(" ".join(str(x) for x in (code, message) if x))
        if "content" in body and isinstance(body["content"], str):
            return scrub(body["content"])
    return scrub(orjson.dumps(body).decode()[:200]) if body is not None else "empty body"


def _short_exc(exc: BaseException) -> str:
    # requests' messages embed the full URL (with its query string) and nested reprs; keep the gist, scrubbed.
    text = str(exc)
    m = re.search(r"\(Caused by (\w+)\(", text)
    return scrub(f"{type(exc).__name__}{': ' + m.group(1) if m else ''}")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None
