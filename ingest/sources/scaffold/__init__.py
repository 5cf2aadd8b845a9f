"""Scaffolding: write a new connectors.yaml block from a connector's spec (`ingest add`), and dummy configs that
satisfy a spec without reaching any real system (to measure connectors offline: scripts/connector_compat.py).

    add_block(connectors.yaml, "stripe", team="payments")
        ─► newest release (ConnectorCache.newest) ─► spec (Connector.spec) ─► stream names (the manifest's)
        ─► block_text(...) ─► append_block(...): the file's existing bytes are kept, the block goes at the end of
                                                 the `connectors:` mapping

A written block holds the spec's required keys (and the authentication a connector needs though its spec marks it
optional), secrets as `${BLOCK_FIELD}` references, the optional keys as comments with their default and
description, and the streams. It loads with `ingest.config.load_project` as written; `ingest validate` then says
which secrets to export. Import-light: stdlib, PyYAML, packaging (the CDK is imported only by `add_block`, through Connector,
and only when a spec has to be asked of the connector itself).

One module per step: `schema` (reading the spec), `dummy` (values that satisfy it), `blocktext` (the block's YAML),
`appending` (into connectors.yaml), `add` (`ingest add`, which strings them together).
"""
from __future__ import annotations

from ..manifest.package import package_module as package_module_name  # one home: "airbyte-source-x" -> "source_x"
from .add import add_block, connector_facts, default_block_name, manifest_stream_names, package_manifest, parse_connector
from .appending import append_block
from .blocktext import MANY_STREAMS, block_text, secret_reference
from .dummy import DUMMY_DATE, DUMMY_DATE_TIME, DUMMY_HOST, DUMMY_SECRET, dummy_config
from .schema import connection_spec

__all__ = [
    "add_block", "append_block", "block_text", "connection_spec", "connector_facts", "default_block_name",
    "dummy_config", "manifest_stream_names", "package_manifest", "package_module_name", "parse_connector",
    "secret_reference", "DUMMY_DATE", "DUMMY_DATE_TIME", "DUMMY_HOST", "DUMMY_SECRET", "MANY_STREAMS",
]
