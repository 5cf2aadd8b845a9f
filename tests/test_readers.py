"""Read commands (`status`, `state show`, `events list`, `describe`) beside a run writing the same DuckDB file: they get their
turn between the run's commits, the run is not disturbed, and reading never creates or writes the file."""
from __future__ import annotations

import json
import time

import duckdb

from .support.flowing import start_flowing
from .support.blocks import demo_config

# Long enough that six read commands (each an interpreter start and a turn between commits) end before the run does
# on a loaded 2-core CI machine (150k users and nine reads failed there once a sync got faster than its readers).
COUNT = 200_000
CONFIG = demo_config(COUNT, 1000, batch=2000, streams=("users",), seed=5)


def _running(project):
    run = start_flowing(["run", "demo"], project.root)
    return run.proc, run.lines


def test_read_commands_work_while_a_run_writes_the_file(project):
    project.write_config(CONFIG)
    proc, lines = _running(project)
    try:
        reads = []
        for args in (["status", "--json"], ["state", "show", "demo"], ["events", "list", "--json"],
                     ["status", "--json"], ["state", "show", "demo"], ["describe", "demo_users", "--json"]):
            started = time.monotonic()
            r = project.cli(*args, timeout=120)
            reads.append((args[0], r, time.monotonic() - started))
            assert proc.poll() is None, "the run ended before the readers were done: the test proved nothing"
    finally:
        out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, "".join(lines)
    for name, r, took in reads:
        assert "in use by another process" not in r.stderr and "Traceback" not in r.stderr, r.output
        assert r.code == 0, r.output
        assert took < 30, f"{name} took {took:.1f}s"
    print("read command seconds while a run writes:", [f"{name} {took:.2f}" for name, _, took in reads])
    status = [json.loads(r.stdout) for name, r, _ in reads if name == "status"]
    assert all(s["stream"] == "users" and s["status"] == "never loaded" for s in status)
    assert any("demo.users: " in r.stdout for name, r, _ in reads if name == "state")  # a checkpoint was visible
    described = [json.loads(r.stdout) for name, r, _ in reads if name == "describe"][0]
    assert described["team"] == "platform" and described["status"] == "never loaded" and 0 < described["rows"] < COUNT
    # the run was not disturbed: every record landed once
    assert project.scalar("SELECT count(*), count(DISTINCT id) FROM demo_users") == COUNT
    assert project.scalar("SELECT count(DISTINCT id) FROM demo_users") == COUNT
    assert not (project.root / "warehouse.duckdb.read-request").exists()
    assert not (project.root / "warehouse.duckdb.yielding").exists()


def test_a_reader_that_gets_no_turn_says_why_within_its_wait(project):
    """Another program (not an ingest run) holding the file never lets readers in: a bounded wait, a clear message."""
    project.write_config(demo_config(count=100, slice_=100))
    assert project.cli("run", "demo", "--stream", "users").code == 0
    holder = duckdb.connect(str(project.db))
    try:
        started = time.monotonic()
        r = project.cli("status", "--wait", "2")
        took = time.monotonic() - started
    finally:
        holder.close()
    assert r.code == 1 and "in use by another process" in r.stderr and "did not let readers in within 2s" in r.stderr
    assert "--wait" in r.stderr and "Traceback" not in r.stderr
    assert 2 <= took < 20


def test_read_commands_never_create_the_warehouse(project):
    project.write_config(demo_config(count=100, slice_=100))
    r = project.cli("state", "show", "demo")
    assert r.code == 0 and "no saved state" in r.stdout, r.output
    r = project.cli("events", "list")
    assert r.code == 0 and "nothing has been synced" in r.stderr, r.output
    r = project.cli("status")
    assert r.code == 0, r.output
    for args in (["state", "show", "demo"], ["events", "list"]):
        r = project.cli(*args, "--destination", "elsewhere.duckdb")
        assert r.code == 2 and "no DuckDB file at" in r.stderr and "elsewhere.duckdb" in r.stderr, r.output
    assert sorted(p.name for p in project.root.iterdir()) == ["connectors.lock", "connectors.yaml"] or \
        sorted(p.name for p in project.root.iterdir()) == ["connectors.yaml"]


def test_read_commands_do_not_write_an_existing_warehouse(project):
    project.write_config(demo_config(count=100, slice_=100))
    assert project.cli("run", "demo", "--stream", "users").code == 0
    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in project.root.iterdir()}
    for args in (["status"], ["state", "show", "demo"], ["events", "list"]):
        assert project.cli(*args).code == 0
    after = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in project.root.iterdir()}
    assert after == before
