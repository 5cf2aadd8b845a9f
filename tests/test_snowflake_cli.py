"""The Snowflake destination end to end: the real CLI, the real snowflake-connector-python over HTTP, and a fakesnow
server on 127.0.0.1 started per test (a child process whose DuckDB is a file in the test's directory, so it can be
killed and restarted without losing committed data).

What this shows honestly (fakesnow runs the same SQL the destination sends to Snowflake, except SWAP WITH):
the demo block lands the same rows as a DuckDB run; the second run is incremental; `state show/reset` work;
--full-refresh replaces the table (through fakesnow's DROP + RENAME path, see docs/snowflake.md); new fields become
columns and misfits land in _INGEST_REJECTED; a SIGKILL anywhere loses nothing and duplicates nothing (test_kill_rerun.py, shared with DuckDB); Snowflake
errors are one clear line (exit 1) and keep what was committed. What fakesnow cannot show (SWAP WITH, QUERY_TAG,
privileges, quotas) is asserted on the generated SQL in test_snowflake_sql.py and listed in docs/snowflake.md.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from .support import blocks
from .support.cli import start_cli
from .support.snowflake import ENV, PASSWORD, RefusingLogin, assert_clean, cli, env_for, sf_defaults
from .support.net import free_port
from .support.widgets import MANIFEST, assert_misfits_kept

pytest.importorskip("snowflake.connector")
pytest.importorskip("fakesnow")


def demo_block(count: int, slice_: int, streams=("users", "products", "purchases"), always_updated: bool = False, seed: int = 7) -> str:
    """The `connectors:` half of a project (the `defaults:` half is the fakesnow server's)."""
    return blocks.dump({"connectors": {"demo": blocks.demo_block(count, slice_, streams, seed=seed, always_updated=always_updated)}})


# ------------------------------------------------------------------------------------------- comparing with DuckDB

VARYING = {"updated_at", "_ingest_extracted_at", "_ingest_run_id", "_ingest_load_id"}  # faker stamps now(); ids differ


def _duck_rows(project, table: str) -> dict:
    cols = [(c, t) for c, t in project.query(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position", [table]
    ) if c not in VARYING]
    exprs = [f'epoch_us("{c}")' if t.startswith("TIMESTAMP") else (f'"{c}"::VARCHAR' if t == "JSON" else f'"{c}"') for c, t in cols]
    rows = project.query(f"SELECT {', '.join(exprs)} FROM {table}")
    kinds = [t for _, t in cols]
    return [c for c, _ in cols], {r[0]: tuple(_norm(v, k == "JSON") for v, k in zip(r, kinds)) for r in rows}


def _sf_rows(sf, table: str, cols: list[str]) -> dict:
    types = dict(sf.query("SELECT COLUMN_NAME, DATA_TYPE FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = CURRENT_SCHEMA() "
                          "AND TABLE_NAME = ?", [table.upper()]))
    exprs, kinds = [], []
    for c in cols:
        t = types[c.upper()]
        # DATE_PART keeps NULL as NULL (fakesnow's server returns a NULL TIMESTAMP_TZ as 1970-01-01)
        exprs.append(f'DATE_PART(epoch_microsecond, "{c.upper()}")' if t.startswith("TIMESTAMP") else f'"{c.upper()}"')
        kinds.append(t)
    rows = sf.query(f'SELECT {", ".join(exprs)} FROM "{table.upper()}"')
    return {r[0]: tuple(_norm(v, k == "VARIANT") for v, k in zip(r, kinds)) for r in rows}


def _norm(value, is_json: bool):
    if is_json and value is not None:
        return json.loads(value)
    return value


def assert_same_rows(project, sf, table: str) -> int:
    cols, duck = _duck_rows(project, table)
    snow = _sf_rows(sf, table, cols)
    assert snow.keys() == duck.keys(), f"{table}: primary keys differ"
    for pk, row in duck.items():
        assert snow[pk] == row, f"{table} id={pk}:\n  duckdb    {dict(zip(cols, row))}\n  snowflake {dict(zip(cols, snow[pk]))}"
    return len(duck)


# ------------------------------------------------------------------------------------------- tests


def test_demo_lands_the_same_rows_as_duckdb_then_incremental_state_show_and_reset(project, sf):
    project.write_config(sf.defaults() + demo_block(count=300, slice_=100))
    # The same block into DuckDB and into Snowflake, side by side.
    duck = start_cli(["run", "demo"], project.root, env=env_for(project))
    snow = start_cli(["run", "demo", "--destination", "snowflake"], project.root, env=env_for(project))
    for proc in (duck, snow):
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, out + err
        assert "Traceback" not in err and PASSWORD not in out + err
    assert "snowflake:acme/ANALYTICS.RAW" in out

    assert assert_same_rows(project, sf, "demo_users") == 300
    assert assert_same_rows(project, sf, "demo_products") == 100
    assert assert_same_rows(project, sf, "demo_purchases") == project.scalar("SELECT count(*) FROM demo_purchases")
    assert sf.scalar('SELECT COUNT(*) FROM "DEMO_USERS" WHERE "UPDATED_AT" IS NULL OR "_INGEST_RUN_ID" IS NULL OR "_INGEST_EXTRACTED_AT" IS NULL') == 0

    # Snowflake types, upper-case names usable unquoted, VARIANT queryable by path
    types = dict(sf.query("SELECT COLUMN_NAME, DATA_TYPE FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = CURRENT_SCHEMA() "
                          "AND TABLE_NAME = 'DEMO_USERS'"))
    assert (types["ID"], types["NAME"], types["HEIGHT"], types["UPDATED_AT"], types["ADDRESS"]) == ("NUMBER", "TEXT", "TEXT", "TIMESTAMP_TZ", "VARIANT")
    assert types["_INGEST_REJECTED"] == "VARIANT" and types["_INGEST_EXTRACTED_AT"] == "TIMESTAMP_TZ"
    assert sf.scalar("SELECT address:city::string FROM demo_users WHERE id = 1") == project.scalar("SELECT address->>'city' FROM demo_users WHERE id = 1")

    # bookkeeping: comments, run row, state, tables catalog; no load/staging leftovers
    comment = sf.scalar("SELECT COMMENT FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = CURRENT_SCHEMA() AND TABLE_NAME = 'DEMO_USERS'")
    assert comment == "ingest: team=platform; block=demo; source=airbyte-source-faker==7.2.1; stream=users; write=dedup"
    status, rows, streams, destination = sf.query('SELECT "STATUS", "ROWS", "STREAMS", "DESTINATION" FROM "_INGEST_RUNS"')[0]
    assert (status, rows) == project.query("SELECT status, rows FROM _ingest_runs")[0]
    assert sorted(json.loads(streams)) == ["products", "purchases", "users"] and destination.startswith("snowflake:acme/")
    assert sf.query('SELECT "TEAM", "SOURCE", "STREAM", "WRITE_MODE" FROM "_INGEST_TABLES" WHERE "TABLE_NAME" = \'DEMO_USERS\'') == [
        ("platform", "airbyte-source-faker==7.2.1", "users", "dedup")]
    assert not [t for t in sf.tables() if t.startswith(("_INGEST_LOAD_", "_INGEST_STAGING_"))]
    # one DataLanded event per stream in the ledger, committed with the stream's final state (no webhook: recorded)
    listed = cli(project, "events", "list", "--destination", "snowflake", "--json")
    assert listed.code == 0, listed.output
    events = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted((e["name"], e["status"], e["payload"]["rows"]) for e in events) == [
        ("data_landed.demo.products", "recorded", 100), ("data_landed.demo.purchases", "recorded", rows - 400),
        ("data_landed.demo.users", "recorded", 300)]

    # second run: incremental, nothing re-landed
    again = cli(project, "run", "demo", "--destination", "snowflake")
    assert again.code == 0, again.output
    assert sf.scalar("SELECT COUNT(*) FROM DEMO_USERS") == 300
    assert sf.scalar("SELECT COUNT(DISTINCT _INGEST_RUN_ID) FROM DEMO_USERS") == 1
    assert sf.scalar("SELECT COUNT(*) FROM _INGEST_RUNS WHERE STATUS = 'succeeded'") == 2

    # state show / reset through --destination snowflake: the same keys and cursors as the DuckDB run's
    def shown(*extra):
        r = cli(project, "state", "show", "demo", *extra)
        assert r.code == 0, r.output
        return {line.split(":", 1)[0]: json.loads(line.split(":", 1)[1]) for line in r.stdout.splitlines() if line.startswith("demo.")}

    snow_state, duck_state = shown("--destination", "snowflake"), shown()
    assert snow_state.keys() == duck_state.keys() == {"demo.users", "demo.products", "demo.purchases"}
    assert snow_state["demo.users"]["loop_offset"] == duck_state["demo.users"]["loop_offset"] == 300
    reset = cli(project, "state", "reset", "demo", "--stream", "users", "--destination", "snowflake")
    assert reset.code == 0 and "removed 1" in reset.stdout, reset.output
    assert "demo.users" not in shown("--destination", "snowflake") and "demo.users" in shown()


def _write_encrypted_key(path: Path, passphrase: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(passphrase.encode())))


