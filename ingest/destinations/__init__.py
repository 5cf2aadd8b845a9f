"""Destinations: the warehouses a block lands in (DuckDB locally, Snowflake in production), chosen and opened here.

`DESTINATIONS` maps a kind to its class the way `sources/pullers`' PULLERS does, imported only when that kind is
opened: a DuckDB run never imports the Snowflake connector. `destination_choice` decides which warehouse (the
block's `destination:`, the project default, the CLI's --destination); `open_destination` opens it, and every
destination is a context manager (`with open_destination(...) as dest:` closes it); `open_for_reading` is the
read-only variant the read commands (status, state show, events list) use.

Nothing here is imported by `ingest.config`: the choice reads the project, the project knows nothing of this package.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import Block, Project
    from .base import Destination

DESTINATIONS: dict[str, str] = {  # kind -> "module:Class"
    "duckdb": "ingest.destinations.duckdb:DuckDBDestination",
    "snowflake": "ingest.destinations.snowflake.destination:SnowflakeDestination",
}


def destination_class(kind: str) -> type[Destination]:
    module_name, _, class_name = DESTINATIONS[kind].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def destination_choice(project: Project, block: Block | None, override: str | None = None) -> tuple[str, str]:
    """Which destination a run writes to: ('duckdb', path) or ('snowflake', ''). `override` is the CLI's
    --destination: 'duckdb', 'snowflake', or a path to a .duckdb file. Checked before anything is opened."""
    kind = block.destination_type if block else project.defaults.destination
    path = str(project.duckdb_path(block))
    if override:
        if override in DESTINATIONS:
            kind = override
        elif override.startswith("duckdb:") or override.endswith((".duckdb", ".db")):
            kind, path = "duckdb", override.removeprefix("duckdb:")
        else:
            raise ConfigError(f"--destination: expected 'duckdb', 'snowflake' or a path to a .duckdb file, got {override!r}")
    return kind, path


def open_destination(project: Project, block: Block | None, override: str | None = None, *, lock_wait: float = 0.0,
                     run_id: str | None = None, read_only: bool = False) -> Destination:
    """The block's destination (or the project default's, without a block), open; use it as a context manager.
    `read_only`: for read commands (status, state show, events list): creates and writes nothing — a DuckDB
    file that does not exist is a FileNotFoundError — and waits up to `lock_wait` s for a turn while a run writes."""
    kind, path = destination_choice(project, block, override)
    if override and block is not None and not read_only:
        from ..config import redirected_table_problems

        if problems := redirected_table_problems(project, block, kind, path):
            raise ConfigError(problems)
    return destination_class(kind).from_project(project, block, path=path, run_id=run_id, read_only=read_only,
                                                lock_wait=lock_wait)


def open_for_reading(project: Project, block: Block | None, override: str | None = None,
                     wait: float = 30.0) -> Destination | None:
    """A destination for a read command, or None when its DuckDB file does not exist yet (nothing synced there).
    A --destination path that does not exist is a usage error: reading never creates a file."""
    try:
        return open_destination(project, block, override, lock_wait=wait, read_only=True)
    except FileNotFoundError as exc:
        if override and override not in DESTINATIONS:  # a path the user typed: say it is wrong
            raise ConfigError(f"--destination: no DuckDB file at {exc} (read commands never create one)") from None
        return None
