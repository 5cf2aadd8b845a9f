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


# ------------------------------------------------------------------------------------------- fast part vs end to end
# A test is end to end (`e2e`) when it drives a real process or a whole sync: it uses a project directory or a fakesnow
# server, or its body starts the CLI, a connector, a flow or a sync. Everything else is an in-process unit test:
# `pytest -m "not e2e"` runs that part alone in well under a minute.
_E2E_FIXTURES = {"project", "sf", "destination"}
# suites whose every test runs connectors, flows or deploy tooling in child processes
_E2E_MODULES = {"test_argo_compile", "test_connector_envs", "test_flows", "test_isolated", "test_packaged_manifests"}
_E2E_CALLS = ("run_cli(", "start_cli(", "project.cli(", ".cli(", "start_flowing(", "kill_when_flowing(", "subprocess.",
              "cassette_command(", "Runner(", "AirbyteManager(", "ingest.run(", "start([", "ingest([")


def pytest_collection_modifyitems(config, items):
    import inspect

    sources: dict = {}
    for item in items:
        function = getattr(item, "function", None)
        if function is None:
            continue
        if function not in sources:
            try:
                sources[function] = inspect.getsource(function)
            except (OSError, TypeError):
                sources[function] = ""
        module = item.module.__name__.rsplit(".", 1)[-1] if getattr(item, "module", None) else ""
        if (module in _E2E_MODULES or _E2E_FIXTURES & set(getattr(item, "fixturenames", ()))
                or any(c in sources[function] for c in _E2E_CALLS)):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(params=["duckdb", "snowflake"])
def destination(request, project):
    """The same scenario against DuckDB and against Snowflake (a fakesnow server)."""
    from .support import destinations

    if request.param == "duckdb":
        yield destinations.DuckDB(project)
        return
    server = request.getfixturevalue("sf")
    yield destinations.Snowflake(project, server)
