"""What columns mean: the descriptions a stream's JSON schema gives its fields, and our own columns' meaning.

They become column comments on every destination, `_ingest_tables.descriptions`, `ingest describe`'s "meaning"
column and the OpenLineage schema facet's field descriptions: written once upstream (a connector's schema, our
pullers' schemas), shown wherever someone reads the table.
"""
from __future__ import annotations

from typing import Any

from .typing import META_EXTRACTED_AT, META_LOAD_ID, META_REJECTED, META_RUN_ID, field_key

# What our own columns mean: their column comments on every destination (and in `ingest describe`).
META_DESCRIPTIONS = {
    META_EXTRACTED_AT: "ingest: when the source emitted this record (UTC)",
    META_RUN_ID: "ingest: the run that landed this row (_ingest_runs.run_id)",
    META_LOAD_ID: "ingest: the load of this stream that landed this row (<run id>-<stream>; the data_landed event's load_id)",
    META_REJECTED: "ingest: the original values of fields that did not fit their column (field -> value); those columns are NULL in this row",
}

DESCRIPTION_MAX = 1000  # characters of a column or table comment (Snowflake takes more; nobody reads more)


def description_text(prop: Any) -> str | None:
    """What a JSON-schema property (or a stream's schema) says it means: its `description`, else its `title`;
    whitespace collapsed, capped at DESCRIPTION_MAX characters. None when it says nothing."""
    if not isinstance(prop, dict):
        return None
    for key in ("description", "title"):
        text = prop.get(key)
        if isinstance(text, str) and text.strip():
            text = " ".join(text.split())
            return text if len(text) <= DESCRIPTION_MAX else text[:DESCRIPTION_MAX - 1] + "…"
    return None


def descriptions_from_schema(json_schema: dict | None) -> dict[str, str]:
    """Field key → its description, for the fields of a stream's schema that describe themselves."""
    props = (json_schema or {}).get("properties") or {}
    return {field_key(name): text for name, prop in props.items() if (text := description_text(prop))}
