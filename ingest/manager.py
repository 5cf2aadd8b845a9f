"""Which destination a run or a read command opens, and opening it. (The sync itself lives in `ingest.sync`.)"""
from __future__ import annotations

import re

from .config import Block, ConfigError, Project, redirected_table_problems
from .destinations.base import Destination
from .errors import BusyError, SyncError


def destination_choice(project: Project, block: Block | None, override: str | None = None) -> tuple[str, str]:
    """Which destination a run writes to: ('duckdb', path) or ('snowflake', ''). `override` is the CLI's
    --destination: 'duckdb', 'snowflake', or a path to a .duckdb file. Checked before anything is opened."""
    kind = block.destination_type if block else project.defaults.destination
    path = str(project.duckdb_path(block))
    if override:
        if override in ("duckdb", "snowflake"):
            kind = override
        elif override.startswith("duckdb:") or override.endswith((".duckdb", ".db")):
            kind, path = "duckdb", override.removeprefix("duckdb:")
        else:
            raise ConfigError(f"--destination: expected 'duckdb', 'snowflake' or a path to a .duckdb file, got {override!r}")
    return kind, path


def make_destination(project: Project, block: Block | None, override: str | None = None, lock_wait: float = 0.0,
                     run_id: str | None = None, read_only: bool = False) -> Destination:
    """`read_only`: for read commands (status, state show, events list): creates and writes nothing — a DuckDB
    file that does not exist is a FileNotFoundError — and waits up to `lock_wait` s for a turn while a run writes."""
    kind, path = destination_choice(project, block, override)
    if override and block is not None and not read_only:
        if problems := redirected_table_problems(project, block, kind, path):
            raise ConfigError(problems)
    if kind == "duckdb":
        from .destinations.duckdb import DuckDBDestination

        try:
            return DuckDBDestination(path, lock_wait=lock_wait, read_only=read_only, threads=project.defaults.duckdb.threads)
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. the file is locked by another run
            import duckdb

            if isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower():
                raise BusyError(_busy_message(path, str(exc), read_only, lock_wait)) from None
            raise SyncError(f"cannot open DuckDB file {path}: {exc}") from None
    from .destinations.snowflake import SnowflakeDestination

    return SnowflakeDestination.from_project(project, block, run_id=run_id, read_only=read_only)


def _busy_message(path: str, error: str, read_only: bool, waited: float) -> str:
    pid = re.search(r"PID (\d+)", error)
    holder = f"another process{f' (pid {pid.group(1)})' if pid else ''}"
    if read_only:
        return (f"{path} is in use by {holder}, which did not let readers in within {waited:g}s (an ingest run lets "
                f"them in between its commits; another program holding the file may not). Retry later, or pass "
                f"--wait SECONDS to wait longer.")
    return (f"{path} is in use by {holder}: DuckDB allows one writer at a time. Retry later, or pass --wait SECONDS "
            f"to queue behind it.")


def open_for_reading(project: Project, block: Block | None, override: str | None = None,
                     wait: float = 30.0) -> Destination | None:
    """A destination for a read command, or None when its DuckDB file does not exist yet (nothing synced there).
    A --destination path that does not exist is a usage error: reading never creates a file."""
    try:
        return make_destination(project, block, override, lock_wait=wait, read_only=True)
    except FileNotFoundError as exc:
        if override and override not in ("duckdb", "snowflake"):  # a path the user typed: say it is wrong
            raise ConfigError(f"--destination: no DuckDB file at {exc} (read commands never create one)") from None
        return None
