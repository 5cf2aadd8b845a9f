"""The Python API a Metaflow step or a script uses (`import ingest`), called the way a user calls it, in process."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import ingest

from .support import blocks
from .support.blocks import demo_config


def test_every_public_name_resolves_and_importing_ingest_stays_cheap():
    for name in ingest.__all__:
        assert getattr(ingest, name) is not None, name
    assert (Path(ingest.__file__).parent / "py.typed").is_file()
    # `import ingest` must not drag in the CDK, pyarrow or duckdb: the CLI's fast commands pay for it otherwise
    out = subprocess.run([sys.executable, "-c", "import ingest, sys; print(sorted(m for m in ('duckdb', 'pyarrow', "
                          "'airbyte_cdk', 'ingest.sync.runner') if m in sys.modules))"], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out


def test_run_a_block_from_python_lands_the_same_tables_as_the_cli(project):
    project.write_config(demo_config(count=200, slice_=100))
    result = ingest.run("demo", streams=["products", "users"], config=project.root / "connectors.yaml")
    assert isinstance(result, ingest.SyncResult) and result.ok
    assert set(result.streams) == {"products", "users"}
    assert result.streams["users"].rows_written == 200
    assert project.scalar("SELECT count(*) FROM demo_users") == 200
    assert project.scalar("SELECT status FROM _ingest_runs") == "succeeded"
    again = ingest.run("demo", streams=["users"], config=project.root / "connectors.yaml")
    assert again.ok and again.streams["users"].state_before  # incremental: it started from the saved state


def test_a_python_connector_run_never_imports_the_cdk_into_the_runner(project):
    """The CDK's import costs the runner ~1.2 s of CPU and ~70 MB of RSS (sources/protocol.py): a connector that runs
    in its own environment (the demo's faker) needs only the protocol's dataclasses on the runner's side. And pandas
    (~0.2 s, ~50 MB) is never needed at all."""
    project.write_config(demo_config(count=50, slice_=50))
    code = ("import ingest, sys; r = ingest.run('demo', config=sys.argv[1]); "
            "print(r.ok, r.streams['users'].rows_written, sorted(m for m in sys.modules if m.startswith('airbyte_cdk')), "
            "'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(project.root / "connectors.yaml")], capture_output=True,
                         text=True, cwd=project.root, timeout=120)
    # nor pandas, which pyarrow would import to ask whether a list is a DataFrame (destinations/typing.py)
    assert out.stdout.strip() == "True 50 [] False", out


def test_bad_input_raises_the_documented_errors(project, tmp_path):
    project.write_config(demo_config(count=10, slice_=10))
    config = project.root / "connectors.yaml"
    with pytest.raises(ingest.ConfigError, match="no connector block named 'nope'"):
        ingest.run("nope", config=config)
    with pytest.raises(ingest.ConfigError, match=r"has no stream\(s\) no_such_stream"):
        ingest.run("demo", streams=["no_such_stream"], config=config)
    with pytest.raises(ingest.ConfigError, match="file not found"):
        ingest.run("demo", config=tmp_path / "missing.yaml")
    assert not project.db.exists(), "refused runs write nothing"
    assert issubclass(ingest.ConfigError, ingest.IngestError) and issubclass(ingest.SyncError, ingest.IngestError)


def test_a_destination_that_cannot_be_opened_raises_sync_error(project):
    project.write_config(demo_config(count=10, slice_=10))
    (project.root / "dir.duckdb").mkdir()
    with pytest.raises(ingest.SyncError, match="cannot open DuckDB file"):
        ingest.run("demo", config=project.root / "connectors.yaml", destination=str(project.root / "dir.duckdb"))


def test_a_step_passes_its_pathspec_and_waits_its_turn_for_the_duckdb_file(project):
    """What flows/ingest_flow.py's sync step calls: the events carry the Metaflow task, a failure is returned."""
    project.write_config(demo_config(count=20, slice_=20))
    result = ingest.run("demo", streams=["users"], config=project.root / "connectors.yaml", lock_wait=5,
                        run_pathspec="IngestFlow/7/sync/3", raise_on_failure=False)
    assert result.ok
    assert project.scalar("SELECT json_extract_string(payload, '$.run_pathspec') FROM _ingest_events") == \
        "IngestFlow/7/sync/3"


def test_after_landed_declares_the_trigger_and_refuses_what_could_never_land(project):
    from metaflow import FlowSpec, Parameter, step

    from ingest.triggers import FLOW_ATTRIBUTE, check_tables

    class Report(FlowSpec):
        load_id = Parameter("load_id", default="")

        @step
        def start(self):
            self.next(self.end)

        @step
        def end(self):
            pass

    decorated = ingest.after_landed("demo.users", parameters=["load_id"])(Report)
    assert getattr(decorated, FLOW_ATTRIBUTE) == [{"name": "data_landed.demo.users", "parameters": {"load_id": "load_id"}}]
    with pytest.raises(ingest.ConfigError, match="no payload field 'row_count'"):
        ingest.after_landed("demo.users", parameters={"load_id": "row_count"})
    with pytest.raises(ingest.ConfigError, match="does not declare: rows"):
        ingest.after_landed("demo.users", parameters=["rows"])(Report)
    with pytest.raises(ingest.ConfigError, match='expected "block.stream"'):
        ingest.after_landed("demo_users")
    with pytest.raises(ingest.ConfigError, match="maps each table"):
        ingest.after_landed("demo.users", "demo.products", parameters=["load_id"])

    project.write_config(demo_config(count=10, slice_=10))
    check_tables(["demo.users"], project.root / "connectors.yaml")
    with pytest.raises(ingest.ConfigError, match=r"demo\.nope: block 'demo' has no stream 'nope' \(streams: "):
        check_tables(["demo.users", "demo.nope"], project.root / "connectors.yaml")


@pytest.mark.parametrize("setting, shown", [(None, "61.0 MiB"), ("512MiB", "512.0 MiB")])
def test_the_duckdb_memory_limit_bounds_every_connection_to_the_file(project, setting, shown):
    """`defaults.duckdb.memory_limit` (64MB unless set): without it DuckDB's buffer pool keeps every block a dedup
    scan touched, and the runner grows with the table (bench/README.md). Writers and read-only readers alike."""
    from ingest.config import load_project
    from ingest.destinations.duckdb import DuckDBDestination

    text = blocks.project({"demo": blocks.demo_block(count=10, slice_=10)})
    if setting:
        text = blocks.edit_block(text, "demo", defaults={"duckdb": {"path": "warehouse.duckdb", "memory_limit": setting}})
    project.write_config(text)
    loaded = load_project(project.root / "connectors.yaml")
    for read_only in (False, True):
        dest = DuckDBDestination.from_project(loaded, read_only=read_only)
        try:
            assert dest.con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == shown
        finally:
            dest.close()
