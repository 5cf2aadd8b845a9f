"""The Snowflake destination's SQL text: names, types and statement builders as pure functions (no connection), so
what is sent to Snowflake can be read and tested on its own (tests/test_snowflake_sql.py).

A builder returns `(sql, params, action, where)`: the statement, its qmark parameters, and what it does to which
object — the words a failure is reported in (see session.Session.execute). `where` is the object's qualified name
(`DATABASE.SCHEMA.TABLE`), handed in by the destination that knows the database and schema.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...secrets import REDACTOR
from ..base import (EVENTS_TABLE, LOCKS_TABLE, META_TABLES, RUNS_TABLE, STATE_TABLE, TABLES_TABLE, Dialect, RunRecord,
                    StreamTarget, meta_columns, meta_ddl, q, where_equal)
from ..base import table_comment as _table_comment
from ..typing import BOOLEAN, DATE, DEDUP_SEQ, INTEGER, JSON, NUMBER, STRING, TIMESTAMP, column_name

SQL_TYPES = {
    STRING: "VARCHAR",
    INTEGER: "NUMBER(38,0)",
    NUMBER: "FLOAT",
    BOOLEAN: "BOOLEAN",
    TIMESTAMP: "TIMESTAMP_TZ",
    DATE: "DATE",
    JSON: "VARIANT",
}
# The load table receives Parquet; JSON arrives as text and becomes VARIANT (PARSE_JSON) in the move step.
LOAD_TYPES = {**SQL_TYPES, JSON: "VARCHAR"}
SEQ = DEDUP_SEQ.upper()  # arrival order inside a batch, for dedup ties; only in the load table
STAGE = "_INGEST_STAGE"  # a temporary stage: dies with the session, so a killed run leaves no files behind
STATE = STATE_TABLE.upper()
RUNS = RUNS_TABLE.upper()
TABLES = TABLES_TABLE.upper()
EVENTS = EVENTS_TABLE.upper()
LOCKS = LOCKS_TABLE.upper()

DIALECT = Dialect("snowflake", {"text": "VARCHAR", "bigint": "NUMBER(38,0)", "int": "NUMBER(38,0)",
                                "timestamp": "TIMESTAMP_TZ", "json": "VARIANT", "text_list": "VARIANT"},
                  upper=True, constraints=False)
META_DDL = {table.upper(): meta_ddl(table, DIALECT) for table in META_TABLES}
RUN_COLUMNS = meta_columns(RUNS_TABLE)
LOCK_COLUMNS = meta_columns(LOCKS_TABLE)
EVENT_COLUMNS = meta_columns(EVENTS_TABLE)
META_COMMENTS = {
    STATE: "ingest: last committed Airbyte state per block and stream",
    RUNS: "ingest: one row per sync run",
    TABLES: "ingest: landed tables, their owning team, source and stream",
    EVENTS: "ingest: data landed and data failed events, and their delivery",
    LOCKS: "ingest: one sync per block stream at a time (run locks with a heartbeat)",
}


def sf_name(name: str) -> str:
    """The Snowflake spelling of a table or column name: upper case (what unquoted identifiers resolve to)."""
    return name.upper()


def column(name: str) -> str:
    """A metadata column, quoted as Snowflake stores it (upper case)."""
    return q(name.upper())


def literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def comment_text(text: str) -> str:
    """A table comment never contains quotes or backslashes: fakesnow's server fails on them in a table comment
    even escaped (column comments keep theirs: `literal` escapes them and both Snowflake and fakesnow store them).
    Its length is already bounded (base.table_comment)."""
    return re.sub(r"['\"\\]", "", text)


def table_comment(target: StreamTarget) -> str:
    return comment_text(_table_comment(target))


def column_comment_statements(target: StreamTarget, table: "Table", fields, where: str) -> list[tuple]:
    """`COMMENT ON COLUMN` for each of `fields` (field keys) the stream's schema describes: what the column means,
    where every SQL client and catalog shows it. Issued after CREATE TABLE, after ADD COLUMN, and for an existing
    column whose description changed. (One statement per column: the inline `COMMENT` of CREATE/ADD COLUMN is what
    fakesnow drops, so this is the form both Snowflake and the tests keep.) Quotes are kept: a literal escapes them."""
    return [(f"COMMENT ON COLUMN {q(table.name)}.{q(table.names[f])} IS {literal(target.descriptions[f])}",
             None, "comment on a column of", where) for f in fields if target.descriptions.get(f) and f in table.names]


def load_name(table: str) -> str:
    return f"_INGEST_LOAD_{table}"


def staging_name(table: str) -> str:
    return f"_INGEST_STAGING_{table}"


def ingest_type(data_type: str, scale: Any) -> str:
    t = (data_type or "").upper()
    if t in ("NUMBER", "DECIMAL", "NUMERIC", "INT", "INTEGER", "BIGINT"):
        return INTEGER if not scale else NUMBER
    if t in ("FLOAT", "DOUBLE", "REAL", "FLOAT4", "FLOAT8", "DOUBLE PRECISION"):
        return NUMBER
    if t == "BOOLEAN":
        return BOOLEAN
    if t.startswith("TIMESTAMP"):
        return TIMESTAMP
    if t == "DATE":
        return DATE
    if t in ("VARIANT", "OBJECT", "ARRAY"):
        return JSON
    return STRING


@dataclass
class Table:
    """One physical table: source column name → ingest type, and → Snowflake column name."""

    name: str
    types: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    def assign(self, source: str) -> str:
        """The Snowflake column for a source name; a name that collides (`id` vs `ID`) gets a suffix, the empty name is
        `_` (the scheme of typing.column_name, upper-cased)."""
        if source in self.names:
            return self.names[source]
        taken = set(self.names.values()) | {SEQ}
        name = column_name(sf_name(source), lambda n: n in taken)
        self.names[source] = name
        return name

    def add(self, source: str, ctype: str) -> str:
        name = self.assign(source)
        self.types[source] = ctype
        return name

    def column_map(self) -> dict[str, str]:
        return {sf: src for src, sf in self.names.items()}


# ---------------------------------------------------------------- metadata rows


def select_meta(table: str, columns: list[str], filters: dict[str, Any], order: str | None = None) -> tuple[str, list]:
    where, params = where_equal(filters, column)
    return (f"SELECT {', '.join(column(c) for c in columns)} FROM {q(table)}{where}"
            + (f" ORDER BY {order}" if order else "")), params


def state_statements(target: StreamTarget, state: dict | None, where: str) -> list[tuple]:
    out = [(f'DELETE FROM {q(STATE)} WHERE "BLOCK" = ? AND "STATE_KEY" = ?', [target.block, target.state_key],
            "store the state in", where)]
    if state is not None:
        out.append((
            f'INSERT INTO {q(STATE)} ("BLOCK", "STATE_KEY", "STATE", "RUN_ID", "UPDATED_AT") '
            "SELECT ?, ?, PARSE_JSON(?), ?, CURRENT_TIMESTAMP()",
            [target.block, target.state_key, orjson.dumps(state).decode(), target.run_id],
            "store the state in", where,
        ))
    return out


def table_statements(target: StreamTarget, table: Table, where: str) -> list[tuple]:
    return [
        (f'DELETE FROM {q(TABLES)} WHERE "TABLE_NAME" = ?', [sf_name(target.table)], "record the table in", where),
        (
            f'INSERT INTO {q(TABLES)} ("TABLE_NAME", "BLOCK", "TEAM", "SOURCE", "STREAM", "WRITE_MODE", "PRIMARY_KEY", '
            '"CURSOR_FIELD", "COLUMN_MAP", "UPDATED_AT", "SYNC_MODE", "CONNECTOR", "DESCRIPTION", "DESCRIPTIONS") '
            "SELECT ?, ?, ?, ?, ?, ?, PARSE_JSON(?), ?, PARSE_JSON(?), CURRENT_TIMESTAMP(), ?, ?, ?, PARSE_JSON(?)",
            [sf_name(target.table), target.block, target.team, target.source, target.stream, target.write,
             json.dumps(target.primary_key), target.cursor, json.dumps(table.column_map()), target.sync or None,
             target.connector or None, target.description, json.dumps(target.descriptions)],
            "record the table in", where,
        ),
    ]


def run_statement(run: RunRecord, where: str) -> tuple:
    """Insert or update the run's row (MERGE on RUN_ID)."""
    cols = [c.upper() for c in RUN_COLUMNS]
    exprs = ["?", "?", "?", "PARSE_JSON(?)", "?", "CAST(? AS TIMESTAMP_TZ)", "CAST(? AS TIMESTAMP_TZ)", "?", "?", "?"]
    source = ", ".join(f"{e} AS {q(c)}" for e, c in zip(exprs, cols))
    sql = (
        f"MERGE INTO {q(RUNS)} t USING (SELECT {source}) s ON t.\"RUN_ID\" = s.\"RUN_ID\" "
        f"WHEN MATCHED THEN UPDATE SET {', '.join(f'{q(c)} = s.{q(c)}' for c in cols[1:])} "
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(q(c) for c in cols)}) VALUES ({', '.join(f's.{q(c)}' for c in cols)})"
    )
    params = [run.run_id, run.block, run.team, json.dumps(run.streams), run.destination,
              run.started_at.isoformat(), run.ended_at.isoformat() if run.ended_at else None, run.status, run.rows,
              REDACTOR.redact(run.error) if run.error else None]
    return sql, params, "record the run in", where


