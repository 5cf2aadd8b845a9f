"""The demo block end to end through the CLI, the way a newcomer runs it: rows in DuckDB, state, runs, summary."""
from __future__ import annotations

import json

from .support.blocks import demo_config


def test_run_demo_lands_every_stream_with_metadata_state_and_summary(project):
    project.write_config(demo_config(count=1000, slice_=250))
    r = project.cli("run", "demo")
    assert r.code == 0, r.output
    # the summary names every stream and the record counts
    for line in ("users", "products", "purchases", "1,000", "succeeded"):
        assert line in r.stdout
    assert project.scalar("SELECT count(*) FROM demo_users") == 1000
    assert project.scalar("SELECT count(DISTINCT id) FROM demo_users") == 1000
    assert project.scalar("SELECT count(*) FROM demo_products") == 100
    assert project.scalar("SELECT count(*) FROM demo_purchases") == 1000
    # typed columns from the JSON schema, nested objects as JSON, metadata columns
    types = dict(project.query("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'demo_users'"))
    assert types["id"] == "BIGINT"
    assert types["updated_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["address"] == "JSON"
    for meta in ("_ingest_extracted_at", "_ingest_run_id", "_ingest_load_id", "_ingest_rejected"):
        assert meta in types
    assert project.scalar("SELECT count(*) FROM demo_users WHERE _ingest_run_id IS NULL OR _ingest_extracted_at IS NULL") == 0
    city = project.scalar("SELECT address->>'city' FROM demo_users WHERE id = 1")
    assert isinstance(city, str) and city
    # one run row, succeeded, with the row count; state per stream; the tables catalog knows the owner
    status, rows, streams = project.query("SELECT status, rows, streams FROM _ingest_runs")[0]
    assert (status, rows, sorted(streams)) == ("succeeded", 2100, ["products", "purchases", "users"])
    assert {k for (k,) in project.query("SELECT state_key FROM _ingest_state WHERE block = 'demo'")} == {"users", "products", "purchases"}
    assert project.query("SELECT team, source FROM _ingest_tables WHERE table_name = 'demo_users'") == [("platform", "airbyte-source-faker==7.2.1")]


def test_second_run_is_incremental_and_state_show_reset(project):
    project.write_config(demo_config(count=500, slice_=100))
    assert project.cli("run", "demo").code == 0
    r = project.cli("run", "demo")
    assert r.code == 0, r.output
    assert project.scalar("SELECT count(*) FROM demo_users") == 500  # nothing re-landed twice
    assert project.scalar("SELECT count(DISTINCT _ingest_run_id) FROM demo_users") == 1  # the second run loaded nothing

    shown = project.cli("state", "show", "demo")
    assert shown.code == 0
    users_line = next(line for line in shown.stdout.splitlines() if line.startswith("demo.users:"))
    assert json.loads(users_line.split(":", 1)[1])["loop_offset"] == 500

    reset = project.cli("state", "reset", "demo", "--stream", "users")
    assert reset.code == 0 and "removed 1" in reset.stdout
    assert "demo.users" not in project.cli("state", "show", "demo").stdout
    assert project.cli("state", "reset", "demo", "--stream", "nope").code == 2


def test_stream_selection_and_unknown_stream(project):
    project.write_config(demo_config(count=200, slice_=100))
    r = project.cli("run", "demo", "--stream", "users")
    assert r.code == 0, r.output
    tables = {t for (t,) in project.query("SELECT table_name FROM information_schema.tables")}
    assert "demo_users" in tables and "demo_purchases" not in tables
    bad = project.cli("run", "demo", "--stream", "nope")
    assert bad.code == 2 and "nope" in bad.stderr and "Traceback" not in bad.stderr


def test_full_refresh_replaces_the_table_and_restarts_state(project):
    project.write_config(demo_config(count=300, slice_=100))
    assert project.cli("run", "demo", "--stream", "users").code == 0
    first_run = project.scalar("SELECT DISTINCT _ingest_run_id FROM demo_users")
    r = project.cli("run", "demo", "--stream", "users", "--full-refresh")
    assert r.code == 0, r.output
    assert "replace" in r.stdout
    assert project.scalar("SELECT count(*) FROM demo_users") == 300
    runs = project.query("SELECT DISTINCT _ingest_run_id FROM demo_users")
    assert len(runs) == 1 and runs[0][0] != first_run  # every row is from the new load
    tables = {t for (t,) in project.query("SELECT table_name FROM information_schema.tables")}
    assert not any(t.startswith("_ingest_staging_") for t in tables)


def test_destination_flag_writes_to_another_file(project, tmp_path):
    project.write_config(demo_config(count=100, slice_=100))
    other = tmp_path / "elsewhere" / "other.duckdb"
    r = project.cli("run", "demo", "--stream", "products", "--destination", str(other))
    assert r.code == 0, r.output
    assert other.exists() and not project.db.exists()
    assert project.cli("run", "demo", "--destination", "bogus").code == 2


def test_destination_flag_cannot_send_a_block_into_another_blocks_table(project):
    """Two blocks may reuse a table name in two DuckDB files; `--destination` must not then point one block at the
    other's file for a run (it would overwrite that block's table)."""
    text = demo_config(count=50, slice_=50)
    text += text[text.index("  demo:\n"):].replace("  demo:\n", "  demo_copy:\n").replace(
        "    team: platform\n", "    team: platform\n    destination: {type: duckdb, path: other.duckdb}\n")
    text = text.replace("      - name: products\n", "      - name: products\n        table: shared_products\n")
    project.write_config(text)
    assert project.cli("validate").code == 0  # two files, one name each: fine
    r = project.cli("run", "demo_copy", "--destination", str(project.db))
    assert r.code == 2, r.output
    assert "table 'shared_products' of stream demo_copy.products is written there by connectors.demo.streams[1]" in r.stderr
    assert not project.db.exists()


def test_list_validate_and_discover(project):
    project.write_config(demo_config())
    listed = project.cli("list")
    assert listed.code == 0 and "demo" in listed.stdout and "platform" in listed.stdout
    assert project.cli("validate").code == 0
    disc = project.cli("discover", "demo")
    assert disc.code == 0 and "users" in disc.stdout and "updated_at" in disc.stdout
    assert project.cli("check", "demo").code == 0
    spec = project.cli("spec", "demo")
    assert spec.code == 0 and "count" in json.loads(spec.stdout)["properties"]


def test_a_stream_the_connector_does_not_offer_is_a_config_error_that_writes_nothing(project):
    project.write_config(demo_config().replace("- name: products", "- name: prodcts"))
    r = project.cli("run", "demo")
    assert r.code == 2, r.output
    assert "connectors.yaml:" in r.stderr and "connectors.demo.streams[1]" in r.stderr and "prodcts" in r.stderr
    assert "Traceback" not in r.stderr
    assert not project.db.exists()


def test_read_commands_with_a_destination_keyword_before_the_first_sync(project):
    """`--destination duckdb` names the block's own file: before any sync it reads as empty, like no flag at all
    (only a --destination *path* that does not exist is a usage error)."""
    project.write_config(demo_config(count=10, slice_=10))
    for args in (["state", "show", "demo"], ["events", "list"]):
        plain, keyword = project.cli(*args), project.cli(*args, "--destination", "duckdb")
        assert plain.code == keyword.code == 0, (plain.output, keyword.output)
    assert project.cli("state", "show", "demo", "--destination", str(project.root / "nope.duckdb")).code == 2
    assert not project.db.exists()
