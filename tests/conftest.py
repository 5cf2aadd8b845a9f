"""Shared test helpers: run the real CLI in a subprocess, in a temp project directory, and read the DuckDB file."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[1]
# One connectors cache for the whole suite (and across runs on one machine): each connector release is fetched or
# built once (uv, from PyPI), then every test project, CLI subprocess and Metaflow task finds it there.
CONNECTORS_DIR = Path(os.environ.get("INGEST_CONNECTORS_DIR") or ROOT / ".cache" / "connectors")
os.environ["INGEST_CONNECTORS_DIR"] = str(CONNECTORS_DIR)
# Metaflow refuses to run (or even read results) without a user name, and never as root.
if not os.environ.get("METAFLOW_USER") or os.environ.get("METAFLOW_USER") == "root":
    os.environ["METAFLOW_USER"] = "ci"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JIRA_", "INGEST_"))}
    env["INGEST_CONNECTORS_DIR"] = str(CONNECTORS_DIR)
    env.setdefault("METAFLOW_USER", "ci")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 240) -> CliResult:
    proc = subprocess.run(
        [sys.executable, "-m", "ingest.cli", *args], cwd=cwd, env=cli_env(env), capture_output=True, text=True, timeout=timeout
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def start_cli(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", *args], cwd=cwd, env=cli_env(env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


class Project:
    """A temp directory with a connectors.yaml, as a user would have."""

    def __init__(self, root: Path):
        self.root = root
        self.db = root / "warehouse.duckdb"

    def write_config(self, text: str) -> Path:
        path = self.root / "connectors.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    def cli(self, *args: str, env: dict | None = None, timeout: float = 240) -> CliResult:
        return run_cli(list(args), self.root, env=env, timeout=timeout)

    def query(self, sql: str, params=None) -> list[tuple]:
        con = duckdb.connect(str(self.db), read_only=True)
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    def scalar(self, sql: str, params=None):
        return self.query(sql, params)[0][0]


@pytest.fixture
def project(tmp_path) -> Project:
    return Project(tmp_path)


DEMO_CONFIG = """
defaults:
  duckdb: {{path: warehouse.duckdb}}
  batch: {{max_records: {batch}}}
connectors:
  demo:
    team: platform
    source: airbyte-source-faker==7.2.1
    config: {{count: {count}, seed: 7, records_per_slice: {slice}, parallelism: 1, always_updated: false}}
    streams:
      - name: users
      - name: products
      - name: purchases
"""


def demo_config(count: int = 1000, slice_: int = 250, batch: int = 10_000) -> str:
    return DEMO_CONFIG.format(count=count, slice=slice_, batch=batch)


# The connector releases the suite's configs pin (tests and fixtures/configs): built into the cache once, up front,
# so no test pays (or prints) the first-use build and results never depend on test order.
SUITE_CONNECTORS = {"airbyte-source-faker": ("7.2.1", "venv"), "airbyte-source-jira": ("4.0.0", "files")}


@pytest.fixture(scope="session", autouse=True)
def connectors_cache() -> Path:
    from ingest.sources.environments import ConnectorCache

    cache = ConnectorCache(CONNECTORS_DIR, notify=lambda line: print(f"[connectors cache] {line}"))
    for package, (version, kind) in SUITE_CONNECTORS.items():
        cache.ensure_files(package, version)
        if kind == "venv":
            cache.ensure_venv(package, version)
    return CONNECTORS_DIR


def prepared(block):
    """`block` as `run`/`check` see it: release fetched, secrets resolved, config checked against the spec."""
    from ingest.sources.connector import prepare

    prepare(block)
    return block
