"""The newest packaged declarative manifests, in-process on the runner's CDK 7, from their files dirs only.

No connector package is installed: each release's wheel files come from the connectors cache (fetched once per
session, offline afterwards). Releases are pinned to the newest on PyPI when this was written (see
shared/reference/cdk7-manifests.md), so the test does not change under our feet when a connector is released.
Everything is offline: spec and discover need no network, the one read goes to a loopback fake.
"""
from __future__ import annotations

import importlib
import json
import os
import pkgutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from ingest.config import load_project
from ingest.sources import manifest as mf
from ingest.sources.airbyte import InProcessSource
from ingest.sources.environments import ConnectorCache
from ingest.sources.protocol import state_to_dict

REPO = Path(__file__).resolve().parents[1]
RELEASES = {
    "airbyte-source-stripe": "5.14.1",
    "airbyte-source-github": "2.7.1",
    "airbyte-source-notion": "3.2.0",
    "airbyte-source-zendesk-support": "4.9.1",
    "airbyte-source-pagerduty": "0.2.12",
    "airbyte-source-asana": "1.7.2",
    "airbyte-source-google-sheets": "0.11.0",
    "airbyte-source-jira": "4.0.0",
    "airbyte-source-intercom": "0.8.3",
    "airbyte-source-freshdesk": "3.1.3",
    "airbyte-source-klaviyo": "2.13.1",
    "airbyte-source-hubspot": "5.7.0",
    "airbyte-source-gitlab": "4.3.7",
    "airbyte-source-slack": "3.0.0",
}
START = "2024-01-01T00:00:00Z"
# Enough config for each connector to build its streams offline (dummy credentials; nothing is sent).
CONFIGS = {
    "airbyte-source-stripe": {"account_id": "acct_1", "client_secret": "sk_test_1", "start_date": START},
    "airbyte-source-github": {"credentials": {"option_title": "PAT Credentials", "personal_access_token": "t"},
                              "repositories": ["acme/app"], "start_date": START},
    "airbyte-source-notion": {"credentials": {"auth_type": "token", "token": "t"}, "start_date": "2024-01-01T00:00:00.000Z"},
    "airbyte-source-zendesk-support": {"subdomain": "acme", "start_date": START, "credentials": {
        "credentials": "api_token", "email": "a@example.com", "api_token": "t"}},
    "airbyte-source-pagerduty": {"token": "t"},
    "airbyte-source-asana": {"credentials": {"option_title": "PAT Credentials", "personal_access_token": "t"}},
    "airbyte-source-jira": {"domain": "acme.invalid", "email": "a@example.com", "api_token": "t"},
    "airbyte-source-hubspot": {"start_date": START, "credentials": {
        "credentials_title": "OAuth Credentials", "client_id": "1", "client_secret": "s", "refresh_token": "r"}},
    "airbyte-source-google-sheets": {"spreadsheet_id": "https://docs.google.com/spreadsheets/d/1abc/edit",
                                     "credentials": {"auth_type": "Client", "client_id": "1", "client_secret": "s",
                                                     "refresh_token": "r"}},
    "airbyte-source-gitlab": {"credentials": {"auth_type": "access_token", "access_token": "t"}, "start_date": START},
}


@pytest.fixture(scope="session")
def connectors_cache() -> ConnectorCache:
    """The connectors cache the tests share: $INGEST_CONNECTORS_DIR, else <repo>/.cache/connectors (git-ignored)."""
    root = os.environ.get("INGEST_CONNECTORS_DIR") or REPO / ".cache" / "connectors"
    return ConnectorCache(root, notify=lambda line: None)


@pytest.fixture(scope="session")
def files(connectors_cache) -> dict[str, Path]:
    return {package: connectors_cache.ensure_files(package, version) for package, version in RELEASES.items()}


@pytest.fixture(scope="module", autouse=True)
def _cdk_imported_without_logging_takeover():
    from ingest.sources.containment import import_cdk

    import_cdk()


