"""HTTP plumbing shared by the pullers: one `HttpClient` per sync (requests + tenacity).

What every puller call gets, without the puller having to think about it:
* **retries** (tenacity) with exponential backoff and jitter on 429, 5xx, timeouts, dropped connections and
  bodies that should be JSON but are not (an HTML maintenance page served with status 200). A `Retry-After` header
  is honoured when the server sends one (Greenscreens does not; FMCSA may). Other 4xx are not retried: the caller
  gets them as a `Response` when it said it can handle that status (`accept=`), else as a `FatalHTTPError`;
* a **client-side rate limiter** shared by all threads of the sync (pacing: at most `requests_per_second`, never
  bursting above it) that **adapts**: a 429 pauses every thread for the Retry-After (not just the one that got it)
  and lowers the shared pace, which then recovers slowly toward `requests_per_second` (see RateLimiter);
* **bounded concurrency**: `ordered_map` runs work items on a thread pool of `max_concurrency` threads, at most
  2 x `max_concurrency` items ahead of the consumer, and yields results in input order (so checkpoints are exact);
* **auth** (optional): an object with `apply() -> (headers, handle)` and `invalidate(handle)`; on a 401 the token is
  refreshed once and the call repeated (a second 401 is a config error);
* **redaction**: every URL that reaches a log line or an error goes through `scrub()`, which masks secret query
  parameters (`webKey`, `client_secret`, ...) and every value registered with `ingest.secrets.REDACTOR`.
* **counters** (`client.stats`): calls, retries by reason, 429s, token fetches; for the run summary and the bench.
"""
from __future__ import annotations

import collections
import datetime as dt
import email.utils
import html
import itertools
import logging
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import orjson
import requests

from ...errors import SyncError
from ...secrets import REDACTOR

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


class Cancelled(Exception):
    """The sync is stopping; in-flight work gives up instead of sleeping through its backoff."""


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


# ---------------------------------------------------------------------------------------------- rate limiting


class RateLimiter:
    """Paces calls across all threads of a sync and adapts the pace to the server's 429s (AIMD).

    * **pacing**: slot i starts 1/pace after slot i-1, whichever thread takes it; never a burst; the pace never goes
      above `rate` (the configured `requests_per_second`, normally the API's documented limit);
    * **why adapt**: a server that allows N requests in any second refuses a client pacing at exactly N/s whenever one
      request arrives a little later than the one N requests before it, which a busy machine does all the time. So
      `throttled()` (a 429) cuts the pace to DECREASE x the pace that was refused, and remembers CEILING_MARGIN x that
      pace as the highest pace it returns to quickly: back to that ceiling, linearly, within RECOVER_SECONDS; then it
      creeps up by PROBE_PER_SECOND of the limit per second (half that after each 429 met while creeping), so a
      server that is in fact fine with the full limit gets it again, and one that is not meets a 429 after 30 s,
      1 min, 2 min, ... instead of one request in ten;
    * **one cut per pace**: requests already sent at the old pace come back 429 too; only a request sent after the
      last cut can cut again;
    * **pause**: `pause(s)` and `throttled(pause=s)` (Retry-After) stop every thread for s seconds, including threads
      already waiting for a slot planned before the 429 (they plan again).

    `clock` and the pace arithmetic are separate from sleeping so the adaptation can be checked without waiting."""

    DECREASE = 0.8
    CEILING_MARGIN = 0.97
    RECOVER_SECONDS = 5.0
    PROBE_PER_SECOND = 0.001
    MIN_FRACTION = 0.02  # the pace never drops below 2% of the limit, however many 429s

    def __init__(self, rate: float | None, *, clock: Callable[[], float] = time.monotonic):
        self.limit = float(rate) if rate else None
        self.clock = clock
        self._lock = threading.Lock()
        self._next = 0.0  # earliest start of the next slot
        self._last_slot = float("-inf")  # the last slot a caller actually used
        self._resume_at = 0.0  # nobody sends before this (Retry-After)
        self._plan = 0  # bumped by a pause or a cut: slots planned before it are void
        # Start as if just recovered from a 429 at the limit: CEILING_MARGIN x the limit, creeping up to it. A server
        # counts arrivals, and the first requests arrive late (each thread opens its connection), so the ones a
        # second later would be "too close" to them at exactly the limit.
        self._cut_at = clock() - self.RECOVER_SECONDS  # when the pace was last cut
        self._ceiling = (self.limit or 0.0) * self.CEILING_MARGIN  # the pace recovered to quickly after that cut
        self._cut_to = self._ceiling  # the pace right after that cut
        self._probe = self.PROBE_PER_SECOND  # creep above the ceiling, as a fraction of the limit per second

    # -- the pace

    @property
    def pace(self) -> float | None:
        """Requests per second right now (None: not paced)."""
        with self._lock:
            return self._pace_at(self.clock()) if self.limit else None

    def _pace_at(self, now: float) -> float:
        since = now - self._cut_at
        if since < self.RECOVER_SECONDS:
            return self._cut_to + (self._ceiling - self._cut_to) * since / self.RECOVER_SECONDS
        return min(self.limit, self._ceiling + self._probe * self.limit * (since - self.RECOVER_SECONDS))

    def _interval_at(self, when: float) -> float:
        return 1.0 / self._pace_at(when) if self.limit else 0.0

    # -- callers

    def acquire(self, cancelled: threading.Event | None = None) -> float:
        """Wait for this thread's slot; returns the seconds waited."""
        if not self.limit and self._resume_at <= self.clock():
            return 0.0
        waited = 0.0
        while True:
            with self._lock:
                now = self.clock()
                slot = max(now, self._next, self._resume_at)
                self._next = slot + self._interval_at(slot)
                plan = self._plan
            wait = slot - now
            if wait > 0:
                if cancelled is not None:
                    if cancelled.wait(wait):
                        raise Cancelled()
                else:
                    time.sleep(wait)
                waited += wait
            with self._lock:
                if plan == self._plan:
                    self._last_slot = max(self._last_slot, slot)
                    return waited
            # A 429 (or a pause) came while we waited: the slot was planned at the old pace; plan again.

    def pause(self, seconds: float) -> None:
        """No thread sends for `seconds`."""
        with self._lock:
            self._replan(self.clock(), seconds)

    def throttled(self, sent_at: float, pause: float | None) -> bool:
        """A 429 for a request sent at `sent_at` (this limiter's clock): slow down unless the pace was already cut
        after that request was sent, and stop every thread for `pause` seconds. True when the pace was cut."""
        with self._lock:
            now = self.clock()
            cut = bool(self.limit) and sent_at >= self._cut_at
            if cut:
                refused = self._pace_at(sent_at)
                if refused > self._ceiling:
                    # Creeping up found the wall again: creep half as fast next time, so a long run against a server
                    # that is strict to the exact limit meets it ~log2(duration) times, not every half minute.
                    self._probe /= 2
                floor = self.limit * self.MIN_FRACTION
                self._ceiling = max(floor, refused * self.CEILING_MARGIN)
                self._cut_to = max(floor, refused * self.DECREASE)
                self._cut_at = now
            self._replan(now, pause or 0.0)
            return cut

    def _replan(self, now: float, pause: float) -> None:
        self._resume_at = max(self._resume_at, now + pause)
        # Slots handed out but not yet used are void (their threads plan again); the next one is one interval after
        # the last slot actually used, at the pace from now on.
        self._next = max(now, self._last_slot + self._interval_at(now))
        self._plan += 1


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


