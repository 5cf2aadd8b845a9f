"""The `jira` block end to end, the way a user runs it: the real CLI in a subprocess (one library-level test).

* cassettes: `ingest run jira --stream issues` replayed from fixtures/cassettes/jira/ (recorded from the local fake
  by tests/record_jira_cassettes.py, NOT from real Jira Cloud) with a user's config: `domain:`, no `base_url`;
* loopback: tests/fakes/fake_jira.py in this process, the CLI pointed at it with `base_url:`; first run,
  incremental run, full refresh (and a failing one), faults (429/5xx/dropped connection/401), SIGKILL + rerun;
* library: `AirbyteManager.run` twice in one process with a revoked token (what the Metaflow flow will do).

Retry backoff in the subprocess is the CDK's real one (1, 2, 4 ... s; it cannot be monkeypatched there), so the
configs keep `max_retries` at 0-2.
"""
from __future__ import annotations

import base64
import json
import random
import re
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from . import record_jira_cassettes as rec
from .support.cli import CliResult, Project, cli_env
from .support.flowing import kill_when_flowing
from .support.jira import assert_contiguous, window_bounds
from .fakes.fake_jira import FakeJira, parse_jira_datetime

SEARCH_JQL = "/rest/api/3/search/jql"
OLD_SEARCH = "/rest/api/3/search"


# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def jira():
    """160 issues = 4 pages of 50; the removed /rest/api/3/search must never be called, whatever the test does."""
    with FakeJira(seed=5, issue_count=160) as fake:
        yield fake
        assert_no_old_search(fake)


def assert_no_old_search(fake: FakeJira) -> None:
    old = [r for r in fake.requests if r.path.rstrip("/") in (OLD_SEARCH, "/rest/api/2/search")]
    assert not old, f"the removed search endpoint (410 Gone) was requested: {[(r.method, r.path) for r in old]}"


def write_jira_project(project: Project, fake: FakeJira, *, max_retries: int = 0, batch: int | None = None,
                       window: str | None = "P100Y") -> None:
    """The user's block (tests/record_jira_cassettes.PROJECT_CONFIG) + `base_url` (the fake) + `max_retries`.
    `window` is the block's `issues_window`: one window by default, because most tests here count the requests of
    a read page by page; None keeps the block's default (monthly windows, read concurrently), as a user has it."""
    rec.write_project(project.root, base_url=fake.base_url, cassette=False)
    path = project.root / "connectors.yaml"
    extra = f"      max_retries: {max_retries}\n" + (f"      issues_window: {window}\n" if window else "")
    text = path.read_text().replace("      start_date:", extra + "      start_date:")
    if batch:
        text = text.replace("  duckdb: {path: warehouse.duckdb}\n", f"  duckdb: {{path: warehouse.duckdb}}\n  batch: {{max_records: {batch}}}\n")
    path.write_text(text)


def jira_env(fake: FakeJira, token: str | None = None) -> dict:
    return {"JIRA_DOMAIN": rec.DOMAIN, "JIRA_EMAIL": fake.email, "JIRA_API_TOKEN": fake.token if token is None else token}


def cursor_of(state: dict | None) -> str | None:
    """The `updated` cursor inside the connector's stream state (as `ingest state show` prints it)."""
    if not state:
        return None
    return state.get("updated") or (state.get("state") or {}).get("updated") or next(
        (s["cursor"]["updated"] for s in state.get("states") or [] if "updated" in s.get("cursor", {})), None)


def shown_state(project: Project, env: dict | None = None) -> dict[str, dict]:
    """`ingest state show jira`, parsed: stream -> the connector's state blob."""
    r = project.cli("state", "show", "jira", env=env)
    assert r.code == 0, r.output
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith("jira."):
            key, _, blob = line.partition(": ")
            out[key.removeprefix("jira.")] = json.loads(blob)
    return out


def stored_cursor(project: Project) -> str | None:
    rows = project.query("SELECT state FROM _ingest_state WHERE block = 'jira' AND state_key = 'issues'")
    return cursor_of(json.loads(rows[0][0])["stream"]["stream_state"]) if rows else None


def cursor_text(value: str | datetime) -> str:
    """The connector's cursor format: seconds precision, +0000."""
    return parse_jira_datetime(value).strftime("%Y-%m-%dT%H:%M:%S+0000")


def epoch_ms(value: str) -> int:
    return int(parse_jira_datetime(value).timestamp() * 1000)


