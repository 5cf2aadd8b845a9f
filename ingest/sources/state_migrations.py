"""State migrations that manifest overrides can name (`state_migrations: [{type: CustomStateMigration, class_name:
ingest.sources.state_migrations.PartitionedToPlainCursor}]`).

Why this exists: an override that takes a partition router off an incremental stream (the Jira override does, so the
stream's date windows each checkpoint; the CDK's per-partition cursor throttles its state to one message per ten
minutes) changes the stream's state shape from the per-partition form
`{"states": [{"partition": {...}, "cursor": {"updated": X}}], "state": {"updated": Y}, ...}` to a plain cursor
`{"updated": X}`. The plain cursor does not read the old shape and would start again from `start_date` — a whole
backfill on the first run after an upgrade. This migration turns the old shape into the plain one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from airbyte_cdk.sources.declarative.migrations.state_migration import StateMigration


@dataclass
class PartitionedToPlainCursor(StateMigration):
    """Per-partition state → `{cursor_field: value}`.

    The value is the OLDEST cursor over all partitions (then the global one): resuming from the oldest re-reads what
    some partitions already had, which dedup on the primary key removes; resuming from a newer one would skip data."""

    cursor_field: str
    config: Mapping[str, Any]

    def should_migrate(self, stream_state: Mapping[str, Any]) -> bool:
        return bool(stream_state) and self.cursor_field not in stream_state and bool(self._cursors(stream_state))

    def migrate(self, stream_state: Mapping[str, Any]) -> Mapping[str, Any]:
        # The cursor strings share one format (the stream's datetime_format), so the smallest sorts first only if
        # they are compared as instants: parse leniently and fall back to text order for unknown formats.
        return {self.cursor_field: min(self._cursors(stream_state), key=_instant)}

    def _cursors(self, stream_state: Mapping[str, Any]) -> list[str]:
        values = [(entry.get("cursor") or {}).get(self.cursor_field) for entry in stream_state.get("states") or []
                  if isinstance(entry, Mapping)]
        values = [v for v in values if v]
        if not values:
            glob = stream_state.get("state")
            if isinstance(glob, Mapping) and glob.get(self.cursor_field):
                values = [glob[self.cursor_field]]
        return [str(v) for v in values]


def _instant(value: str):
    from datetime import datetime, timezone

    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            return (0, datetime.strptime(value, fmt).astimezone(timezone.utc).isoformat(), value)
        except ValueError:
            continue
    return (1, value, value)
