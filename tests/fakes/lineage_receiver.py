"""A loopback OpenLineage receiver (what Marquez's POST /api/v1/lineage does, minus the storage): records every
event with its headers; can answer an error status. `silent_port()` gives a port that accepts connections and never
answers (a black-holed backend), to check that lineage cannot hold a sync up: tests/support/net.py."""
from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ENDPOINT = "/api/v1/lineage"


class LineageReceiver:
    def __init__(self, port: int = 0, status: int = 201, endpoint: str = ENDPOINT):
        self.endpoint = endpoint
        self.events: list[dict] = []
        self.requests: list[dict] = []  # every POST: path, headers, status answered (also the refused ones)
        self.status = status  # set to 500/503 to make deliveries fail
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                status = receiver.status if self.path == receiver.endpoint else 404
                with receiver._arrived:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "status": status,
                                              "body": body.decode("utf-8", "replace")})
                    if status < 300:
                        receiver.events.append(json.loads(body))
                    receiver._arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict]:
        """The events received, once there are at least `count` (or the timeout passed)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.events) >= count, timeout)
            return list(self.events)

    def of_type(self, event_type: str) -> list[dict]:
        return [e for e in self.events if e.get("eventType") == event_type]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