def event_statement(event, where: str) -> tuple:
    """Insert the event unless its (idempotency key, name) is already there: DML, so it can join a transaction."""
    cols = ["EVENT_ID", "NAME", "IDEMPOTENCY_KEY", "BLOCK", "STREAM", "TEAM", "RUN_ID", "PAYLOAD", "STATUS", "ATTEMPTS", "CREATED_AT"]
    return (
        f"INSERT INTO {q(EVENTS)} ({', '.join(q(c) for c in cols)}) "
        "SELECT ?, ?, ?, ?, ?, ?, ?, PARSE_JSON(?), ?, 0, CURRENT_TIMESTAMP() "
        f'WHERE NOT EXISTS (SELECT 1 FROM {q(EVENTS)} WHERE "IDEMPOTENCY_KEY" = ? AND "NAME" = ?)',
        [event.event_id, event.name, event.idempotency_key, event.block, event.stream, event.team, event.run_id,
         orjson.dumps(event.payload()).decode(), event.status, event.idempotency_key, event.name],
        "record the event in", where,
    )


def latest_events_sql(per_kind: int) -> str:
    """One windowed query (see Destination.latest_events); the payload as JSON text."""
    return (
        'SELECT "EVENT_ID", "NAME", "BLOCK", "STREAM", TO_JSON("PAYLOAD"), "STATUS", "CREATED_AT", '
        'SUM(IFF("STATUS" = \'pending\', 1, 0)) OVER (PARTITION BY "BLOCK", "STREAM") '
        f'FROM {q(EVENTS)} QUALIFY ROW_NUMBER() OVER (PARTITION BY "BLOCK", "STREAM", SPLIT_PART("NAME", \'.\', 1) '
        f'ORDER BY "CREATED_AT" DESC, "EVENT_ID" DESC) <= {int(per_kind)} ORDER BY "CREATED_AT", "EVENT_ID"'
    )


