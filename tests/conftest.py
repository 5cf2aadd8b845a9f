"""Fixtures every suite shares; the helpers behind them live in tests/support/ (test modules never import each other).

`project`: a temp project directory (tests/support/cli.Project). `api`: the widgets loopback API. `sf`: a fakesnow
server for one test. `destination`: the same scenario body against DuckDB and against Snowflake (fakesnow).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from .support.cli import CONNECTORS_DIR, Project

os.environ["INGEST_CONNECTORS_DIR"] = str(CONNECTORS_DIR)
# Metaflow refuses to run (or even read results) without a user name, and never as root.
if not os.environ.get("METAFLOW_USER") or os.environ.get("METAFLOW_USER") == "root":
    os.environ["METAFLOW_USER"] = "ci"

# The connector releases the suite's configs pin (tests and fixtures/configs): built into the cache once, up front,
# so no test pays (or prints) the first-use build and results never depend on test order. Under xdist every worker
# runs this; the cache's file lock (ingest/sources/environments.py) makes the second worker wait, then find it built.
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


@pytest.fixture
def project(tmp_path) -> Project:
    return Project(tmp_path)


@pytest.fixture
def api():
    from .support.widgets import WidgetsApi

    a = WidgetsApi()
    yield a
    a.close()


@pytest.fixture
def sf(tmp_path):
    pytest.importorskip("snowflake.connector")
    pytest.importorskip("fakesnow")
    from .support.snowflake import FakeSnowflake

    server = FakeSnowflake(tmp_path)
    server.start()
    yield server
    server.stop()