def test_full_refresh_replaces_the_table_with_key_pair_auth(project, sf):
    _write_encrypted_key(project.root / "loader_key.p8", ENV["INGEST_TEST_SF_KEY_PASSPHRASE"])
    auth = "private_key_file: loader_key.p8\n    private_key_passphrase: ${INGEST_TEST_SF_KEY_PASSPHRASE}"
    project.write_config(sf.defaults(auth=auth) + demo_block(count=200, slice_=100, streams=("users",)))
    first = cli(project, "run", "demo", "--destination", "snowflake")
    assert first.code == 0, first.output
    first_run = sf.scalar("SELECT DISTINCT _INGEST_RUN_ID FROM DEMO_USERS")

    r = cli(project, "run", "demo", "--destination", "snowflake", "--full-refresh")
    assert r.code == 0, r.output
    assert_clean(r)
    assert "replace" in r.stdout
    assert sf.scalar("SELECT COUNT(*) FROM DEMO_USERS") == 200
    runs = sf.query("SELECT DISTINCT _INGEST_RUN_ID FROM DEMO_USERS")
    assert len(runs) == 1 and runs[0][0] != first_run  # every row is from the new load
    assert not [t for t in sf.tables() if t.startswith(("_INGEST_LOAD_", "_INGEST_STAGING_"))]
    # the comment and the catalog row follow the new table; the state is the new run's
    assert "stream=users" in sf.scalar("SELECT COMMENT FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = CURRENT_SCHEMA() AND TABLE_NAME = 'DEMO_USERS'")
    assert sf.scalar("SELECT COUNT(*) FROM _INGEST_TABLES WHERE TABLE_NAME = 'DEMO_USERS'") == 1
    state_run = sf.scalar("SELECT RUN_ID FROM _INGEST_STATE WHERE BLOCK = 'demo' AND STATE_KEY = 'users'")
    assert state_run == runs[0][0]


