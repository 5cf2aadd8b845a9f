"""DuckDB destination: the embedded default (one file, no credentials).

Every checkpoint is one DuckDB transaction: ALTER TABLE for new columns, the batch (append / dedup), and the
state row. DuckDB's WAL makes that commit atomic even under SIGKILL, so state is never ahead of data.
Replace loads build `_ingest_staging_<table>` and swap it in (DROP + RENAME + state) in one transaction at the end:
readers see the old table until the new one is complete.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from pathlib import Path

import duckdb
import pyarrow as pa

from ..errors import BusyError, SyncError
from .base import (STATE_TABLE, TABLES_TABLE, Destination, DestinationIdentity, StreamTarget, TableFacts,
                   next_batch_columns, parsed_json, q, rows_without_key, table_comment)
from .duckdb_ledger import DuckDBLedger
from .duckdb_file import READER_TURN_REOPEN_S, ReaderTurns, busy_message, connect, is_busy
from .typing import (BOOLEAN, DATE, DEDUP_SEQ, INTEGER, JSON, META_COLUMNS, META_REJECTED, NUMBER, STRING, TIMESTAMP,
                     column_name)

log = logging.getLogger("ingest.duckdb")

SQL_TYPES = {STRING: "VARCHAR", INTEGER: "BIGINT", NUMBER: "DOUBLE", BOOLEAN: "BOOLEAN", TIMESTAMP: "TIMESTAMPTZ",
             DATE: "DATE", JSON: "JSON"}
# What duckdb_columns() reports for them (TIMESTAMPTZ is an alias)
_FROM_SQL = {**{sql: ctype for ctype, sql in SQL_TYPES.items()}, "TIMESTAMP WITH TIME ZONE": TIMESTAMP}
SEQ = DEDUP_SEQ
# Which field each column holds is recorded in _ingest_tables.column_map (a column whose name is not its field's,
# `Color_2` for `Color` beside `color`, keeps it on every later run: DuckDB compares names case-insensitively).
# Files written before that kept it in the renamed column's comment, with this prefix; it is still read.
FIELD_COMMENT = "ingest field: "
# The catalog of this database's tables: one table's columns (name, type, comment) in order, and a table's comment
# (its name in any case: DuckDB's names are case-insensitive). The writer and `ingest describe` read the same.
_COLUMNS_SQL = ("SELECT column_name, data_type, comment FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = current_schema() AND table_name = ? ORDER BY column_index")
_TABLE_SQL = ("SELECT table_name, comment FROM duckdb_tables() WHERE database_name = current_database() "
              "AND schema_name = current_schema() AND lower(table_name) = lower(?)")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _keys_unique(batch: pa.Table, key_columns: list[str]) -> bool:
    """Whether no primary key value repeats within the batch (its key columns hold no NULL here)."""
    if len(key_columns) == 1:
        import pyarrow.compute as pc

        return pc.count_distinct(batch.column(key_columns[0])).as_py() == batch.num_rows
    return batch.select(key_columns).group_by(key_columns).aggregate([]).num_rows == batch.num_rows


def staging_name(table: str) -> str:
    return f"_ingest_staging_{table}"


def _quietly(cleanup, what: str) -> None:
    """Run a cleanup step after a failure without letting its own error replace the one that caused it (a failed
    statement aborts the transaction, and every later statement then fails as "transaction is aborted")."""
    try:
        cleanup()
    except Exception:  # noqa: BLE001
        log.debug("cleanup failed: %s", what, exc_info=True)


class _Columns:
    """One table's columns by field: field → ingest type, and field → column name."""

    def __init__(self) -> None:
        self.types: dict[str, str] = {}
        self.names: dict[str, str] = {}

    def taken(self, name: str) -> bool:
        return name.lower() == SEQ or any(name.lower() == c.lower() for c in self.names.values())

    def assign(self, field: str, ctype: str) -> str:
        """The column for `field` (a new one gets the de-duplicated name, see typing.column_name)."""
        if field not in self.names:
            self.names[field] = column_name(field, self.taken)
        self.types[field] = ctype
        return self.names[field]

    def copy(self) -> "_Columns":
        other = _Columns()
        other.types, other.names = dict(self.types), dict(self.names)
        return other