def lock_insert(holder: dict, streams: list[str], now: str, expires: str) -> tuple[str, list]:
    """The run's lock rows, one per stream, in one INSERT … SELECT."""
    values = " UNION ALL ".join("SELECT ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP_TZ), CAST(? AS TIMESTAMP_TZ)" for _ in streams)
    params = [v for stream in streams for v in (holder["block"], stream, holder["run_id"], holder.get("host"),
                                                holder.get("pid"), now, expires)]
    return f"INSERT INTO {q(LOCKS)} ({', '.join(column(c) for c in LOCK_COLUMNS)}) {values}", params


# ---------------------------------------------------------------- one checkpoint, the end of a stream


def move_statements(target: StreamTarget, table: Table, load: str, sources: list[str], dedup: bool, where: str,
                    without_key: int = 0) -> list[tuple]:
    """Load table → final (or staging) table: INSERT … SELECT, or for dedup DELETE … USING + INSERT … SELECT
    (plus one INSERT … SELECT of the rows without a key value, when the batch has some). `sources`: the batch's
    fields, in order."""
    dest = q(table.name)
    names = [table.names[c] for c in sources]

    def value(source: str, alias: str = "b") -> str:
        col = f"{alias}.{q(table.names[source])}"
        return f"PARSE_JSON({col})" if table.types[source] == JSON else col

    cols = ", ".join(q(n) for n in names)
    exprs = ", ".join(value(c) for c in sources)
    append = (f"INSERT INTO {dest} ({cols}) SELECT {exprs} FROM {q(load)} b", None, "insert into", where)
    if not dedup or any(k not in sources for k in target.primary_key):
        # Without its key field, no record of this batch can be matched: all are appended (rows_without_key).
        return [append]
    pk = [table.names[k] for k in target.primary_key]
    # Records whose key is NULL match nothing: appended as they come, never merged (see base.rows_without_key).
    keyless = " OR ".join(f"b.{q(c)} IS NULL" for c in pk)
    cursor = target.cursor if target.cursor and target.cursor in sources else None
    order = (f"{q(table.names[cursor])} DESC NULLS LAST, " if cursor else "") + f"{q(SEQ)} DESC"
    keyed = f" b WHERE NOT ({keyless})" if without_key else ""
    latest = (f"SELECT * FROM {q(load)}{keyed} QUALIFY ROW_NUMBER() OVER (PARTITION BY {', '.join(q(c) for c in pk)} "
              f"ORDER BY {order}) = 1")
    match = " AND ".join(f"t.{q(table.names[k])} = {value(k)}" for k in target.primary_key)
    # A stored row is replaced unless it is strictly newer than the incoming one (an out-of-order re-read must not
    # roll a row back). The re-delivered boundary record (same cursor) replaces its copy.
    newer = ""
    if cursor:
        t_cur, b_cur = f"t.{q(table.names[cursor])}", value(cursor)
        newer = f" AND ({b_cur} IS NULL OR {t_cur} IS NULL OR {t_cur} <= {b_cur})"
    appended = [(f"INSERT INTO {dest} ({cols}) SELECT {exprs} FROM {q(load)} b WHERE {keyless}", None, "insert into", where)]
    return (appended if without_key else []) + [
        (f"DELETE FROM {dest} AS t USING ({latest}) AS b WHERE {match}{newer}", None, "deduplicate into", where),
        (f"INSERT INTO {dest} ({cols}) SELECT {exprs} FROM ({latest}) AS b "
         f"WHERE NOT EXISTS (SELECT 1 FROM {dest} AS t WHERE {match})", None, "insert into", where),
    ]


def swap_statements(final: str, staging: str, final_exists: bool, comment: str, where: str,
                    swap_with: bool = True) -> list[tuple[str, str, str]]:
    """The statements that put the staged table in place. `swap_with=False` is for an engine that cannot parse
    SWAP WITH (fakesnow): DROP + RENAME, so readers briefly see no table; RENAME also drops the comment there, so
    it is set again. These are the only statements that differ between the two."""
    if not swap_with:
        return [
            (f"DROP TABLE IF EXISTS {q(final)}", "drop", where),
            (f"ALTER TABLE {q(staging)} RENAME TO {q(final)}", "rename the staged table to", where),
            (f"COMMENT ON TABLE {q(final)} IS {literal(comment)}", "comment on", where),
        ]
    if final_exists:
        # Atomic for readers: they see the old table until this statement, the new one after it.
        return [(f"ALTER TABLE {q(staging)} SWAP WITH {q(final)}", "swap the staged table with", where)]
    return [(f"ALTER TABLE {q(staging)} RENAME TO {q(final)}", "rename the staged table to", where)]
