"""IngestFlow and the downstream flows, run for real with Metaflow's Runner and a local datastore in a temp dir:
tables land, state advances, events arrive at a loopback webhook from inside the sync step, cards show the
figures, and a downstream flow runs with Parameters mapped from the landed event."""
from __future__ import annotations

import json
import os
import secrets
import textwrap
from pathlib import Path

import duckdb
import pytest

from .support.cli import ROOT
from .support import blocks
from .support.blocks import demo_config
from .fakes.fake_jira import FakeJira
from .fakes.webhook import Webhook

pytestmark = pytest.mark.timeout(600)
FLOW = ROOT / "flows" / "ingest_flow.py"


def _metaflow_env(tmp: Path, extra: dict | None = None) -> dict:
    env = {
        "METAFLOW_USER": "ci",
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp),
        "METAFLOW_DEFAULT_DATASTORE": "local",
        "METAFLOW_DEFAULT_METADATA": "local",
        "METAFLOW_SERVICE_RETRY_COUNT": "1",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    env.update(extra or {})
    return env


def _run_flow(tmp: Path, block: str, env: dict, **params):
    from metaflow import Runner

    (tmp / ".metaflow").mkdir(exist_ok=True)  # cards land under <cwd>/.metaflow
    with Runner(str(FLOW), show_output=False, env=env, cwd=str(tmp), config_value=[("connector", {"name": block})]).run(**params) as running:
        return running.status, running.run


def _cards(task) -> list[str]:
    """The content of each card of a task: Metaflow embeds it as base64 JSON in the HTML page."""
    import base64
    import re

    from metaflow.cards import get_cards

    out = []
    for c in get_cards(task, follow_resumed=False):
        for blob in re.findall(r'__MF_DATA__\["[^"]+"\] = "([A-Za-z0-9+/=]+)"', c.get()):
            out.append(base64.b64decode(blob).decode())
    return out


def test_ingest_flow_lands_every_stream_announces_each_and_renders_cards(tmp_path, monkeypatch):
    # lineage to a file: one job per block from a flow too (each sync task is one stream's run of job `demo`)
    lineage = {"lineage": {"transport": "file", "path": str(tmp_path / "lineage.jsonl")}}
    (tmp_path / "connectors.yaml").write_text(blocks.edit_block(demo_config(count=300, slice_=100), "demo", defaults=lineage))
    with Webhook() as hook:
        status, run = _run_flow(tmp_path, "demo", _metaflow_env(tmp_path, {"INGEST_EVENTS_WEBHOOK": hook.url}))
        events = list(hook.events)
    assert status == "successful"
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM demo_users").fetchone()[0] == 300
    assert con.execute("SELECT count(*) FROM demo_products").fetchone()[0] == 100
    states = dict(con.execute("SELECT state_key, state FROM _ingest_state WHERE block='demo'").fetchall())
    assert json.loads(states["users"])["stream"]["stream_state"]["loop_offset"] == 300
    con.close()

    # exactly one event per landed stream, sent from inside the sync task that landed it
    assert sorted(e["name"] for e in events) == ["data_landed.demo.products", "data_landed.demo.purchases", "data_landed.demo.users"]
    monkeypatch.setenv("METAFLOW_DATASTORE_SYSROOT_LOCAL", str(tmp_path))
    from metaflow import metadata, namespace

    metadata(f"local@{tmp_path}")
    namespace(None)
    sync_tasks = {t.data.stream: t for t in run["sync"]}
    assert set(sync_tasks) == {"users", "products", "purchases"}
    for e in events:
        stream = e["payload"]["stream"]
        assert e["payload"]["run_pathspec"] == sync_tasks[stream].pathspec
        assert e["payload"]["team"] == "platform"

    users = sync_tasks["users"]
    assert users.data.result["records"] == 300 and users.data.result["status"] == "succeeded"
    assert users.data.result["rows_history"] == [300]
    html = "\n".join(_cards(users))
    for figure in ("demo.users", "demo_users", "records read", "300", "loop_offset", "events sent", "rows per run"):
        assert figure in html, figure
    assert run.data.results and sum(r["records"] for r in run.data.results) == 300 + 100 + 300

    ol = [json.loads(line) for line in (tmp_path / "lineage.jsonl").read_text().splitlines()]
    assert sorted(e["eventType"] for e in ol) == ["COMPLETE"] * 3 + ["START"] * 3
    assert {(e["job"]["namespace"], e["job"]["name"]) for e in ol} == {("ingest", "demo")}  # not demo.users, …
    completes = [e for e in ol if e["eventType"] == "COMPLETE"]
    streams = {t["value"] for e in completes for t in e["run"]["facets"]["tags"]["tags"] if t["key"] == "ingest.streams"}
    assert streams == {"users", "products", "purchases"}
    assert {e["run"]["facets"]["parent"]["job"]["name"] for e in completes} == {"IngestFlow"}


