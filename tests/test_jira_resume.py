"""A Jira backfill that is killed resumes at its last committed window (issue 12).

The override reads the issues stream in monthly windows on `updated` (`issues_window` in the block's config); the
CDK emits the stream's state after each window and ingest commits the window's rows with it. These tests run the
real CLI against the loopback fake Jira with issues spread over three years: an uninterrupted backfill is the
reference; a second backfill is SIGKILLed once some windows are committed (seen as a user sees it: `ingest state
show`), and the rerun must not ask Jira for the committed windows again and must end with the same table.
"""
from __future__ import annotations

import json
import signal
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from . import record_jira_cassettes as rec
from .support.cli import Project, start_cli
from .support.jira import SEARCH_JQL, assert_contiguous, window_bounds
from .fakes.fake_jira import FakeJira, parse_jira_datetime

START = datetime(2022, 1, 1, tzinfo=timezone.utc)
ISSUES = 400
SPACING = timedelta(days=2, hours=17)  # 400 issues over ~3 years: ~11 per monthly window
COLUMNS = "id, key, updated, created, fields"  # what the connector delivered (not our _ingest_ metadata)


def spread_over_three_years(jira: FakeJira) -> None:
    for n, issue_id in enumerate(sorted((i["id"] for i in jira.issues), key=int)):
        jira.touch_issue(issue_id, updated=START + n * SPACING)


def write_block(root: Path, jira: FakeJira, **config) -> None:
    rec.write_project(root, base_url=jira.base_url, cassette=False)
    path = root / "connectors.yaml"
    text = path.read_text().replace(f'start_date: "{rec.START_DATE}"', f'start_date: "{START:%Y-%m-%dT%H:%M:%SZ}"')
    for key, value in config.items():
        text = text.replace("      start_date:", f"      {key}: {value}\n      start_date:")
    path.write_text(text)


def env_for(jira: FakeJira) -> dict:
    return {"JIRA_DOMAIN": rec.DOMAIN, "JIRA_EMAIL": jira.email, "JIRA_API_TOKEN": jira.token}


def stored_cursor(project: Project) -> str | None:
    r = project.cli("state", "show", "jira", "--wait", "60")
    assert r.code == 0, r.output
    for line in r.stdout.splitlines():
        if line.startswith("jira.issues: "):
            return json.loads(line.removeprefix("jira.issues: ")).get("updated")
    return None


def table(project: Project) -> list[tuple]:
    return project.query(f"SELECT {COLUMNS} FROM jira_issues ORDER BY id")


def test_windows_are_contiguous_monthly_and_reach_now(tmp_path):
    with FakeJira(seed=5, issue_count=ISSUES) as jira:
        spread_over_three_years(jira)
        project = Project(tmp_path)
        write_block(project.root, jira)
        before = datetime.now(timezone.utc)
        r = project.cli("run", "jira", "--stream", "issues", env=env_for(jira))
        assert r.code == 0, r.output
        assert project.scalar("SELECT count(*) FROM jira_issues") == ISSUES
        bounds = window_bounds(jira.requests_to(SEARCH_JQL))
        assert bounds[0][0] == int(START.timestamp() * 1000)
        assert_contiguous(bounds)
        first_lower, first_upper = bounds[0]
        assert datetime.fromtimestamp((first_upper + 1) / 1000, timezone.utc) == datetime(2022, 2, 1, tzinfo=timezone.utc)
        assert bounds[-1][1] >= int(before.timestamp() * 1000) - 1000, "the last window reaches the time of the run"
        assert len(bounds) >= 59  # 2022-01 .. at least 2026-11, one window a month


def test_a_block_sets_its_own_window(tmp_path):
    with FakeJira(seed=5, issue_count=40) as jira:
        spread_over_three_years(jira)  # 40 issues over ~3.5 months
        project = Project(tmp_path)
        write_block(project.root, jira, issues_window="P7D", end_date='"2022-05-01T00:00:00Z"')
        r = project.cli("run", "jira", "--stream", "issues", env=env_for(jira))
        assert r.code == 0, r.output
        bounds = window_bounds(jira.requests_to(SEARCH_JQL))
        assert all(upper - lower + 1 <= 7 * 86_400_000 for lower, upper in bounds)
        assert len(bounds) == 18  # 2022-01-01 .. 2022-05-01 in weeks
        assert project.scalar("SELECT count(*) FROM jira_issues") == 40


def test_a_bad_window_is_a_config_error_before_anything_runs(tmp_path):
    with FakeJira(seed=5, issue_count=10) as jira:
        project = Project(tmp_path)
        write_block(project.root, jira, issues_window="monthly")
        r = project.cli("run", "jira", "--stream", "issues", env=env_for(jira))
        assert r.code == 2, r.output
        assert "issues_window" in r.output
        assert not jira.requests_to(SEARCH_JQL)


