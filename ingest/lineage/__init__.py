"""OpenLineage run events for every sync: START at the beginning, COMPLETE or FAIL at the end.

One OpenLineage *run* per sync. Its job is the block (`jira`), whichever of its streams the run covers (a Metaflow
task syncs one stream; the run's `ingest.streams` tag says which), so one block has one history. Inputs are the
warehouse tables a puller's config reads (`{from: warehouse, query: ...}`, warehouse.py) and the source's streams
(`<block>.<stream>`, namespace from the connector and its host); outputs the warehouse tables. Warehouse tables are
named the way OpenLineage's dbt integration names them (`<file stem>.main.<table>` on DuckDB, `DB.SCHEMA.TABLE` on
Snowflake), so a dbt model reading our table joins our lineage. Schemas carry column types and descriptions, with
row counts and the owning team. Inside Metaflow the parent run is the Metaflow run, so lineage chains
API → table → downstream flow.
See docs/lineage.md.

Lineage never fails a sync and never holds it up for long: events are built inside try/except, handed to one
background thread that sends them with the openlineage-python client (short timeout, at most one retry), and the
end of a sync waits at most `2 × timeout` seconds for delivery. Every problem is a logged warning. Secrets never go
into an event: the API key only travels in the Authorization header, URLs lose their user:password part, and every
free text (error messages, descriptions, tags) goes through the redactor. Dataset namespaces are identifiers and are
NOT redacted: the redactor masks every resolved `${REF}`, so `domain: ${JIRA_DOMAIN}` would otherwise become
`jira://****`; they come only from non-secret config keys (`base_url`, `domain`) and carry just scheme://host[:port].
"""
from __future__ import annotations

from .emitter import Lineage, LineageSettingsError, resolve_secret
from .naming import (destination_dataset, ingest_run_uuid, metaflow_parent, metaflow_run_uuid, source_dataset,
                     source_namespace)
from .warehouse import query_tables, warehouse_inputs, warehouse_queries

__all__ = ["Lineage", "LineageSettingsError", "destination_dataset", "ingest_run_uuid", "metaflow_parent",
           "metaflow_run_uuid", "query_tables", "resolve_secret", "source_dataset", "source_namespace",
           "warehouse_inputs", "warehouse_queries"]