def tables(project: Project) -> set[str]:
    return {t for (t,) in project.query("SELECT table_name FROM information_schema.tables")}


def landed(project: Project) -> dict[str, datetime]:
    """id -> updated (UTC), for every row of jira_issues (asserting there is one row per id)."""
    rows = project.query("SELECT id, updated FROM jira_issues")
    ids = [i for i, _ in rows]
    assert len(ids) == len(set(ids)), f"duplicate ids in jira_issues: {len(ids) - len(set(ids))}"
    assert all(u is not None for _, u in rows), "NULL `updated` values (rejected by the column type?)"
    return {i: parse_jira_datetime(u) for i, u in rows}


def fake_updated(fake: FakeJira) -> dict[str, datetime]:
    return {i["id"]: parse_jira_datetime(i["fields"]["updated"]) for i in fake.issues}


def assert_table_equals_fake(project: Project, fake: FakeJira) -> None:
    expected = fake_updated(fake)
    got = landed(project)
    assert set(got) == set(expected), (f"missing {sorted(set(expected) - set(got))[:10]}, "
                                       f"extra {sorted(set(got) - set(expected))[:10]}")
    stale = [i for i in expected if got[i] != expected[i]]
    assert not stale, f"rows not at the fake's latest version: {stale[:10]}"


def run_ids(project: Project) -> list[str]:
    return [r for (r,) in project.query("SELECT run_id FROM _ingest_runs ORDER BY started_at")]


def rows_of_run(project: Project, run_id: str, table: str = "jira_issues") -> list[str]:
    return sorted(i for (i,) in project.query(f"SELECT id FROM {table} WHERE _ingest_run_id = ?", [run_id]))


def snapshot(project: Project) -> tuple:
    """What a failed full refresh must leave alone: the issues rows (with their run ids) and the saved state rows
    (with the run that wrote them). A failed incremental run may rewrite the state row with the same cursor, so
    those tests compare `issue_rows` and `stored_cursor` instead."""
    state = project.query("SELECT state_key, state, run_id FROM _ingest_state WHERE block = 'jira' ORDER BY state_key")
    return issue_rows(project), state


def issue_rows(project: Project) -> list[tuple]:
    return project.query("SELECT id, updated, _ingest_run_id, _ingest_load_id FROM jira_issues ORDER BY id")


def error_line(result: CliResult) -> str:
    return next((line for line in result.stderr.splitlines() if line.startswith("error: sync of jira failed")), "")


def assert_clear_failure(result: CliResult, cause: str | None = None) -> None:
    """A failure reads as one clear line: no traceback at default verbosity, and the real cause (`cause`, a regex),
    not the connector's generic 'Something went wrong' text."""
    assert "Traceback (most recent call last)" not in result.stderr, result.stderr
    if cause:
        assert re.search(cause, error_line(result)), error_line(result)


# ---------------------------------------------------------------------------------------------- 1. cassettes


def vcr_cli(project: Project, cassette: Path, *args: str) -> CliResult:
    env = cli_env({"JIRA_DOMAIN": rec.DOMAIN, "JIRA_EMAIL": "someone@acme.com", "JIRA_API_TOKEN": "replay-token-0000"})
    proc = subprocess.run(rec.vcr_cli_command(cassette, *args), cwd=project.root, env=env, capture_output=True,
                          text=True, timeout=240)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def cassette_issues(cassette: Path) -> list[dict]:
    """Every issue in a cassette's responses, in the order they were served."""
    data = yaml.safe_load(cassette.read_text())
    out = []
    for interaction in data["interactions"]:
        body = interaction["response"]["body"]["string"]
        out.extend(json.loads(body)["issues"])
    return out


def test_cassettes_are_sanitized_and_documented():
    for cassette in (rec.INITIAL, rec.INCREMENTAL):
        text = cassette.read_text()
        data = yaml.safe_load(text)
        assert data["interactions"], cassette
        for interaction in data["interactions"]:
            request = interaction["request"]
            assert request["uri"].startswith(f"{rec.SITE}{SEARCH_JQL}?"), request["uri"]
            assert not {h.lower() for h in request["headers"]} & {"authorization", "cookie"}
            assert interaction["response"]["status"]["code"] == 200
        assert "127.0.0.1" not in text and "localhost" not in text
        assert rec.TOKEN not in text and base64.b64encode(f"{rec.EMAIL}:{rec.TOKEN}".encode()).decode() not in text
    readme = (rec.CASSETTE_DIR / "README.md").read_text()
    assert "not from real Jira Cloud" in readme and "record_jira_cassettes.py" in readme
    assert "NOT from a real Jira Cloud" in (rec.__doc__ or "")