def source_for(tmp_path: Path, files: dict[str, Path], package: str, config: dict | None = None,
               streams: tuple[str, ...] = ("any",), **kwargs) -> InProcessSource:
    """An InProcessSource for a `source: <package>` block (config set directly: resolving it is config.py's job)."""
    name = package.removeprefix("airbyte-source-").replace("-", "_")
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""
        connectors:
          {name}:
            team: t
            source: {package}
            config: {{}}
            streams: [{", ".join(f"{{name: {stream}}}" for stream in streams)}]
    """))
    block = load_project(path).block(name)
    block.config = CONFIGS.get(package, {}) if config is None else config
    return InProcessSource(block, files[package], **kwargs)


# ---------------------------------------------------------------------------------------------- spec and discover


@pytest.mark.parametrize("package, streams, spec_key", [
    ("airbyte-source-stripe", 47, "client_secret"),         # spec in the manifest
    ("airbyte-source-github", 39, "repositories"),          # manifest 7.28.3 + components.py
    ("airbyte-source-notion", 5, "credentials"),            # spec.json
    ("airbyte-source-zendesk-support", 41, "subdomain"),    # __init__ must not run; path-less JsonFileSchemaLoader
    ("airbyte-source-pagerduty", 6, "token"),
    ("airbyte-source-asana", 20, "credentials"),
])
def test_spec_and_discover_offline(tmp_path, files, package, streams, spec_key):
    source = source_for(tmp_path, files, package)
    assert mf.in_process_blocker(files[package], source.module, source.manifest()) is None
    assert spec_key in source.spec()["properties"]
    catalog = source.discover()
    assert len(catalog.streams) == streams
    assert not [s.name for s in catalog.streams if not s.json_schema.get("properties")], "streams with an empty schema"


def test_schemas_with_refs_to_shared_files_resolve(tmp_path, files):
    """stripe's schemas `$ref` files in schemas/shared/ (address.json ...), resolved as the CDK does."""
    catalog = source_for(tmp_path, files, "airbyte-source-stripe").discover()
    accounts = next(s for s in catalog.streams if s.name == "accounts").json_schema
    assert "$ref" not in json.dumps(accounts)
    shared = files["airbyte-source-stripe"] / "source_stripe" / "schemas" / "shared"
    address = json.loads((shared / "address.json").read_text())
    assert accounts["properties"]["company"]["properties"]["address"]["properties"] == address["properties"]


def test_two_connectors_users_streams_read_their_own_schemas(tmp_path, files):
    """jira and zendesk both ship schemas/users.json; built in turns in one process, each discovers its own."""
    def users_properties(package):
        catalog = source_for(tmp_path, files, package).discover()
        return set(next(s for s in catalog.streams if s.name == "users").json_schema["properties"])

    def from_file(package):
        module = mf.package_module(package)
        return set(json.loads((files[package] / module / "schemas" / "users.json").read_text())["properties"])

    jira, zendesk = "airbyte-source-jira", "airbyte-source-zendesk-support"
    assert from_file(jira) != from_file(zendesk)
    assert users_properties(jira) == from_file(jira)
    assert users_properties(zendesk) == from_file(zendesk)
    assert users_properties(jira) == from_file(jira)


# ---------------------------------------------------------------------------------------------- packages


def test_components_import_their_package_files(files):
    """Components import sibling modules of their package and read its data files, from the files dir."""
    sheets = files["airbyte-source-google-sheets"]
    manifest = mf.load_package_manifest("source_google_sheets", sheets)
    assert mf.in_process_blocker(sheets, "source_google_sheets", manifest) is None  # imports every class_name
    assert Path(sys.modules["source_google_sheets.utils"].__file__).is_relative_to(sheets)

    asana = files["airbyte-source-asana"]
    mf.register_package("source_asana", asana)
    from source_asana.components import AsanaHttpRequester  # reads source_asana/manifest.yaml with pkgutil

    assert pkgutil.get_data("source_asana", "manifest.yaml") == (asana / "source_asana" / "manifest.yaml").read_bytes()
    requester = AsanaHttpRequester.__new__(AsanaHttpRequester)  # only the schema lookup is exercised
    requester.name = "users"
    assert {"email", "gid", "name"} <= set(requester._get_opt_fields()["opt_fields"].split(","))


