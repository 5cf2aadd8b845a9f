"""Run the real CLI as a user would: in a subprocess (`run_cli`, `start_cli`, `finish`) in a temp project directory.

`invoke_cli` runs it in this process instead (click's CliRunner), for commands that end before any sync starts (the
config corpus: hundreds of refusals, where a subprocess adds only an interpreter start). `ingest` configures the root
logger, installs SIGTERM/SIGINT handlers and registers every secret it resolves with the process-wide redactor:
`invoke_cli` puts all of that (and the working directory) back, so nothing leaks from one test into the next. Tests
that need no CLI call the library instead (`ingest.run`, `load_project`)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]
# One connectors cache for the whole suite (and across runs on one machine): each connector release is fetched or
# built once (uv, from PyPI), then every test project, CLI subprocess and Metaflow task finds it there.
CONNECTORS_DIR = Path(os.environ.get("INGEST_CONNECTORS_DIR") or ROOT / ".cache" / "connectors")


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str
    args: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return f"ingest {' '.join(self.args)} → exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


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
    return CliResult(proc.returncode, proc.stdout, proc.stderr, list(args))


def start_cli(args: list[str], cwd: Path, env: dict | None = None, *, full_env: dict | None = None) -> subprocess.Popen:
    """`ingest <args>` started in `cwd`; `env` is added to `cli_env()`, `full_env` replaces it."""
    return subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", *args], cwd=cwd, env=cli_env(env) if full_env is None else full_env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 60) -> CliResult:
    """Wait for a started CLI; a run that outlives `timeout` is killed and fails the test with its output."""
    import pytest

    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"ingest {' '.join(proc.args[3:])} did not finish in {timeout}s\n{out}\n{err}")
    return CliResult(proc.returncode, out, err, list(proc.args[3:]))


def invoke_cli(args: list[str], cwd: Path, env: dict) -> CliResult:
    """`ingest <args>` in this process, in `cwd`, with exactly `env` as its environment (see the module docstring)."""
    import logging
    import signal

    from click.testing import CliRunner

    from ingest import cli
    from ingest.secrets import REDACTOR

    loggers = [logging.getLogger(name) for name in ("", "airbyte", "ingest.connector", "ingest.install")]
    saved_loggers = [(lg, list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    saved_signals = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    saved_redactor = (set(REDACTOR._values), REDACTOR._pattern)
    saved_cwd = os.getcwd()
    os.chdir(cwd)
    try:
        # the CLI sees `env` and nothing else of ours (CliRunner sets these for the call and restores them)
        call_env = {**{k: None for k in os.environ if k not in env}, **env}
        result = CliRunner().invoke(cli.main, args, env=call_env, catch_exceptions=False)
    finally:
        os.chdir(saved_cwd)
        REDACTOR._values, REDACTOR._pattern = saved_redactor
        for signum, handler in saved_signals.items():
            signal.signal(signum, handler)
        for lg, handlers, level, propagate in saved_loggers:
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate
    return CliResult(result.exit_code, result.stdout, result.stderr, list(args))


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

    def start(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        return start_cli(list(args), self.root, env=env)

    def query(self, sql: str, params=None) -> list[tuple]:
        con = duckdb.connect(str(self.db), read_only=True)
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    def scalar(self, sql: str, params=None):
        return self.query(sql, params)[0][0]
