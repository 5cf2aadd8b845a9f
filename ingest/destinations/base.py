"""The destination protocol every warehouse implements (DuckDB locally, Snowflake in production).

The sync loop calls, per stream: `start_stream` once, `write` for every checkpoint (records and the state that
follows them, committed in ONE transaction), and `finish_stream` at the end (atomic swap for replace).
State is only ever written by `write`/`finish_stream`, together with or after the data that precedes it:
that is how "state never runs ahead of data" holds for every destination.

What every destination shares lives here once: the metadata tables (`_ingest_state`, `_ingest_runs`, …) as one
column list rendered per dialect (`meta_ddl`), identifier quoting, the equality filters of metadata listings, the
columns a next batch may bring, and the rules about locks and dead runs. Opening one: destinations/__init__.py.
"""
from __future__ import annotations

import abc
import datetime as dt
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa

from .typing import META_COLUMNS

STATE_TABLE = "_ingest_state"
EVENTS_TABLE = "_ingest_events"
LOCKS_TABLE = "_ingest_locks"
RUNS_TABLE = "_ingest_runs"
TABLES_TABLE = "_ingest_tables"


# ---------------------------------------------------------------- the metadata tables, one definition


@dataclass(frozen=True)
class MetaColumn:
    name: str
    kind: str  # text | bigint | int | timestamp | json | text_list (see Dialect.types)
    not_null: bool = False
    default: str | None = None
    only: str | None = None  # the one dialect that has this column


@dataclass(frozen=True)
class Dialect:
    """How one warehouse spells the metadata tables: its types, its identifier case, and whether it declares
    primary keys and defaults (DuckDB enforces them; Snowflake would not, so it never had them)."""

    name: str
    types: dict[str, str]
    upper: bool = False
    constraints: bool = True

    def column(self, name: str) -> str:
        return q(name.upper() if self.upper else name)


META_TABLES: dict[str, tuple[list[MetaColumn], tuple[str, ...]]] = {  # table -> (columns, primary key)
    STATE_TABLE: ([
        MetaColumn("block", "text", True), MetaColumn("state_key", "text", True), MetaColumn("state", "json", True),
        MetaColumn("run_id", "text"), MetaColumn("updated_at", "timestamp", True),
    ], ("block", "state_key")),
    RUNS_TABLE: ([
        MetaColumn("run_id", "text", True), MetaColumn("block", "text", True), MetaColumn("team", "text"),
        MetaColumn("streams", "text_list"), MetaColumn("destination", "text"), MetaColumn("started_at", "timestamp", True),
        MetaColumn("ended_at", "timestamp"), MetaColumn("status", "text", True), MetaColumn("rows", "bigint"),
        MetaColumn("error", "text"),
    ], ("run_id",)),
    # One row per landed table: what `ingest describe` and lineage read. `column_map`: column → the source field it
    # holds (a field renamed on landing, `Color_2` for `Color`, keeps its column on every later run); `descriptions`:
    # field → what it means (from the stream's schema; also each column's comment). Columns added after the first
    # release of this table are appended to older tables when a writer opens them (see meta_missing_columns).
    TABLES_TABLE: ([
        MetaColumn("table_name", "text", True), MetaColumn("block", "text", True), MetaColumn("team", "text", True),
        MetaColumn("source", "text"), MetaColumn("stream", "text", True), MetaColumn("write_mode", "text"),
        MetaColumn("primary_key", "text_list"), MetaColumn("cursor_field", "text"),
        MetaColumn("column_map", "json"), MetaColumn("updated_at", "timestamp", True),
        MetaColumn("sync_mode", "text"), MetaColumn("connector", "text"), MetaColumn("description", "text"),
        MetaColumn("descriptions", "json"),
    ], ("table_name",)),
    EVENTS_TABLE: ([
        MetaColumn("event_id", "text", True), MetaColumn("name", "text", True), MetaColumn("idempotency_key", "text", True),
        MetaColumn("block", "text", True), MetaColumn("stream", "text"), MetaColumn("team", "text"),
        MetaColumn("run_id", "text"), MetaColumn("payload", "json", True), MetaColumn("status", "text", True),
        MetaColumn("attempts", "int", True, default="0"), MetaColumn("last_error", "text"),
        MetaColumn("created_at", "timestamp", True), MetaColumn("published_at", "timestamp"),
    ], ()),
    LOCKS_TABLE: ([
        MetaColumn("block", "text", True), MetaColumn("stream", "text", True), MetaColumn("run_id", "text", True),
        MetaColumn("host", "text"), MetaColumn("pid", "int"), MetaColumn("started_at", "timestamp", True),
        MetaColumn("expires_at", "timestamp", True),
    ], ()),
}


