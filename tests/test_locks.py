"""One run per block stream at a time: a second run is refused naming the holder (or waits), a dead holder's lock
never blocks the next run, and concurrent runs never interleave or corrupt the data."""
from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import time

import duckdb

from .support.cli import start_cli
from .support.blocks import demo_config


def _insert_lock(project, *, stream="users", run_id="20260101T000000Z-abcdef", host="airflow-worker-7", pid=4242,
                 expires_in=600.0):
    now = dt.datetime.now(dt.timezone.utc)
    con = duckdb.connect(str(project.db))
    con.execute(
        "INSERT INTO _ingest_locks VALUES ('demo', ?, ?, ?, ?, ?, ?)",
        [stream, run_id, host, pid, now - dt.timedelta(minutes=3), now + dt.timedelta(seconds=expires_in)],
    )
    con.close()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_lock_refuses_the_run_naming_the_holder_and_writes_nothing(project):
    project.write_config(demo_config(count=100, slice_=100))
    assert project.cli("run", "demo", "--stream", "users").code == 0
    _insert_lock(project)
    runs_before = project.scalar("SELECT count(*) FROM _ingest_runs")
    r = project.cli("run", "demo", "--stream", "users")
    assert r.code == 1, r.output
    for part in ("20260101T000000Z-abcdef", "airflow-worker-7", "pid 4242", "--wait"):
        assert part in r.stderr, part
    assert "Traceback" not in r.stderr
    assert project.scalar("SELECT count(*) FROM _ingest_runs") == runs_before
    # other streams of the block are not blocked by a lock on users
    assert project.cli("run", "demo", "--stream", "products").code == 0


def test_an_expired_lock_or_a_dead_local_holder_does_not_block(project):
    project.write_config(demo_config(count=100, slice_=100))
    assert project.cli("run", "demo", "--stream", "users").code == 0
    _insert_lock(project, expires_in=-1)  # its holder stopped heart-beating
    assert project.cli("run", "demo", "--stream", "users").code == 0
    _insert_lock(project, host=socket.gethostname(), pid=_dead_pid())  # SIGKILLed on this host
    r = project.cli("run", "demo", "--stream", "users")
    assert r.code == 0, r.output
    assert project.scalar("SELECT count(*) FROM _ingest_locks") == 0  # released at the end


def test_wait_queues_behind_a_lock_until_it_expires(project):
    project.write_config(demo_config(count=100, slice_=100))
    assert project.cli("run", "demo", "--stream", "users").code == 0
    _insert_lock(project, expires_in=4)
    started = time.monotonic()
    r = project.cli("run", "demo", "--stream", "users", "--wait", "60")
    assert r.code == 0, r.output
    assert time.monotonic() - started >= 3


def test_a_warehouse_file_in_use_is_refused_naming_the_pid_or_waited_for(project):
    project.write_config(demo_config(count=100, slice_=100))
    holder = duckdb.connect(str(project.db))  # another process (this test) holds DuckDB's single-writer lock
    try:
        r = project.cli("run", "demo", "--stream", "users")
        assert r.code == 1 and "in use by another process" in r.stderr and "--wait" in r.stderr and "Traceback" not in r.stderr
        queued = start_cli(["run", "demo", "--stream", "users", "--wait", "120"], project.root)
        time.sleep(3)
        assert queued.poll() is None  # still waiting
    finally:
        holder.close()
    out, err = queued.communicate(timeout=240)
    assert queued.returncode == 0, err
    assert project.scalar("SELECT count(*) FROM demo_users") == 100


def test_two_concurrent_runs_of_a_block_never_interleave(project):
    project.write_config(demo_config(count=30_000, slice_=1000).replace("always_updated: false", "always_updated: true"))
    # Two runs started a moment apart: whichever opens the warehouse first syncs, the other queues (--wait).
    first = start_cli(["run", "demo", "--stream", "users", "--wait", "300"], project.root)
    time.sleep(1)
    second = start_cli(["run", "demo", "--stream", "users", "--wait", "300"], project.root)
    out2, err2 = second.communicate(timeout=300)
    out1, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert project.scalar("SELECT count(*) FROM demo_users") == 30_000
    assert project.scalar("SELECT count(DISTINCT id) FROM demo_users") == 30_000
    runs = project.query("SELECT started_at, ended_at FROM _ingest_runs ORDER BY started_at")
    assert len(runs) == 2 and runs[0][1] <= runs[1][0]  # one after the other, never overlapping
    # and every row now comes from the second run, extracted after the first one ended
    assert project.scalar("SELECT min(_ingest_extracted_at) FROM demo_users") >= runs[0][1]
