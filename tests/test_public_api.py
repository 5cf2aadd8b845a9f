"""The Python API a Metaflow step or a script uses (`import ingest`), called the way a user calls it, in process."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import ingest

from .support.blocks import demo_config


def test_every_public_name_resolves_and_importing_ingest_stays_cheap():
    for name in ingest.__all__:
        assert getattr(ingest, name) is not None, name
    assert (Path(ingest.__file__).parent / "py.typed").is_file()
    # `import ingest` must not drag in the CDK, pyarrow or duckdb: the CLI's fast commands pay for it otherwise
    out = subprocess.run([sys.executable, "-c", "import ingest, sys; print(sorted(m for m in ('duckdb', 'pyarrow', "
                          "'airbyte_cdk', 'ingest.manager') if m in sys.modules))"], capture_output=True, text=True)
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


def test_bad_input_raises_the_documented_errors(project, tmp_path):
    project.write_config(demo_config(count=10, slice_=10))
    config = project.root / "connectors.yaml"
    with pytest.raises(ingest.ConfigError, match="no connector block named 'nope'"):
        ingest.run("nope", config=config)
    with pytest.raises(ingest.ConfigError, match="has no stream\(s\) no_such_stream"):
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