def test_register_package_skips_init_and_replaces_another_release(files, tmp_path):
    github = files["airbyte-source-github"]
    package = mf.register_package("source_github", github)
    assert mf.register_package("source_github", github) is package  # same dir: no-op
    assert not hasattr(package, "SourceGithub")  # __init__.py (which imports source.py) did not run
    components = importlib.import_module("source_github.components")
    assert Path(components.__file__).is_relative_to(github)

    other = tmp_path / "airbyte-source-github-0.0.0"
    (other / "source_github").mkdir(parents=True)
    (other / "source_github" / "components.py").write_text("RELEASE = 'other'\n")
    mf.register_package("source_github", other)
    assert "source_github.components" not in sys.modules  # the first release's modules are gone
    assert importlib.import_module("source_github.components").RELEASE == "other"
    assert str(other.resolve()) in sys.path and str(github.resolve()) not in sys.path
    mf.register_package("source_github", github)
    assert not hasattr(importlib.import_module("source_github.components"), "RELEASE")


# ---------------------------------------------------------------------------------------------- blockers


@pytest.mark.parametrize("package, reason", [
    ("airbyte-source-intercom", "the manifest does not validate against CDK {cdk}: CustomIncrementalSync is not a "
                                "known component (it was written for CDK 0.72)"),
    ("airbyte-source-freshdesk", "the manifest does not validate against CDK {cdk}: CustomIncrementalSync is not a "
                                 "known component (it was written for CDK 0.72)"),
    ("airbyte-source-klaviyo", "component source_klaviyo.components.archived_to_per_partition_state_migration."
                               "ArchivedToPerPartitionStateMigration imports airbyte_cdk.sources.declarative."
                               "declarative_stream which CDK 7 no longer has (3 of 6 components fail)"),
    # imports fine, but its routers slice a parent stream through the CDK 4 API: CDK 7 types it as AbstractStream
    ("airbyte-source-gitlab", "component source_gitlab.components.partition_routers.GroupStreamsPartitionRouter "
                              "calls AbstractStream.stream_slices(), which CDK 7 does not have (its components were "
                              "written for CDK 4.x; 2 of 2 components do so)"),
])
def test_in_process_blocker_says_why(files, package, reason):
    module = mf.package_module(package)
    started = time.monotonic()
    got = mf.in_process_blocker(files[package], module, mf.load_package_manifest(module, files[package]))
    assert got == reason.format(cdk=mf.runner_cdk_version())
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("package", ["airbyte-source-slack", "airbyte-source-hubspot", "airbyte-source-jira",
                                     "airbyte-source-google-sheets", "airbyte-source-github"])
def test_removed_api_check_passes_components_that_work(files, package):
    """The static check judges only calls it can type from the CDK's annotations: slack's components call
    `read_records(sync_mode=...)` on an HttpStream they build themselves, which CDK 7 still has."""
    module = mf.package_module(package)
    assert mf.in_process_blocker(files[package], module, mf.load_package_manifest(module, files[package])) is None


def test_in_process_blocker_refuses_a_manifest_for_a_newer_cdk(files):
    pagerduty = files["airbyte-source-pagerduty"]
    manifest = mf.load_package_manifest("source_pagerduty", pagerduty)
    assert mf.manifest_cdk_version(manifest) == "0.79.1"
    manifest["version"] = "99.1.0"
    assert mf.in_process_blocker(pagerduty, "source_pagerduty", manifest) == (
        f"manifest targets CDK 99.1.0, newer than the runner's {mf.runner_cdk_version()}")


# ---------------------------------------------------------------------------------------------- check


