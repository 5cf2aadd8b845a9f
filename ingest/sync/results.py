"""What a sync returns: one `SyncResult` per run, one `StreamResult` per stream (the CLI's summary, the Python API's
return value, the lineage facets and the events are all built from them)."""
from __future__ import annotations

import datetime as dt
import secrets as _random
from dataclasses import dataclass, field

from ..destinations.base import RunRecord
from ..errors import SyncError


@dataclass
class StreamResult:
    stream: str
    table: str
    write: str
    sync: str
    records: int = 0
    rows_written: int = 0
    rows_without_key: int = 0  # dedup: records with a NULL or missing primary key value, appended instead of merged
    state_before: dict | None = None
    state_after: dict | None = None
    schema_changes: list[str] = field(default_factory=list)
    load_id: str = ""


@dataclass
class SyncResult:
    run: RunRecord
    streams: dict[str, StreamResult]
    destination: str
    seconds: float
    error: SyncError | None = None
    events_sent: int = 0
    event_errors: list[str] = field(default_factory=list)
    rows_history: dict[str, list[int]] = field(default_factory=dict)  # rows per landed load, last 12, per stream

    @property
    def ok(self) -> bool:
        return self.error is None


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + _random.token_hex(3)
