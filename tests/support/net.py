"""Loopback networking for tests: ports (`free_port`, `closed_port`, `silent_port`) and `LoopbackServer`, the one
HTTP server base every fake API builds on (tests/fakes/fake_greenscreens.py, fake_fmcsa.py, the widgets API):
a ThreadingHTTPServer on 127.0.0.1 with a fault queue, latency, an in-flight counter and a request log."""
from __future__ import annotations

import collections
import contextlib
import copy
import json
import math
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAINTENANCE_HTML = ("<!DOCTYPE html><html><head><title>Scheduled maintenance</title></head><body><h1>We'll be back "
                    "soon</h1><p>The service is undergoing scheduled maintenance.</p></body></html>")


def free_port() -> int:
    """A port free right now (nothing listens; the caller binds it soon after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A port nothing listens on (connections are refused)."""
    return free_port()


@contextlib.contextmanager
def silent_port():
    """A port that accepts TCP connections (the kernel's backlog) but never reads or answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()




@dataclass
class FakeRequest:
    method: str
    path: str
    query: dict
    status: int
    at: float  # when the request arrived (time.monotonic(), before `latency`)
    lanes: int = 0
    token: str | None = None
    body: Any = None


@dataclass
class Fault:
    kind: str  # status | html | malformed | drop | stall
    count: int
    path: str | None = None
    status: int = 500
    body: Any = None
    headers: dict = field(default_factory=dict)
    seconds: float = 0.0

    def applies(self, path: str) -> bool:
        return self.count > 0 and (self.path is None or path.startswith(self.path))


RETRY_AFTER_WHOLE_SECONDS = "whole-seconds"


class RollingWindowLimit:
    """A server-side rate limit as strict as "N requests per second" can be read: at most `limit` accepted requests
    in ANY 1-second window (a sliding log), checked when a request arrives, as an API gateway does before any work.
    A refused request does not use up the limit. So a client pacing at exactly N/s is refused whenever one request
    is delayed a little more than the one N requests before it (what a busy machine does).

    `retry_after`: RETRY_AFTER_WHOLE_SECONDS (the seconds until the window has room, rounded up to whole seconds,
    as HTTP's delta-seconds are), a fixed number of seconds, or None (no header, like Greenscreens)."""

    def __init__(self, limit: float, retry_after: float | str | None = RETRY_AFTER_WHOLE_SECONDS):
        self.limit = limit
        self.retry_after = retry_after
        self._accepted: collections.deque = collections.deque()
        self._lock = threading.Lock()

    def refusal_headers(self, now: float) -> dict | None:
        """None when the request is within the limit (it is counted), else the 429's headers."""
        with self._lock:
            while self._accepted and now - self._accepted[0] >= 1.0:
                self._accepted.popleft()
            if len(self._accepted) < self.limit:
                self._accepted.append(now)
                return None
            room_in = 1.0 - (now - self._accepted[0])
        if self.retry_after is None:
            return {}
        if self.retry_after == RETRY_AFTER_WHOLE_SECONDS:
            return {"Retry-After": str(max(1, math.ceil(room_in)))}
        return {"Retry-After": f"{self.retry_after:g}"}


class LoopbackServer:
    """ThreadingHTTPServer on 127.0.0.1 with a fault queue, latency, an in-flight counter and a request log.
    Subclasses implement `handle(method, path, query, headers, body) -> (status, body, headers, log_extra)`.
    `rate_limit` (a RollingWindowLimit) answers 429 on arrival, before latency and faults."""

    def __init__(self, latency: float = 0.0):
        self.latency = latency
        self.rate_limit: RollingWindowLimit | None = None
        self.requests: list[FakeRequest] = []
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle

    def start(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # Headers and body go out in separate writes; without NODELAY, Nagle + the client's delayed ACK
                # add ~40 ms to every small answer (which would unfairly slow any one-request-per-item client).
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _serve(self):
                fake._dispatch(self)

            do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- faults

    def _add(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def fail_next(self, n: int, status: int = 500, *, path: str | None = None, body: Any = None, headers: dict | None = None) -> None:
        self._add(Fault("status", n, path, status, body, headers or {}))

    def html_next(self, n: int = 1, *, path: str | None = None) -> None:
        self._add(Fault("html", n, path))

    def malformed_next(self, n: int = 1, *, path: str | None = None) -> None:
        self._add(Fault("malformed", n, path))

    def drop_next(self, n: int = 1, *, path: str | None = None) -> None:
        self._add(Fault("drop", n, path))

    def stall_next(self, n: int, seconds: float, *, path: str | None = None) -> None:
        self._add(Fault("stall", n, path, seconds=seconds))

    def _take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.applies(path):
                    fault.count -= 1
                    return copy.copy(fault)
        return None

    # -- log

    def calls_to(self, path: str) -> list[FakeRequest]:
        return [r for r in self.requests if r.path == path]

    def clear_requests(self) -> None:
        with self.lock:
            self.requests.clear()

    # -- dispatch

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            split = urlsplit(h.path)
            path, query = split.path, {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
            length = int(h.headers.get("Content-Length") or 0)
            raw = h.rfile.read(length) if length else b""
            refused = self.rate_limit.refusal_headers(arrived) if self.rate_limit is not None else None
            if refused is not None:
                self._log(h.command, path, query, 429, {}, arrived)
                self._send(h, 429, self.default_error_body(429), refused)
                return
            if self.latency:
                time.sleep(self.latency)
            fault = self._take_fault(path)
            extra: dict = {}
            if fault is not None and fault.kind == "drop":
                self._log(h.command, path, query, 0, extra, arrived)
                h.close_connection = True
                try:
                    h.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if fault is not None and fault.kind == "stall":
                time.sleep(fault.seconds)
                fault = None
            if fault is not None and fault.kind == "status":
                status, body, headers = fault.status, fault.body, dict(fault.headers)
                if body is None:
                    body = self.default_error_body(fault.status)
            elif fault is not None and fault.kind == "html":
                status, body, headers = 200, MAINTENANCE_HTML, {"Content-Type": "text/html; charset=utf-8"}
            elif fault is not None and fault.kind == "malformed":
                status, body, headers = 200, '{"responses": [{"id": "trunc', {"Content-Type": "application/json"}
            else:
                status, body, headers, extra = self.handle(h.command, path, query, h.headers, raw)
            self._log(h.command, path, query, status, extra, arrived)
            self._send(h, status, body, headers)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _log(self, method, path, query, status, extra, arrived: float) -> None:
        with self.lock:
            self.requests.append(FakeRequest(method, path, query, status, arrived, **extra))

    @staticmethod
    def _send(h, status: int, body: Any, headers: dict) -> None:
        if isinstance(body, (dict, list)):
            payload = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif body is None:
            payload = b""
        else:
            payload = body.encode() if isinstance(body, str) else body
        try:
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def default_error_body(self, status: int) -> Any:
        return {"code": "internal_error", "message": "Internal server error"}

    def handle(self, method, path, query, headers, raw) -> tuple[int, Any, dict, dict]:  # pragma: no cover
        raise NotImplementedError