def test_check_failures_are_one_clean_line(tmp_path, files):
    # asana picks its authenticator by credentials.option_title; without it no stream can be built
    ok, message = source_for(tmp_path, files, "airbyte-source-asana", {"credentials": {}}).check()
    assert (ok, message) == (False, "discovering streams: The path from `authenticator_selection_path` is not found "
                                    "in the config.")


def test_check_does_not_retry_custom_requesters(monkeypatch, tmp_path, files):
    """asana's requests go through its own AsanaHttpRequester class, which the CDK's no-retry switch does not reach:
    unpatched, its check retried an unreachable host 5 times (31 s)."""
    import requests

    attempts = []

    def refuse(adapter, request, **kwargs):
        attempts.append(request.url)
        raise requests.exceptions.ConnectionError("connection refused (test)")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", refuse)
    ok, message = source_for(tmp_path, files, "airbyte-source-asana").check()
    assert (ok, message) == (False, "stream projects: ConnectionError: connection refused (test)")
    assert len(attempts) == 1 and attempts[0].startswith("https://app.asana.com/api/1.0/workspaces")


@pytest.fixture
def reroute(monkeypatch):
    """Send every HTTP request of the process to 127.0.0.1:<port> (same scheme and path): the connectors' hosts are
    fixed in their manifests."""
    import requests

    send = requests.adapters.HTTPAdapter.send

    def to(port: int) -> list[str]:
        urls: list[str] = []

        def rerouted(adapter, request, **kwargs):
            urls.append(request.url)
            request.url = urlsplit(request.url)._replace(netloc=f"127.0.0.1:{port}").geturl()
            return send(adapter, request, **kwargs)

        monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", rerouted)
        return urls

    return to


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_port():
    """A port that accepts TCP connections and never answers (the TLS handshake waits forever)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def test_check_names_the_stream_zendesk_meant(tmp_path, files, reroute, closed_port):
    """zendesk-support 4.9.1's manifest check names `Tags`; CDK 7 (like every CDK) matches stream names exactly.
    The one stream that matches case-insensitively is checked instead, so the check reaches the API."""
    urls = reroute(closed_port)
    ok, message = source_for(tmp_path, files, "airbyte-source-zendesk-support").check()
    assert (ok, message) == (False, f"stream tags: cannot connect to 127.0.0.1:{closed_port} (connection refused)")
    assert urls == ["https://acme.zendesk.com/api/v2/tags?page%5Bsize%5D=100"]  # one attempt


def test_repaired_check_is_conservative():
    manifest = {"check": {"type": "CheckStream", "stream_names": ["Tags"]},
                "streams": [{"name": "tags"}, {"$parameters": {"name": "users"}}]}
    repaired, note = mf.repaired_check(manifest)
    assert repaired["check"]["stream_names"] == ["tags"] and note == "the manifest's check names stream 'Tags' as 'tags'"
    assert manifest["check"]["stream_names"] == ["Tags"]  # not modified
    ambiguous = {**manifest, "streams": [{"name": "tags"}, {"name": "TAGS"}]}
    assert mf.repaired_check(ambiguous) == (ambiguous, None)
    assert mf.repaired_check({**manifest, "check": {"stream_names": ["users"]}})[1] is None
    empty = {**manifest, "check": {"type": "CheckStream", "stream_names": []}}
    assert mf.repaired_check(empty)[0]["check"]["stream_names"] == ["tags"]
    assert mf.repaired_check(empty, ["nope", "users"])[0]["check"]["stream_names"] == ["users"]
    dynamic = {**manifest, "check": {"type": "CheckDynamicStream", "stream_count": 1}}
    assert mf.repaired_check(dynamic) == (dynamic, None)


def test_github_check_makes_a_request(tmp_path, files, reroute, closed_port):
    """github 2.7.1's manifest check names no stream (`stream_names: []`): on its own it "succeeds" without a
    request. The block's first stream is checked instead - and the token authenticator's own `/rate_limit` client
    is not retried (it used to retry 5 times with backoff)."""
    urls = reroute(closed_port)
    started = time.monotonic()
    ok, message = source_for(tmp_path, files, "airbyte-source-github", streams=("workflow_runs",)).check()
    assert (ok, message) == (False, f"stream workflow_runs: cannot connect to 127.0.0.1:{closed_port} (connection refused)")
    assert urls == ["https://api.github.com/rate_limit"] and time.monotonic() - started < 5


def test_github_check_succeeds_against_a_live_api(tmp_path, files):
    fake = FakeGitHub([[workflow_run(1, "2024-01-15T00:00:00Z")]])
    try:
        config = {**CONFIGS["airbyte-source-github"], "api_url": fake.url}
        assert source_for(tmp_path, files, "airbyte-source-github", config, streams=("workflow_runs",)).check() == (
            True, None)
        assert "/repos/acme/app/actions/runs" in [path for path, _, _ in fake.requests]
    finally:
        fake.close()


@pytest.mark.parametrize("package", [
    "airbyte-source-hubspot",        # custom objects; the OAuth token refresh comes first
    "airbyte-source-google-sheets",  # one stream per sheet of the spreadsheet
])
def test_discover_of_dynamic_streams_fails_fast(tmp_path, files, reroute, closed_port, package):
    """Unbounded, discover retried an unreachable token endpoint for minutes (the CDK's OAuth refresh backs off for up
    to 300 s on its own). Bounded: one attempt, one line, exit 1 through the CLI (a SyncError)."""
    from ingest.errors import SyncError

    urls = reroute(closed_port)
    started = time.monotonic()
    with pytest.raises(SyncError) as failure:
        source_for(tmp_path, files, package).discover()
    assert str(failure.value) == (f"discover needs the network for this connector's dynamic streams: cannot connect "
                                  f"to 127.0.0.1:{closed_port} (connection refused) while refreshing the OAuth token")
    assert failure.value.exit_code == 1 and failure.value.failure_type == "transient_error"
    assert len(urls) == 1 and time.monotonic() - started < 5


def test_discover_has_a_deadline(tmp_path, files, reroute, silent_port):
    """A host that accepts the connection and never answers: discover gives up after 4 x the check timeout."""
    from ingest.errors import SyncError

    reroute(silent_port)
    source = source_for(tmp_path, files, "airbyte-source-hubspot", check_timeout=0.5)
    assert source.discover_timeout == 2
    started = time.monotonic()
    with pytest.raises(SyncError) as failure:
        source.discover()
    assert str(failure.value) == ("discover needs the network for this connector's dynamic streams: no answer within "
                                  "2 s (is the host reachable from here?)")
    assert 2 <= time.monotonic() - started < 4


def test_static_discover_makes_no_request(tmp_path, files, reroute, silent_port):
    urls = reroute(silent_port)
    catalog = source_for(tmp_path, files, "airbyte-source-zendesk-support").discover()
    # (only zendesk's requests count: a discover abandoned at its deadline by an earlier test may still be waiting on
    # its socket in a background thread of this process, and its late attempt is recorded too)
    assert len(catalog.streams) == 41 and [u for u in urls if "zendesk" in u] == []
    assert mf.network_needs(mf.load_package_manifest("source_zendesk_support", files["airbyte-source-zendesk-support"])) is None


def test_check_of_an_oauth_connector_says_where_it_could_not_connect(tmp_path, files, reroute, closed_port):
    """The CDK's check keeps only "OAuth access token refresh request failed due to a network error."."""
    reroute(closed_port)
    ok, message = source_for(tmp_path, files, "airbyte-source-hubspot").check()
    assert (ok, message) == (False, f"stream contacts: cannot connect to 127.0.0.1:{closed_port} (connection refused) "
                                    "while refreshing the OAuth token")


