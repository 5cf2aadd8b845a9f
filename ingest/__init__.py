"""ingest's Python API: what a Metaflow step, a notebook or a script calls instead of the CLI.

    import ingest

    result = ingest.run("truck_prices", streams=["prices"])          # ./connectors.yaml, the block's destination
    result = ingest.run("jira", config="conf/connectors.yaml", full_refresh=True, raise_on_failure=False)
    if not result.ok: ...                                              # result.error, result.streams["issues"].rows_written

    project = ingest.load_project("connectors.yaml")                  # validated blocks; ConfigError when not
    ingest.stop_on_signals()   # in a long-running step: SIGTERM (Kubernetes) stops a run the way Ctrl-C does

    @ingest.after_landed("jira.issues", parameters=["load_id", "rows"])   # a downstream flow: @trigger on our events
    class FraudFeatures(FlowSpec): ...

It is the same library the CLI is a thin shell over: a run here writes the same tables, state, events and run
records as `ingest run`. Names are imported lazily, so `import ingest` stays cheap (the CLI pays for nothing it does
not use).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

__all__ = [
    "run",
    "load_project",
    "stop_on_signals",
    "after_landed",
    "Project",
    "AirbyteManager",
    "SyncResult",
    "StreamResult",
    "IngestError",
    "ConfigError",
    "SyncError",
    "BusyError",
]

_HOMES = {
    "load_project": "config", "Project": "config",
    "AirbyteManager": "sync.runner", "SyncResult": "sync.results", "StreamResult": "sync.results",
    "IngestError": "errors", "ConfigError": "errors", "SyncError": "errors", "BusyError": "errors",
    "stop_on_signals": "stopping",
    "after_landed": "triggers",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at runtime the names load on first use (__getattr__ below)
    from .config import Project, load_project
    from .errors import BusyError, ConfigError, IngestError, SyncError
    from .sync.results import StreamResult, SyncResult
    from .sync.runner import AirbyteManager
    from .stopping import stop_on_signals
    from .triggers import after_landed


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'ingest' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def run(
    block: str,
    *,
    streams: list[str] | None = None,
    config: str | Path | None = None,
    full_refresh: bool = False,
    destination: str | None = None,
    wait: float = 0.0,
    lock_wait: float = 0.0,
    run_pathspec: str | None = None,
    raise_on_failure: bool = True,
) -> "SyncResult":
    """Sync one block of `config` (default: ./connectors.yaml, or $INGEST_CONFIG) — like `ingest run BLOCK`.

    `streams`: a subset of the block's streams (default: all). `destination`: 'duckdb', 'snowflake' or a .duckdb path
    instead of the block's own. `wait`: seconds to queue behind another run holding the same streams (and for the
    DuckDB file). `lock_wait`: seconds to wait only for the DuckDB file, which takes one writer at a time (parallel
    Metaflow tasks of one block take turns), without queueing behind a run of the same streams. `run_pathspec`: the
    Metaflow task running this sync (`current.pathspec`), carried by the events and lineage (default `cli/<run id>`).
    Raises ConfigError for a bad block or config (nothing written), BusyError when another run holds the streams, and
    — unless `raise_on_failure=False` — SyncError when the sync failed (the result, with what landed before the
    failure, is then on the exception's `result`)."""
    from .config import load_project
    from .sync.runner import AirbyteManager

    manager = AirbyteManager(load_project(config), lock_wait=lock_wait)
    result = manager.run(block, streams=list(streams) if streams else None, full_refresh=full_refresh,
                         destination=destination, wait=wait, run_pathspec=run_pathspec)
    if raise_on_failure and not result.ok:
        error = result.error
        error.result = result
        raise error
    return result