class DuckDBDestination(DuckDBLedger, Destination):
    name = "duckdb"

    def __init__(self, path: str | Path, lock_wait: float = 0.0, read_only: bool = False, threads: int | None = None,
                 memory_limit: str | None = None):
        """`lock_wait`: seconds to wait while another process holds the file (DuckDB allows one writer process);
        parallel Metaflow tasks of one block use it to take turns locally. `read_only`: for status/listing —
        creates and writes nothing (the file must exist: FileNotFoundError otherwise), and while a run holds the
        file it asks the run for a turn (see `yield_to_readers`) for up to `lock_wait` seconds."""
        self.path = Path(path).resolve()
        self.read_only = read_only
        self.threads, self.memory_limit = threads, memory_limit
        self._turns = ReaderTurns(self.path)
        self._con_lock = threading.Lock()  # the writer's connection is swapped while readers take their turn
        if read_only and not self.path.exists():
            raise FileNotFoundError(str(self.path))
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = self._connect(lock_wait)
        self._columns: dict[str, dict[str, str]] = {}
        if not read_only:
            self._create_meta_tables()

    @classmethod
    def from_project(cls, project, block=None, *, path: str | None = None, run_id: str | None = None,
                     read_only: bool = False, lock_wait: float = 0.0) -> "DuckDBDestination":
        """The file `path` (default: the project's for this block). A file another process holds is a BusyError
        that names the holder; `run_id` is unused (a file has no session to tag)."""
        path = path or str(project.duckdb_path(block))
        try:
            settings = project.defaults.duckdb
            return cls(path, lock_wait=lock_wait, read_only=read_only, threads=settings.threads,
                       memory_limit=settings.memory_limit)
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. the file is locked by another run
            if is_busy(exc):
                raise BusyError(busy_message(path, str(exc), read_only, lock_wait)) from None
            raise SyncError(f"cannot open DuckDB file {path}: {exc}") from None

    def _connect(self, wait: float):
        return connect(self.path, self._turns, self.read_only, wait, self.threads, self.memory_limit)

    def yield_to_readers(self) -> bool:
        """Between two commits of a run (the writer thread calls this; no transaction is open): if a read command
        (`ingest status`, `state show`, `events list`) is waiting for the file, close it, let the readers in, and
        reopen. Costs one stat() per commit when nobody is waiting (bench/throughput.py: within noise)."""
        if self.read_only or not self._turns.asked():
            return False
        with self._con_lock:
            self._turns.yielding(True)
            try:
                self.con.close()
                self._turns.wait_for_readers()
                self.con = self._connect(READER_TURN_REOPEN_S)
            finally:
                self._turns.yielding(False)
        return True

    def describe(self) -> str:
        return f"duckdb:{self.path}"

    @property
    def identity(self) -> DestinationIdentity:
        return DestinationIdentity(kind="duckdb", namespace=f"duckdb://{self.path.as_posix()}",
                                   database=self.path.stem, schema="main")

    def close(self) -> None:
        self.con.close()

    def query(self, sql: str, params: list | None = None) -> list[dict]:
        with self._con_lock:
            cur = self.con.cursor()  # its own connection to the same database: safe beside the writer thread
            try:
                result = cur.execute(sql, params or [])
                names = [d[0] for d in result.description or []]
                return [dict(zip(names, row)) for row in result.fetchall()]
            finally:
                cur.close()

    # ------------------------------------------------------------ what `ingest describe` reads

    def table_facts(self, table: str) -> TableFacts | None:
        found = self.query(_TABLE_SQL, [table])
        if not found:
            return None
        name = found[0]["table_name"]
        columns = [{"column": r["column_name"], "type": r["data_type"], "comment": r["comment"]}
                   for r in self.query(_COLUMNS_SQL, [name])]
        rejected = {}
        if any(c["column"] == META_REJECTED for c in columns):
            rejected = {r["k"]: r["n"] for r in self.query(
                f"SELECT k, count(*) AS n FROM (SELECT unnest(json_keys({q(META_REJECTED)})) AS k FROM {q(name)} "
                f"WHERE {q(META_REJECTED)} IS NOT NULL) GROUP BY k")}
        records = [r for r in self.landed_tables() if r["table_name"].lower() == name.lower()]
        return TableFacts(table=name, comment=found[0]["comment"], columns=columns,
                          rows=self.query(f"SELECT count(*) AS n FROM {q(name)}")[0]["n"], rejected=rejected,
                          record=records[0] if records else {})

    def landed_tables(self) -> list[dict]:
        try:
            rows = self.query(f"SELECT * FROM {TABLES_TABLE} ORDER BY table_name")
        except duckdb.CatalogException:  # a file no sync has landed a table in
            return []
        for row in rows:
            for key, default in (("column_map", {}), ("descriptions", {})):
                row[key] = parsed_json(row.get(key), default)
        return rows

    # ------------------------------------------------------------ tables

    def _record_table(self, target: StreamTarget, cols: "_Columns") -> None:
        """The table's row in _ingest_tables (who owns it, where it comes from, which field each column holds, what
        each field means); written in the transaction that creates the table or changes its columns."""
        self.con.execute(
            f"INSERT OR REPLACE INTO {TABLES_TABLE} (table_name, block, team, source, stream, write_mode, primary_key, "
            "cursor_field, column_map, updated_at, sync_mode, connector, description, descriptions) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [target.table, target.block, target.team, target.source, target.stream, target.write,
             target.primary_key, target.cursor, json.dumps({c: f for f, c in cols.names.items()}),
             dt.datetime.now(dt.timezone.utc), target.sync or None, target.connector or None, target.description,
             json.dumps(target.descriptions)],
        )


    def _write_table(self, target: StreamTarget) -> str:
        return staging_name(target.table) if target.staged else target.table

    def _existing_columns(self, table: str) -> tuple[_Columns, dict[str, str | None]] | None:
        """The table's columns by field, and each column's comment; None when there is no such table."""
        rows = self.con.execute(_COLUMNS_SQL, [table]).fetchall()
        if not rows:
            return None
        recorded = self._column_map(table)
        cols, comments = _Columns(), {}
        for name, sql_type, comment in rows:
            if name in recorded:
                field = recorded[name]
            elif (comment or "").startswith(FIELD_COMMENT):
                field = json.loads(comment[len(FIELD_COMMENT):])
            else:
                field = name
            cols.names[field], cols.types[field] = name, _FROM_SQL.get(sql_type, STRING)
            comments[name] = comment
        return cols, comments

    def _column_map(self, table: str) -> dict[str, str]:
        row = self.con.execute(f"SELECT column_map FROM {TABLES_TABLE} WHERE table_name = ?", [table]).fetchone()
        return parsed_json(row[0], {}) if row else {}

    def _comment_columns(self, table: str, cols: _Columns, target: StreamTarget, fields, comments=None) -> None:
        """Each of `fields` the stream's schema describes gets its description as its column's comment (unless
        `comments`, the columns' current comments, already says so)."""
        for field in fields:
            text = target.descriptions.get(field)
            column = cols.names.get(field)
            if text and column and (comments is None or comments.get(column) != text):
                self.con.execute(f"COMMENT ON COLUMN {q(table)}.{q(column)} IS {_literal(text)}")

    def _comment_table(self, table: str, target: StreamTarget, current: str | None = None) -> None:
        text = table_comment(target)
        if text != current:
            self.con.execute(f"COMMENT ON TABLE {q(table)} IS {_literal(text)}")

    def _table_comment(self, table: str) -> str | None:
        row = self.con.execute(_TABLE_SQL, [table]).fetchone()
        return row[1] if row else None

    def start_stream(self, target: StreamTarget) -> None:
        """Create the table (its comment and described columns' comments in the same transaction, and — for a final
        table — its _ingest_tables row), or bring an existing one's comments and row up to date."""
        table = self._write_table(target)
        wanted = {**target.columns, **META_COLUMNS}
        found = None
        if target.staged:
            # A leftover staging table is from a run that died before its swap: discard it.
            self.con.execute(f"DROP TABLE IF EXISTS {q(table)}")
        else:
            found = self._existing_columns(table)
        self.con.begin()
        try:
            if found is None:
                cols = _Columns()
                for field, ctype in wanted.items():
                    cols.assign(field, ctype)
                defs = ", ".join(f"{q(cols.names[f])} {SQL_TYPES[t]}" for f, t in cols.types.items())
                self.con.execute(f"CREATE TABLE {q(table)} ({defs})")
                self._comment_table(table, target)
                self._comment_columns(table, cols, target, cols.names)
            else:
                cols, comments = found
                self._comment_table(table, target, self._table_comment(table))
                self._comment_columns(table, cols, target, cols.names, comments)
            if not target.staged:
                self._record_table(target, cols)
            self.con.commit()
        except BaseException:
            _quietly(self.con.rollback, "rollback")
            raise
        self._columns[table] = cols

    def table_columns(self, target: StreamTarget) -> dict[str, str]:
        return next_batch_columns(target, self._columns[self._write_table(target)].types)

    def write(self, target: StreamTarget, batch: pa.Table | None, new_columns: dict[str, str], state: dict | None) -> None:
        table = self._write_table(target)
        # New columns are named on a copy: it replaces the known columns only once the transaction commits.
        cols = self._columns[table].copy()
        con = self.con
        con.begin()
        try:
            added = []
            without_key = 0
            if batch is not None:
                for field in batch.column_names:
                    if field not in cols.names:
                        ctype = new_columns.get(field) or target.columns.get(field) or STRING
                        column = cols.assign(field, ctype)
                        con.execute(f"ALTER TABLE {q(table)} ADD COLUMN {q(column)} {SQL_TYPES[ctype]}")
                        added.append((field, column, ctype))
                if added:
                    self._comment_columns(table, cols, target, [field for field, _, _ in added])
                    if not target.staged:  # which field each new column holds commits with the column
                        self._record_table(target, cols)
                if batch.num_rows:
                    without_key = self._land(target, table, cols, batch)
            if state is not None and not target.staged:
                self._store_state(target, state)
            con.commit()
        except BaseException:
            _quietly(con.rollback, "rollback")
            raise
        self._columns[table] = cols
        for _, column, ctype in added:
            target.schema_changes.append(f"added column {column} {SQL_TYPES[ctype]}")
        if batch is not None:
            target.rows_written += batch.num_rows
            target.rows_without_key += without_key

    def _land(self, target: StreamTarget, table: str, cols: _Columns, batch: pa.Table) -> int:
        """Land one batch; returns how many rows had no primary key value (dedup appends those, see base.py)."""
        con = self.con
        without_key = rows_without_key(batch, target.primary_key) if target.write == "dedup" and target.primary_key else 0
        batch = batch.rename_columns([cols.names[f] for f in batch.column_names])
        if target.write != "dedup" or not target.primary_key or without_key == batch.num_rows:
            con.register("__ingest_batch", batch)
            try:
                con.execute(f"INSERT INTO {q(table)} BY NAME SELECT * FROM __ingest_batch")
            finally:
                _quietly(lambda: con.unregister("__ingest_batch"), "unregister the batch")
            return without_key
        # Dedup: keep the latest record per primary key (by cursor, then by arrival order). Records without a key
        # value cannot be matched to anything: they are appended as they come (and counted).
        pk_cols = [q(cols.names[k]) for k in target.primary_key]
        keyless = " OR ".join(f"{c} IS NULL" for c in pk_cols)
        cursor = q(cols.names[target.cursor]) if target.cursor and target.cursor in cols.names else None
        match = " AND ".join(f"t.{c} = b.{c}" for c in pk_cols)
        if without_key == 0 and _keys_unique(batch, [cols.names[k] for k in target.primary_key]):
            # The usual batch: every key once. It is its own latest version: merged as it is, without building a
            # de-duplicated copy first (that copy was the largest cost of a checkpoint: bench/README.md).
            con.register("__ingest_dedup", batch)
            try:
                self._merge(table, match, cursor)
            finally:
                _quietly(lambda: con.unregister("__ingest_dedup"), "unregister the batch")
            return 0
        batch = batch.append_column(SEQ, pa.array(range(batch.num_rows), type=pa.int64()))
        order = (f"{cursor} DESC NULLS LAST, " if cursor else "") + f"{SEQ} DESC"
        con.register("__ingest_batch", batch)
        try:
            if without_key:
                con.execute(f"INSERT INTO {q(table)} BY NAME SELECT * EXCLUDE ({SEQ}) FROM __ingest_batch WHERE {keyless}")
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE __ingest_dedup AS SELECT * EXCLUDE ({SEQ}) FROM __ingest_batch "
                f"WHERE NOT ({keyless}) QUALIFY row_number() OVER (PARTITION BY {', '.join(pk_cols)} ORDER BY {order}) = 1"
            )
        finally:
            _quietly(lambda: con.unregister("__ingest_batch"), "unregister the batch")
        self._merge(table, match, cursor)
        con.execute("DROP TABLE __ingest_dedup")
        return without_key

    def _merge(self, table: str, match: str, cursor: str | None) -> None:
        """`__ingest_dedup` (one row per key) into the table. A stored row is replaced unless it is strictly newer
        than the incoming one (an out-of-order re-read must not roll a row back); the re-delivered boundary record
        (same cursor) replaces its copy."""
        newer_or_equal = f" AND (b.{cursor} IS NULL OR t.{cursor} IS NULL OR t.{cursor} <= b.{cursor})" if cursor else ""
        self.con.execute(f"DELETE FROM {q(table)} t USING __ingest_dedup b WHERE {match}{newer_or_equal}")
        self.con.execute(
            f"INSERT INTO {q(table)} BY NAME SELECT b.* FROM __ingest_dedup b "
            f"WHERE NOT EXISTS (SELECT 1 FROM {q(table)} t WHERE {match})"
        )

    def abort_stream(self, target: StreamTarget) -> None:
        if target.staged:
            self.con.execute(f"DROP TABLE IF EXISTS {q(staging_name(target.table))}")
            self._columns.pop(staging_name(target.table), None)

    def finish_stream(self, target: StreamTarget, state: dict | None, event=None) -> None:
        con = self.con
        con.begin()
        try:
            if target.staged:
                con.execute(f"DROP TABLE IF EXISTS {q(target.table)}")
                con.execute(f"ALTER TABLE {q(staging_name(target.table))} RENAME TO {q(target.table)}")
                if state is None:
                    # A full refresh without state starts incremental syncs over from this snapshot.
                    con.execute(f"DELETE FROM {STATE_TABLE} WHERE block = ? AND state_key = ?", [target.block, target.state_key])
                self._record_table(target, self._columns[staging_name(target.table)])
            if state is not None:
                self._store_state(target, state)
            if event is not None:
                self._insert_event(event)
            con.commit()
        except BaseException:
            _quietly(con.rollback, "rollback")
            raise
        if target.staged:
            self._columns[target.table] = self._columns.pop(staging_name(target.table))