def test_cassette_replay_first_run_then_incremental(project):
    """A user's config (domain, no base_url); every request answered from the cassettes, none unplayed."""
    rec.write_project(project.root)
    initial = cassette_issues(rec.INITIAL)
    initial_ids = {i["id"] for i in initial}
    assert len(initial) == len(initial_ids) == rec.ISSUES

    r = vcr_cli(project, rec.INITIAL, "run", "jira", "--stream", "issues")
    assert r.code == 0, r.output
    assert "succeeded" in r.stdout and f"{rec.ISSUES:,}" in r.stdout
    assert project.scalar("SELECT count(*) FROM jira_issues") == rec.ISSUES
    assert set(landed(project)) == initial_ids
    newest = max(initial, key=lambda i: parse_jira_datetime(i["fields"]["updated"]))
    state = shown_state(project)  # no JIRA_* in the environment: showing state needs no secrets
    assert cursor_of(state["issues"]) == cursor_text(newest["fields"]["updated"])

    # incremental: the recorded request is `updated >= <that cursor>`; it only matches if the state is right
    incremental = cassette_issues(rec.INCREMENTAL)
    changed = {i["id"] for i in incremental} - {newest["id"]}
    assert rec.TOUCHED_ID in changed and rec.EDITED_ID in changed and len(changed) == 2 + rec.ADDED
    r = vcr_cli(project, rec.INCREMENTAL, "run", "jira", "--stream", "issues")
    assert r.code == 0, r.output
    second = run_ids(project)[-1]
    # only the changes, plus the boundary issue Jira re-delivers (updated >= cursor), which dedup absorbs
    assert rows_of_run(project, second) == sorted(changed | {newest["id"]})
    got = landed(project)
    assert set(got) == initial_ids | changed
    assert project.scalar("SELECT fields->>'summary' FROM jira_issues WHERE id = ?", [rec.EDITED_ID]) == rec.EDITED_SUMMARY
    assert got[rec.TOUCHED_ID] == parse_jira_datetime(rec.TOUCHED_UPDATED)
    assert cursor_of(shown_state(project)["issues"]) == cursor_text(rec.EDITED_UPDATED)


def test_cassette_unrecorded_request_fails_loudly(project):
    """Record mode `none`: on an empty warehouse the first request (JQL from start_date) is not in the incremental
    cassette, so the sync fails (exit 1) and lands nothing, instead of touching the network or passing."""
    rec.write_project(project.root)
    r = vcr_cli(project, rec.INCREMENTAL, "run", "jira", "--stream", "issues")
    assert r.code == 1, r.output
    assert "failed" in r.stderr and "[system_error]" in r.stderr
    if project.db.exists() and "jira_issues" in tables(project):
        assert project.scalar("SELECT count(*) FROM jira_issues") == 0
        assert stored_cursor(project) is None or cursor_text(stored_cursor(project)) <= cursor_text(rec.START_DATE)


# ---------------------------------------------------------------------------------------------- 2. loopback fake