def test_components_written_for_another_cdk_say_so(tmp_path, files, reroute, closed_port):
    """gitlab forced in-process: its router's AttributeError (on a CDK object, raised in its own components) says
    what to do, in check and in read."""
    from airbyte_cdk.models import ConfiguredAirbyteCatalog, ConfiguredAirbyteStream, DestinationSyncMode, SyncMode

    from ingest.errors import SyncError

    reroute(closed_port)
    hint = " (the connector's components were written for CDK 4.x, not the runner's CDK 7; set `runtime: isolated`)"
    source = source_for(tmp_path, files, "airbyte-source-gitlab")
    assert source.check() == (False, "stream projects: 'DefaultStream' object has no attribute 'stream_slices'" + hint)

    stream = next(s for s in source.discover().streams if s.name == "projects")
    catalog = ConfiguredAirbyteCatalog(streams=[ConfiguredAirbyteStream(
        stream=stream, sync_mode=SyncMode.full_refresh, destination_sync_mode=DestinationSyncMode.overwrite)])
    with pytest.raises(SyncError) as failure:
        list(source.read(catalog, []))
    assert str(failure.value) == ("An unexpected error occurred in stream projects: AttributeError: 'DefaultStream' "
                                  "object has no attribute 'stream_slices'" + hint)


