"""A declarative-manifest block (`widgets`) against a loopback API whose records the test sets between runs: the
schema-evolution, events, status and poison-record suites all sync it, into DuckDB and into Snowflake."""
from __future__ import annotations

import json
from typing import Any

from .blocks import dump
from .net import LoopbackServer

def manifest(stream: str, path: str, properties: dict, description: str | None = None) -> str:
    """A declarative manifest: one stream (primary key `id`) read from GET `path` of the config's `base_url`, its
    records under `data`, with `properties` as its inline JSON schema (and `description` as the schema's own)."""
    schema = {"type": "object", "properties": properties, **({"description": description} if description else {})}
    return dump({
        "version": "6.61.6", "type": "DeclarativeSource",
        "check": {"type": "CheckStream", "stream_names": [stream]},
        "streams": [{
            "type": "DeclarativeStream", "name": stream, "primary_key": ["id"],
            "schema_loader": {"type": "InlineSchemaLoader", "schema": schema},
            "retriever": {
                "type": "SimpleRetriever",
                "requester": {"type": "HttpRequester", "url_base": "{{ config['base_url'] }}", "path": path, "http_method": "GET"},
                "record_selector": {"type": "RecordSelector", "extractor": {"type": "DpathExtractor", "field_path": ["data"]}},
            },
        }],
        "spec": {"type": "Spec", "connection_specification": {
            "type": "object", "required": ["base_url"], "properties": {"base_url": {"type": "string"}}}},
    })


MANIFEST = manifest("widgets", "/widgets", {
    "id": {"type": "integer"},
    "name": {"type": ["string", "null"]},
    "qty": {"type": ["integer", "null"]},
    "price": {"type": ["number", "null"]},
    "seen_at": {"type": ["string", "null"], "format": "date-time"},
    "tags": {"type": ["array", "null"]},
})

class WidgetsApi(LoopbackServer):
    """Serves `{"data": records}` on every GET; `refuse(401, body)` makes every later request fail that way."""

    def __init__(self):
        super().__init__()
        self.records: list[dict] = []
        self.refusal: tuple[int, Any] | None = None
        self.start()

    @property
    def base_url(self) -> str:
        return self.origin

    def refuse(self, status: int = 401, body: Any = None) -> None:
        self.refusal = (status, {"message": "bad credentials"} if body is None else body)

    def handle(self, method, path, query, headers, raw):
        if self.refusal is not None:
            return self.refusal[0], self.refusal[1], {}, {}
        return 200, {"data": self.records}, {}, {}

    def close(self) -> None:
        self.stop()


def assert_misfits_kept(rows: dict) -> None:
    """After the second batch: id 1 and 3 as (qty, price, seen_at IS NULL, color, _ingest_rejected, ...): values
    that do not fit their column are NULL there and kept, as sent, in `_ingest_rejected`."""
    qty, price, seen_null, color, rejected = rows[1][:5]
    assert qty is None and price == 1.5 and seen_null and color == "red"
    assert json.loads(rejected) == {"qty": "n/a", "seen_at": "yesterday"}
    qty, price, seen_null, color, rejected = rows[3][:5]
    assert qty is None and price is None and color == "blue"
    assert json.loads(rejected) == {"qty": 2.5, "price": "cheap"}
