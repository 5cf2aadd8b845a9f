"""Signals as Kubernetes, Argo and cron deliver them: SIGTERM ends a run like Ctrl-C (recorded as failed, data_failed,
locks released, no orphan child, exit 1, within the grace period), and a run that died without cleanup (SIGKILL)
is found and recorded as `killed` by the next run, and shown as failing by `ingest status` before that."""
from __future__ import annotations

import json
import signal
import time

import psutil
import pytest

from .support.blocks import demo_config
from .support.flowing import start_flowing

COUNT = 200_000


def _config(count: int = COUNT, streams=("users",)) -> str:
    return demo_config(count, 500, batch=700, streams=streams, seed=3, always_updated=True)


CONFIG = _config()
GRACE_S = 15  # what the README promises after SIGTERM (Kubernetes' default terminationGracePeriodSeconds is 30)


def _start_and_wait_for_records(project):
    """A run that is reading (its first progress line), with its process tree (the isolated connector's child)."""
    run = start_flowing(["run", "demo"], project.root)
    time.sleep(1.0)
    tree = psutil.Process(run.proc.pid).children(recursive=True)
    assert tree, "no connector child process"
    return run.proc, run.reader, run.lines, tree


def _gone(procs, timeout=10.0):
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.1)
    return alive


def _runs(project):
    return project.query("SELECT run_id, status, error FROM _ingest_runs ORDER BY started_at")


def _failed_events(project):
    return [json.loads(p) for (p,) in project.query(
        "SELECT payload FROM _ingest_events WHERE name = 'data_failed.demo.users' ORDER BY created_at")]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("signals", [1, 2], ids=["one SIGTERM", "SIGTERM twice"])
def test_sigterm_ends_the_run_cleanly_within_the_grace_period(project, signals):
    """Kubernetes sends SIGTERM once; a shell loop or an impatient operator may send it twice: the second must not
    cut the run's own bookkeeping short (that left the run `running` with its locks held)."""
    project.write_config(CONFIG)
    proc, reader, lines, tree = _start_and_wait_for_records(project)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    for _ in range(signals - 1):
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    took = time.monotonic() - sent
    reader.join(5)
    stderr = "".join(lines)
    assert code == 1, stderr
    assert took < GRACE_S, f"took {took:.1f}s to stop"
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    assert _gone(tree) == [], "the connector's processes outlived the run"
    [(run_id, status, error)] = _runs(project)
    assert status == "failed" and "stopped by SIGTERM" in error
    [event] = _failed_events(project)
    assert event["run_id"] == run_id and event["error_class"] == "interrupted"
    assert project.scalar("SELECT count(*) FROM _ingest_locks") == 0
    # nothing half-done: the state never claims more users than the table holds
    offset = json.loads(project.scalar("SELECT state FROM _ingest_state WHERE state_key = 'users'"))["stream"]["stream_state"]["loop_offset"]
    assert 0 < offset < COUNT
    assert project.scalar("SELECT count(DISTINCT id) FROM demo_users WHERE id <= ?", [offset]) == offset


@pytest.mark.timeout(300)
def test_a_sigkilled_run_is_shown_as_killed_by_status_then_recorded_by_the_next_run(project):
    project.write_config(CONFIG)
    proc, reader, lines, tree = _start_and_wait_for_records(project)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert _gone(tree) == []
    [(dead_id, status, _)] = _runs(project)
    assert status == "running"  # nobody could record its end

    # status is a read command: it shows the dead run as failing, names it, and writes nothing
    before = project.db.stat().st_mtime_ns, project.query("SELECT * FROM _ingest_runs")
    r = project.cli("status", "--json")
    [row] = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.code == 1 and row["status"] == "failing" and row["failure_class"] == "killed", r.output
    assert dead_id in row["failure_message"] and "pid" in row["failure_message"]
    assert "demo.users is failing" in r.stderr
    assert (project.db.stat().st_mtime_ns, project.query("SELECT * FROM _ingest_runs")) == before

    # the next run of the block records it, with a data_failed event saying why, and then lands
    project.write_config(_config(count=500))
    r = project.cli("run", "demo")
    assert r.code == 0, r.output
    runs = _runs(project)
    assert [s for _, s, _ in runs] == ["killed", "succeeded"]
    assert runs[0][0] == dead_id and "stopped without recording its end" in runs[0][2] and runs[1][0] in runs[0][2]
    [event] = _failed_events(project)
    assert event["run_id"] == dead_id and event["error_class"] == "killed" and "pid" in event["error_message"]
    # and once the block has landed again, status is back to ok
    r = project.cli("status", "--json")
    assert r.code == 0 and json.loads(r.stdout)["status"] == "ok", r.output
    # recording is once: a further run finds nothing more to record
    assert project.cli("run", "demo").code == 0
    assert len(_failed_events(project)) == 1


@pytest.mark.timeout(300)
def test_sigterm_fails_only_the_streams_that_had_not_landed(project):
    """products completes first, users is cut short: owners of products hear it landed, not that it failed."""
    project.write_config(_config(streams=("products", "users")))
    proc, reader, lines, tree = _start_and_wait_for_records(project)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 1
    events = sorted(project.query("SELECT name, run_id FROM _ingest_events"))
    [(run_id,)] = project.query("SELECT run_id FROM _ingest_runs")
    assert events == [("data_failed.demo.users", run_id), ("data_landed.demo.products", run_id)]
