"""`ingest describe <table | block.stream>`: who owns a table, where it came from, what it means — from the warehouse.

Everything shown is read from the destination the table lives in: its catalog (columns, types, the column and table
comments ingest writes), `_ingest_tables` (owner, block, connector release, modes, key, cursor, which field each
column holds, what each field means), the events ledger (recent loads, the last cursor, failures) and the table
itself (row count, values rejected into `_ingest_rejected` per field). connectors.yaml only says which destination
to open and the block's freshness expectation; a table whose block was removed from the config is still described
from the warehouse. It opens the destination read-only, like `ingest status`: on DuckDB it takes its turn while a run
writes the file (see DuckDBDestination.yield_to_readers).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

from .config import ConfigError, Project
from .events import DATA_LANDED, event_kind

RECENT_LOADS = 10


@dataclass
class ColumnDescription:
    column: str
    type: str
    field: str  # the source field the column holds (differs from the column when renamed, or upper-cased)
    description: str | None
    rejected: int  # rows whose value of this field did not fit the column (kept in _ingest_rejected)


@dataclass
class TableDescription:
    table: str
    destination: str
    lineage_dataset: str  # `<namespace> <name>`, as OpenLineage events name it
    block: str | None
    stream: str | None
    team: str | None
    connector: str | None
    source: str | None
    sync_mode: str | None
    write_mode: str | None
    primary_key: list[str] | None
    cursor_field: str | None
    description: str | None
    table_comment: str | None
    rows: int
    status: str | None  # as `ingest status` says it (fresh, late, failing, never loaded, ok)
    freshness: str | None
    last_load_at: str | None
    last_cursor: str | None
    last_failure: str | None
    in_config: bool  # False: the table's block is no longer in connectors.yaml (described from the warehouse alone)
    recent_loads: list[dict] = field(default_factory=list)  # newest first: landed_at, run_id, rows, rows_without_key
    columns: list[ColumnDescription] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def describe(project: Project, name: str, destination: str | None = None, wait: float = 30.0) -> TableDescription:
    """Describe a table (by its name, any case) or a block's stream (`jira.issues`). ConfigError when neither
    names anything: the message lists what does."""
    from .destinations import open_for_reading

    block, stream, table = _resolve(project, name)
    dest = open_for_reading(project, block, destination, wait)
    if dest is None:
        raise ConfigError(f"{name}: nothing has landed yet (no warehouse file for {block.name if block else 'the project'})")
    with dest:
        facts = dest.table_facts(table) if table else None
        if facts is None:
            facts = _by_recorded_name(dest, name)
        if facts is None:
            raise ConfigError(_not_found(project, dest, name, table))
        record = facts.record
        if block is None and record.get("block") in project.blocks:
            block = project.blocks[record["block"]]
        events = dest.latest_events(RECENT_LOADS)
        return _assemble(project, dest, facts, block, stream or record.get("stream"), events)


def _resolve(project: Project, name: str):
    """(block, stream name, table name) from `block.stream` or a table name in the config; (None, None, name) when
    the config does not know it (the warehouse may: a block since removed)."""
    head, dot, tail = name.partition(".")
    if dot and head in project.blocks:
        block = project.blocks[head]
        streams = {s.name: s for s in block.streams}
        if tail not in streams:
            raise ConfigError(f"{name}: block {head!r} has no stream {tail!r} (streams: {', '.join(sorted(streams))})")
        return block, tail, streams[tail].table
    for block in project.blocks.values():
        for s in block.streams:
            if s.table.lower() == name.lower():
                return block, s.name, s.table
    return None, None, name


def _by_recorded_name(dest, name: str):
    """A table `_ingest_tables` knows under that name or as `block.stream` (its block may be gone from the config)."""
    for row in dest.landed_tables():
        if name.lower() in (str(row.get("table_name")).lower(), f"{row.get('block')}.{row.get('stream')}".lower()):
            return dest.table_facts(row["table_name"])
    return None


def _not_found(project: Project, dest, name: str, table: str | None) -> str:
    known = sorted({str(r.get("table_name")) for r in dest.landed_tables()})
    if table and table.lower() != name.lower():
        return f"{name}: its table {table} has not landed in {dest.describe()} yet (run the block first)"
    streams = sorted(f"{b.name}.{s.name}" for b in project.blocks.values() for s in b.streams)
    return (f"{name}: no landed table or block.stream of that name in {dest.describe()} "
            f"(landed tables: {', '.join(known) or 'none'}; streams: {', '.join(streams[:20]) or 'none'})")


def _assemble(project, dest, facts, block, stream: str | None, events: list[dict]) -> TableDescription:
    record = facts.record
    block_name = block.name if block else record.get("block")
    from .lineage.naming import destination_dataset

    namespace, dataset, _ = destination_dataset(dest.identity, facts.table)
    mine = [e for e in events if e.get("block") == block_name and e.get("stream") == stream]
    status = _status(block, block_name, stream, facts.table, dest.describe(), mine)
    return TableDescription(
        table=facts.table, destination=dest.describe(), lineage_dataset=f"{namespace} {dataset}",
        block=block_name, stream=stream, team=record.get("team") or (block.team if block else None),
        connector=record.get("connector"), source=record.get("source"), sync_mode=record.get("sync_mode"),
        write_mode=record.get("write_mode"), primary_key=_as_list(record.get("primary_key")),
        cursor_field=record.get("cursor_field"), description=record.get("description"), table_comment=facts.comment,
        rows=facts.rows, status=status.status if status else None, freshness=status.freshness if status else None,
        last_load_at=status.last_load_at if status else None, last_cursor=status.cursor if status else None,
        last_failure=_failure(status), in_config=block is not None, recent_loads=_recent_loads(mine),
        columns=_columns(facts),
    )


def _status(block, block_name, stream, table, where, rows):
    """The stream's status the way `ingest status` computes it, from its ledger rows already read (no freshness
    expectation for a block no longer in the config)."""
    from .status import NEVER, StreamStatus, stream_status_from_ledger

    if not block_name or not stream:
        return None
    known = StreamStatus(block=block_name, stream=stream, team=block.team if block else None, table=table,
                         destination=where, status=NEVER, freshness=block.spec.freshness if block else None)
    return stream_status_from_ledger(known, rows, dt.datetime.now(dt.timezone.utc), RECENT_LOADS)


def _failure(status) -> str | None:
    if status is None or not status.last_failure_at:
        return None
    return f"{status.last_failure_at} {status.failure_class}: {status.failure_message}"


def _recent_loads(rows: list[dict]) -> list[dict]:
    from .status import Unreadable, readable_payload

    out = []
    for row in rows:
        if event_kind(row.get("name")) != DATA_LANDED:
            continue
        try:
            p = readable_payload(row, DATA_LANDED)
        except Unreadable:
            continue
        out.append({"landed_at": p["landed_at"], "run_id": p.get("run_id"), "rows": p.get("rows"),
                    "rows_without_key": p.get("rows_without_key")})
    return sorted(out, key=lambda load: load["landed_at"], reverse=True)[:RECENT_LOADS]


def _columns(facts) -> list[ColumnDescription]:
    """Each column with the field it holds, what it means (its comment; else what _ingest_tables recorded for the
    field) and how many rows kept a rejected value of that field."""
    column_map = facts.record.get("column_map") or {}
    described = facts.record.get("descriptions") or {}
    out = []
    for c in facts.columns:
        field_name = column_map.get(c["column"]) or _field_of(c["column"], described)
        out.append(ColumnDescription(column=c["column"], type=c["type"], field=field_name,
                                     description=c["comment"] or described.get(field_name),
                                     rejected=int(facts.rejected.get(field_name, 0))))
    return out


def _field_of(column: str, described: dict) -> str:
    """A column no column_map names (a table from before column maps): its field is its name, or the described
    field it upper-cases to (Snowflake)."""
    return next((f for f in described if f.upper() == column and f != column), column) if column.isupper() else column


def _as_list(value) -> list[str] | None:
    if value is None or value == []:
        return None
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


__all__ = ["ColumnDescription", "TableDescription", "describe"]