def meta_columns(table: str, dialect: str | None = None) -> list[str]:
    """A metadata table's column names (lower case), in table order; with `dialect`, only those it has."""
    return [c.name for c in META_TABLES[table][0] if c.only in (None, dialect)]


def meta_missing_columns(table: str, dialect: Dialect, existing: set[str]) -> list[str]:
    """`<column> <type>` of the columns an existing metadata table lacks (it was created by an older release);
    `existing`: its column names, any case. Added without NOT NULL or defaults (older rows have no value)."""
    have = {name.lower() for name in existing}
    return [f"{dialect.column(c.name)} {dialect.types[c.kind]}" for c in META_TABLES[table][0]
            if c.only in (None, dialect.name) and c.name not in have]


def meta_ddl(table: str, dialect: Dialect) -> str:
    """`(<column> <type> [NOT NULL] [DEFAULT …], … [, PRIMARY KEY (…)])` of a metadata table in this dialect."""
    columns, key = META_TABLES[table]
    parts = []
    for c in columns:
        if c.only not in (None, dialect.name):
            continue
        not_null = " NOT NULL" if c.not_null or (dialect.constraints and c.name in key) else ""
        default = f" DEFAULT {c.default}" if c.default is not None and dialect.constraints else ""
        parts.append(f"{dialect.column(c.name)} {dialect.types[c.kind]}{not_null}{default}")
    if key and dialect.constraints:
        parts.append(f"PRIMARY KEY ({', '.join(dialect.column(k) for k in key)})")
    return "(" + ", ".join(parts) + ")"


def q(identifier: str) -> str:
    """Quote an identifier (names come from third-party schemas)."""
    return '"' + identifier.replace('"', '""') + '"'


def where_equal(filters: dict[str, Any], column: Callable[[str], str] = str) -> tuple[str, list]:
    """` WHERE a = ? AND b = ?` for the filters that are set (None means "any"), and its parameters; "" and [] when
    none is. `column` spells a column name in the warehouse's dialect. Every metadata listing filters this way."""
    used = [(name, value) for name, value in filters.items() if value is not None]
    if not used:
        return "", []
    return " WHERE " + " AND ".join(f"{column(name)} = ?" for name, _ in used), [value for _, value in used]


def next_batch_columns(target: "StreamTarget", existing: dict[str, str]) -> dict[str, str]:
    """`Destination.table_columns` from the columns the table has (field → ingest type, ours included): new schema
    fields become columns at the next write; existing columns keep their type."""
    return {**{c: t for c, t in target.columns.items() if c not in existing},
            **{c: t for c, t in existing.items() if c not in META_COLUMNS}}


