"""A Snowflake session for one destination: the writer's connection, a side connection for reads and lock
heartbeats from other threads, and statement execution where every Snowflake error becomes one SyncError that
names the object and the block (settings.explain). Nothing here knows which tables exist or what a checkpoint is.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any

from ...errors import ConfigError, SyncError
from .settings import SnowflakeConfig, explain

log = logging.getLogger("ingest.snowflake")
if logging.getLogger().getEffectiveLevel() > logging.INFO:
    # Without -v the connector's own retry warnings are noise: its errors reach the user as one SyncError.
    logging.getLogger("snowflake.connector").setLevel(logging.ERROR)

SESSION_PARAMETERS = {
    "TIMEZONE": "UTC",
    # A killed run's open transaction keeps its locks until Snowflake aborts it: fail after 10 minutes with a clear
    # message instead of waiting the default 12 hours.
    "LOCK_TIMEOUT": 600,
    "ABORT_DETACHED_QUERY": True,
}


class Session:
    """`connection`: an open connection to use instead of connecting (tests hand in a stand-in)."""

    def __init__(self, config: SnowflakeConfig, team: str | None = None, block: str | None = None,
                 run_id: str | None = None, connection=None):
        self.config = config
        self.team, self.block, self.run_id = team, block, run_id
        self._statement_params: dict | None = None
        self._reader = None  # a second session for query() and lock heartbeats, opened on first use
        self._reader_lock = threading.Lock()  # they come from other threads: one statement at a time on it
        self.con = connection if connection is not None else self.connect()
        self.cur = None

    def query_tag(self) -> str:
        return json.dumps({"app": "ingest", "team": self.team, "block": self.block, "run_id": self.run_id}, separators=(",", ":"))

    def tag_run(self, run_id: str) -> None:
        """The run id was not known at connect time: tag every statement from now on (statement-level QUERY_TAG)."""
        self.run_id = run_id
        self._statement_params = {"QUERY_TAG": self.query_tag()}

    def connect_kwargs(self) -> dict:
        c = self.config
        kwargs: dict[str, Any] = dict(
            account=c.account, user=c.user, database=c.database, schema=c.schema, role=c.role, warehouse=c.warehouse,
            host=c.host, port=c.port, protocol=c.protocol, login_timeout=c.login_timeout, network_timeout=c.network_timeout,
            application="ingest", paramstyle="qmark", autocommit=True, client_session_keep_alive=False,
            session_parameters={"QUERY_TAG": self.query_tag(), **SESSION_PARAMETERS},
        )
        if c.private_key:
            kwargs.update(authenticator="SNOWFLAKE_JWT", private_key=c.private_key)
        else:
            kwargs["password"] = c.password
        return {k: v for k, v in kwargs.items() if v is not None}

    def connect(self):
        try:
            import snowflake.connector
        except ImportError:
            raise ConfigError("destination 'snowflake' needs the connector: pip install 'ingest[snowflake]'") from None
        try:
            return snowflake.connector.connect(**self.connect_kwargs())
        except snowflake.connector.errors.Error as exc:
            raise SyncError(explain(exc, "connect to", f"account {self.config.account}", self.block, self.config)) from None

    def where(self, table: str | None = None) -> str:
        c = self.config
        return f"{c.database}.{c.schema}" + (f".{table}" if table else "")

    def close(self) -> None:
        for con in (self._reader, self.con):
            try:
                if con is not None:
                    con.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._reader = None

    # ------------------------------------------------------------ statements

    def execute(self, sql: str, params=None, *, action: str, obj: str, block: str | None = None) -> list[tuple]:
        """Run one statement; a Snowflake error becomes a SyncError naming the object and the block."""
        import snowflake.connector

        log.debug("snowflake: %s", sql)
        try:
            kwargs = {"_statement_params": self._statement_params} if self._statement_params else {}
            self.cur.execute(sql, params, **kwargs)
            return self.cur.fetchall() if self.cur.description else []
        except snowflake.connector.errors.Error as exc:
            raise SyncError(explain(exc, action, obj, block or self.block, self.config)) from None

    def rollback(self) -> None:
        """After a failure inside a transaction: best effort (the session may be gone; Snowflake then aborts it)."""
        try:
            self.cur.execute("ROLLBACK")
        except Exception:  # noqa: BLE001
            log.debug("rollback failed", exc_info=True)

    def transaction(self, statements: list[tuple[str, Any, str, str]], block: str | None) -> None:
        """BEGIN; DML only; COMMIT. On any failure: ROLLBACK (nothing of it is kept) and re-raise."""
        # BEGIN TRANSACTION, not a bare BEGIN: unambiguous next to Snowflake Scripting's BEGIN … END blocks
        self.execute("BEGIN TRANSACTION", action="begin a transaction in", obj=self.where(), block=block)
        try:
            for sql, params, action, obj in statements:
                self.execute(sql, params, action=action, obj=obj, block=block)
            self.execute("COMMIT", action="commit to", obj=self.where(), block=block)
        except BaseException:
            self.rollback()
            raise

    def side(self, sql: str, params=None, *, action: str, obj: str) -> list[dict]:
        """One statement on the side session (autocommit), from any thread."""
        import snowflake.connector

        with self._reader_lock:
            if self._reader is None:
                self._reader = self.connect()
            try:
                cur = self._reader.cursor()
                try:
                    cur.execute(sql, params)
                    names = [d[0] for d in cur.description or []]
                    return [dict(zip(names, row)) for row in cur.fetchall()]
                finally:
                    cur.close()
            except snowflake.connector.errors.Error as exc:
                raise SyncError(explain(exc, action, obj, self.block, self.config)) from None