def test_new_fields_add_columns_and_misfits_are_kept(project, sf, api):
    """The widgets API of test_schema_evolution.py, into Snowflake, as a dedup and an append block (run side by side)."""
    (project.root / "widgets.yaml").write_text(MANIFEST)
    blocks = "".join(f"""
  widgets_{write}:
    team: ops
    manifest: widgets.yaml
    config: {{base_url: "{api.base_url}"}}
    streams:
      - name: widgets
        write: {write}
    destination: snowflake
""" for write in ("dedup", "append"))
    project.write_config(sf.defaults() + "connectors:" + blocks)

    def run_both():
        procs = [start_cli(["run", f"widgets_{w}"], project.root, env=env_for(project)) for w in ("dedup", "append")]
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, out + err
            assert "Traceback" not in err and PASSWORD not in out + err

    api.records = [
        {"id": 1, "name": "bolt", "qty": 3, "price": 1.5, "seen_at": "2024-01-01T10:00:00.000+0000", "tags": ["a"]},
        {"id": 2, "name": "nut", "qty": 7, "price": 2, "seen_at": "2024-01-02T10:00:00Z", "tags": []},
    ]
    run_both()
    # Upstream changes: fields the schema doesn't know (one camelCase), a qty that is no longer an integer, a bad timestamp.
    api.records = [
        {"id": 1, "name": "bolt", "qty": "n/a", "price": 1.5, "seen_at": "yesterday", "tags": ["a"], "color": "red", "sizeCm": 4},
        {"id": 3, "name": "washer", "qty": 2.5, "price": "cheap", "seen_at": None, "tags": None, "color": "blue", "sizeCm": 2},
    ]
    run_both()
    assert not project.db.exists()  # the blocks' destination is Snowflake

    for write in ("dedup", "append"):
        table = f"WIDGETS_{write.upper()}_WIDGETS"
        types = dict(sf.query("SELECT COLUMN_NAME, DATA_TYPE FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = CURRENT_SCHEMA() "
                              "AND TABLE_NAME = ?", [table]))
        assert (types["COLOR"], types["SIZECM"], types["QTY"], types["TAGS"], types["SEEN_AT"]) == ("TEXT", "NUMBER", "NUMBER", "VARIANT", "TIMESTAMP_TZ")
        # the source name of the camelCase field is remembered, so the next run fills the same column
        assert json.loads(sf.scalar("SELECT COLUMN_MAP FROM _INGEST_TABLES WHERE TABLE_NAME = ?", [table]))["SIZECM"] == "sizeCm"
        latest = "" if write == "dedup" else " AND _INGEST_RUN_ID = (SELECT RUN_ID FROM _INGEST_RUNS WHERE BLOCK = 'widgets_append' ORDER BY STARTED_AT DESC LIMIT 1)"
        rows = {r[0]: r[1:] for r in sf.query(
            f"SELECT ID, QTY, PRICE, SEEN_AT IS NULL, COLOR, _INGEST_REJECTED, SIZECM FROM {table} WHERE ID IN (1, 3)" + latest)}
        assert_misfits_kept(rows)
        assert rows[1][5] == 4 and rows[3][5] == 2  # sizeCm
        if write == "dedup":
            assert sf.scalar(f"SELECT COUNT(*) FROM {table}") == 3  # 1 replaced, 2 kept, 3 added
            assert sf.scalar(f"SELECT QTY FROM {table} WHERE ID = 2") == 7
        else:
            assert sf.scalar(f"SELECT COUNT(*) FROM {table}") == 4