def lock_is_stale(row: dict, now: dt.datetime) -> bool:
    """A lock is dead when it expired (its holder stopped heart-beating) or its holder process is gone from this
    host (a SIGKILLed run must not block the next one until the TTL). Every destination applies this rule."""
    expires = row.get("expires_at")
    if isinstance(expires, dt.datetime) and (expires if expires.tzinfo else expires.replace(tzinfo=dt.timezone.utc)) < now:
        return True
    if row.get("host") == socket.gethostname() and row.get("pid"):
        try:
            os.kill(int(row["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


@dataclass(frozen=True)
class DestinationIdentity:
    """Where a destination's tables live, as data (lineage names datasets from it; nobody parses `describe()`).

    `namespace` is the OpenLineage dataset namespace (`duckdb:///abs/path.duckdb`, `snowflake://<account>`);
    `dataset(table)` is the OpenLineage dataset name of one of its tables."""

    kind: str  # "duckdb" | "snowflake"
    namespace: str
    database: str | None = None
    schema: str | None = None

    def dataset(self, table: str) -> str:
        """`{database}.{schema}.{table}`, the way OpenLineage's own integrations name a warehouse table (dbt's
        `extract_dataset_data`; Snowflake's in Snowflake's upper-case spelling), so a dbt model that reads one of
        our tables links to the dataset we wrote."""
        name = f"{self.database}.{self.schema}.{table}"
        return name.upper() if self.kind == "snowflake" else name


@dataclass
class TableFacts:
    """What a destination holds about one landed table, for `ingest describe`: its catalog (columns with their SQL
    type and comment, the table comment), its row count, how many rows kept a rejected value per field (the keys of
    `_ingest_rejected`), and its `_ingest_tables` row (lower-case keys, JSON values parsed; {} when there is none)."""

    table: str  # as the warehouse spells it
    comment: str | None
    columns: list[dict]  # {"column", "type", "comment"}, in table order
    rows: int
    rejected: dict[str, int]  # field key → rows whose _ingest_rejected holds a value of it
    record: dict


def parsed_json(value, default):
    """A JSON column's value as Python (warehouses hand JSON back as text or already parsed); `default` when it is
    missing or not of the default's type."""
    import orjson

    if isinstance(value, (str, bytes)):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return default
    return value if isinstance(value, type(default)) else default


KILLED = "killed"  # a run that stopped without cleanup (SIGKILL, out of memory, a lost node)


def _aware(when):
    return when if not isinstance(when, dt.datetime) or when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def why_run_is_dead(run: dict, locks: list[dict], now: dt.datetime) -> str | None:
    """Why a run recorded as `running` can no longer be running, or None while it may be.

    A run takes its stream locks before it records itself as running and records its end before it releases them,
    so a `running` row is alive only while one of its locks is: every lock of it stale (heartbeat expired, or its
    process gone from this host), or none left at all (a later run took them over), means it died without cleanup.
    `locks` are the lock rows of the run's block. Every destination and `ingest status` apply this one rule."""
    mine = [lock for lock in locks if lock.get("run_id") == run.get("run_id")]
    if not mine:
        return "it holds no run lock any more (it stopped without recording its end; a later run took its locks over)"
    if any(not lock_is_stale(lock, now) for lock in mine):
        return None
    lock = mine[0]
    expires = _aware(lock.get("expires_at"))
    if isinstance(expires, dt.datetime) and expires < now:
        return (f"its lock heartbeat stopped (host {lock.get('host')}, pid {lock.get('pid')}; lock expired "
                f"{expires:%Y-%m-%d %H:%M:%S %Z})")
    return f"its process (pid {lock.get('pid')}) is gone from this host {lock.get('host')}"


@dataclass
class StreamTarget:
    """Everything a destination needs to know to land one stream of one run."""

    block: str
    team: str
    source: str
    stream: str
    table: str
    write: str  # append | dedup | replace
    primary_key: list[str] | None
    cursor: str | None
    columns: dict[str, str]  # column name → ingest column type (from the stream's JSON schema)
    run_id: str
    load_id: str
    full_refresh: bool = False  # build into a staging table and swap atomically at the end
    sync: str = ""  # the source side: incremental | full_refresh
    connector: str = ""  # the release that produced the rows: `airbyte-source-jira==4.0.0`, `puller:truck_pricing`
    description: str | None = None  # what the stream is (its schema's description, else the block's)
    descriptions: dict[str, str] = field(default_factory=dict)  # field key → what it means (the stream's schema)
    rows_written: int = 0
    rows_without_key: int = 0  # dedup: rows with a NULL or missing primary key value, appended (see rows_without_key)
    schema_changes: list[str] = field(default_factory=list)

    @property
    def staged(self) -> bool:
        return self.write == "replace" or self.full_refresh

    @property
    def state_key(self) -> str:
        return self.stream


def table_comment(target: StreamTarget) -> str:
    """The comment on every landed table, the same on every destination: what it is, then who owns it and where it
    comes from (the question a reader of the warehouse asks first), in one line a catalog UI shows whole."""
    from .descriptions import DESCRIPTION_MAX

    owner = (f"ingest: team={target.team}; block={target.block}; source={target.source}; stream={target.stream}; "
             f"write={target.write}")
    room = DESCRIPTION_MAX - len(owner) - len(" | ")  # a long description is shortened, never the owner part
    about = target.description or ""
    if len(about) > room:
        about = about[:max(room - 1, 0)] + "…"
    return f"{about} | {owner}" if about else owner


def rows_without_key(batch: pa.Table, primary_key: list[str]) -> int:
    """Rows of a dedup batch that have no key: a primary key field NULL or absent. Every destination appends them
    as they are instead of merging (NULL equals nothing, so merging would collapse them into one row or duplicate
    them on a rerun); the run summary and the DataLanded event count them as `rows_without_key`."""
    import pyarrow.compute as pc

    if any(k not in batch.column_names for k in primary_key):
        return batch.num_rows
    missing = None
    for k in primary_key:
        null = pc.is_null(batch.column(k))
        missing = null if missing is None else pc.or_(missing, null)
    return int(pc.sum(missing).as_py() or 0)


@dataclass
class RunRecord:
    run_id: str
    block: str
    team: str
    streams: list[str]
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    status: str = "running"  # running | succeeded | failed | killed
    rows: int = 0
    error: str | None = None
    destination: str = ""


class Destination(abc.ABC):
    """A warehouse we land data in. One instance per sync; not shared between threads."""

    name: str = "?"

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the data goes, for humans (no secrets)."""

    @property
    @abc.abstractmethod
    def identity(self) -> DestinationIdentity:
        """Where the data goes, as data (for lineage)."""

    @abc.abstractmethod
    def read_state(self, block: str) -> dict[str, dict]:
        """State key (stream name, or '__global__') → the stored Airbyte state message as a dict."""

    @abc.abstractmethod
    def reset_state(self, block: str, streams: list[str] | None = None) -> int:
        """Forget state for a block (or some streams); returns how many entries were removed."""

    @abc.abstractmethod
    def start_stream(self, target: StreamTarget) -> None:
        """Create the table (or the staging table for a staged load) and remember its columns."""

    @abc.abstractmethod
    def table_columns(self, target: StreamTarget) -> dict[str, str]:
        """Columns of the table the next batch goes into (name → ingest type)."""

    @abc.abstractmethod
    def write(self, target: StreamTarget, batch: pa.Table | None, new_columns: dict[str, str], state: dict | None) -> None:
        """One checkpoint: add new columns, land the batch per write mode and store `state`, in one transaction.
        For a staged load the state is held back until `finish_stream`."""

    @abc.abstractmethod
    def finish_stream(self, target: StreamTarget, state: dict | None, event=None) -> None:
        """End of a stream, one transaction: for a staged load swap the staging table in; store the final state;
        and write the stream's DataLanded `event` (ingest.events.Event) to the ledger with that commit."""

    # -- run locks: one sync per (block, stream) at a time, across processes and hosts

    @abc.abstractmethod
    def acquire_locks(self, holder: dict, streams: list[str], ttl: float) -> list[dict]:
        """Take the locks for these streams of holder['block'] atomically, unless live locks exist: then take
        nothing and return them (block, stream, run_id, host, pid, started_at, expires_at). Expired locks and locks
        of dead processes on this host are taken over."""

    @abc.abstractmethod
    def refresh_locks(self, run_id: str, ttl: float) -> None:
        """Heartbeat: extend this run's locks (called from another thread; must use its own cursor)."""

    @abc.abstractmethod
    def release_locks(self, run_id: str) -> None:
        """Drop this run's locks."""

    def list_locks(self, block: str | None = None) -> list[dict]:
        """Lock rows (block, stream, run_id, host, pid, started_at, expires_at), of one block or all."""
        raise NotImplementedError

    def mark_run_killed(self, run_id: str, ended_at: dt.datetime, error: str) -> bool:
        """Record a dead run as `killed`, only if it is still recorded as `running` (a run that recorded its own end
        meanwhile keeps it). True when this call changed it: only then is its data_failed event owed."""
        raise NotImplementedError

    def list_runs(self, block: str | None = None, status: str | None = None) -> list[dict]:
        """_ingest_runs rows (run_id, block, team, streams (list), destination, started_at, ended_at, status, rows,
        error), oldest first."""
        raise NotImplementedError

    # -- the events ledger (see ingest/events.py)

    @abc.abstractmethod
    def record_event(self, event) -> None:
        """Write one event to the ledger on its own (e.g. data_failed), unless its idempotency key is there."""

    @abc.abstractmethod
    def list_events(self, block: str | None = None, status: str | None = None, run_id: str | None = None,
                    limit: int | None = None) -> list[dict]:
        """Ledger rows, oldest first: event_id, name, idempotency_key, block, stream, team, run_id, payload (dict),
        status, attempts, last_error, created_at, published_at."""

    def latest_events(self, per_kind: int) -> list[dict]:
        """For `ingest status`: per (block, stream, kind) the newest `per_kind` ledger rows (event_id, name, block,
        stream, payload — a dict, or JSON text that may not parse —, status, created_at) plus `pending`, that
        stream's count of pending events; oldest first. One query for every block: status must not read whole
        histories. This fallback reads them; destinations override it with a windowed query."""
        from ..events import event_kind

        rows = self.list_events()
        pending: dict = {}
        for row in rows:
            key = (row.get("block"), row.get("stream"))
            pending[key] = pending.get(key, 0) + (row.get("status") == "pending")
        kept, seen = [], {}
        for row in reversed(rows):
            key = (row.get("block"), row.get("stream"), event_kind(row.get("name")))
            seen[key] = seen.get(key, 0) + 1
            if seen[key] <= per_kind:
                kept.append({**row, "pending": pending[key[:2]]})
        return kept[::-1]

    @abc.abstractmethod
    def mark_event(self, event_id: str, status: str, error: str | None) -> None:
        """Record a publish attempt."""

    def abort_stream(self, target: StreamTarget) -> None:  # noqa: B027 - optional
        """The sync failed: discard a staged load (the previous table and state stay as they were)."""

    def table_facts(self, table: str) -> TableFacts | None:
        """The catalog facts of a landed table (any case of its name), or None when there is no such table."""
        raise NotImplementedError

    def landed_tables(self) -> list[dict]:
        """The `_ingest_tables` rows (table_name, block, stream, team, …), for finding a table by name."""
        raise NotImplementedError

    @abc.abstractmethod
    def record_run(self, run: RunRecord) -> None:
        """Insert or update the run's row in _ingest_runs."""

    @abc.abstractmethod
    def query(self, sql: str, params: list | None = None) -> list[dict]:
        """Run a read-only query on a separate cursor (pullers read their inputs, e.g. shipments, this way)."""

    def yield_to_readers(self) -> bool:  # noqa: B027 - optional
        """Between commits (writer thread): let waiting read commands in if the warehouse needs that (DuckDB)."""
        return False

    def close(self) -> None:  # noqa: B027 - optional
        pass

    # -- opening (see destinations/__init__.py: open_destination)

    @classmethod
    def from_project(cls, project, block=None, *, path: str | None = None, run_id: str | None = None,
                     read_only: bool = False, lock_wait: float = 0.0) -> "Destination":
        """Open the destination the project configures for `block`; `path` is where destination_choice put a file
        destination. Problems opening it are IngestErrors (ConfigError, BusyError, SyncError) worded for the user."""
        raise NotImplementedError

    def __enter__(self) -> "Destination":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
