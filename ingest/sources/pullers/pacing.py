"""The adaptive client-side pacer every puller call goes through: one `RateLimiter` shared by all threads of a sync.

Why its own module: pacing is the one piece of the HTTP plumbing with an algorithm of its own (AIMD on 429s, see
RateLimiter), measured by bench/pullers.py and tested without a server (tests/test_rate_limits.py); `HttpClient`
(http.py) takes a slot before every call and reports every 429 here.
"""
from __future__ import annotations

import threading
import time
from typing import Callable


class Cancelled(Exception):
    """The sync is stopping; in-flight work gives up instead of sleeping through its backoff."""


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