def test_connector_tracebacks_and_backoff_lines_stay_out_of_stderr(tmp_path, files):
    """At the CLI's default verbosity a failing check leaves no traceback text and no `backoff` line on stderr."""
    code = textwrap.dedent("""
        import sys
        from pathlib import Path
        from ingest.cli import _setup_logging
        from ingest.config import load_project
        from ingest.sources.airbyte import InProcessSource
        _setup_logging(0)
        Path("c.yaml").write_text('''
        connectors:
          asana: {team: t, source: airbyte-source-asana, config: {}, streams: [{name: users}]}
          jira: {team: t, source: airbyte-source-jira, config: {}, streams: [{name: users}]}
        ''')
        project = load_project("c.yaml")
        asana, jira = project.block("asana"), project.block("jira")
        asana.config = {"credentials": {}}
        jira.config = {"domain": "127.0.0.1:9", "email": "a@b.c", "api_token": "t"}  # https, connection refused
        print(InProcessSource(asana, sys.argv[1]).check())
        print(InProcessSource(jira, sys.argv[2]).check())
    """)
    out = subprocess.run([sys.executable, "-c", code, str(files["airbyte-source-asana"]), str(files["airbyte-source-jira"])],
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("(False, ") == 2
    for noise in ("Traceback", "Error traceback", "Backing off", "Giving up", 'File "'):
        assert noise not in out.stderr, out.stderr


# ---------------------------------------------------------------------------------------------- a real read


class FakeGitHub:
    """Just enough of the GitHub REST API for the `workflow_runs` stream of one repository: the rate-limit probe of
    the token authenticator, the repository, and two pages of runs (newest created first, `Link: rel="next"`)."""

    def __init__(self, runs: list[list[dict]]):
        self.pages = runs
        self.requests: list[tuple[str, dict, dict]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append((url.path, query, dict(self.headers)))
                status, body, headers = fake.route(url.path, query)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def route(self, path: str, query: dict) -> tuple[int, dict, dict]:
        if path == "/rate_limit":
            quota = {"remaining": 5000, "reset": 4102444800, "limit": 5000}
            return 200, {"resources": {"core": quota, "graphql": quota}}, {}
        if path == "/repos/acme/app":
            return 200, {"id": 1, "full_name": "acme/app", "default_branch": "main", "organization": {"login": "acme"}}, {}
        if path == "/repos/acme/app/actions/runs":
            page = int(query.get("page", 1))
            headers = {}
            if page < len(self.pages):
                headers["Link"] = f'<{self.url}{path}?per_page=100&page={page + 1}>; rel="next"'
            return 200, {"total_count": sum(map(len, self.pages)), "workflow_runs": self.pages[page - 1]}, headers
        return 404, {"message": "Not Found"}, {}

    def runs_requested(self) -> list[str | None]:
        return [query.get("page") for path, query, _ in self.requests if path.endswith("/actions/runs")]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def workflow_run(run_id: int, created: str) -> dict:
    return {"id": run_id, "name": "ci", "status": "completed", "created_at": created, "updated_at": created}


def test_github_workflow_runs_read_with_custom_pagination(tmp_path, files):
    """github 2.7.1's `workflow_runs` pages with its own WorkflowRunsPaginationStrategy (components.py): it follows
    `Link: rel="next"` but stops once a page's oldest run is more than 32 days older than the slice start."""
    from airbyte_cdk.models import (ConfiguredAirbyteCatalog, ConfiguredAirbyteStream, DestinationSyncMode,
                                    SyncMode, Type)

    fake = FakeGitHub([[workflow_run(3, "2024-05-03T00:00:00Z"), workflow_run(2, "2024-03-01T00:00:00Z")],
                       [workflow_run(1, "2024-01-15T00:00:00Z")]])
    try:
        config = {**CONFIGS["airbyte-source-github"], "api_url": fake.url}
        source = source_for(tmp_path, files, "airbyte-source-github", config)
        stream = next(s for s in source.discover().streams if s.name == "workflow_runs")
        catalog = ConfiguredAirbyteCatalog(streams=[ConfiguredAirbyteStream(
            stream=stream, sync_mode=SyncMode.incremental, destination_sync_mode=DestinationSyncMode.append_dedup,
            cursor_field=["updated_at"], primary_key=[["id"]])])

        first = list(source.read(catalog, []))
        assert [m.record.data["id"] for m in first if m.type == Type.RECORD] == [3, 2, 1]
        assert fake.runs_requested() == [None, "2"]
        assert all(h.get("Authorization") == "token t" for _, _, h in fake.requests)
        state = [m.state for m in first if m.type == Type.STATE][-1]
        assert state.stream.stream_state.__dict__["states"] == [
            {"partition": {"repository": "acme/app"}, "cursor": {"updated_at": "2024-05-03T00:00:00Z"}}]

        fake.requests.clear()
        second = list(source.read(catalog, [state_to_dict(state)]))  # what the runner stores and hands back
        # page 1's oldest run (2024-03-01) is > 32 days before the state (2024-05-03): the component stops paging
        assert fake.runs_requested() == [None]
        assert [m.record.data["id"] for m in second if m.type == Type.RECORD] == [3]  # the boundary record (>=)
    finally:
        fake.close()


def test_github_workflow_runs_through_ingest_run(project):
    """The newest github manifest (2.7.1, CDK 7.28.3, custom components) in-process through `ingest run` against a
    loopback fake: rows land, the second run resumes from the saved cursor and stops paging early."""
    fake = FakeGitHub([[workflow_run(3, "2024-05-03T00:00:00Z"), workflow_run(2, "2024-03-01T00:00:00Z")],
                       [workflow_run(1, "2024-01-15T00:00:00Z")]])
    try:
        project.write_config(f"""\
            connectors:
              github:
                team: platform
                source: airbyte-source-github==2.7.1
                config:
                  credentials: {{option_title: PAT Credentials, personal_access_token: "${{GITHUB_TOKEN}}"}}
                  repositories: [acme/app]
                  start_date: "{START}"
                  api_url: {fake.url}
                streams: [{{name: workflow_runs}}]
            """)
        env = {"GITHUB_TOKEN": "ghp-dummy-5150"}
        r = project.cli("run", "github", env=env)
        assert r.code == 0, r.output
        assert "in_process" in (project.root / "connectors.lock").read_text()
        assert project.query("SELECT id, status FROM github_workflow_runs ORDER BY id") == [
            (1, "completed"), (2, "completed"), (3, "completed")]
        assert fake.runs_requested() == [None, "2"]
        assert all(h.get("Authorization") == "token ghp-dummy-5150" for _, _, h in fake.requests)

        fake.requests.clear()
        r = project.cli("run", "github", env=env)
        assert r.code == 0, r.output
        assert fake.runs_requested() == [None]  # resumed from the cursor: page 1 is old enough to stop
        assert project.scalar("SELECT count(*) FROM github_workflow_runs") == 3  # the boundary run, deduplicated
        assert b"ghp-dummy-5150" not in project.db.read_bytes()
    finally:
        fake.close()
