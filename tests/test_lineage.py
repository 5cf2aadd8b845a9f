"""OpenLineage run events (ingest/lineage/): START and COMPLETE/FAIL per sync, with the documented datasets and
facets, delivered over HTTP or to a JSON-lines file; never a failed or slow sync because of lineage.

The module is tested directly (blocks from a temp connectors.yaml, hand-made run records and stream targets), and
end to end through the CLI. Every event is checked against the official OpenLineage schemas, as the client's
generated model knows them (tests/support/openlineage_spec.py `check_event`).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import secrets
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from ingest.config import load_project
from ingest.destinations.base import DestinationIdentity, RunRecord, StreamTarget
from ingest.destinations.duckdb import DuckDBDestination
from ingest.destinations.descriptions import META_DESCRIPTIONS
from ingest.errors import SyncError
from ingest.lineage import (Lineage, destination_dataset, ingest_run_uuid, metaflow_parent, metaflow_run_uuid,
                            source_namespace)
from ingest.sync.results import StreamResult

from .support.blocks import prepared
from .fakes.lineage_receiver import ENDPOINT, LineageReceiver
from .support.net import closed_port, silent_port
from .support.openlineage_spec import check_event

ROOT = Path(__file__).resolve().parents[1]
# Made up per run (never a literal in the repository): what the redaction checks below must never find in an event.
API_TOKEN = "jira-token-" + secrets.token_hex(8)
LINEAGE_KEY = "lineage-key-" + secrets.token_hex(8)
# What the stream schema says its fields mean (StreamTarget.descriptions, as sync/plan.py fills it), one with a secret
# in it: descriptions are free text, redacted like every other.
DESCRIPTIONS = {"id": "The issue key, e.g. FRAUD-12", "updated": f"Last change (not the token {API_TOKEN})"}

CONFIG = f"""
defaults:
  duckdb: {{path: warehouse.duckdb}}
connectors:
  jira:
    team: fraud
    description: Jira Cloud issues and projects.
    source: airbyte-source-jira==4.0.0
    overrides: {ROOT / "overrides" / "source-jira.yaml"}
    config:
      domain: ${{TEST_LINEAGE_DOMAIN}}
      email: me@acme.com
      api_token: ${{TEST_LINEAGE_JIRA_TOKEN}}
    streams:
      - name: issues
      - name: projects
        write: replace
  jira_local:
    team: fraud
    source: airbyte-source-jira==4.0.0
    overrides: {ROOT / "overrides" / "source-jira.yaml"}
    config:
      domain: unused.example.com
      base_url: http://127.0.0.1:8089/jira
      email: me@acme.com
      api_token: ${{TEST_LINEAGE_JIRA_TOKEN}}
    streams:
      - name: issues
  demo:
    team: platform
    source: airbyte-source-faker==7.2.1
    config: {{count: 10, seed: 1}}
    streams:
      - name: users
  pricing:
    team: pricing
    puller: truck_pricing
    config:
      client_id: ingest
      client_secret: ${{TEST_LINEAGE_JIRA_TOKEN}}
      lanes: {{from: csv, path: lanes.csv}}
    streams:
      - name: lane_rates
  safety:
    team: compliance
    puller: carrier_safety
    config:
      web_key: ${{TEST_LINEAGE_JIRA_TOKEN}}
      carriers: {{from: list, dot_numbers: [1234567]}}
    streams:
      - name: snapshots