@pytest.mark.timeout(420)
def test_a_killed_backfill_resumes_at_its_last_committed_window(tmp_path):
    with FakeJira(seed=5, issue_count=ISSUES) as jira:
        spread_over_three_years(jira)
        env = env_for(jira)

        reference = Project(tmp_path / "uninterrupted")
        reference.root.mkdir()
        write_block(reference.root, jira)
        assert reference.cli("run", "jira", "--stream", "issues", env=env).code == 0
        full_requests = len(jira.requests_to(SEARCH_JQL))

        project = Project(tmp_path / "killed")
        project.root.mkdir()
        # One window at a time, each answered slowly (~60 windows, ~30 s): the kill lands in the middle. (With
        # several workers the windows overlap, and the resume is the same: the state covers only whole windows.)
        write_block(project.root, jira, num_workers=1)
        jira.requests.clear()
        jira.latency = 0.5
        proc = start_cli(["run", "jira", "--stream", "issues"], project.root, env=env)
        try:
            deadline = time.monotonic() + 240
            cursor = None
            # As a user would see it: the committed cursor, read while the run writes (readers get turns).
            while time.monotonic() < deadline and proc.poll() is None:
                cursor = stored_cursor(project)
                if cursor and parse_jira_datetime(cursor) >= datetime(2022, 7, 1, tzinfo=timezone.utc):
                    break
                time.sleep(0.5)
            assert proc.poll() is None, "the backfill ended before a window was committed; make the fake slower"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        jira.latency = 0.0

        cursor = stored_cursor(project)
        assert cursor is not None
        bound = parse_jira_datetime(cursor)
        assert bound < START + ISSUES * SPACING, "the kill came after the last issue: nothing left to resume"
        landed = {i: parse_jira_datetime(u) for i, u in project.query("SELECT id, updated FROM jira_issues")}
        before_cursor = {i["id"] for i in jira.issues if parse_jira_datetime(i["fields"]["updated"]) <= bound}
        assert before_cursor <= set(landed), "the state is ahead of the data"
        assert len(landed) < ISSUES

        jira.requests.clear()
        r = project.cli("run", "jira", "--stream", "issues", env=env)
        assert r.code == 0, r.output
        rerun = window_bounds(jira.requests_to(SEARCH_JQL))
        # The rerun starts at the committed cursor (whole seconds) and never asks for an earlier window again.
        cursor_ms = int(bound.timestamp() * 1000)
        assert min(lower for lower, _ in rerun) == cursor_ms
        assert len(jira.requests_to(SEARCH_JQL)) < full_requests
        assert table(project) == table(reference)
        assert project.scalar("SELECT count(*) FROM jira_issues") == ISSUES
        statuses = [s for (s,) in project.query("SELECT status FROM _ingest_runs ORDER BY started_at")]
        assert statuses == ["killed", "succeeded"]


def test_state_in_the_stock_per_partition_shape_resumes_instead_of_backfilling_again(tmp_path):
    """Blocks that ran the stock (per-partition) cursor keep their place after the upgrade to windows."""
    with FakeJira(seed=5, issue_count=60) as jira:
        spread_over_three_years(jira)
        project = Project(tmp_path)
        write_block(project.root, jira)
        env = env_for(jira)
        assert project.cli("run", "jira", "--stream", "issues", env=env).code == 0
        (state,) = project.query("SELECT state FROM _ingest_state WHERE block = 'jira' AND state_key = 'issues'")[0]
        message = json.loads(state)
        cursor = message["stream"]["stream_state"]["updated"]
        # What airbyte-source-jira's own manifest (a partition router over projects) saved:
        message["stream"]["stream_state"] = {
            "use_global_cursor": False, "states": [{"partition": {}, "cursor": {"updated": cursor}}],
            "state": {"updated": cursor}, "lookback_window": 2, "parent_state": {}}
        import duckdb

        con = duckdb.connect(str(project.db))
        con.execute("UPDATE _ingest_state SET state = ? WHERE block = 'jira' AND state_key = 'issues'",
                    [json.dumps(message)])
        con.close()

        jira.requests.clear()
        r = project.cli("run", "jira", "--stream", "issues", env=env)
        assert r.code == 0, r.output
        lowers = [lower for lower, _ in window_bounds(jira.requests_to(SEARCH_JQL))]
        assert min(lowers) == int(parse_jira_datetime(cursor).timestamp() * 1000)
        last_run = project.query("SELECT run_id FROM _ingest_runs ORDER BY started_at")[-1][0]
        # Only the boundary issue (Jira's `updated >= cursor` re-delivers it), not a second backfill.
        assert project.scalar("SELECT count(*) FROM jira_issues WHERE _ingest_run_id = ?", [last_run]) == 1
