"""`ingest status`: owners, last load, failures, pending events, freshness — and a non-zero exit when late/failing."""
from __future__ import annotations

import json
import time

from .support import blocks
from .support.blocks import demo_config
from .support.widgets import MANIFEST as WIDGETS_MANIFEST


def _status(project, *args, env=None):
    r = project.cli("status", "--json", *args, env=env)
    return r, {(d["block"], d["stream"]): d for d in map(json.loads, r.stdout.splitlines())}


def test_fresh_then_late_exits_non_zero_naming_the_stream(project):
    project.write_config(demo_config(count=100, slice_=100, freshness="3s"))
    r, rows = _status(project)
    # never landed, and freshness is declared: its own state (a new block is not a broken one), still exit 1
    assert r.code == 1 and rows[("demo", "users")]["status"] == "never loaded"
    assert "demo.users has never loaded (freshness 3s)" in r.stderr and "is late" not in r.stderr
    assert not project.db.exists()  # status creates nothing
    assert project.cli("run", "demo", "--stream", "users").code == 0
    r, rows = _status(project, "--team", "platform")
    users = rows[("demo", "users")]
    assert users["status"] == "fresh" and users["team"] == "platform" and users["table"] == "demo_users"
    assert users["last_load_rows"] == 100 and json.loads(users["cursor"])["loop_offset"] == 100
    assert r.code == 1 and "demo.products has never loaded" in r.stderr and rows[("demo", "products")]["status"] == "never loaded"
    time.sleep(3.5)
    r, rows = _status(project)
    assert r.code == 1 and rows[("demo", "users")]["status"] == "late" and "demo.users is late" in r.stderr
    table = project.cli("status")
    assert "demo_users" in table.stdout and "late" in table.stdout


def test_failing_block_shows_the_error_class_and_exits_non_zero(project, destination, api):
    """On DuckDB and on Snowflake (fakesnow), from one body."""
    d = destination
    (project.root / "widgets.yaml").write_text(WIDGETS_MANIFEST)
    widgets = {"team": "ops", "manifest": "widgets.yaml", "config": {"base_url": api.base_url},
               "streams": [{"name": "widgets"}], "freshness": "1h"}
    project.write_config(blocks.dump({"defaults": d.defaults(), "connectors": {"widgets": widgets}}))
    api.records = [{"id": 1}, {"id": 2}]
    assert d.cli("run", "widgets").code == 0
    r, rows = _status(project, env=d.env)
    assert r.code == 0 and rows[("widgets", "widgets")]["status"] == "fresh"
    assert rows[("widgets", "widgets")]["rows_history"] == [2]
    api.refuse(401)  # bad credentials
    assert d.cli("run", "widgets").code == 1
    r, rows = _status(project, "--team", "ops", env=d.env)
    w = rows[("widgets", "widgets")]
    assert r.code == 1 and w["status"] == "failing" and w["failure_class"] == "config_error"
    assert w["last_load_rows"] == 2  # the last good load is still known
    assert "widgets.widgets is failing" in r.stderr


def test_a_stream_that_never_loaded_without_freshness_is_not_a_problem(project):
    project.write_config(demo_config(count=100, slice_=100))  # no freshness declared
    r, rows = _status(project)
    assert r.code == 0 and {row["status"] for row in rows.values()} == {"never loaded"}, r.output
    table = project.cli("status")
    assert table.code == 0 and "never loaded" in table.stdout


def test_unknown_team_is_a_usage_error(project):
    project.write_config(demo_config())
    r = project.cli("status", "--team", "nobody")
    assert r.code == 2 and "platform" in r.stderr