"""

# ---------------------------------------------------------------- fixtures


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_LINEAGE_JIRA_TOKEN", API_TOKEN)
    monkeypatch.setenv("TEST_LINEAGE_KEY", LINEAGE_KEY)
    monkeypatch.setenv("TEST_LINEAGE_DOMAIN", "acme.atlassian.net")  # like ${JIRA_DOMAIN}: the redactor masks it in logs
    (tmp_path / "lanes.csv").write_text("pickup_date\n")
    path = tmp_path / "connectors.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    return load_project(path)


def make_run(project, block_name: str, streams: list[str], *, staged: tuple[str, ...] = (), rows: int = 5,
             destination: str | None = None):
    block = prepared(project.block(block_name))
    run = RunRecord(run_id="20250102T030405Z-abc123", block=block.name, team=block.team, streams=list(streams),
                    started_at=dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
                    destination=destination or f"duckdb:{project.path.parent / 'warehouse.duckdb'}")
    targets, results = {}, {}
    tables = {s.name: s.table for s in block.streams}
    for name in streams:
        write = "replace" if name in staged else "dedup"
        targets[name] = StreamTarget(
            block=block.name, team=block.team, source=block.source_label, stream=name, table=tables[name], write=write,
            primary_key=["id"], cursor="updated", columns={"id": "string", "updated": "timestamp", "fields": "json"},
            run_id=run.run_id, load_id=f"{run.run_id}-{name}", descriptions=dict(DESCRIPTIONS),
        )
        results[name] = StreamResult(stream=name, table=tables[name], write=write, sync="incremental")
    return block, run, targets, results


def descriptions(dataset: dict) -> dict:
    return {f["name"]: f.get("description") for f in dataset["facets"]["schema"]["fields"]}


def duckdb_identity(path) -> DestinationIdentity:
    """What a DuckDB destination at `path` hands Lineage: its identity."""
    dest = DuckDBDestination(path)
    dest.close()
    return dest.identity


def finish_run(run, targets, results, rows: int = 5, status: str = "succeeded", error: str | None = None):
    for name, target in targets.items():
        target.rows_written = rows
        results[name].records = rows + 1
        results[name].rows_written = rows
    run.ended_at = run.started_at + dt.timedelta(seconds=12)
    run.status, run.error = status, error


def http(receiver_url: str, **extra) -> dict:
    return {"transport": "http", "url": receiver_url, "api_key": "${TEST_LINEAGE_KEY}", **extra}


def facet_types(dataset: dict) -> dict:
    return {f["name"]: f.get("type") for f in dataset["facets"]["schema"]["fields"]}


# ---------------------------------------------------------------- HTTP: START + COMPLETE


def test_http_start_and_complete_carry_the_documented_datasets_and_facets(project):
    block, run, targets, results = make_run(project, "jira", ["issues", "projects"], staged=("projects",))
    with LineageReceiver() as receiver:
        lineage = Lineage.from_settings(http(receiver.url), base_dir=project.path.parent,
                                        destination=duckdb_identity(project.path.parent / "warehouse.duckdb"))
        assert lineage.enabled
        lineage.start(block=block, run=run, targets=targets, parent_pathspec=None)
        targets["issues"].schema_changes.append("added column story_points DOUBLE")
        finish_run(run, targets, results, rows=7)
        lineage.complete(block=block, run=run, targets=targets, results=results)
        events = receiver.wait_for(2)
        requests = list(receiver.requests)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert lineage.sent == 2 and lineage.errors == []
    for event in events:
        assert check_event(event) == [], event
    start, complete = events

    # one run per sync, deterministic runId, the block's job in the configured namespace
    run_id = ingest_run_uuid(run.run_id)
    assert run_id == str(uuid.uuid5(uuid.NAMESPACE_URL, "ingest:20250102T030405Z-abc123"))
    assert start["run"]["runId"] == complete["run"]["runId"] == run_id
    assert start["job"]["namespace"] == "ingest" and start["job"]["name"] == "jira"  # every stream of the block
    assert start["eventTime"].startswith("2025-01-02T03:04:05") and complete["eventTime"].startswith("2025-01-02T03:04:17")
    job_facets = complete["job"]["facets"]
    assert job_facets["ownership"]["owners"] == [{"name": "team:fraud", "type": "TEAM"}]
    assert job_facets["jobType"]["processingType"] == "BATCH" and job_facets["jobType"]["integration"] == "INGEST"
    assert job_facets["documentation"]["description"] == "Jira Cloud issues and projects."
    tags = {t["key"]: t["value"] for t in complete["run"]["facets"]["tags"]["tags"]}
    assert tags["ingest.run_id"] == run.run_id and tags["ingest.team"] == "fraud" and tags["ingest.block"] == "jira"
    assert tags["ingest.streams"] == "issues,projects"
    assert complete["run"]["facets"]["processing_engine"]["name"] == "ingest"
    assert "parent" not in complete["run"]["facets"] and "errorMessage" not in complete["run"]["facets"]

    # inputs: the source's streams, named by block and stream
    assert [(i["namespace"], i["name"]) for i in complete["inputs"]] == [("jira://acme.atlassian.net", "jira.issues"),
                                                                         ("jira://acme.atlassian.net", "jira.projects")]
    issues_in = complete["inputs"][0]
    assert issues_in["facets"]["dataSource"] == {**issues_in["facets"]["dataSource"], "name": "airbyte-source-jira==4.0.0",
                                                 "uri": "jira://acme.atlassian.net"}
    assert issues_in["inputFacets"]["inputStatistics"]["rowCount"] == 8
    # the stream schema's descriptions, on the source's fields and on the columns they land in (ours described too)
    assert descriptions(issues_in) == {"id": "The issue key, e.g. FRAUD-12", "updated": "Last change (not the token ****)",
                                       "fields": None}
    assert "inputStatistics" not in start["inputs"][0].get("inputFacets", {})

    # outputs: the warehouse tables with schema, row counts and the owning team
    warehouse = (project.path.parent / "warehouse.duckdb").resolve()
    assert [(o["namespace"], o["name"]) for o in complete["outputs"]] == [
        (f"duckdb://{warehouse}", "warehouse.main.jira_issues"), (f"duckdb://{warehouse}", "warehouse.main.jira_projects")]
    assert f"duckdb://{warehouse}".startswith("duckdb:///")
    issues_out, projects_out = complete["outputs"]
    assert facet_types(issues_out) == {
        "id": "VARCHAR", "updated": "TIMESTAMPTZ", "fields": "JSON", "story_points": "DOUBLE",
        "_ingest_extracted_at": "TIMESTAMPTZ", "_ingest_run_id": "VARCHAR", "_ingest_load_id": "VARCHAR",
        "_ingest_rejected": "JSON",
    }
    assert "story_points" not in facet_types(start["outputs"][0])  # START shows the schema known at the start
    out_descriptions = descriptions(issues_out)
    assert out_descriptions["id"] == "The issue key, e.g. FRAUD-12" and out_descriptions["fields"] is None
    assert out_descriptions["_ingest_run_id"] == META_DESCRIPTIONS["_ingest_run_id"]
    assert issues_out["facets"]["ownership"]["owners"] == [{"name": "team:fraud", "type": "TEAM"}]
    assert issues_out["outputFacets"]["outputStatistics"]["rowCount"] == 7
    assert "outputStatistics" not in start["outputs"][0].get("outputFacets", {})
    assert projects_out["facets"]["lifecycleStateChange"]["lifecycleStateChange"] == "OVERWRITE"
    assert "lifecycleStateChange" not in issues_out["facets"]

    # delivered to the configured endpoint, authenticated, and no secret in any body
    assert [r["path"] for r in requests] == [ENDPOINT, ENDPOINT]
    assert all(r["headers"].get("Authorization") == f"Bearer {LINEAGE_KEY}" for r in requests)
    for r in requests:
        assert LINEAGE_KEY not in r["body"] and API_TOKEN not in r["body"]


def test_a_metaflow_task_has_the_metaflow_run_as_parent(project):
    block, run, targets, results = make_run(project, "jira", ["issues"])
    with LineageReceiver() as receiver:
        lineage = Lineage.from_settings(http(receiver.url, namespace="prod-ingest"))
        lineage.start(block=block, run=run, targets=targets, parent_pathspec="IngestFlow/1712/sync/4")
        finish_run(run, targets, results)
        lineage.complete(block=block, run=run, targets=targets, results=results)
        events = receiver.wait_for(2)
    for event in events:
        assert check_event(event) == [], event
        assert event["job"] == {**event["job"], "namespace": "prod-ingest", "name": "jira"}  # one stream of two: the block
        parent = event["run"]["facets"]["parent"]
        assert (parent["job"]["namespace"], parent["job"]["name"]) == ("metaflow", "IngestFlow")
        assert parent["run"]["runId"] == metaflow_run_uuid("IngestFlow/1712")
        assert parent["run"]["runId"] == str(uuid.uuid5(uuid.NAMESPACE_URL, "metaflow:IngestFlow/1712"))
        if "root" in parent:
            assert parent["root"]["run"]["runId"] == parent["run"]["runId"]
        tags = {t["key"]: t["value"] for t in event["run"]["facets"]["tags"]["tags"]}
        assert tags["metaflow.pathspec"] == "IngestFlow/1712/sync/4" and tags["ingest.streams"] == "issues"


def test_parent_pathspecs():
    assert metaflow_parent("IngestFlow/1712/sync/4") == ("IngestFlow", "IngestFlow/1712")
    assert metaflow_parent("IngestFlow/argo-ingest-jira-x7") == ("IngestFlow", "IngestFlow/argo-ingest-jira-x7")
    assert metaflow_parent("cli/20250102T030405Z-abc123") is None
    assert metaflow_parent(None) is None and metaflow_parent("IngestFlow") is None


# ---------------------------------------------------------------- FAIL


def test_a_failed_sync_sends_fail_with_a_redacted_error(project):
    block, run, targets, results = make_run(project, "jira", ["issues", "projects"], staged=("projects",))
    with LineageReceiver() as receiver:
        lineage = Lineage.from_settings(http(receiver.url))
        lineage.start(block=block, run=run, targets=targets, parent_pathspec="IngestFlow/9/sync/2")
        error = SyncError(f"401 Unauthorized for token {API_TOKEN}", failure_type="config_error")
        finish_run(run, targets, results, rows=3, status="failed")
        lineage.fail(block=block, run=run, targets=targets, results=results, error=error)
        events = receiver.wait_for(2)
        bodies = [r["body"] for r in receiver.requests]
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    fail = events[1]
    assert check_event(fail) == [], fail
    assert fail["run"]["runId"] == events[0]["run"]["runId"] and fail["job"]["name"] == "jira"
    message = fail["run"]["facets"]["errorMessage"]
    assert message["programmingLanguage"] == "python"
    assert message["message"] == "config_error: 401 Unauthorized for token ****"
    assert "parent" in fail["run"]["facets"]
    issues_out, projects_out = fail["outputs"]
    assert issues_out["outputFacets"]["outputStatistics"]["rowCount"] == 3  # committed checkpoints stay
    assert "outputStatistics" not in projects_out.get("outputFacets", {})  # a staged load that failed: not claimed
    assert "lifecycleStateChange" not in projects_out["facets"]
    assert all(API_TOKEN not in b for b in bodies)


def test_a_sync_that_fails_before_its_streams_are_known_still_reports_fail(project):
    block, run, _, _ = make_run(project, "jira", [])
    run.streams = []
    with LineageReceiver() as receiver:
        lineage = Lineage.from_settings(http(receiver.url))
        run.ended_at, run.status, run.error = run.started_at, "failed", "system_error: discover failed"
        lineage.finish(block=block, run=run, targets={}, results={}, error=SyncError("discover failed", "system_error"),
                       streams=["issues"], parent_pathspec="IngestFlow/5/sync/1")
        events = receiver.wait_for(1)
    assert [e["eventType"] for e in events] == ["FAIL"]
    assert check_event(events[0]) == []
    assert events[0]["job"]["name"] == "jira" and events[0]["inputs"] == [] and events[0]["outputs"] == []
    assert {t["key"]: t["value"] for t in events[0]["run"]["facets"]["tags"]["tags"]}["ingest.streams"] == "issues"
    assert events[0]["run"]["facets"]["errorMessage"]["message"] == "system_error: discover failed"
    assert events[0]["run"]["facets"]["parent"]["job"]["name"] == "IngestFlow"


# ---------------------------------------------------------------- naming


def test_source_namespaces(project):
    from ingest.secrets import REDACTOR

    assert source_namespace(prepared(project.block("jira"))) == "jira://acme.atlassian.net"
    assert REDACTOR.redact("acme.atlassian.net") == "****"  # a resolved reference, yet the namespace keeps the host
    assert source_namespace(prepared(project.block("jira_local"))) == "http://127.0.0.1:8089"
    assert source_namespace(prepared(project.block("demo"))) == "airbyte-source-faker://local"
    assert source_namespace(prepared(project.block("pricing"))) == "https://api.greenscreens.ai"
    assert source_namespace(prepared(project.block("safety"))) == "https://mobile.fmcsa.dot.gov"


def test_a_base_url_never_brings_its_credentials_along(project):
    block = prepared(project.block("jira_local"))
    block.config = {**block.config, "base_url": f"https://me:{API_TOKEN}@jira.internal:8443/jira?token={API_TOKEN}"}
    assert source_namespace(block) == "https://jira.internal:8443"


def test_destination_datasets(tmp_path):
    ns, name, kind = destination_dataset(duckdb_identity(f"{tmp_path}/w.duckdb"), "jira_issues")
    assert (ns, name, kind) == (f"duckdb://{tmp_path.resolve()}/w.duckdb", "w.main.jira_issues", "duckdb")
    snowflake = DestinationIdentity(kind="snowflake", namespace="snowflake://acme-prod", database="ANALYTICS", schema="raw")
    assert destination_dataset(snowflake, "jira_issues") == (
        "snowflake://acme-prod", "ANALYTICS.RAW.JIRA_ISSUES", "snowflake")


# What OpenLineage's dbt integration names the same tables: DbtArtifactProcessor.extract_namespace and
# extract_dataset_data in openlineage/common/provider/dbt/processor.py (openlineage-integration-common), restated
# here so our names are checked against dbt's rule, not against our own code.


def dbt_namespace(profile: dict) -> str:
    """`extract_namespace(profile)`: `duckdb://{profile['path']}` for DuckDB, `snowflake://{fix_account_name(account)}`
    for Snowflake. fix_account_name (openlineage/common/provider/snowflake.py) keeps an `<org>-<account>` identifier
    (a '-' or '_', no '.', no cloud name in it) as written; only legacy account locators get a region suffix."""
    if profile["type"] == "duckdb":
        return f"duckdb://{profile['path']}"
    account = profile["account"]
    assert ("-" in account or "_" in account) and "." not in account
    assert not any(cloud in account for cloud in ("aws", "gcp", "azure"))  # fix_account_name's other branches
    return f"snowflake://{account}"


def dbt_dataset_name(node: dict) -> str:
    """`extract_dataset_data(node)` → `_format_dataset_name(node['database'], node['schema'], node['name'])`: the
    parts that are set, joined by dots."""
    return ".".join(part for part in (node["database"], node["schema"], node["name"]) if part)


def completed_outputs(lineage_file: Path) -> list[tuple[str, str]]:
    events = [json.loads(line) for line in lineage_file.read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"] and all(check_event(e) == [] for e in events)
    return [(o["namespace"], o["name"]) for o in events[1]["outputs"]]


def test_duckdb_outputs_are_the_datasets_dbt_names(project, tmp_path):
    """A dbt-duckdb project on our file (its profile's `path` absolute) names a source or model on it
    `<file stem>.main.<table>` (dbt-duckdb's database is the file's stem, its default schema `main`)."""
    path = tmp_path / "warehouse.duckdb"
    block, run, targets, results = make_run(project, "demo", ["users"])
    lineage = Lineage.from_settings({"transport": "file", "path": "ol.jsonl"}, base_dir=tmp_path,
                                    destination=duckdb_identity(path))
    lineage.start(block=block, run=run, targets=targets)
    finish_run(run, targets, results)
    lineage.complete(block=block, run=run, targets=targets, results=results)
    profile = {"type": "duckdb", "path": str(path.resolve())}
    source = {"database": "warehouse", "schema": "main", "name": "demo_users"}  # dbt's node for our table
    assert completed_outputs(tmp_path / "ol.jsonl") == [(dbt_namespace(profile), dbt_dataset_name(source))]


@pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")  # fakesnow's, as in test_snowflake_sql
def test_snowflake_outputs_are_the_datasets_dbt_names(project, tmp_path):
    """A dbt-snowflake profile with the account as `<org>-<account>` (the form OpenLineage's naming spec uses) and a
    source on our table, as Snowflake spells it: the same namespace and name as our output. Our destination is the
    real one (fakesnow in process); it lower-cases the account as configured."""
    fakesnow = pytest.importorskip("fakesnow")
    from ingest.destinations.snowflake import SnowflakeConfig, SnowflakeDestination

    config = SnowflakeConfig(account="ACME-PROD", user="loader", database="ANALYTICS", schema="RAW", role="LOADER",
                             warehouse="LOAD_WH", password=secrets.token_hex(8))  # fakesnow checks none
    with fakesnow.patch():
        dest = SnowflakeDestination(config, team="platform", block="demo", run_id="r1", swap_with=False)
        identity = dest.identity
        dest.close()
    block, run, targets, results = make_run(project, "demo", ["users"])
    lineage = Lineage.from_settings({"transport": "file", "path": "ol.jsonl"}, base_dir=tmp_path, destination=identity)
    lineage.start(block=block, run=run, targets=targets)
    finish_run(run, targets, results)
    lineage.complete(block=block, run=run, targets=targets, results=results)
    profile = {"type": "snowflake", "account": "acme-prod", "database": "ANALYTICS", "schema": "RAW"}
    source = {"database": "ANALYTICS", "schema": "RAW", "name": "DEMO_USERS"}
    assert completed_outputs(tmp_path / "ol.jsonl") == [(dbt_namespace(profile), dbt_dataset_name(source))]


def test_snowflake_outputs_use_snowflake_names_and_types(project):
    block, run, targets, results = make_run(project, "demo", ["users"], destination="snowflake:ACME-PROD/ANALYTICS.RAW")
    snowflake = DestinationIdentity(kind="snowflake", namespace="snowflake://acme-prod", database="ANALYTICS", schema="RAW")
    with LineageReceiver() as receiver:
        lineage = Lineage.from_settings(http(receiver.url), destination=snowflake)
        finish_run(run, targets, results)
        lineage.start(block=block, run=run, targets=targets)
        lineage.complete(block=block, run=run, targets=targets, results=results)
        complete = receiver.wait_for(2)[1]
    assert check_event(complete) == []
    out = complete["outputs"][0]
    assert (out["namespace"], out["name"]) == ("snowflake://acme-prod", "ANALYTICS.RAW.DEMO_USERS")
    types_ = facet_types(out)
    assert types_["ID"] == "VARCHAR" and types_["UPDATED"] == "TIMESTAMP_TZ" and types_["FIELDS"] == "VARIANT"
    assert types_["_INGEST_LOAD_ID"] == "VARCHAR"
    described = descriptions(out)  # looked up by field, before the column is upper-cased
    assert described["ID"] == DESCRIPTIONS["id"] and described["_INGEST_LOAD_ID"] == META_DESCRIPTIONS["_ingest_load_id"]
    assert complete["inputs"][0]["namespace"] == "airbyte-source-faker://local"
    assert complete["job"]["name"] == "demo"


# ---------------------------------------------------------------- other transports


def test_file_transport_writes_json_lines(project):
    block, run, targets, results = make_run(project, "demo", ["users"])
    lineage = Lineage.from_settings({"transport": "file", "path": "lineage/events.jsonl"}, base_dir=project.path.parent)
    lineage.start(block=block, run=run, targets=targets)
    finish_run(run, targets, results)
    lineage.complete(block=block, run=run, targets=targets, results=results)
    lines = (project.path.parent / "lineage" / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert all(check_event(e) == [] for e in events)
    # a second sync appends
    block, run2, targets, results = make_run(project, "demo", ["users"])
    run2.run_id = "20250102T040000Z-def456"
    lineage = Lineage.from_settings({"transport": "file", "path": "lineage/events.jsonl"}, base_dir=project.path.parent)
    lineage.start(block=block, run=run2, targets=targets)
    lineage.complete(block=block, run=run2, targets=targets, results=results)
    assert len((project.path.parent / "lineage" / "events.jsonl").read_text().splitlines()) == 4


def test_console_transport_logs_each_event(project, caplog):
    block, run, targets, results = make_run(project, "demo", ["users"])
    caplog.set_level(logging.INFO, logger="openlineage")
    lineage = Lineage.from_settings({"transport": "console"})
    lineage.start(block=block, run=run, targets=targets)
    lineage.complete(block=block, run=run, targets=targets, results=results)
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "openlineage.client.transport.console"]
    assert [e["eventType"] for e in logged] == ["START", "COMPLETE"]


@pytest.mark.parametrize("settings", [None, {}, {"transport": "off", "url": "http://127.0.0.1:1"}])
def test_off_emits_nothing(project, settings):
    block, run, targets, results = make_run(project, "demo", ["users"])
    with LineageReceiver() as receiver:
        lineage = Lineage.from_settings(settings)
        assert not lineage.enabled
        lineage.start(block=block, run=run, targets=targets)
        lineage.complete(block=block, run=run, targets=targets, results=results)
        lineage.fail(block=block, run=run, targets=targets, results=results, error=SyncError("x"))
        time.sleep(0.1)
        assert receiver.requests == [] and lineage.sent == 0 and lineage._thread is None


def test_the_settings_model_is_accepted_as_is(project):
    """The lead's pydantic LineageSettings (anything with model_dump) works like a dict."""

    @dataclasses.dataclass
    class Model:
        transport: str = "file"
        path: str = "l.jsonl"
        namespace: str = "x"

        def model_dump(self):
            return dataclasses.asdict(self)

    lineage = Lineage.from_settings(Model(), base_dir=project.path.parent)
    assert lineage.enabled and lineage.namespace == "x" and lineage.where.endswith("l.jsonl")


# ---------------------------------------------------------------- lineage never breaks or holds up a sync


@pytest.mark.parametrize("settings, why", [
    ({"transport": "http"}, "needs `url`"),
    ({"transport": "http", "url": "not a url"}, "needs `url`"),
    ({"transport": "http", "url": "http://127.0.0.1:1", "api_key": "${TEST_LINEAGE_UNSET_KEY}"}, "TEST_LINEAGE_UNSET_KEY} is not set"),
    ({"transport": "file"}, "needs `path`"),
    ({"transport": "kafka"}, "unknown transport"),
])
def test_unusable_settings_disable_lineage_with_a_warning(settings, why, caplog):
    with caplog.at_level(logging.WARNING, logger="ingest.lineage"):
        lineage = Lineage.from_settings(settings)
    assert not lineage.enabled
    assert any(why in r.getMessage() for r in caplog.records), caplog.text


def test_receiver_down_changes_nothing(project, caplog):
    block, run, targets, results = make_run(project, "jira", ["issues"])
    lineage = Lineage.from_settings(http(f"http://127.0.0.1:{closed_port()}"))
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ingest.lineage"):
        lineage.start(block=block, run=run, targets=targets)
        finish_run(run, targets, results)
        lineage.complete(block=block, run=run, targets=targets, results=results)
    assert time.monotonic() - began < 3
    assert lineage.sent == 0 and len(lineage.errors) == 2
    assert "not delivered" in caplog.text and LINEAGE_KEY not in caplog.text


def test_receiver_answering_500_changes_nothing(project, caplog):
    block, run, targets, results = make_run(project, "jira", ["issues"])
    with LineageReceiver(status=500) as receiver:
        lineage = Lineage.from_settings(http(receiver.url))
        began = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="ingest.lineage"):
            lineage.start(block=block, run=run, targets=targets)
            finish_run(run, targets, results)
            lineage.fail(block=block, run=run, targets=targets, results=results, error=SyncError("boom"))
        elapsed = time.monotonic() - began
        attempts = len(receiver.requests)
    assert elapsed < 3
    assert attempts == 4  # START and FAIL, one retry each
    assert lineage.sent == 0 and len(lineage.errors) == 2 and "not delivered" in caplog.text


def test_a_silent_receiver_holds_the_sync_up_at_most_twice_the_timeout(project, caplog):
    block, run, targets, results = make_run(project, "jira", ["issues"])
    with silent_port() as port:
        lineage = Lineage.from_settings(http(f"http://127.0.0.1:{port}", timeout=0.3))
        began = time.monotonic()
        lineage.start(block=block, run=run, targets=targets)
        start_cost = time.monotonic() - began
        finish_run(run, targets, results)
        with caplog.at_level(logging.WARNING, logger="ingest.lineage"):
            lineage.complete(block=block, run=run, targets=targets, results=results)
        total = time.monotonic() - began
    assert start_cost < 0.2  # START is sent in the background
    assert total < 0.3 * 2 + 0.5
    assert "gave up waiting" in caplog.text or "Read timed out" in caplog.text


def test_a_broken_event_build_is_a_warning_not_an_exception(project, caplog):
    block, run, targets, results = make_run(project, "jira", ["issues"])
    with LineageReceiver() as receiver:
        lineage = Lineage.from_settings(http(receiver.url))
        with caplog.at_level(logging.WARNING, logger="ingest.lineage"):
            lineage.start(block=block, run=None, targets=targets)  # type: ignore[arg-type]
            lineage.complete(block=block, run=run, targets=targets, results={"issues": object()})
        assert "could not build the START event" in caplog.text
        assert "could not build the COMPLETE event" in caplog.text


def test_the_event_check_catches_spec_violations(project):
    """check_event is not vacuous: each kind of violation it is relied on for is reported."""
    import copy

    block, run, targets, results = make_run(project, "jira", ["issues"])
    lineage = Lineage.from_settings({"transport": "file", "path": "v.jsonl"}, base_dir=project.path.parent)
    finish_run(run, targets, results, status="failed")
    lineage.fail(block=block, run=run, targets=targets, results=results, error=SyncError("boom"))
    good = json.loads((project.path.parent / "v.jsonl").read_text())
    assert check_event(good) == []

    def broken(change) -> list[str]:
        event = copy.deepcopy(good)
        change(event)
        return check_event(event)

    assert any("runId" in p for p in broken(lambda e: e["run"].update(runId="not-a-uuid")))
    assert any("run.runId" in p for p in broken(lambda e: e["run"].pop("runId")))
    assert any("eventType" in p for p in broken(lambda e: e.update(eventType="DONE")))
    assert any("eventTime" in p for p in broken(lambda e: e.update(eventTime="yesterday")))
    assert any("job.name" in p for p in broken(lambda e: e["job"].pop("name")))
    assert any("programmingLanguage" in p for p in broken(lambda e: e["run"]["facets"]["errorMessage"].pop("programmingLanguage")))
    assert any("_schemaURL" in p for p in broken(lambda e: e["run"]["facets"]["errorMessage"].update(_schemaURL="https://x/y.json")))
    assert any("_producer" in p for p in broken(lambda e: e["job"]["facets"]["ownership"].pop("_producer")))
    assert any("owners[0].name" in p for p in broken(lambda e: e["job"]["facets"]["ownership"]["owners"][0].pop("name")))
    assert any("fields[0].name" in p for p in broken(lambda e: e["outputs"][0]["facets"]["schema"]["fields"][0].pop("name")))
    assert any("rowCount" in p for p in broken(lambda e: e["outputs"][0]["outputFacets"]["outputStatistics"].update(rowCount="7")))
    assert any("holds a" in p for p in broken(lambda e: e["outputs"][0]["facets"].update(schema=e["outputs"][0]["facets"]["ownership"])))


def test_a_cli_sync_sends_start_and_complete_to_a_lineage_backend(tmp_path):
    """End to end, as a user configures it: `ingest run` with `defaults.lineage` pointing at a receiver."""
    from .support.cli import Project
    from .support.blocks import demo_config

    project = Project(tmp_path)
    with LineageReceiver() as receiver:
        project.write_config(demo_config(count=120, slice_=60).replace(
            "defaults:\n", f"defaults:\n  lineage: {{transport: http, url: 'http://127.0.0.1:{receiver.port}'}}\n", 1))
        r = project.cli("run", "demo", "--stream", "users")
        assert r.code == 0, r.output
        events = receiver.wait_for(2)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for e in events:
        assert check_event(e) == []
    complete = events[1]
    out = complete["outputs"][0]
    assert out["name"] == "warehouse.main.demo_users" and out["namespace"] == f"duckdb://{project.db.resolve()}"
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == 120
    assert {f["name"] for f in out["facets"]["schema"]["fields"]} >= {"id", "updated_at", "_ingest_load_id"}
    assert out["facets"]["ownership"]["owners"][0]["name"].endswith("platform")
    assert complete["inputs"][0]["name"] == "demo.users"