def test_first_run_loads_everything_then_incremental_loads_only_changes(project, jira):
    write_jira_project(project, jira, window=None)  # the block's default: monthly windows
    r = project.cli("run", "jira", env=jira_env(jira))
    assert r.code == 0, r.output
    assert "succeeded" in r.stdout and "160" in r.stdout
    assert_table_equals_fake(project, jira)
    assert project.scalar("SELECT count(*) FROM jira_issues") == 160
    # typed columns from the connector's own JSON schemas (source_jira/schemas/*.json)
    types = dict(project.query("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'jira_issues'"))
    assert types["updated"] == types["created"] == "TIMESTAMP WITH TIME ZONE", types
    assert types["id"] == "VARCHAR" and types["fields"] == "JSON" and types["renderedFields"] == "JSON"
    assert project.scalar("SELECT count(*) FROM jira_issues WHERE _ingest_rejected IS NOT NULL") == 0
    projects = project.query("SELECT id, key FROM jira_projects ORDER BY id")
    assert projects == sorted((p["id"], p["key"]) for p in jira.projects)
    first = run_ids(project)[-1]
    newest = max(jira.issues, key=lambda i: parse_jira_datetime(i["fields"]["updated"]))
    cursor = cursor_of(shown_state(project)["issues"])
    assert cursor == cursor_text(newest["fields"]["updated"])
    first_windows = window_bounds(jira.requests_to(SEARCH_JQL))
    assert first_windows[0][0] == epoch_ms(rec.START_DATE) and len(first_windows) >= 35  # 2024-01 .. now, monthly
    assert_contiguous(first_windows)
    assert all(r.status == 200 for r in jira.requests)

    # touch one, edit one, add three: the next run reads only those (+ the boundary issue)
    jira.touch_issue("10007", updated="2024-07-01T08:00:00.001+0000")
    jira.upsert_issue("10042", summary="Edited between runs", updated="2024-07-02T09:00:00.002+0000")
    added = [i["id"] for i in jira.add_issues(3)]
    jira.clear_requests()
    r = project.cli("run", "jira", env=jira_env(jira))
    assert r.code == 0, r.output
    second = run_ids(project)[-1]
    assert rows_of_run(project, second) == sorted({"10007", "10042", *added, newest["id"]})
    assert_table_equals_fake(project, jira)  # no duplicate ids: the re-delivered boundary record was deduped
    assert project.scalar("SELECT fields->>'summary' FROM jira_issues WHERE id = '10042'") == "Edited between runs"
    assert project.scalar("SELECT count(*) FROM jira_issues WHERE _ingest_run_id = ?", [first]) == 160 - 3
    # from the saved cursor on, never an earlier window again
    second_windows = window_bounds(jira.requests_to(SEARCH_JQL))
    assert second_windows[0][0] == epoch_ms(cursor)
    assert_contiguous(second_windows)
    # projects (write: replace) is re-read whole and replaced
    assert project.query("SELECT DISTINCT _ingest_run_id FROM jira_projects") == [(second,)]
    assert project.scalar("SELECT count(*) FROM jira_projects") == len(jira.projects)
    latest = max(jira.issues, key=lambda i: parse_jira_datetime(i["fields"]["updated"]))
    assert cursor_of(shown_state(project)["issues"]) == cursor_text(latest["fields"]["updated"])


def test_full_refresh_replaces_atomically_and_a_failed_one_changes_nothing(project, jira):
    write_jira_project(project, jira, max_retries=0)
    assert project.cli("run", "jira", "--stream", "issues", env=jira_env(jira)).code == 0
    jira.delete_issue("10005")  # only a full refresh can notice a deletion
    jira.upsert_issue("10006", summary="Changed before the full refresh")
    r = project.cli("run", "jira", "--stream", "issues", "--full-refresh", env=jira_env(jira))
    assert r.code == 0, r.output
    assert "replace" in r.stdout
    assert_table_equals_fake(project, jira)
    refresh = run_ids(project)[-1]
    assert project.query("SELECT DISTINCT _ingest_run_id FROM jira_issues") == [(refresh,)]
    assert not any(t.startswith("_ingest_staging_") for t in tables(project))
    before = snapshot(project)
    cursor_before = stored_cursor(project)
    assert cursor_before == cursor_text(max(parse_jira_datetime(i["fields"]["updated"]) for i in jira.issues))

    # a full refresh that fails on page 3 (HTTP 500, no retries): exit 1, the previous table and state untouched
    jira.delete_issue("10008")
    jira.add_issues(5)
    jira.fail_next(100, 500, path=SEARCH_JQL, after=2)
    jira.clear_requests()
    r = project.cli("run", "jira", "--stream", "issues", "--full-refresh", env=jira_env(jira))
    assert r.code == 1, r.output
    assert "[transient_error]" in r.stderr and "FAILED" in r.stdout
    assert [r.status for r in jira.requests_to(SEARCH_JQL)] == [200, 200, 500]
    assert snapshot(project) == before
    assert project.query("SELECT status FROM _ingest_runs ORDER BY started_at DESC LIMIT 1") == [("failed",)]


# ---------------------------------------------------------------------------------------------- 3. faults


