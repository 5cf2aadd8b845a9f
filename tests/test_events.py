"""DataLanded / data_failed events: one per landed stream, in the ledger with the data, delivered to a webhook;
an undeliverable event stays pending and `ingest events replay` delivers it once."""
from __future__ import annotations

import json

from .support.blocks import demo_config
from .support.net import closed_port
from .fakes.webhook import Webhook
from .support import blocks
from .support.widgets import MANIFEST as WIDGETS_MANIFEST

# ArgoEvent retries a refused connection with 2**i s sleeps; one attempt keeps the "webhook down" tests fast.
FAST = {"METAFLOW_SERVICE_RETRY_COUNT": "1"}


def test_one_event_per_landed_stream_with_the_documented_payload(project):
    project.write_config(demo_config(count=200, slice_=100))
    with Webhook() as hook:
        r = project.cli("run", "demo", env={"INGEST_EVENTS_WEBHOOK": hook.url, **FAST})
        assert r.code == 0, r.output
        assert "events: 3 published" in r.stdout
        events = list(hook.events)
    assert sorted(e["payload"]["stream"] for e in events) == ["products", "purchases", "users"]
    users = next(e for e in events if e["payload"]["stream"] == "users")
    p = users["payload"]
    assert users["name"] == "data_landed.demo.users" and p["name"] == "data_landed.demo.users" and p["event"] == "data_landed"
    assert (p["team"], p["block"], p["table"], p["rows"]) == ("platform", "demo", "demo_users", 200)
    assert p["destination"].startswith("duckdb:") and p["destination"].endswith("warehouse.duckdb")
    assert p["cursor_before"] is None and json.loads(p["cursor_after"])["loop_offset"] == 200
    assert p["idempotency_key"] == f"demo:users:{p['load_id']}" and p["run_pathspec"] == f"cli/{p['run_id']}"
    assert len(p["schema_hash"]) == 16 and p["landed_at"]
    assert project.scalar("SELECT count(*) FROM demo_users WHERE _ingest_load_id = ?", [p["load_id"]]) == 200
    ledger = project.query("SELECT name, status, attempts FROM _ingest_events ORDER BY stream")
    assert ledger == [("data_landed.demo.products", "published", 1), ("data_landed.demo.purchases", "published", 1),
                      ("data_landed.demo.users", "published", 1)]


def test_a_run_that_loads_nothing_still_says_so(project):
    project.write_config(demo_config(count=100, slice_=100))
    assert project.cli("run", "demo", "--stream", "users").code == 0
    with Webhook() as hook:
        assert project.cli("run", "demo", "--stream", "users", env={"INGEST_EVENTS_WEBHOOK": hook.url, **FAST}).code == 0
        assert [e["payload"]["rows"] for e in hook.events] == [0]  # the heartbeat freshness checks need


def test_webhook_down_keeps_events_pending_and_replay_delivers_them_once(project):
    project.write_config(demo_config(count=100, slice_=100))
    port = closed_port()
    url = f"http://127.0.0.1:{port}/ingest"
    r = project.cli("run", "demo", env={"INGEST_EVENTS_WEBHOOK": url, **FAST})
    assert r.code == 0, r.output  # the data landed; only the announcement is late
    assert "kept as pending" in r.stdout
    assert project.query("SELECT DISTINCT status FROM _ingest_events") == [("pending",)]
    listed = project.cli("events", "list", "--status", "pending")
    assert listed.code == 0 and listed.stdout.count("data_landed") == 3

    failed = project.cli("events", "replay", env={"INGEST_EVENTS_WEBHOOK": url, **FAST})
    assert failed.code == 1 and "still pending" in failed.stderr
    with Webhook(port=port) as hook:
        ok = project.cli("events", "replay", env={"INGEST_EVENTS_WEBHOOK": url, **FAST})
        assert ok.code == 0 and "published 3" in ok.stdout
        again = project.cli("events", "replay", env={"INGEST_EVENTS_WEBHOOK": url, **FAST})
        assert again.code == 0 and "published 0" in again.stdout
        assert len(hook.events) == 3
        assert len({e["payload"]["idempotency_key"] for e in hook.events}) == 3
    assert project.query("SELECT DISTINCT status FROM _ingest_events") == [("published",)]


def test_webhook_error_status_is_not_swallowed(project):
    project.write_config(demo_config(count=100, slice_=100))
    with Webhook() as hook:
        hook.status = 500
        r = project.cli("run", "demo", "--stream", "users", env={"INGEST_EVENTS_WEBHOOK": hook.url, **FAST})
        assert r.code == 0 and "kept as pending" in r.stdout
        assert project.query("SELECT status, last_error FROM _ingest_events")[0][0] == "pending"
        assert "500" in project.query("SELECT last_error FROM _ingest_events")[0][0]


def test_a_failed_sync_emits_data_failed_with_the_error_class(project, destination, api):
    """On DuckDB and on Snowflake (fakesnow), from one body."""
    d = destination
    (project.root / "widgets.yaml").write_text(WIDGETS_MANIFEST)
    widgets = {"team": "ops", "manifest": "widgets.yaml", "config": {"base_url": api.base_url + "/missing-prefix/../nope"},
               "streams": [{"name": "widgets", "write": "append"}]}
    project.write_config(blocks.dump({"defaults": d.defaults(), "connectors": {"widgets": widgets}}))
    api.records = [{"id": 1}]
    # Make the API refuse us: the declarative default maps 401/403 to a config error without retries.
    api.refuse(401)
    with Webhook() as hook:
        r = project.cli("run", "widgets", env={**d.env, "INGEST_EVENTS_WEBHOOK": hook.url, **FAST})
        assert r.code == 1, r.output
        assert [e["name"] for e in hook.events] == ["data_failed.widgets.widgets"]
        p = hook.events[0]["payload"]
        assert (p["block"], p["stream"], p["team"]) == ("widgets", "widgets", "ops")
        assert p["error_class"] == "config_error" and p["error_message"]
    assert d.query("SELECT status FROM _ingest_runs") == [("failed",)]