def test_ingest_flow_for_jira_against_a_jira_cloud_like_server(tmp_path):
    with FakeJira(issue_count=60, seed=5, token="tok-flow-SECRET-" + secrets.token_hex(6)) as jira:
        (tmp_path / "overrides").mkdir()
        (tmp_path / "overrides" / "source-jira.yaml").write_text((ROOT / "overrides" / "source-jira.yaml").read_text())
        jira_settings = {"schedule": "0 * * * *"}
        (tmp_path / "connectors.yaml").write_text(blocks.project({"jira": blocks.jira_block(jira.base_url, **jira_settings)}))

        env = _metaflow_env(tmp_path, {"JIRA_EMAIL": jira.email, "JIRA_API_TOKEN": jira.token})
        status, run = _run_flow(tmp_path, "jira", env)
        assert status == "successful"
        con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
        ids = {r[0] for r in con.execute("SELECT id FROM jira_issues").fetchall()}
        assert ids == {str(i["id"]) for i in jira.issues} and len(ids) == 60
        cursor = con.execute("SELECT state FROM _ingest_state WHERE block='jira' AND state_key='issues'").fetchone()
        assert cursor is not None and "updated" in cursor[0]
        event = con.execute("SELECT name, payload FROM _ingest_events").fetchone()
        con.close()
    assert event[0] == "data_landed.jira.issues" and json.loads(event[1])["rows"] == 60
    assert jira.token not in json.dumps([str(t.stdout) for t in run["sync"]])


def test_downstream_flow_runs_with_parameters_mapped_from_the_landed_event(tmp_path):
    from .support.cli import run_cli

    (tmp_path / "connectors.yaml").write_text(textwrap.dedent(demo_config(count=150, slice_=50)))
    with Webhook() as hook:
        r = run_cli(["run", "demo", "--stream", "users"], tmp_path, env={"INGEST_EVENTS_WEBHOOK": hook.url, "METAFLOW_SERVICE_RETRY_COUNT": "1"})
        assert r.code == 0, r.output
        received = hook.events[0]["payload"]
    (tmp_path / ".metaflow").mkdir(exist_ok=True)
    t = run_cli(["events", "trigger", str(ROOT / "flows" / "users_report_flow.py")], tmp_path,
                env=_metaflow_env(tmp_path))
    assert t.code == 0, t.output
    assert f"load_id={received['load_id']}" in t.stderr and "rows=150" in t.stderr
    pathspec = t.stdout.strip().splitlines()[-1].split(":")[0]

    from metaflow import Run, metadata, namespace

    os.environ["METAFLOW_DATASTORE_SYSROOT_LOCAL"] = str(tmp_path)
    metadata(f"local@{tmp_path}")
    namespace(None)
    report = Run(pathspec).data.report
    assert report == {"table": "demo_users", "announced_rows": 150, "load_id": received["load_id"],
                      "rows_in_load": 150, "total_rows": 150}


def test_a_flow_waiting_for_two_tables_does_not_start_until_both_landed(tmp_path):
    from .support.cli import run_cli

    (tmp_path / "connectors.yaml").write_text(textwrap.dedent(demo_config(count=10, slice_=10)))
    assert run_cli(["run", "demo", "--stream", "products"], tmp_path).code == 0  # creates the ledger, wrong tables
    t = run_cli(["events", "trigger", str(ROOT / "flows" / "fraud_features_flow.py")], tmp_path, env=_metaflow_env(tmp_path))
    assert t.code == 1 and "data_landed.jira.issues" in t.stderr and "data_landed.carrier_safety.snapshots" in t.stderr


def test_pods_run_the_locked_releases_isolated_and_in_process_building_them_at_task_start(tmp_path):
    """Production's contract, run locally: blocks that pin nothing run exactly what connectors.lock names — here an
    OLDER faker than PyPI's newest — even in a pod whose connectors cache starts empty (the releases are built at task
    start); the Python connector runs isolated in its own environment, the Jira manifest in-process from its files."""
    from .support.cli import run_cli

    (tmp_path / "overrides").mkdir()
    (tmp_path / "overrides" / "source-jira.yaml").write_text((ROOT / "overrides" / "source-jira.yaml").read_text())
    with FakeJira(issue_count=20, seed=3, token="tok-pods-SECRET-" + secrets.token_hex(6)) as jira:
        def write(faker_source: str) -> None:
            demo = blocks.demo_block(40, 20, ("users",), seed=1)
            demo["source"] = faker_source
            jira_ = blocks.jira_block(jira.base_url, source="airbyte-source-jira")
            (tmp_path / "connectors.yaml").write_text(blocks.project({"demo": demo, "jira": jira_}))


        write("airbyte-source-faker==7.2.0")  # lock an older release than the newest (7.2.1) ...
        installed = run_cli(["install"], tmp_path)
        assert installed.code == 0, installed.output
        write("airbyte-source-faker")  # ... then unpin: the lock, not PyPI, decides from now on
        lock = (tmp_path / "connectors.lock").read_text()
        assert "version: 7.2.0" in lock and "runtime: isolated" in lock and "runtime: in_process" in lock, lock

        pod_cache = tmp_path / "pod-connectors"  # what a fresh pod has: nothing
        env = _metaflow_env(tmp_path, {"INGEST_CONNECTORS_DIR": str(pod_cache), "JIRA_EMAIL": jira.email,
                                       "JIRA_API_TOKEN": jira.token})
        assert _run_flow(tmp_path, "demo", env)[0] == "successful"
        assert _run_flow(tmp_path, "jira", env)[0] == "successful"

    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM demo_users").fetchone()[0] == 40
    assert con.execute("SELECT count(*) FROM jira_issues").fetchone()[0] == 20
    assert dict(con.execute("SELECT block, source FROM _ingest_tables").fetchall()) == {
        "demo": "airbyte-source-faker==7.2.0", "jira": "airbyte-source-jira==4.0.0"}
    con.close()
    assert sorted(p.name for p in (pod_cache / "venvs").iterdir() if not p.name.startswith(".")) == ["airbyte-source-faker-7.2.0"]
    assert "airbyte-source-jira-4.0.0" in {p.name for p in (pod_cache / "files").iterdir()}
