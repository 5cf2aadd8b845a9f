"""Offline tests of the manifest plumbing (ingest/sources/manifest.py), the Jira override
(overrides/source-jira.yaml), the in-process source (ingest/sources/airbyte.py) and the loopback fake
(tests/fakes/fake_jira.py).

airbyte-source-jira 4.0.0 is not installed: its files come from the connectors cache (`jira_files`, fetched once).
The source is built with `build_declarative_source` from the packaged manifest + the override and driven directly
through airbyte_cdk (no entrypoint), or through `InProcessSource`, against FakeJira via the `base_url` key.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest

from ingest.config import load_project
from ingest.sources.airbyte import InProcessSource
from ingest.sources.environments import ConnectorCache
from ingest.sources.protocol import state_to_dict
from ingest.sources.manifest import (
    SchemaFile,
    apply_override,
    build_declarative_source,
    connector_spec,
    load_package_manifest,
    load_yaml_file,
    package_dir,
)
from tests.fakes.fake_jira import BAD_TOKEN_MESSAGE, REMOVED_SEARCH_MESSAGE, FakeJira, parse_jira_datetime
from tests.support.net import closed_port, silent_port

REPO = Path(__file__).resolve().parents[1]
OVERRIDE = REPO / "overrides" / "source-jira.yaml"
SEARCH_JQL = "/rest/api/3/search/jql"
OLD_SEARCH = "/rest/api/3/search"
LOGGER = logging.getLogger("airbyte.test_jira_source")


# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module", autouse=True)
def _cdk_imported_without_logging_takeover():
    """Import the CDK first through manifest.py, which undoes the root-logger takeover of the CDK's import
    (a plain `from airbyte_cdk.models import ...` would leave an Airbyte-JSON handler on the root logger)."""
    from ingest.sources.manifest.build import _import_cdk_keeping_root_logging

    _import_cdk_keeping_root_logging()


@pytest.fixture(scope="session")
def connectors_cache() -> ConnectorCache:
    """The connectors cache the tests share: $INGEST_CONNECTORS_DIR, else <repo>/.cache/connectors (git-ignored).
    The first run downloads the wheels (uv); later runs are offline."""
    root = os.environ.get("INGEST_CONNECTORS_DIR") or REPO / ".cache" / "connectors"
    return ConnectorCache(root, notify=lambda line: None)


@pytest.fixture(scope="session")
def jira_files(connectors_cache) -> Path:
    return connectors_cache.ensure_files("airbyte-source-jira", "4.0.0")


@pytest.fixture(scope="module")
def jira_manifest(jira_files) -> dict:
    return apply_override(load_package_manifest("source_jira", jira_files), load_yaml_file(OVERRIDE))


@pytest.fixture(scope="module")
def jira_build(jira_manifest, jira_files):
    """build_declarative_source for the overridden Jira manifest, its components imported from `jira_files`."""
    return partial(build_declarative_source, jira_manifest, package=("source_jira", jira_files))


@contextmanager
def fresh_request_cache():
    """The CDK caches parent streams' responses (issues and projects are parents) process-wide, keyed without
    the Authorization header, unless REQUEST_CACHE_PATH names a directory. The HTTP clients read it when streams
    are created (check/discover/read), so keep a fresh directory set for the whole sync, then restore."""
    old = os.environ.get("REQUEST_CACHE_PATH")
    with tempfile.TemporaryDirectory(prefix="ingest-test-cache-") as d:
        os.environ["REQUEST_CACHE_PATH"] = d
        try:
            yield d
        finally:
            if old is None:
                os.environ.pop("REQUEST_CACHE_PATH", None)
            else:
                os.environ["REQUEST_CACHE_PATH"] = old


@pytest.fixture
def fast_backoff(monkeypatch):
    """The CDK looks `backoff.expo` up each time it sends a request; zero waits make retry paths instant."""
    import backoff

    def no_wait(*args, **kwargs):
        while True:
            yield 0

    monkeypatch.setattr(backoff, "expo", no_wait)


@pytest.fixture
def jira():
    with FakeJira(seed=7, issue_count=120) as fake:
        yield fake


# One window (the fake's issues are all in 2024): these tests are about paging, faults and state, each request
# once; reading in windows is tested end to end in tests/test_jira_resume.py.
START_MS, END_MS = 1704067200000, 1735689599999  # 2024-01-01T00:00:00Z .. 2024-12-31T23:59:59.999Z
WINDOW_JQL = f"updated >= {START_MS} and updated <= {END_MS} ORDER BY updated asc"


def make_config(fake: FakeJira, **extra) -> dict:
    return {"domain": "dummy.invalid", "base_url": fake.base_url, "email": fake.email, "api_token": fake.token,
            "start_date": "2024-01-01T00:00:00Z", "end_date": "2024-12-31T23:59:59Z", "issues_window": "P1Y", **extra}


def issues_catalog(build, config: dict):
    from airbyte_cdk.models import (ConfiguredAirbyteCatalog, ConfiguredAirbyteStream, DestinationSyncMode,
                                    SyncMode)

    with fresh_request_cache():
        source = build(catalog=None, config=config, state=[])
        catalog = source.discover(LOGGER, config)
    stream = next(s for s in catalog.streams if s.name == "issues")
    return ConfiguredAirbyteCatalog(streams=[ConfiguredAirbyteStream(
        stream=stream, sync_mode=SyncMode.incremental, destination_sync_mode=DestinationSyncMode.append_dedup,
        cursor_field=["updated"], primary_key=[["id"]])])


@dataclass
class ReadResult:
    records: list[dict] = field(default_factory=list)
    states: list = field(default_factory=list)
    errors: list = field(default_factory=list)  # AirbyteErrorTraceMessage
    exception: BaseException | None = None

    @property
    def final_state(self) -> list:
        return [self.states[-1]] if self.states else []


def read_issues(build, config: dict, catalog, state: list | None = None) -> ReadResult:
    from airbyte_cdk.models import TraceType, Type

    result = ReadResult()
    with fresh_request_cache():
        source = build(catalog=catalog, config=config, state=state or [])
        try:
            for msg in source.read(LOGGER, config, catalog, state or []):
                if msg.type == Type.RECORD:
                    result.records.append(msg.record.data)
                elif msg.type == Type.STATE:
                    result.states.append(msg.state)
                elif msg.type == Type.TRACE and msg.trace.type == TraceType.ERROR:
                    result.errors.append(msg.trace.error)
        except Exception as e:  # AirbyteTracedException("Concurrent read failure") after a stream error
            result.exception = e
    return result


@pytest.fixture(scope="module")
def catalog(jira_build):
    with FakeJira(seed=7, issue_count=1) as fake:
        return issues_catalog(jira_build, make_config(fake))


# ---------------------------------------------------------------------------------------------- apply_override


def test_apply_override_semantics():
    manifest = {"a": {"b": 1, "c": [1, 2], "d": {"e": 1, "f": 2}}, "g": "x", "keep": {"k": 1}}
    override = {"a": {"b": 2, "c": [3], "d": {"f": None, "new": {"n": 1, "gone": None}}}, "g": None, "h": [1]}
    before = json.dumps(manifest, sort_keys=True), json.dumps(override, sort_keys=True)
    out = apply_override(manifest, override)
    assert out == {"a": {"b": 2, "c": [3], "d": {"e": 1, "new": {"n": 1}}}, "keep": {"k": 1}, "h": [1]}
    assert (json.dumps(manifest, sort_keys=True), json.dumps(override, sort_keys=True)) == before  # no mutation
    out["keep"]["k"] = 99
    out["h"].append(2)
    assert manifest["keep"]["k"] == 1 and override["h"] == [1]  # no shared sub-objects
    assert apply_override(manifest, {"missing": None}) == manifest  # deleting an absent key is a no-op
    assert apply_override({"a": {"x": 1}}, {"a": "scalar"}) == {"a": "scalar"}  # type change replaces
    assert apply_override({"a": 1}, {"a": {"x": 1}}) == {"a": {"x": 1}}


def test_override_patches_raw_manifest(jira_manifest, jira_files):
    raw = load_package_manifest("source_jira", jira_files)
    d = jira_manifest["definitions"]
    assert raw["definitions"]["issues_stream"]["$parameters"]["path"] == "search"
    assert d["issues_stream"]["$parameters"] == {"path": "search/jql", "extract_field": "issues"}
    assert d["issues_stream"]["retriever"]["$ref"] == "#/definitions/retriever"  # still a $ref, patched before resolution
    assert d["issues_stream"]["retriever"]["paginator"]["page_token_option"]["field_name"] == "nextPageToken"
    assert "base_url" in d["requester"]["url_base"] and "base_url" in d["requester_v1"]["url_base"]
    assert jira_manifest["check"]["stream_names"] == ["projects", "issues"]
    assert d["projects_stream"] == raw["definitions"]["projects_stream"]  # untouched elsewhere


# ---------------------------------------------------------------------------------------------- spec / packages


def test_connector_spec_includes_override_keys_and_package_required(jira_manifest, jira_files):
    spec = connector_spec("source_jira", jira_manifest, jira_files)
    package_spec = json.loads((package_dir("source_jira", jira_files) / "spec.json").read_text())["connectionSpecification"]
    assert set(package_spec["required"]) == {"api_token", "domain", "email"}
    assert spec["required"] == package_spec["required"]
    assert set(package_spec["properties"]) < set(spec["properties"])
    assert spec["properties"]["base_url"]["type"] == "string" and spec["properties"]["base_url"]["description"]
    assert spec["properties"]["max_retries"]["type"] == "integer"
    # the stock manifest has no spec: the package's spec.json alone
    assert connector_spec("source_jira", load_package_manifest("source_jira", jira_files), jira_files) == package_spec
    # a standalone manifest carrying its own spec
    own = {"spec": {"type": "Spec", "connection_specification": {"type": "object", "required": ["x"]}}}
    assert connector_spec(None, own) == {"type": "object", "required": ["x"]}
    with pytest.raises(ValueError):
        connector_spec(None, {"streams": []})


def test_package_helpers_do_not_import_connector_or_cdk(jira_files, tmp_path):
    code = textwrap.dedent("""
        import sys, json
        from ingest.sources.manifest import (package_dir, load_package_manifest, connector_spec, apply_override,
                                             load_yaml_file)
        files = sys.argv[2]
        m = apply_override(load_package_manifest("source_jira", files), load_yaml_file(sys.argv[1]))
        spec = connector_spec("source_jira", m, files)
        print(json.dumps({"dir": str(package_dir("source_jira", files)), "base_url": "base_url" in spec["properties"],
                          "imported": sorted(k for k in sys.modules if k.split(".")[0] in ("airbyte_cdk", "source_jira"))}))
    """)
    out = subprocess.run([sys.executable, "-c", code, str(OVERRIDE), str(jira_files)], cwd=REPO, capture_output=True,
                         text=True, check=True)
    data = json.loads(out.stdout)
    assert data["imported"] == [] and data["base_url"] is True
    assert Path(data["dir"]) == jira_files / "source_jira" and (Path(data["dir"]) / "manifest.yaml").is_file()
    with pytest.raises(FileNotFoundError, match="source_does_not_exist_xyz"):
        package_dir("source_does_not_exist_xyz", jira_files)
    (tmp_path / "source_python_only").mkdir()
    assert load_package_manifest("source_python_only", tmp_path) is None  # a Python connector: no manifest.yaml


def test_package_schemas_are_pinned_independently_of_import_order(jira_files, tmp_path):
    """The CDK's default schema path is the first `*source_*` module in sys.modules (`multiprocessing.resource_tracker`
    in practice, or another connector). load_package_manifest pins each stream to its own package's schema file by
    absolute path, so discover gives the connector's schemas whatever was imported before - even another connector
    with an `issues` stream of its own."""
    decoy = tmp_path / "source_decoy"
    (decoy / "schemas").mkdir(parents=True)
    (decoy / "__init__.py").write_text("")
    for name in ("issues", "projects", "users"):
        (decoy / "schemas" / f"{name}.json").write_text(json.dumps({"type": "object", "properties": {"decoy": {}}}))
    code = textwrap.dedent("""
        import json, logging, sys
        sys.path.insert(0, sys.argv[3])
        import multiprocessing.resource_tracker, source_decoy  # both match the CDK's "source_" module lookup
        from ingest.sources.manifest import apply_override, build_declarative_source, load_package_manifest, load_yaml_file
        logging.disable(logging.CRITICAL)
        m = apply_override(load_package_manifest("source_jira", sys.argv[2]), load_yaml_file(sys.argv[1]))
        config = {"domain": "x.invalid", "email": "a@b.c", "api_token": "t"}
        source = build_declarative_source(m, catalog=None, config=config, state=[], package=("source_jira", sys.argv[2]))
        catalog = source.discover(logging.getLogger("t"), config)
        print(json.dumps({s.name: sorted(s.json_schema.get("properties", {})) for s in catalog.streams}))
    """)
    out = subprocess.run([sys.executable, "-c", code, str(OVERRIDE), str(jira_files), str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, check=True)
    props = json.loads(out.stdout.strip().splitlines()[-1])
    schemas = package_dir("source_jira", jira_files) / "schemas"
    assert not [name for name, p in props.items() if not p], "streams discovered with an empty schema"
    for name in ("issues", "projects", "users"):
        assert props[name] == sorted(json.loads((schemas / f"{name}.json").read_text())["properties"]), name
    raw = load_package_manifest("source_jira", jira_files, pin_schemas=False)
    assert "schema_loader" not in raw["definitions"]["issues_stream"]
    pinned = load_package_manifest("source_jira", jira_files)["definitions"]["issues_stream"]["schema_loader"]
    assert pinned == {"type": "CustomSchemaLoader", "class_name": f"{SchemaFile.__module__}.SchemaFile",
                      "file_path": str((schemas / "issues.json").resolve()),
                      "package_path": str(schemas.parent.resolve())}


# ---------------------------------------------------------------------------------------------- check


def jira_source(tmp_path: Path, jira_files: Path, config: dict, **kwargs) -> InProcessSource:
    """An InProcessSource for a `source: airbyte-source-jira` block with the override (config set directly:
    resolving secrets and validating the config is config.py's business)."""
    (tmp_path / "connectors.yaml").write_text(textwrap.dedent(f"""
        connectors:
          jira:
            team: fraud
            source: airbyte-source-jira
            overrides: {OVERRIDE}
            config: {{}}
            streams: [{{name: issues}}]
    """))
    block = load_project(tmp_path / "connectors.yaml").block("jira")
    block.config = config
    return InProcessSource(block, jira_files, **kwargs)


def test_spec_is_package_spec_plus_override(tmp_path, jira_files):
    spec = jira_source(tmp_path, jira_files, {}).spec()
    assert set(spec["required"]) == {"api_token", "domain", "email"}
    assert {"base_url", "max_retries", "projects"} <= set(spec["properties"])


def test_check_succeeds_with_two_requests(tmp_path, jira_files, jira):
    assert jira_source(tmp_path, jira_files, make_config(jira)).check() == (True, None)
    assert [r.path for r in jira.requests] == ["/rest/api/3/project/search", SEARCH_JQL]


def test_check_fails_clearly_on_bad_token(tmp_path, jira_files, jira):
    ok, message = jira_source(tmp_path, jira_files, make_config(jira, api_token="wrong-token")).check()
    assert not ok
    assert message == "stream projects: HTTP 401: Unauthorized. Please ensure you are authenticated correctly."
    assert len(jira.requests) == 1 and jira.requests[0].status == 401  # no retries on 401


def test_check_fails_fast_without_retries(tmp_path, jira_files, jira):
    """The override's max_retries template says 10, and the stock CDK retries a refused connection or a 500 with
    backoff for minutes; a check tries once."""
    port = closed_port()
    started = time.monotonic()
    ok, message = jira_source(tmp_path, jira_files, make_config(jira, base_url=f"http://127.0.0.1:{port}")).check()
    assert not ok and message == f"stream projects: cannot connect to 127.0.0.1:{port} (connection refused)"
    assert time.monotonic() - started < 5
    jira.fail_next(100, 500)
    ok, message = jira_source(tmp_path, jira_files, make_config(jira)).check()
    assert (ok, message) == (False, "stream projects: HTTP 500: Internal server error.")
    assert [r.status for r in jira.requests] == [500]


def test_check_gives_up_at_its_deadline(tmp_path, jira_files):
    """A host that accepts the connection and never answers: no retry cap helps, the deadline does."""
    with silent_port() as port:
        config = {"domain": "x", "base_url": f"http://127.0.0.1:{port}", "email": "a@b.c", "api_token": "t"}
        started = time.monotonic()
        ok, message = jira_source(tmp_path, jira_files, config, check_timeout=1).check()
        elapsed = time.monotonic() - started
    assert (ok, message) == (False, "no answer within 1 s (is the host reachable from here?)")
    assert elapsed < 5


# ---------------------------------------------------------------------------------------------- read


def test_full_read_returns_every_issue_once_across_pages(jira_build, jira, catalog):
    t0 = time.monotonic()
    result = read_issues(jira_build, make_config(jira), catalog)
    assert result.exception is None and not result.errors
    ids = [r["id"] for r in result.records]
    assert len(ids) == len(set(ids)) == 120
    assert set(ids) == {i["id"] for i in jira.issues}
    rec = result.records[0]
    assert rec["key"] and rec["projectKey"] in ("PROJ", "OPS") and rec["updated"] == rec["fields"]["updated"]

    search = jira.requests_to(SEARCH_JQL)
    assert len(search) == 3  # 50 + 50 + 20
    assert "nextPageToken" not in search[0].query
    assert all("nextPageToken" in r.query for r in search[1:])
    first = search[0].query
    assert first["jql"] == WINDOW_JQL  # epoch ms; no project clause without `projects`
    assert first["maxResults"] == "50" and first["fields"] == "*all"
    assert first["expand"] == "renderedFields,transitions,changelog"
    assert not jira.requests_to(OLD_SEARCH), "the removed /search endpoint (410) must never be called"
    assert all(r.status == 200 for r in jira.requests)
    state = result.final_state[0].stream.stream_state.__dict__
    newest = max(parse_jira_datetime(i["fields"]["updated"]) for i in jira.issues)
    assert state == {"updated": newest.strftime("%Y-%m-%dT%H:%M:%S+0000")}  # truncated to seconds
    assert time.monotonic() - t0 < 10


def test_incremental_read_returns_changed_issues_and_boundary_record(jira_build, jira, catalog):
    config = make_config(jira)
    first = read_issues(jira_build, config, catalog)
    assert first.exception is None and len(first.records) == 120
    newest = max(first.records, key=lambda r: parse_jira_datetime(r["updated"]))
    cursor = first.final_state[0].stream.stream_state.__dict__["updated"]

    jira.touch_issue("10003", updated="2024-03-01T10:00:00.001+0000")
    jira.upsert_issue("10010", summary="Renamed", updated="2024-03-02T11:12:13.456+0000")
    added = jira.add_issues(1)[0]  # created after every other issue
    jira.clear_requests()

    second = read_issues(jira_build, config, catalog, state=first.final_state)
    assert second.exception is None and not second.errors
    got = sorted(r["id"] for r in second.records)
    assert got == sorted({"10003", "10010", added["id"], newest["id"]})  # + the re-delivered boundary record
    assert next(r for r in second.records if r["id"] == "10010")["fields"]["summary"] == "Renamed"
    expected_ms = int(parse_jira_datetime(cursor).timestamp() * 1000)
    assert jira.requests_to(SEARCH_JQL)[0].query["jql"] == f"updated >= {expected_ms} and updated <= {END_MS} ORDER BY updated asc"


def test_in_process_source_reads_and_resumes_from_state(tmp_path, jira_files, jira, catalog):
    from airbyte_cdk.models import Type

    source = jira_source(tmp_path, jira_files, make_config(jira))
    first = list(source.read(catalog, []))
    records = [m.record.data for m in first if m.type == Type.RECORD]
    states = [m.state for m in first if m.type == Type.STATE]
    assert len(records) == len({r["id"] for r in records}) == 120
    newest = max(records, key=lambda r: parse_jira_datetime(r["updated"]))
    stored = [state_to_dict(s) for s in states[-1:]]  # what the runner stores and hands back
    again = [m.record.data["id"] for m in source.read(catalog, stored) if m.type == Type.RECORD]
    assert again == [newest["id"]]  # only the boundary record (the cursor filter is `>=`)


def test_projects_config_filters_by_project_key(jira_build, jira, catalog):
    result = read_issues(jira_build, make_config(jira, projects=["OPS"]), catalog)
    assert result.exception is None
    assert result.records and {r["projectKey"] for r in result.records} == {"OPS"}
    assert len(result.records) == sum(1 for i in jira.issues if i["fields"]["project"]["key"] == "OPS")
    assert {r.query["jql"] for r in jira.requests_to(SEARCH_JQL)} == {
        f"updated >= {START_MS} and updated <= {END_MS} and project in ('OPS') ORDER BY updated asc"}


def test_base_url_with_path_prefix(jira_build, catalog):
    with FakeJira(seed=3, issue_count=5, path_prefix="/jira") as fake:
        assert fake.base_url.endswith("/jira")
        result = read_issues(jira_build, make_config(fake, base_url=fake.base_url + "/"), catalog)
        assert result.exception is None and len(result.records) == 5
        assert all(r.path == SEARCH_JQL for r in fake.requests)


def test_bad_token_read_raises_config_error(jira_build, jira, catalog):
    from airbyte_cdk.utils.traced_exception import AirbyteTracedException

    config = make_config(jira)
    jira.set_token("rotated")  # the configured token is no longer valid
    result = read_issues(jira_build, config, catalog)
    assert isinstance(result.exception, AirbyteTracedException)
    assert result.records == []
    assert [e.failure_type.value for e in result.errors] == ["config_error"]
    assert len(jira.requests) == 1 and jira.requests[0].status == 401


def test_garbage_next_page_token_fails_the_stream(jira_build, jira, catalog):
    from airbyte_cdk.utils.traced_exception import AirbyteTracedException

    jira.corrupt_next_page_token(1)  # page 1 hands out a token Jira will reject
    result = read_issues(jira_build, make_config(jira), catalog)
    assert isinstance(result.exception, AirbyteTracedException), "a rejected token must not end the stream silently"
    assert len(result.records) == 50
    assert result.errors and BAD_TOKEN_MESSAGE in result.errors[0].message
    search = jira.requests_to(SEARCH_JQL)
    assert [r.status for r in search] == [200, 400]  # a 400 is not retried
    # no cursor state may claim any of the stream was read (the window's start is where it began)
    assert {s.stream.stream_state.__dict__.get("updated") for s in result.states} <= {"2024-01-01T00:00:00+0000"}


def test_transient_faults_are_retried(jira_build, jira, catalog, fast_backoff):
    jira.fail_next(1, 500, path=SEARCH_JQL)
    jira.fail_next(1, 503, path=SEARCH_JQL)
    jira.fail_next(1, 429, path=SEARCH_JQL)
    jira.drop_next(1, path=SEARCH_JQL)
    result = read_issues(jira_build, make_config(jira), catalog)
    assert result.exception is None and not result.errors
    assert sorted(r["id"] for r in result.records) == sorted(i["id"] for i in jira.issues)
    assert [r.status for r in jira.requests_to(SEARCH_JQL)] == [500, 503, 429, None, 200, 200, 200]


def test_a_project_jira_cannot_see_fails_the_stream_with_a_config_error(jira_build, jira, catalog):
    """All configured projects are in one query, so skipping the 400 (the stock connector's way, per project) would
    skip every project and still save the cursor: it fails, saying what to fix, and its cursor stays at the start."""
    from airbyte_cdk.utils.traced_exception import AirbyteTracedException

    result = read_issues(jira_build, make_config(jira, projects=["OPS", "NOPE"]), catalog)
    assert isinstance(result.exception, AirbyteTracedException)
    assert result.records == []
    assert [e.failure_type.value for e in result.errors] == ["config_error"]
    assert "Jira cannot see a project in `projects`: The value 'NOPE' does not exist" in result.errors[0].message
    assert [r.status for r in jira.requests_to(SEARCH_JQL)] == [400]  # not retried
    assert {s.stream.stream_state.__dict__.get("updated") for s in result.states} <= {"2024-01-01T00:00:00+0000"}


def test_max_retries_config_bounds_permanent_failure(jira_build, jira, catalog, fast_backoff):
    from airbyte_cdk.utils.traced_exception import AirbyteTracedException

    jira.fail_next(100, 500, path=SEARCH_JQL)
    result = read_issues(jira_build, make_config(jira, max_retries=2), catalog)
    assert isinstance(result.exception, AirbyteTracedException)
    assert [e.failure_type.value for e in result.errors] == ["transient_error"]  # CDK 7: exhausted 5xx retries
    assert len(jira.requests_to(SEARCH_JQL)) == 3  # 1 try + 2 retries


# ---------------------------------------------------------------------------------------------- fake + components


def test_fake_old_search_endpoint_answers_410(jira):
    import requests

    r = requests.get(jira.base_url + OLD_SEARCH, params={"jql": "order by id"}, auth=(jira.email, jira.token), timeout=5)
    assert r.status_code == 410 and r.json()["errorMessages"] == [REMOVED_SEARCH_MESSAGE]
    r = requests.post(jira.base_url + SEARCH_JQL, json={"jql": "project = PROJ ORDER BY updated desc", "maxResults": 2,
                                                        "fields": ["summary", "updated"]},
                      auth=(jira.email, jira.token), timeout=5)
    body = r.json()
    assert r.status_code == 200 and set(body) == {"issues", "nextPageToken", "isLast"} and body["isLast"] is False
    assert [set(i["fields"]) for i in body["issues"]] == [{"summary", "updated"}] * 2
    r = requests.post(jira.base_url + SEARCH_JQL, json={"jql": "project = PROJ ORDER BY updated desc", "maxResults": 2,
                                                        "nextPageToken": body["nextPageToken"]},
                      auth=(jira.email, jira.token), timeout=5)
    assert r.status_code == 200 and [set(i) for i in r.json()["issues"]] == [{"expand", "id", "self", "key"}] * 2
    jira.invalidate_page_tokens()
    r = requests.get(jira.base_url + SEARCH_JQL, params={"jql": "project = PROJ ORDER BY updated desc",
                                                          "nextPageToken": body["nextPageToken"]},
                     auth=(jira.email, jira.token), timeout=5)
    assert r.status_code == 400 and r.json()["errorMessages"] == [BAD_TOKEN_MESSAGE]
    r = requests.get(jira.base_url + SEARCH_JQL, params={"jql": "project = PROJ"}, auth=(jira.email, "nope"), timeout=5)
    assert r.status_code == 401 and r.json()["errorMessages"]
    r = requests.get(jira.base_url + SEARCH_JQL, params={"jql": "project = NOPE"}, auth=(jira.email, jira.token), timeout=5)
    assert r.status_code == 400 and "does not exist for the field 'project'" in r.json()["errorMessages"][0]


def test_components_py_for_standalone_manifest(tmp_path, jira):
    """A standalone manifest naming `source_declarative_manifest.components.X` works with components_path,
    without AIRBYTE_ENABLE_UNSAFE_CODE and without registering the CDK's global component module names."""
    (tmp_path / "components.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass
        from airbyte_cdk.sources.declarative.transformations import RecordTransformation

        @dataclass
        class Tag(RecordTransformation):
            def transform(self, record, config=None, stream_state=None, stream_slice=None):
                record["tagged"] = True
    """))
    manifest = {
        "version": "6.61.6", "type": "DeclarativeSource",
        "check": {"type": "CheckStream", "stream_names": ["fields"]},
        "streams": [{
            "type": "DeclarativeStream", "name": "fields", "primary_key": "id",
            "schema_loader": {"type": "InlineSchemaLoader", "schema": {"type": "object", "properties": {}}},
            "retriever": {
                "type": "SimpleRetriever",
                "requester": {"type": "HttpRequester", "url_base": "{{ config['base_url'] }}", "path": "/rest/api/3/field",
                              "authenticator": {"type": "BasicHttpAuthenticator", "username": "{{ config['email'] }}",
                                                "password": "{{ config['api_token'] }}"}},
                "record_selector": {"type": "RecordSelector", "extractor": {"type": "DpathExtractor", "field_path": []}},
            },
            "transformations": [{"type": "CustomTransformation",
                                 "class_name": "source_declarative_manifest.components.Tag"}],
        }],
        "spec": {"type": "Spec", "connection_specification": {"type": "object", "required": ["base_url"]}},
    }
    from airbyte_cdk.models import (ConfiguredAirbyteCatalog, ConfiguredAirbyteStream, DestinationSyncMode,
                                    SyncMode, Type)

    config = make_config(jira)
    global_names = {"source_declarative_manifest.components", "components"}
    registered_before = global_names & set(sys.modules)
    with fresh_request_cache():
        source = build_declarative_source(manifest, catalog=None, config=config, state=[],
                                          components_path=str(tmp_path / "components.py"))
        stream = source.discover(LOGGER, config).streams[0]
        configured = ConfiguredAirbyteCatalog(streams=[ConfiguredAirbyteStream(
            stream=stream, sync_mode=SyncMode.full_refresh, destination_sync_mode=DestinationSyncMode.overwrite)])
        records = [m.record.data for m in source.read(LOGGER, config, configured, []) if m.type == Type.RECORD]
    assert records and all(r["tagged"] is True for r in records)
    assert global_names & set(sys.modules) == registered_before  # nothing registered under the CDK's global names
    assert os.environ.get("AIRBYTE_ENABLE_UNSAFE_CODE") is None
    assert connector_spec(None, manifest) == {"type": "object", "required": ["base_url"]}
