"""The config corpus (fixtures/configs/) and the CLI as its suites run it: a clean environment holding only the
test secrets the fixtures reference, a bounded wait, and nothing written (DuckDB files found anywhere below)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .cli import CONNECTORS_DIR, ROOT, CliResult, start_cli
from .cli import finish as finish_cli

CONFIGS = ROOT / "fixtures" / "configs"
# A recognisable fake secret: every fixture that needs a token references ${INGEST_TEST_JIRA_TOKEN}.
FAKE_SECRET = "tok-SECRET-abc123xyz"
TEST_ENV = {
    "INGEST_TEST_JIRA_TOKEN": FAKE_SECRET,
    "INGEST_TEST_JIRA_DOMAIN": "example.atlassian.net",
    "INGEST_TEST_JIRA_EMAIL": "someone@example.com",
    "INGEST_TEST_SNOWFLAKE_PASSWORD": "sf-SECRET-pw-778899",
}
TIMEOUT = 60


def env(extra: dict | None = None) -> dict:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "JIRA_", "SNOWFLAKE_"))}
    out.update(METAFLOW_USER="dev", PYTHONUNBUFFERED="1", INGEST_CONNECTORS_DIR=str(CONNECTORS_DIR), **TEST_ENV)
    out.update(extra or {})
    return out


def start(args: list[str], cwd: Path, extra_env: dict | None = None) -> subprocess.Popen:
    return start_cli(args, cwd, full_env=env(extra_env))


def finish(proc: subprocess.Popen) -> CliResult:
    return finish_cli(proc, TIMEOUT)


def duckdb_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if ".duckdb" in p.name or p.suffix in (".db", ".wal"))
