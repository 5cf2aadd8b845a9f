"""The DuckDB destination's metadata tables: state, runs, run locks and the events ledger (`_ingest_*`).

A mixin of DuckDBDestination (duckdb.py), which owns the connection (`self.con`, `self._con_lock`, `self.query`)
and the landed tables. Every statement here is one the Destination protocol (base.py) documents.
"""
from __future__ import annotations

import datetime as dt

import duckdb
import orjson

from .base import (EVENTS_TABLE, LOCKS_TABLE, META_TABLES, RUNS_TABLE, STATE_TABLE, Dialect, RunRecord, StreamTarget,
                   lock_is_stale, meta_columns, meta_ddl, meta_missing_columns, where_equal)

DIALECT = Dialect("duckdb", {"text": "VARCHAR", "bigint": "BIGINT", "int": "INTEGER", "timestamp": "TIMESTAMPTZ",
                             "json": "JSON", "text_list": "VARCHAR[]"})


class DuckDBLedger:
    """State, runs, locks and events on the destination's DuckDB connection."""

    # ------------------------------------------------------------ metadata tables

    def _create_meta_tables(self) -> None:
        """Create the metadata tables, and add the columns a table from an older release lacks."""
        self.con.execute("".join(f"CREATE TABLE IF NOT EXISTS {table} {meta_ddl(table, DIALECT)};\n" for table in META_TABLES))
        have: dict[str, set[str]] = {}
        for table, column in self.con.execute(
                "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = current_schema() AND table_name IN (SELECT unnest(?))", [list(META_TABLES)]).fetchall():
            have.setdefault(table, set()).add(column)
        for table in META_TABLES:
            for column in meta_missing_columns(table, DIALECT, have.get(table, set())):
                self.con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column}")

    def read_state(self, block: str) -> dict[str, dict]:
        rows = self.con.execute(f"SELECT state_key, state FROM {STATE_TABLE} WHERE block = ?", [block]).fetchall()
        return {key: orjson.loads(state) for key, state in rows}

    def reset_state(self, block: str, streams: list[str] | None = None) -> int:
        if streams:
            sql, params = f"DELETE FROM {STATE_TABLE} WHERE block = ? AND state_key IN (SELECT unnest(?))", [block, streams]
        else:
            sql, params = f"DELETE FROM {STATE_TABLE} WHERE block = ?", [block]
        return self.con.execute(sql + " RETURNING 1", params).fetchall().__len__()

    def _store_state(self, target: StreamTarget, state: dict) -> None:
        # UPDATE first (every checkpoint after a stream's first): half the cost of INSERT OR REPLACE on the primary
        # key, which a checkpoint pays ~150 times per 150k records.
        values = [orjson.dumps(state).decode(), target.run_id, dt.datetime.now(dt.timezone.utc)]
        updated = self.con.execute(f"UPDATE {STATE_TABLE} SET state = ?, run_id = ?, updated_at = ? "
                                   "WHERE block = ? AND state_key = ?", values + [target.block, target.state_key]).fetchone()
        if not updated or not updated[0]:
            self.con.execute(f"INSERT INTO {STATE_TABLE} (block, state_key, state, run_id, updated_at) VALUES (?, ?, ?, ?, ?)",
                             [target.block, target.state_key] + values)

    def record_run(self, run: RunRecord) -> None:
        self.con.execute(
            f"INSERT OR REPLACE INTO {RUNS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [run.run_id, run.block, run.team, run.streams, run.destination, run.started_at, run.ended_at,
             run.status, run.rows, run.error],
        )

    # ------------------------------------------------------------ run locks (one sync per block stream)

    def acquire_locks(self, holder: dict, streams: list[str], ttl: float) -> list[dict]:
        con = self.con
        now = dt.datetime.now(dt.timezone.utc)
        con.begin()
        try:
            rows = self._rows(con.execute(
                f"SELECT * FROM {LOCKS_TABLE} WHERE block = ? AND stream IN (SELECT unnest(?))", [holder["block"], streams]))
            live = [r for r in rows if not lock_is_stale(r, now)]
            if live:
                con.rollback()
                return live
            con.execute(f"DELETE FROM {LOCKS_TABLE} WHERE block = ? AND stream IN (SELECT unnest(?))", [holder["block"], streams])
            for stream in streams:
                con.execute(
                    f"INSERT INTO {LOCKS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [holder["block"], stream, holder["run_id"], holder["host"], holder["pid"], now, now + dt.timedelta(seconds=ttl)],
                )
            con.commit()
        except BaseException:
            con.rollback()
            raise
        return []

    def refresh_locks(self, run_id: str, ttl: float) -> None:
        with self._con_lock:  # called from the heartbeat thread, beside the writer (and its turns for readers)
            cur = self.con.cursor()
            try:
                cur.execute(f"UPDATE {LOCKS_TABLE} SET expires_at = ? WHERE run_id = ?",
                            [dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=ttl), run_id])
            finally:
                cur.close()

    def release_locks(self, run_id: str) -> None:
        self.con.execute(f"DELETE FROM {LOCKS_TABLE} WHERE run_id = ?", [run_id])

    def list_locks(self, block: str | None = None) -> list[dict]:
        return self._select(f"SELECT * FROM {LOCKS_TABLE}", block)

    def mark_run_killed(self, run_id: str, ended_at: dt.datetime, error: str) -> bool:
        return bool(self.con.execute(
            f"UPDATE {RUNS_TABLE} SET status = 'killed', ended_at = ?, error = ? WHERE run_id = ? AND status = 'running' "
            "RETURNING 1", [ended_at, error, run_id]).fetchall())

    def list_runs(self, block: str | None = None, status: str | None = None) -> list[dict]:
        return self._select(f"SELECT * FROM {RUNS_TABLE}", block, status, order="started_at, run_id")

    def _select(self, sql: str, block: str | None, status: str | None = None, order: str | None = None) -> list[dict]:
        """A metadata table's rows, filtered; none when the table does not exist (a file no sync wrote yet)."""
        where, params = where_equal({"block": block, "status": status})
        try:
            return self.query(sql + where + (f" ORDER BY {order}" if order else ""), params)
        except duckdb.CatalogException:
            return []

    @staticmethod
    def _rows(result) -> list[dict]:
        names = [d[0] for d in result.description or []]
        return [dict(zip(names, row)) for row in result.fetchall()]

    def _insert_event(self, event) -> None:
        payload = orjson.dumps(event.payload()).decode()
        self.con.execute(
            f"INSERT INTO {EVENTS_TABLE} (event_id, name, idempotency_key, block, stream, team, run_id, payload, status, created_at) "
            f"SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM {EVENTS_TABLE} WHERE idempotency_key = ? AND name = ?)",
            [event.event_id, event.name, event.idempotency_key, event.block, event.stream, event.team, event.run_id,
             payload, event.status, dt.datetime.now(dt.timezone.utc), event.idempotency_key, event.name],
        )

    def record_event(self, event) -> None:
        self._insert_event(event)

    def list_events(self, block=None, status=None, run_id=None, limit=None) -> list[dict]:
        where, params = where_equal({"block": block, "status": status, "run_id": run_id})
        sql = (f"SELECT {', '.join(meta_columns(EVENTS_TABLE))} FROM {EVENTS_TABLE}{where} ORDER BY created_at, event_id"
               + (f" LIMIT {int(limit)}" if limit else ""))
        try:
            rows = self.query(sql, params)
        except duckdb.CatalogException:  # a file no sync has written events to yet
            return []
        for row in rows:
            row["payload"] = orjson.loads(row["payload"])
        return rows

    def latest_events(self, per_kind: int) -> list[dict]:
        # The payload stays text: status reports a row it cannot read instead of failing on it.
        sql = (
            f"SELECT event_id, name, block, stream, payload::VARCHAR AS payload, status, created_at, "
            f"count(*) FILTER (WHERE status = 'pending') OVER (PARTITION BY block, stream) AS pending "
            f"FROM {EVENTS_TABLE} QUALIFY row_number() OVER (PARTITION BY block, stream, split_part(name, '.', 1) "
            f"ORDER BY created_at DESC NULLS LAST, event_id DESC) <= {int(per_kind)} ORDER BY created_at, event_id"
        )
        try:
            return self.query(sql)
        except duckdb.CatalogException:
            return []

    def mark_event(self, event_id: str, status: str, error: str | None) -> None:
        self.con.execute(
            f"UPDATE {EVENTS_TABLE} SET status = ?, attempts = attempts + 1, last_error = ?, "
            f"published_at = CASE WHEN ? = 'published' THEN ? ELSE published_at END WHERE event_id = ?",
            [status, error, status, dt.datetime.now(dt.timezone.utc), event_id],
        )