def _state_offset(sf) -> int | None:
    rows = sf.query("SELECT STATE FROM _INGEST_STATE WHERE BLOCK = 'demo' AND STATE_KEY = 'users'")
    return None if not rows else json.loads(rows[0][0])["stream"]["stream_state"]["loop_offset"]


def test_snowflake_error_mid_run_is_one_clear_line_and_keeps_committed_data(project, sf):
    project.write_config(sf.defaults() + demo_block(count=200, slice_=100))
    first = cli(project, "run", "demo", "--destination", "snowflake", "--stream", "users")
    assert first.code == 0, first.output
    # Stand-in for a missing object / privilege error fakesnow can produce: the name the products load table needs
    # is taken by a view, so CREATE OR REPLACE TABLE fails with a Snowflake ProgrammingError.
    sf.query('CREATE VIEW "_INGEST_LOAD_DEMO_PRODUCTS" AS SELECT 1 AS X')
    r = cli(project, "run", "demo", "--destination", "snowflake")
    assert r.code == 1, r.output
    assert_clean(r)
    error = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1, r.stderr
    assert "ANALYTICS.RAW._INGEST_LOAD_DEMO_PRODUCTS" in error[0] and "block demo" in error[0] and "Hint:" in error[0]
    assert "data and state committed before the failure are kept" in r.stderr
    # users (committed by the first run) are intact, with their state; the failed run is recorded as such
    assert sf.scalar("SELECT COUNT(*) FROM DEMO_USERS") == 200
    assert _state_offset(sf) == 200
    status, message = sf.query("SELECT STATUS, ERROR FROM _INGEST_RUNS ORDER BY STARTED_AT DESC LIMIT 1")[0]
    assert status == "failed" and "_INGEST_LOAD_DEMO_PRODUCTS" in message and PASSWORD not in message
    assert "DEMO_PRODUCTS" not in sf.tables() or sf.scalar("SELECT COUNT(*) FROM DEMO_PRODUCTS") == 0
    failed = dict(sf.query("SELECT NAME, PAYLOAD:error_message::string FROM _INGEST_EVENTS WHERE NAME LIKE 'data_failed.%'"))
    assert "_INGEST_LOAD_DEMO_PRODUCTS" in failed["data_failed.demo.products"]


def test_login_refused_and_literal_password_are_clear_errors(project):
    with RefusingLogin() as server:
        project.write_config(sf_defaults(server.port) + demo_block(count=100, slice_=100))
        r = cli(project, "run", "demo", "--destination", "snowflake")
    assert r.code == 1, r.output
    assert_clean(r)
    assert "authentication failed for user ingest_loader on account acme (password)" in r.stderr, r.stderr
    assert "Incorrect username or password was specified" in r.stderr and not project.db.exists()

    project.write_config(sf_defaults(free_port(), auth=f"password: {PASSWORD}") + demo_block(count=100, slice_=100))
    literal = cli(project, "state", "show", "demo", "--destination", "snowflake")
    assert literal.code == 2, literal.output
    assert "defaults.snowflake.password: is a secret" in literal.stderr
    assert_clean(literal)
