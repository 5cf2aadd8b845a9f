"""`ingest status` on ledgers as they are in the field: large (1,000 blocks x 50 loads, right answers; its timing is
bench/status.py) and damaged (odd rows written straight into _ingest_events / _ingest_runs: reported as unreadable,
never a crash)."""
from __future__ import annotations

import datetime as dt
import json

import duckdb

from .support.blocks import demo_config
from .support.ledger import block_name, expected_rows, write_config, write_ledger

BLOCKS, LOADS = 1000, 50


def _status(project, *args):
    r = project.cli("status", "--json", *args, timeout=120)
    return r, {(d["block"], d["stream"]): d for d in map(json.loads, r.stdout.splitlines())}


def test_status_is_right_on_a_large_ledger(project):
    write_config(project.root, BLOCKS)
    write_ledger(project.db, BLOCKS, LOADS)
    r, rows = _status(project)
    assert len(rows) == BLOCKS and "Traceback" not in r.stderr, r.stderr[-2000:]
    failing = {b for (b, _), d in rows.items() if d["status"] == "failing"}
    assert failing == {block_name(i) for i in range(BLOCKS) if i % 10 == 0 or i % 100 == 5}
    assert r.code == 1 and f"{block_name(990)}.users is failing" in r.stderr
    ok = rows[(block_name(1), "users")]
    assert ok["status"] == "ok" and ok["team"] == "team1" and ok["last_load_rows"] == expected_rows(LOADS - 1)
    assert ok["rows_history"] == [expected_rows(i) for i in range(LOADS - 12, LOADS)]
    assert json.loads(ok["cursor"]) == {"loop_offset": expected_rows(LOADS - 1)} and ok["pending_events"] == 0
    failed = rows[(block_name(10), "users")]
    assert failed["failure_class"] == "transient_error" and failed["pending_events"] == 1
    assert failed["last_load_rows"] == expected_rows(LOADS - 1)  # the last good load is still known
    killed = rows[(block_name(105), "users")]
    assert killed["failure_class"] == "killed" and "dead-b0105" in killed["failure_message"]
    assert "lost-node-3" in killed["failure_message"]
    # --team reads the same ledger, one team's blocks
    r, rows = _status(project, "--team", "team3")
    assert {b for b, _ in rows} == {block_name(i) for i in range(BLOCKS) if i % 7 == 3}


# Odd ledger rows: (what is odd, the payload text) — each written as the newest data_landed row of its stream.
ODD_PAYLOADS = {
    "not JSON": "{'rows': 3, landed_at: yesterday",
    "a JSON list": "[1, 2, 3]",
    "JSON null": "null",
    "a JSON string": '"data landed"',
    "no landed_at": '{"event": "data_landed", "rows": 5}',
    "landed_at not a timestamp": '{"event": "data_landed", "rows": 5, "landed_at": "yesterday"}',
    "landed_at a number": '{"event": "data_landed", "rows": 5, "landed_at": 1733200000}',
    "rows not a number": '{"event": "data_landed", "rows": "many", "landed_at": "2026-12-01T00:00:00+00:00"}',
}


def _odd_project(project, streams: list[str]):
    config = demo_config(count=100, slice_=100)
    project.write_config(config)
    # An events table whose payload is plain text (as an older ledger, or one edited by hand, may be): DuckDB's JSON
    # type would refuse most of the corpus. The run creates nothing over it (CREATE TABLE IF NOT EXISTS).
    con = duckdb.connect(str(project.db))
    con.execute("""CREATE TABLE _ingest_events (
        event_id VARCHAR NOT NULL, name VARCHAR NOT NULL, idempotency_key VARCHAR NOT NULL, block VARCHAR NOT NULL,
        stream VARCHAR, team VARCHAR, run_id VARCHAR, payload VARCHAR NOT NULL, status VARCHAR NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, last_error VARCHAR, created_at TIMESTAMPTZ NOT NULL, published_at TIMESTAMPTZ)""")
    con.close()
    for stream in streams:
        assert project.cli("run", "demo", "--stream", stream).code == 0
    return duckdb.connect(str(project.db))


def _insert_event(con, event_id, name, stream, payload, created_at=None):
    con.execute(
        "INSERT INTO _ingest_events (event_id, name, idempotency_key, block, stream, team, run_id, payload, status, created_at) "
        "VALUES (?, ?, ?, 'demo', ?, 'platform', 'odd', ?, 'recorded', ?)",
        [event_id, name, f"demo:{stream}:{event_id}", stream, payload, created_at or dt.datetime.now(dt.timezone.utc)])


def test_status_reports_odd_event_rows_as_unreadable_and_keeps_going(project):
    con = _odd_project(project, ["users"])
    for i, (why, payload) in enumerate(ODD_PAYLOADS.items()):
        _insert_event(con, f"odd-{i}", "data_landed.demo.users", "users", payload)
    # rows status has no use for must not trouble it either
    _insert_event(con, "odd-kind", "schema_changed.demo.users", "users", "{}")
    _insert_event(con, "odd-no-stream", "data_landed.demo.", None, "{}")
    _insert_event(con, "odd-no-dot", "garbage", "users", "not json either")
    con.close()
    r, rows = _status(project)
    assert "Traceback" not in r.stderr, r.stderr
    users = rows[("demo", "users")]
    assert r.code == 0 and users["status"] == "ok", r.output  # the readable landing is still the answer
    assert users["last_load_rows"] == 100
    reported = "\n".join(users["unreadable"])
    assert len(users["unreadable"]) == len(ODD_PAYLOADS), reported
    for i, expected in enumerate(["not JSON", "list", "NoneType", "str", "no landed_at", "'yesterday' is not a timestamp",
                                  "1733200000", "'many' is not a whole number"]):
        assert f"odd-{i}" in reported and expected in reported, (expected, reported)
    assert "unreadable ledger row" in r.stderr and "odd-0" in r.stderr
    table = project.cli("status")  # the table view too
    assert table.code == 0 and "demo_users" in table.stdout and "Traceback" not in table.stderr


def test_status_reports_odd_run_rows_and_still_shows_failures(project):
    con = _odd_project(project, ["users", "products"])
    _insert_event(con, "failed-bad", "data_failed.demo.products", "products", '{"event": "data_failed", "failed_at": "soon"}')
    now = dt.datetime.now(dt.timezone.utc)
    # a run row with no streams at all, and one whose streams are empty, both still "running" with no lock
    con.execute("INSERT INTO _ingest_runs VALUES ('no-streams', 'demo', 'platform', NULL, 'duckdb', ?, NULL, 'running', 0, NULL)", [now])
    con.execute("INSERT INTO _ingest_runs VALUES ('empty', 'demo', 'platform', [], 'duckdb', ?, NULL, 'running', 0, NULL)", [now])
    # and a dead run of users whose started_at is in the future (a clock off on another host)
    con.execute("INSERT INTO _ingest_runs VALUES ('future', 'demo', 'platform', ['users'], 'duckdb', ?, NULL, 'running', 0, NULL)",
                [now + dt.timedelta(days=1)])
    con.close()
    r, rows = _status(project)
    assert "Traceback" not in r.stderr, r.stderr
    users, products = rows[("demo", "users")], rows[("demo", "products")]
    assert users["status"] == "failing" and users["failure_class"] == "killed" and "future" in users["failure_message"]
    assert any("no-streams" in note for note in users["unreadable"]) and any("no-streams" in n for n in products["unreadable"])
    assert products["status"] == "ok" and any("failed-bad" in n and "'soon' is not a timestamp" in n for n in products["unreadable"])
    assert r.code == 1 and "demo.users is failing" in r.stderr
