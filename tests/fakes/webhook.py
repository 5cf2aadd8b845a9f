"""A loopback stand-in for the Argo Events webhook: records every POSTed event; can answer errors.
The same JSON-POST recorder as the OpenLineage receiver, at `/ingest`, answering 200."""
from __future__ import annotations

from .lineage_receiver import LineageReceiver


class Webhook(LineageReceiver):
    def __init__(self, port: int = 0):
        super().__init__(port=port, status=200, endpoint="/ingest")  # set .status to 500/503 to make deliveries fail
        self.url = f"http://127.0.0.1:{self.port}/ingest"