# ---------------------------------------------------------------------------------------------- concurrency


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], concurrency: int, *, name: str = "puller",
                cancelled: threading.Event | None = None) -> Iterator[Any]:
    """`map(fn, items)` on a pool of `concurrency` threads, results in input order, at most 2 x concurrency items
    submitted ahead of the consumer. The first exception (in input order) is raised after every earlier result was
    yielded; queued work is cancelled and in-flight work is told to stop (`cancelled`)."""
    if concurrency <= 1:
        for item in items:
            yield fn(item)
        return
    iterator = iter(items)
    pending: collections.deque = collections.deque()
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"ingest-{name}")
    try:
        for item in itertools.islice(iterator, concurrency * 2):
            pending.append(pool.submit(fn, item))
        while pending:
            result = pending.popleft().result()
            for item in itertools.islice(iterator, 1):
                pending.append(pool.submit(fn, item))
            yield result
    finally:
        if pending and cancelled is not None:
            cancelled.set()
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------------- values


_DATE_FORMATS = ("%m/%d/%Y", "%m/%d/%y", "%Y%m%d", "%d-%b-%y", "%d-%b-%Y", "%b %d, %Y", "%Y/%m/%d", "%m-%d-%Y")


def parse_datetime(value: Any) -> dt.datetime | None:
    """Mixed-format timestamps → aware UTC datetime, or None when it cannot be read (never raises).
    ISO 8601 (with Z, +00:00 or +0000), the date formats of `parse_date` (midnight UTC), epoch seconds/ms."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    if isinstance(value, (int, float)):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    text = str(value).strip()
    if not text:
        return None
    iso = text.replace("Z", "+00:00") if text.endswith("Z") else text
    iso = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", iso)
    try:
        parsed = dt.datetime.fromisoformat(iso)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
    except ValueError:
        pass
    d = _parse_date_text(text)
    if d is not None:
        return dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc)
    if re.fullmatch(r"\d{10}|\d{13}", text):
        return parse_datetime(int(text))
    return None


def parse_date(value: Any) -> dt.date | None:
    """Mixed-format dates → date, or None (never raises): 2024-01-26, 01/26/2024, 1/26/24, 20240126, 26-JAN-24,
    Jan 26, 2024, ISO timestamps (their date part)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    if not text:
        return None
    d = _parse_date_text(text)
    if d is not None:
        return d
    parsed = parse_datetime(text)
    return parsed.date() if parsed is not None else None


def _parse_date_text(text: str) -> dt.date | None:
    if re.match(r"^\d{4}-\d{2}-\d{2}($|[T ])", text):
        try:
            return dt.date.fromisoformat(text[:10])
        except ValueError:
            return None
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text.title() if "%b" in fmt else text, fmt).date()
        except ValueError:
            continue
    return None


def parse_number(value: Any) -> float | None:
    """'18%', '1,234.5', ' 65 ', 4.3 → float; words ('insufficient data', 'Not Public') → None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().replace(",", "").rstrip("%").strip()
    if text.startswith("$"):
        text = text[1:]
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def parse_int(value: Any) -> int | None:
    number = parse_number(value)
    return int(number) if number is not None and number.is_integer() else None


_TRUE = {"y", "yes", "true", "t", "1"}
_FALSE = {"n", "no", "false", "f", "0"}


def parse_flag(value: Any) -> bool | None:
    """Y/N, yes/no, true/false, 1/0 → bool; anything else ('u', '-1', 'Not Public', None) → None."""
    if isinstance(value, bool):
        return value
    if value is None:
        return None
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def clean_text(value: Any) -> str | None:
    """Strings as shown to people: HTML entities decoded, zero-width characters removed, trimmed; '' → None."""
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    text = html.unescape(str(value)).replace("\u200b", "").strip()
    return text or None
