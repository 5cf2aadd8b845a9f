"""The Snowflake destination: the Destination protocol on a Session (session.py), with its SQL from sql.py.

See the package docstring (destinations/snowflake/__init__.py) for what one checkpoint is and why it is safe.
"""
from __future__ import annotations

import json
import secrets as _random
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ...errors import SyncError
from ..base import (TABLES_TABLE, Destination, DestinationIdentity, StreamTarget, TableFacts, meta_columns,
                    next_batch_columns, parsed_json, q, rows_without_key)
from ..typing import META_COLUMNS, META_REJECTED, STRING
from .ledger import SnowflakeLedger
from .session import Session
from .settings import SnowflakeConfig, resolve_config
from .sql import (EVENTS, LOAD_TYPES, SEQ, SQL_TYPES, STAGE, STATE, TABLES, Table, column_comment_statements,
                  event_statement, ingest_type, literal, load_name, move_statements, sf_name, staging_name,
                  state_statements, swap_statements, table_comment, table_statements)


class SnowflakeDestination(SnowflakeLedger, Destination):
    name = "snowflake"

    def __init__(self, config: SnowflakeConfig, team: str | None = None, block: str | None = None,
                 run_id: str | None = None, connection=None, read_only: bool = False, swap_with: bool | None = None):
        """`read_only`: for status and listing commands — creates nothing; missing metadata tables read as empty.
        `swap_with`: whether the engine parses `ALTER TABLE … SWAP WITH` (see sql.swap_statements). By default it
        does unless the endpoint is plain http, which Snowflake never serves (a fakesnow server); a test running
        fakesnow in process passes False."""
        self.config = config
        self.read_only = read_only
        self.swap_with = config.protocol != "http" if swap_with is None else swap_with
        self._meta_present: dict[str, set[str]] = {}  # metadata table → its columns (see _ensure_meta_tables)
        self._tables: dict[str, Table] = {}
        self._loads: set[str] = set()  # load tables created by this session (dropped at finish_stream)
        self._stage_ready = False
        self._batches = 0
        self._token = _random.token_hex(4)
        self._tmp: Path | None = None
        self.session = Session(config, team=team, block=block, run_id=run_id, connection=connection)
        self._exec, self._where = self.session.execute, self.session.where  # one statement; an object's full name
        try:
            self.session.cur = self.con.cursor()
            self._ensure_meta_tables()
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_project(cls, project, block=None, *, path: str | None = None, run_id: str | None = None,
                     read_only: bool = False, lock_wait: float = 0.0) -> "SnowflakeDestination":
        """`path` and `lock_wait` are accepted for symmetry with DuckDB and unused: Snowflake takes concurrent
        sessions."""
        config = resolve_config(project)
        return cls(config, team=block.team if block else None, block=block.name if block else None, run_id=run_id,
                   read_only=read_only)

    # the session's connection, cursor and query tag, as the destination's
    con = property(lambda self: self.session.con)
    cur = property(lambda self: self.session.cur)
    team = property(lambda self: self.session.team)
    block = property(lambda self: self.session.block)
    run_id = property(lambda self: self.session.run_id)

    def describe(self) -> str:
        c = self.config
        via = f" via {c.protocol or 'https'}://{c.host}:{c.port or 443}" if c.host else ""
        return f"snowflake:{c.account}/{c.database}.{c.schema}{via}"

    @property
    def identity(self) -> DestinationIdentity:
        c = self.config
        return DestinationIdentity(kind="snowflake", namespace=f"snowflake://{c.account.lower()}",
                                   database=c.database, schema=c.schema)

    def close(self) -> None:
        self.session.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def query(self, sql: str, params: list | None = None) -> list[dict]:
        """A read-only query on its own session (opened on first use): it never runs inside the writer's open
        transaction, and sees committed data only — like the DuckDB destination's separate cursor."""
        return self.session.side(sql, params, action="query", obj=self._where())

    # ------------------------------------------------------------ what `ingest describe` reads

    def table_facts(self, table: str) -> TableFacts | None:
        name = sf_name(table)
        rows = self._exec(
            "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COMMENT, t.COMMENT FROM INFORMATION_SCHEMA.COLUMNS c "
            "JOIN INFORMATION_SCHEMA.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME "
            "WHERE c.TABLE_SCHEMA = CURRENT_SCHEMA() AND c.TABLE_NAME = ? ORDER BY c.ORDINAL_POSITION",
            [name], action="describe", obj=self._where(name))
        if not rows:
            return None
        columns = [{"column": column, "type": dtype, "comment": comment} for column, dtype, comment, _ in rows]
        rejected = {}
        if any(c["column"] == META_REJECTED.upper() for c in columns):
            rejected = {str(key): int(n) for key, n in self._exec(
                f"SELECT f.KEY, COUNT(*) FROM {q(name)} t, LATERAL FLATTEN(INPUT => t.{q(META_REJECTED.upper())}) f "
                "GROUP BY f.KEY", action="count the rejected values of", obj=self._where(name))}
        count = self._exec(f"SELECT COUNT(*) FROM {q(name)}", action="count the rows of", obj=self._where(name))
        records = [r for r in self.landed_tables() if str(r.get("table_name")).upper() == name]
        return TableFacts(table=name, comment=rows[0][3], columns=columns, rows=int(count[0][0]), rejected=rejected,
                          record=records[0] if records else {})

    def landed_tables(self) -> list[dict]:
        if TABLES not in self._meta_present:
            return []
        # Only the columns the table has: read-only on an _INGEST_TABLES of an older release (a writer adds the rest).
        names = [c for c in meta_columns(TABLES_TABLE, "snowflake") if c.upper() in self._meta_present[TABLES]]
        found = self._exec(f"SELECT {', '.join(q(c.upper()) for c in names)} FROM {q(TABLES)} ORDER BY \"TABLE_NAME\"",
                           action="read", obj=self._where(TABLES))
        out = []
        for values in found:
            row = dict(zip(names, values))
            for key, default in (("column_map", {}), ("descriptions", {}), ("primary_key", [])):
                row[key] = parsed_json(row.get(key), default)
            out.append(row)
        return out

    # ------------------------------------------------------------ tables

    def _write_name(self, target: StreamTarget) -> str:
        final = sf_name(target.table)
        return staging_name(final) if target.staged else final

    def _describe_table(self, table: str) -> tuple[dict[str, str], str | None] | None:
        """Existing columns (Snowflake name → ingest type) and the table comment, or None if there is no table."""
        rows = self._exec(
            "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.NUMERIC_SCALE, t.COMMENT FROM INFORMATION_SCHEMA.COLUMNS c "
            "JOIN INFORMATION_SCHEMA.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME "
            "WHERE c.TABLE_SCHEMA = CURRENT_SCHEMA() AND c.TABLE_NAME = ? ORDER BY c.ORDINAL_POSITION",
            [table], action="describe", obj=self._where(table),
        )
        if not rows:
            return None
        return {name: ingest_type(dtype, scale) for name, dtype, scale, _ in rows}, rows[0][3]

    def _stored(self, table: str) -> tuple[dict[str, str], dict[str, str]]:
        """What _INGEST_TABLES recorded for a table: (column → field, field → description); empty when nothing."""
        rows = self._exec(f'SELECT "COLUMN_MAP", "DESCRIPTIONS" FROM {q(TABLES)} WHERE "TABLE_NAME" = ?', [table],
                          action="read the column names of", obj=self._where(TABLES))
        return (parsed_json(rows[0][0], {}), parsed_json(rows[0][1], {})) if rows else ({}, {})

    def _create(self, target: StreamTarget, table: Table, replace: bool) -> None:
        cols = ", ".join(f"{q(table.names[c])} {SQL_TYPES[t]}" for c, t in table.types.items())
        head = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE IF NOT EXISTS"
        self._exec(f"{head} {q(table.name)} ({cols}) COMMENT = {literal(table_comment(target))}", action="create",
                   obj=self._where(table.name), block=target.block)
        self._comment_columns(target, table, table.types)

    def _comment_columns(self, target: StreamTarget, table: Table, fields) -> None:
        for sql, params, action, where in column_comment_statements(target, table, fields, self._where(table.name)):
            self._exec(sql, params, action=action, obj=where, block=target.block)

    def start_stream(self, target: StreamTarget) -> None:
        name = self._write_name(target)
        wanted = {**target.columns, **META_COLUMNS}
        if target.staged:
            # A leftover staging table is from a run that died before its swap: CREATE OR REPLACE discards it.
            table = Table(name)
            for c, t in wanted.items():
                table.add(c, t)
            self._create(target, table, replace=True)
            self._tables[name] = table
            return
        existing = self._describe_table(name)
        if existing is None:
            table = Table(name)
            for c, t in wanted.items():
                table.add(c, t)
            self._create(target, table, replace=False)
        else:
            columns, comment = existing
            stored, described = self._stored(name)
            by_name: dict[str, str] = {}
            for c in wanted:
                by_name.setdefault(sf_name(c), c)
            table = Table(name)
            for col, ctype in columns.items():
                # `in`, not `or`: the empty field name (column `_`) is a stored name too
                source = stored[col] if col in stored else by_name.get(col) or col.lower()
                if source in table.names:  # two columns claim one field: keep the second under its own name
                    source = col
                table.names[source], table.types[source] = col, ctype
            if comment != table_comment(target):
                self._exec(f"COMMENT ON TABLE {q(name)} IS {literal(table_comment(target))}", action="comment on", obj=self._where(name))
            self._comment_columns(target, table, [f for f, text in target.descriptions.items() if described.get(f) != text])
        self._tables[name] = table
        self.session.transaction(table_statements(target, table, self._where(TABLES)), target.block)

    def table_columns(self, target: StreamTarget) -> dict[str, str]:
        return next_batch_columns(target, self._tables[self._write_name(target)].types)

    # ------------------------------------------------------------ one checkpoint

    def write(self, target: StreamTarget, batch: pa.Table | None, new_columns: dict[str, str], state: dict | None) -> None:
        if batch is None or batch.num_rows == 0:
            if state is not None and not target.staged:
                self.session.transaction(state_statements(target, state, self._where(STATE)), target.block)
            return
        name = self._write_name(target)
        table = self._tables[name]
        self._add_columns(target, table, batch, new_columns)
        load = self._load(target, table, batch)
        without_key = rows_without_key(batch, target.primary_key) if self._dedup(target) else 0
        statements = move_statements(target, table, load, batch.column_names, self._dedup(target),
                                     self._where(table.name), without_key)
        if state is not None and not target.staged:
            statements += state_statements(target, state, self._where(STATE))
        self.session.transaction(statements, target.block)
        target.rows_written += batch.num_rows
        target.rows_without_key += without_key

    def _add_columns(self, target: StreamTarget, table: Table, batch: pa.Table, new_columns: dict[str, str]) -> None:
        added = [(c, new_columns.get(c) or target.columns.get(c) or STRING) for c in batch.column_names if c not in table.types]
        if not added:
            return
        for c, _ in added:
            table.assign(c)
        if not target.staged:
            # The field name is recorded before the column exists, so a column never exists without its source name.
            self._exec(f'UPDATE {q(TABLES)} SET "COLUMN_MAP" = PARSE_JSON(?) WHERE "TABLE_NAME" = ?',
                       [json.dumps(table.column_map()), table.name], action="record the columns of", obj=self._where(TABLES),
                       block=target.block)
        cols = ", ".join(f"{q(table.names[c])} {SQL_TYPES[t]}" for c, t in added)
        self._exec(f"ALTER TABLE {q(table.name)} ADD COLUMN {cols}", action="add columns to", obj=self._where(table.name),
                   block=target.block)
        for c, t in added:
            table.types[c] = t
            target.schema_changes.append(f"added column {c} {SQL_TYPES[t]}")
        self._comment_columns(target, table, [c for c, _ in added])

    def _dedup(self, target: StreamTarget) -> bool:
        return target.write == "dedup" and bool(target.primary_key)

    def _load(self, target: StreamTarget, table: Table, batch: pa.Table) -> str:
        """The batch → one Parquet file → PUT → COPY INTO the load table. Returns the load table's name."""
        final = sf_name(target.table)
        load = load_name(final)
        names = [table.names[c] for c in batch.column_names]
        data = batch.rename_columns(names)
        load_cols = [f"{q(n)} {LOAD_TYPES[table.types[c]]}" for c, n in zip(batch.column_names, names)]
        if self._dedup(target):
            data = data.append_column(SEQ, pa.array(range(batch.num_rows), type=pa.int64()))
            load_cols.append(f"{q(SEQ)} NUMBER(38,0)")
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="ingest-snowflake-"))
        self._batches += 1
        path = self._tmp / f"{final.lower()}-{self._batches:06d}.parquet"
        pq.write_table(data, path, compression="snappy")
        block = target.block
        try:
            if not self._stage_ready:
                self._exec(f"CREATE TEMPORARY STAGE IF NOT EXISTS {STAGE}", action="create the stage", obj=self._where(STAGE), block=block)
                self._stage_ready = True
            self._exec(f"CREATE OR REPLACE TRANSIENT TABLE {q(load)} ({', '.join(load_cols)}) DATA_RETENTION_TIME_IN_DAYS = 0",
                       action="create", obj=self._where(load), block=block)
            self._loads.add(load)
            prefix = f"{self._token}/{final.lower()}/{self._batches}/"
            self._exec(f"PUT {literal('file://' + path.as_posix())} @{STAGE}/{prefix} AUTO_COMPRESS = FALSE OVERWRITE = TRUE",
                       action="upload a batch to", obj=f"stage {STAGE}", block=block)
            rows = self._exec(
                f"COPY INTO {q(load)} FROM @{STAGE}/{prefix} FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE) "
                "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE PURGE = TRUE",
                action="COPY INTO", obj=self._where(load), block=block,
            )
        finally:
            path.unlink(missing_ok=True)
        loaded = sum(int(r[3] or 0) for r in rows if len(r) > 3 and str(r[1]).upper() in ("LOADED", "PARTIALLY_LOADED"))
        if loaded != batch.num_rows:
            statuses = ", ".join(str(r[1]) for r in rows) or "no file"
            raise SyncError(f"Snowflake: COPY INTO {self._where(load)} for block {block} loaded {loaded} of "
                            f"{batch.num_rows} rows ({statuses}); nothing of this batch was committed")
        return load

    # ------------------------------------------------------------ end of a stream

    def _drop_load(self, target: StreamTarget) -> None:
        load = load_name(sf_name(target.table))
        if load in self._loads:
            self._exec(f"DROP TABLE IF EXISTS {q(load)}", action="drop", obj=self._where(load), block=target.block)
            self._loads.discard(load)

    def abort_stream(self, target: StreamTarget) -> None:
        """The sync failed: discard a staged load (the previous table and state stay as they were)."""
        self._drop_load(target)
        if target.staged:
            staging = staging_name(sf_name(target.table))
            self._exec(f"DROP TABLE IF EXISTS {q(staging)}", action="drop", obj=self._where(staging), block=target.block)
            self._tables.pop(staging, None)

    def finish_stream(self, target: StreamTarget, state: dict | None, event=None) -> None:
        """End of a stream. The final state and the stream's DataLanded `event` commit in one DML transaction; for a
        staged load it follows the swap (see swap_statements)."""
        self._drop_load(target)
        extra = [event_statement(event, self._where(EVENTS))] if event is not None else []
        if not target.staged:
            statements = (state_statements(target, state, self._where(STATE)) if state is not None else []) + extra
            if statements:
                self.session.transaction(statements, target.block)
            return
        final, staging = sf_name(target.table), staging_name(sf_name(target.table))
        table = self._tables[staging]
        block = target.block
        final_exists = self._exists(final)
        swap = swap_statements(final, staging, final_exists, table_comment(target), self._where(final), self.swap_with)
        for sql, action, obj in swap:
            self._exec(sql, action=action, obj=obj, block=block)
        # The swap committed on its own (DDL); the state follows it, so it can lag the data but never lead it.
        # A full refresh without state deletes the stored one: incremental syncs start over from this snapshot.
        table.name = final
        self._tables[final] = self._tables.pop(staging)
        statements = state_statements(target, state, self._where(STATE)) + table_statements(target, table, self._where(TABLES))
        self.session.transaction(statements + extra, block)
        if final_exists and self.swap_with:
            # After SWAP WITH the staging name holds the replaced data.
            self._exec(f"DROP TABLE IF EXISTS {q(staging)}", action="drop the replaced data in", obj=self._where(staging), block=block)

    def _exists(self, table: str) -> bool:
        rows = self._exec("SELECT COUNT(*) FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = CURRENT_SCHEMA() AND TABLE_NAME = ?",
                          [table], action="look up", obj=self._where(table))
        return bool(rows and rows[0][0])