def test_transient_faults_are_retried_and_the_sync_succeeds(project, jira):
    """429 twice (no Retry-After), 500, 503 and a dropped connection, each on a different page; max_retries 2."""
    write_jira_project(project, jira, max_retries=2)
    jira.fail_next(2, 429, path=SEARCH_JQL)            # page 1: 429, 429, then 200
    jira.fail_next(1, 500, path=SEARCH_JQL, after=3)   # page 2: 500, then 200
    jira.fail_next(1, 503, path=SEARCH_JQL, after=5)   # page 3: 503, then 200
    jira.drop_next(1, path=SEARCH_JQL, after=7)        # page 4: connection closed without a response, then 200
    r = project.cli("run", "jira", "--stream", "issues", env=jira_env(jira))
    assert r.code == 0, r.output
    assert [r.status for r in jira.requests_to(SEARCH_JQL)] == [429, 429, 200, 500, 200, 503, 200, None, 200]
    assert_table_equals_fake(project, jira)
    assert cursor_of(shown_state(project)["issues"]) == cursor_text(max(i["fields"]["updated"] for i in jira.issues))


def test_bad_token_fails_with_config_error_and_never_prints_the_token(project, jira):
    write_jira_project(project, jira, max_retries=2, window=None)
    token = "wrong-token-7f3a9c21"
    basic = base64.b64encode(f"{jira.email}:{token}".encode()).decode()
    r = project.cli("run", "jira", env=jira_env(jira, token=token))
    assert r.code == 1, r.output
    assert "[config_error]" in r.stderr and "nauthorized" in r.stderr
    assert "error: sync of jira failed" in r.stderr
    assert jira.requests and all(q.status == 401 for q in jira.requests)
    asked = [(q.path, q.query.get("jql")) for q in jira.requests]
    assert len(asked) == len(set(asked)), "a 401 must not be retried (each window is asked once)"
    assert r.stderr.count("connector error: ") == 1, r.stderr  # one line, however many windows answered 401
    assert re.search(r"the same connector error \d+ more time\(s\)", r.stderr), r.stderr
    assert project.query("SELECT status FROM _ingest_runs") == [("failed",)]
    assert "config_error" in project.scalar("SELECT error FROM _ingest_runs")
    if "jira_issues" in tables(project):
        assert project.scalar("SELECT count(*) FROM jira_issues") == 0
    assert stored_cursor(project) in (None, cursor_text(rec.START_DATE))
    # the token is nowhere: not on stdout/stderr (not even with -vv, which logs every request), not in the file
    loud = project.cli("-vv", "run", "jira", env=jira_env(jira, token=token))
    assert loud.code == 1
    for result in (r, loud):
        assert token not in result.output and basic not in result.output
    assert token.encode() not in project.db.read_bytes() and basic.encode() not in project.db.read_bytes()
    assert_clear_failure(r)


# CDK 7 classifies a 5xx that outlasts its retries as transient_error (retry later); CDK 6 said system_error.
def test_permanent_5xx_fails_as_transient_error_and_keeps_previous_data(project, jira):
    write_jira_project(project, jira, max_retries=1)
    assert project.cli("run", "jira", "--stream", "issues", env=jira_env(jira)).code == 0
    before, cursor_before = issue_rows(project), stored_cursor(project)
    jira.touch_issue("10001", updated="2024-08-01T00:00:00.000+0000")  # something new to read
    jira.fail_next(100, 503, path=SEARCH_JQL)
    jira.clear_requests()
    r = project.cli("run", "jira", "--stream", "issues", env=jira_env(jira))
    assert r.code == 1, r.output
    assert "[transient_error]" in r.stderr and "error: sync of jira failed in stream issues" in r.stderr
    assert [q.status for q in jira.requests_to(SEARCH_JQL)] == [503, 503]  # 1 try + max_retries 1
    # same rows; the saved cursor did not move
    assert issue_rows(project) == before
    assert stored_cursor(project) == cursor_before
    status, error = project.query("SELECT status, error FROM _ingest_runs ORDER BY started_at DESC LIMIT 1")[0]
    assert status == "failed" and "transient_error" in error
    assert_clear_failure(r, cause=r"503|[Ss]ervice [Uu]navailable")


# ---------------------------------------------------------------------------------------------- 4. library level


