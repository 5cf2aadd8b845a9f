"""A fakesnow server per test, on 127.0.0.1 (a child process whose DuckDB is a file in the test's directory, so it
can be killed and restarted without losing committed data), the `defaults.snowflake` block that points at it, and a
reader connection (the real snowflake-connector-python) to check what landed."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from .cli import run_cli
from .net import LoopbackServer, free_port

# Made up per run (fakesnow checks none): what the leak checks must never find in output, logs or tables.
PASSWORD = "sf-test-PASSWORD-" + secrets.token_hex(6)
ENV = {"INGEST_TEST_SF_PASSWORD": PASSWORD, "INGEST_TEST_SF_KEY_PASSPHRASE": "key-PASSPHRASE-" + secrets.token_hex(6)}
DATABASE, SCHEMA = "ANALYTICS", "RAW"

# The fakesnow server, in its own process: its shared DuckDB is file-backed (databases are files in argv[1]).
SERVER = r"""
import sys, time
import fakesnow
serve = fakesnow.server  # the function; importing the submodule below shadows the name
import fakesnow.server as server_module
from fakesnow.instance import FakeSnow
import fakesnow.cursor as cursor_module
server_module.shared_fs = FakeSnow(db_path=sys.argv[1])
# fakesnow 0.12.1's server describes every statement after running it with DuckDB's DESCRIBE, which cannot describe a
# COMMENT statement: the comment is stored, then the request fails. Snowflake answers such a statement with a status
# row; describe it as nothing. (A fix to the fake, not to ingest: patch mode has no describe step.)
_describe = cursor_module.FakeSnowflakeCursor._describe_last_sql
def _describe_last_sql(self):
    if str(self._last_sql or "").lstrip().upper().startswith("COMMENT ON COLUMN"):
        return []
    return _describe(self)
cursor_module.FakeSnowflakeCursor._describe_last_sql = _describe_last_sql
with serve(port=int(sys.argv[2])):
    print("ready", flush=True)
    while True:
        time.sleep(3600)
"""


class FakeSnowflake:
    """A fakesnow server for one test, plus a reader connection (the real connector) to check what landed."""

    def __init__(self, root: Path):
        self.dir = root / "fakesnow"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._con = None

    def start(self) -> None:
        log = open(self.dir / "server.log", "a")
        # TMPDIR: fakesnow keeps its stage files in a temp dir; keep them inside the test's directory
        env = {**os.environ, "TMPDIR": str(self.dir)}
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(self.dir), str(self.port)],
                                     stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", f"fakesnow server did not start: {(self.dir / 'server.log').read_text()[-2000:]}"

    def stop(self) -> None:
        if self._con is not None:
            self._con = None  # its session dies with the server
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None

    def restart(self) -> None:
        """Ends every session. On Snowflake a killed client's open transaction is rolled back when its session is
        aborted (SYSTEM$ABORT_TRANSACTION, or idle timeout); a fakesnow session never ends, so this stands in for it."""
        self.stop()
        self.start()

    def query(self, sql: str, params=None) -> list[tuple]:
        if self._con is None:
            import snowflake.connector as snowflake_connector

            self._con = snowflake_connector.connect(
                account="acme", user="reader", password=secrets.token_hex(8), host="127.0.0.1", port=self.port, protocol="http",
                database=DATABASE, schema=SCHEMA, paramstyle="qmark", login_timeout=10, network_timeout=10,
            )
        cur = self._con.cursor()
        cur.execute(sql, params)
        return cur.fetchall()

    def scalar(self, sql: str, params=None):
        return self.query(sql, params)[0][0]

    def tables(self) -> set[str]:
        return {t for (t,) in self.query("SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = CURRENT_SCHEMA()")}

    def defaults(self, batch: int = 10_000, auth: str = "password: ${INGEST_TEST_SF_PASSWORD}") -> str:
        return sf_defaults(self.port, batch, auth)


def sf_defaults(port: int, batch: int = 10_000, auth: str = "password: ${INGEST_TEST_SF_PASSWORD}") -> str:
    return f"""
defaults:
  duckdb: {{path: warehouse.duckdb}}
  batch: {{max_records: {batch}}}
  snowflake:
    account: acme
    user: ingest_loader
    {auth}
    role: INGEST_LOADER
    warehouse: LOADING
    database: {DATABASE}
    schema: {SCHEMA}
    host: 127.0.0.1
    port: {port}
    protocol: http
    login_timeout: 10
    network_timeout: 10
"""


def env_for(project) -> dict:
    """The secrets the configs reference, and TMPDIR inside the project (a killed run's Parquet files stay there)."""
    tmp = project.root / "tmp"
    tmp.mkdir(exist_ok=True)
    return {**ENV, "TMPDIR": str(tmp)}


def cli(project, *args, timeout: float = 240):
    return run_cli(list(args), project.root, env=env_for(project), timeout=timeout)


def assert_clean(result) -> None:
    assert "Traceback" not in result.output, result.output
    assert PASSWORD not in result.output and "PASSPHRASE" not in result.output, result.output


class RefusingLogin(LoopbackServer):
    """Answers every Snowflake login the way Snowflake does for a wrong password."""

    def handle(self, method, path, query, headers, raw):
        return 200, {"data": {"nextAction": None, "authnMethod": "PASSWORD"}, "code": "390100",
                     "message": "Incorrect username or password was specified.", "success": False}, {}, {}
