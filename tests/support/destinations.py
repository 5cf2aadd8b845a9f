"""One scenario body, two destinations: `Destination` is what a test needs to know about where a project lands —
the `defaults:` of its connectors.yaml, the environment its runs need, how to read what landed (unquoted lower-case
names work in both dialects: Snowflake folds them to the upper-case names the destination creates), and what
stands in for Snowflake aborting a killed session. The `destination` fixture (tests/conftest.py) gives one per
parameter: `duckdb` (a file in the project) and `snowflake` (a fakesnow server, the real connector over HTTP)."""
from __future__ import annotations

from .cli import Project
from .snowflake import DATABASE, SCHEMA, FakeSnowflake, env_for


class Destination:
    name = ""
    # data types of the destination's columns as information_schema names them
    types: dict[str, str] = {}

    def __init__(self, project: Project):
        self.project = project

    def defaults(self, batch: int | None = None) -> dict:
        """The project's `defaults:` (the DuckDB path is always there: read commands look for it)."""
        out: dict = {"duckdb": {"path": "warehouse.duckdb"}}
        if batch is not None:
            out["batch"] = {"max_records": batch}
        return out

    @property
    def env(self) -> dict:
        return {}

    def cli(self, *args: str, timeout: float = 240):
        return self.project.cli(*args, env=self.env, timeout=timeout)

    def query(self, sql: str, params=None) -> list[tuple]:
        raise NotImplementedError

    def scalar(self, sql: str, params=None):
        return self.query(sql, params)[0][0]

    def tables(self) -> set[str]:
        """Lower-case names of the tables that exist (none before the first run)."""
        raise NotImplementedError

    def columns(self, table: str) -> dict[str, str]:
        """Lower-case column name → data type."""
        raise NotImplementedError

    def comments(self, table: str) -> tuple[str | None, dict[str, str | None]]:
        """The table's comment, and lower-case column name → its comment, as the warehouse's catalog keeps them."""
        raise NotImplementedError

    def after_kill(self) -> None:
        """What happens to a SIGKILLed client's open transaction before anyone reads."""


class DuckDB(Destination):
    name = "duckdb"
    types = {"text": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "json": "JSON", "timestamp": "TIMESTAMP WITH TIME ZONE"}

    def query(self, sql: str, params=None) -> list[tuple]:
        return self.project.query(sql, params)

    def tables(self) -> set[str]:
        if not self.project.db.exists():
            return set()
        return {t for (t,) in self.query("SELECT table_name FROM information_schema.tables")}

    def columns(self, table: str) -> dict[str, str]:
        return dict(self.query("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?", [table]))

    def comments(self, table: str) -> tuple[str | None, dict[str, str | None]]:
        table_comment = self.scalar("SELECT comment FROM duckdb_tables() WHERE table_name = ?", [table])
        return table_comment, dict(self.query("SELECT column_name, comment FROM duckdb_columns() WHERE table_name = ?", [table]))


class Snowflake(Destination):
    name = "snowflake"
    types = {"text": "TEXT", "integer": "NUMBER", "number": "FLOAT", "json": "VARIANT", "timestamp": "TIMESTAMP_TZ"}

    def __init__(self, project: Project, server: FakeSnowflake):
        super().__init__(project)
        self.server = server

    def defaults(self, batch: int | None = None) -> dict:
        return {**super().defaults(batch), "destination": "snowflake", "snowflake": {
            "account": "acme", "user": "ingest_loader", "password": "${INGEST_TEST_SF_PASSWORD}", "role": "INGEST_LOADER",
            "warehouse": "LOADING", "database": DATABASE, "schema": SCHEMA, "host": "127.0.0.1", "port": self.server.port,
            "protocol": "http", "login_timeout": 10, "network_timeout": 10}}

    @property
    def env(self) -> dict:
        return env_for(self.project)

    def query(self, sql: str, params=None) -> list[tuple]:
        return self.server.query(sql, params)

    def tables(self) -> set[str]:
        return {t.lower() for t in self.server.tables()}

    def columns(self, table: str) -> dict[str, str]:
        return {c.lower(): t for c, t in self.query(
            "SELECT COLUMN_NAME, DATA_TYPE FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = CURRENT_SCHEMA() "
            "AND TABLE_NAME = ?", [table.upper()])}

    def comments(self, table: str) -> tuple[str | None, dict[str, str | None]]:
        where = "WHERE TABLE_SCHEMA = CURRENT_SCHEMA() AND TABLE_NAME = ?"
        table_comment = self.scalar(f"SELECT COMMENT FROM INFORMATION_SCHEMA.TABLES {where}", [table.upper()])
        return table_comment, {c.lower(): comment for c, comment in self.query(
            f"SELECT COLUMN_NAME, COMMENT FROM INFORMATION_SCHEMA.COLUMNS {where}", [table.upper()])}

    def after_kill(self) -> None:
        # On Snowflake a killed client's open transaction is rolled back when its session is aborted; a fakesnow
        # session never ends, so a restart stands in for it.
        self.server.restart()