def test_revoked_token_in_the_same_process_fails_and_keeps_the_first_runs_data(tmp_path, jira, monkeypatch):
    """AirbyteManager.run twice in one process (the Metaflow flow's API); the second run, with a token Jira
    rejects, must really ask Jira (no HTTP cache shared between syncs) and fail; a third with the good token works."""
    from ingest.config import load_project
    from ingest.sync.runner import AirbyteManager

    project = Project(tmp_path)
    write_jira_project(project, jira, max_retries=0)
    config = project.root / "connectors.yaml"
    for key, value in jira_env(jira).items():
        monkeypatch.setenv(key, value)

    first = AirbyteManager(load_project(config)).run("jira", streams=["issues"])
    assert first.ok, first.error
    assert first.streams["issues"].records == 160
    before, cursor_before = issue_rows(project), stored_cursor(project)

    jira.clear_requests()
    monkeypatch.setenv("JIRA_API_TOKEN", "revoked-token-31337")
    second = AirbyteManager(load_project(config)).run("jira", streams=["issues"])
    assert not second.ok
    assert second.error.failure_type == "config_error", second.error
    assert second.streams["issues"].records == 0
    assert jira.requests, "the second run never asked Jira: served from a cache?"
    assert all(q.status == 401 and not q.authorized for q in jira.requests_to(SEARCH_JQL))
    assert "revoked-token-31337" not in str(second.error) and "revoked-token-31337" not in (second.run.error or "")
    assert issue_rows(project) == before and stored_cursor(project) == cursor_before

    monkeypatch.setenv("JIRA_API_TOKEN", jira.token)
    third = AirbyteManager(load_project(config)).run("jira", streams=["issues"])
    assert third.ok, third.error
    assert third.streams["issues"].records == 1  # only the boundary record: the cursor survived the failure
    assert_table_equals_fake(project, jira)


# ---------------------------------------------------------------------------------------------- 5. SIGKILL + rerun


@pytest.mark.timeout(240)
def test_sigkill_mid_sync_then_rerun_loses_nothing_and_duplicates_nothing(project):
    """500 issues synced, then 2,600 more (and edits); runs killed at random points mid-stream; the rerun ends
    with exactly the fake's issues. After every kill, the saved cursor is never ahead of the data: every issue
    updated before it is in the table at that version."""
    rng = random.Random(20261127)
    with FakeJira(seed=9, issue_count=500) as jira:
        write_jira_project(project, jira, max_retries=1, batch=200, window=None)  # monthly windows, as users have
        env = jira_env(jira)
        assert project.cli("run", "jira", "--stream", "issues", env=env).code == 0
        assert_table_equals_fake(project, jira)

        jira.add_issues(2600)
        # ~53 pages in ~7 monthly windows read side by side: slow answers keep the read going for several seconds,
        # so the kill lands mid-stream
        jira.latency = 0.3
        kills_mid_stream = kills = 0
        # At least two kills; more (up to four) while none has landed mid-stream: on a loaded machine the first
        # commit can come after a short delay, and a kill before it proves nothing.
        for n, delay in enumerate(rng.uniform(0.0, 2.0) for _ in range(4)):
            if kills >= 2 and kills_mid_stream:
                break
            kills += 1
            jira.touch_issue(str(10000 + 37 * (n + 1)), updated=f"2025-0{n + 1}-01T00:00:00.000+0000")
            kill_when_flowing(["run", "jira", "--stream", "issues"], project.root, env, delay, timeout=90, settle=0)
            got = landed(project)  # asserts: no duplicate ids
            cursor = stored_cursor(project)
            assert cursor is not None
            bound = parse_jira_datetime(cursor)
            claimed = {i: u for i, u in fake_updated(jira).items() if u < bound}
            missing = [i for i in claimed if got.get(i) != claimed[i]]
            assert not missing, f"state ({cursor}) is ahead of the data: {len(missing)} issues missing or stale"
            killed = run_ids(project)[-1]
            partial = len(rows_of_run(project, killed))
            print(f"kill {n + 1}: {delay:.2f}s after the first progress line; {partial} rows landed by the killed run, cursor {cursor}")
            if 0 < partial < 2600:
                kills_mid_stream += 1
        jira.latency = 0.0
        r = project.cli("run", "jira", "--stream", "issues", env=env)
        assert r.code == 0, r.output
        assert_table_equals_fake(project, jira)
        assert project.scalar("SELECT count(*) FROM jira_issues") == 3100
        assert kills_mid_stream >= 1, "no kill landed mid-stream with data committed; the test proved nothing"
        statuses = [s for (s,) in project.query("SELECT status FROM _ingest_runs ORDER BY started_at")]
        assert statuses[0] == statuses[-1] == "succeeded" and len(statuses) == 2 + kills
        # a killed run could not complete its run row: the next run found it dead and recorded it as killed
        assert statuses[1:-1] == ["killed"] * kills
        assert_no_old_search(jira)
