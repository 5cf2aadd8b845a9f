"""The Snowflake destination's metadata tables: state, runs, run locks and the events ledger (`_INGEST_*`).

A mixin of SnowflakeDestination (destination.py), which owns the session (`self._exec`, `self._where`,
`self.session`, `self.cur`) and the landed tables; the SQL text comes from sql.py.
"""
from __future__ import annotations

import datetime as dt

import orjson

from ...secrets import REDACTOR
from ..base import RunRecord, lock_is_stale, meta_columns, meta_missing_columns, q
from .sql import (DIALECT, EVENT_COLUMNS, EVENTS, LOCK_COLUMNS, LOCKS, META_COMMENTS, META_DDL, RUN_COLUMNS, RUNS,
                  STATE, column, event_statement, latest_events_sql, literal, lock_insert, run_statement, select_meta)


class SnowflakeLedger:
    """State, runs, locks and events through the destination's Snowflake session."""

    # ------------------------------------------------------------ metadata tables

    def _ensure_meta_tables(self) -> None:
        """Which metadata tables exist (one INFORMATION_SCHEMA query); a writer creates the missing ones and adds the
        columns a table from an older release lacks (meta_missing_columns)."""
        rows = self._exec(
            "SELECT TABLE_NAME, COLUMN_NAME FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = CURRENT_SCHEMA() "
            f"AND TABLE_NAME IN ({', '.join('?' for _ in META_DDL)})",
            list(META_DDL), action="list the tables of", obj=self._where(),
        )
        self._meta_present = {}  # table → its columns (upper case), as they are after this call
        for table, name in rows:
            self._meta_present.setdefault(table, set()).add(name)
        if self.read_only:
            return
        for table, ddl in META_DDL.items():
            if table not in self._meta_present:
                self._exec(f"CREATE TABLE IF NOT EXISTS {q(table)} {ddl} COMMENT = {literal(META_COMMENTS[table])}",
                           action="create", obj=self._where(table))
            elif missing := meta_missing_columns(table.lower(), DIALECT, self._meta_present[table]):
                self._exec(f"ALTER TABLE {q(table)} ADD COLUMN IF NOT EXISTS {', '.join(missing)}",
                           action="add the columns of this release to", obj=self._where(table))
            else:
                continue
            self._meta_present[table] = {c.upper() for c in meta_columns(table.lower(), DIALECT.name)}

    def read_state(self, block: str) -> dict[str, dict]:
        if STATE not in self._meta_present:
            return {}
        rows = self._exec(f'SELECT "STATE_KEY", "STATE" FROM {q(STATE)} WHERE "BLOCK" = ?', [block],
                          action="read the state from", obj=self._where(STATE), block=block)
        return {key: (state if isinstance(state, dict) else orjson.loads(state)) for key, state in rows}

    def reset_state(self, block: str, streams: list[str] | None = None) -> int:
        sql, params = f'DELETE FROM {q(STATE)} WHERE "BLOCK" = ?', [block]
        if streams:
            sql += f' AND "STATE_KEY" IN ({", ".join("?" for _ in streams)})'
            params += list(streams)
        rows = self._exec(sql, params, action="reset the state in", obj=self._where(STATE), block=block)
        return int(rows[0][0]) if rows and rows[0] and rows[0][0] is not None else max(self.cur.rowcount or 0, 0)

    def record_run(self, run: RunRecord) -> None:
        if self.run_id is None:
            self.session.tag_run(run.run_id)
        sql, params, action, where = run_statement(run, self._where(RUNS))
        self._exec(sql, params, action=action, obj=where, block=run.block)

    # ------------------------------------------------------------ run locks (one sync per block stream)

    def acquire_locks(self, holder: dict, streams: list[str], ttl: float) -> list[dict]:
        """One transaction. Its first statement is a DELETE on _INGEST_LOCKS: Snowflake lets only one transaction at
        a time run DELETE/UPDATE/MERGE on a table, so concurrent acquirers queue there and each reads the locks the
        previous one committed (READ COMMITTED) before deciding. Live locks of others: take nothing, return them."""
        if not streams:
            return []
        now = dt.datetime.now(dt.timezone.utc)
        block, where = holder["block"], self._where(LOCKS)
        among = f'"BLOCK" = ? AND "STREAM" IN ({", ".join("?" for _ in streams)})'
        keys = [block, *streams]
        self._exec("BEGIN TRANSACTION", action="begin a transaction in", obj=self._where(), block=block)
        try:
            self._exec(f"DELETE FROM {q(LOCKS)} WHERE {among} AND \"EXPIRES_AT\" < CAST(? AS TIMESTAMP_TZ)", keys + [now.isoformat()],
                       action="take the run locks in", obj=where, block=block)
            rows = self._exec(f"SELECT {', '.join(column(c) for c in LOCK_COLUMNS)} FROM {q(LOCKS)} WHERE {among}", keys,
                              action="read the run locks in", obj=where, block=block)
            held = [dict(zip(LOCK_COLUMNS, r)) for r in rows]
            live = [r for r in held if not lock_is_stale(r, now)]
            if live:
                self._exec("ROLLBACK", action="roll back in", obj=self._where(), block=block)
                return live
            if held:  # held by processes that died on this host
                self._exec(f"DELETE FROM {q(LOCKS)} WHERE {among}", keys, action="take the run locks in", obj=where, block=block)
            sql, params = lock_insert(holder, streams, now.isoformat(), (now + dt.timedelta(seconds=ttl)).isoformat())
            self._exec(sql, params, action="take the run locks in", obj=where, block=block)
            self._exec("COMMIT", action="commit to", obj=self._where(), block=block)
        except BaseException:
            self.session.rollback()
            raise
        return []

    def refresh_locks(self, run_id: str, ttl: float) -> None:
        # The heartbeat thread runs beside the writer: its own session, never inside the writer's transaction.
        expires = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=ttl)).isoformat()
        self.session.side(f'UPDATE {q(LOCKS)} SET "EXPIRES_AT" = CAST(? AS TIMESTAMP_TZ) WHERE "RUN_ID" = ?', [expires, run_id],
                          action="extend the run locks in", obj=self._where(LOCKS))

    def release_locks(self, run_id: str) -> None:
        self._exec(f'DELETE FROM {q(LOCKS)} WHERE "RUN_ID" = ?', [run_id], action="release the run locks in", obj=self._where(LOCKS))

    def list_locks(self, block: str | None = None) -> list[dict]:
        return self._select_meta(LOCKS, LOCK_COLUMNS, block)

    def mark_run_killed(self, run_id: str, ended_at: dt.datetime, error: str) -> bool:
        self._exec(f'UPDATE {q(RUNS)} SET "STATUS" = \'killed\', "ENDED_AT" = CAST(? AS TIMESTAMP_TZ), "ERROR" = ? '
                   'WHERE "RUN_ID" = ? AND "STATUS" = \'running\'', [ended_at.isoformat(), REDACTOR.redact(error), run_id],
                   action="record a killed run in", obj=self._where(RUNS))
        return (self.cur.rowcount or 0) > 0

    def list_runs(self, block: str | None = None, status: str | None = None) -> list[dict]:
        rows = self._select_meta(RUNS, RUN_COLUMNS, block, status, order='"STARTED_AT", "RUN_ID"')
        for row in rows:
            if isinstance(row.get("streams"), str):  # VARIANT arrives as JSON text
                row["streams"] = orjson.loads(row["streams"])
        return rows

    def _select_meta(self, table: str, columns: list[str], block: str | None, status: str | None = None,
                     order: str | None = None) -> list[dict]:
        if table not in self._meta_present:
            return []
        sql, params = select_meta(table, columns, {"block": block, "status": status}, order)
        rows = self._exec(sql, params, action="read", obj=self._where(table), block=block)
        return [dict(zip(columns, r)) for r in rows]

    # ------------------------------------------------------------ the events ledger

    def record_event(self, event) -> None:
        sql, params, action, obj = event_statement(event, self._where(EVENTS))
        self._exec(sql, params, action=action, obj=obj, block=event.block)

    def list_events(self, block: str | None = None, status: str | None = None, run_id: str | None = None,
                    limit: int | None = None) -> list[dict]:
        sql, params = select_meta(EVENTS, EVENT_COLUMNS, {"block": block, "status": status, "run_id": run_id},
                                  '"CREATED_AT", "EVENT_ID"')
        sql += f" LIMIT {int(limit)}" if limit else ""
        out: list[dict] = []
        if EVENTS not in self._meta_present:
            return out
        for row in self._exec(sql, params, action="read the events from", obj=self._where(EVENTS), block=block):
            event = dict(zip(EVENT_COLUMNS, row))
            payload = event["payload"]
            event["payload"] = payload if isinstance(payload, dict) else orjson.loads(payload)
            out.append(event)
        return out

    def latest_events(self, per_kind: int) -> list[dict]:
        """One windowed query (see Destination.latest_events); the payload as JSON text."""
        if EVENTS not in self._meta_present:
            return []
        sql = latest_events_sql(per_kind)
        names = ["event_id", "name", "block", "stream", "payload", "status", "created_at", "pending"]
        rows = self._exec(sql, action="read the events from", obj=self._where(EVENTS))
        return [dict(zip(names, row)) for row in rows]

    def mark_event(self, event_id: str, status: str, error: str | None) -> None:
        self._exec(
            f'UPDATE {q(EVENTS)} SET "STATUS" = ?, "ATTEMPTS" = "ATTEMPTS" + 1, "LAST_ERROR" = ?, '
            "\"PUBLISHED_AT\" = CASE WHEN ? = 'published' THEN CURRENT_TIMESTAMP() ELSE \"PUBLISHED_AT\" END "
            'WHERE "EVENT_ID" = ?',
            [status, REDACTOR.redact(error) if error else None, status, event_id],
            action="record the delivery of an event in", obj=self._where(EVENTS),
        )
