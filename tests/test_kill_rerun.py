"""SIGKILL mid-sync, then rerun: no loss, no duplicates, and state is never ahead of the data it describes — into DuckDB\nand into Snowflake (fakesnow), from one scenario body."""
from __future__ import annotations

import json
import random
from pathlib import Path

import yaml
import pytest

from .support import blocks
from .support.destinations import DuckDB
from .support.flowing import kill_when_flowing

# Per destination: enough users that a kill lands mid-stream, in batches small enough to checkpoint often.
KILL = {"duckdb": {"count": 60_000, "batch": 700, "slice": 500, "max_delay": 2.0},
        "snowflake": {"count": 6000, "batch": 250, "slice": 250, "max_delay": 2.5}}


def _state_offset(destination) -> int | None:
    if "_ingest_state" not in destination.tables():
        return None
    rows = destination.query("SELECT state FROM _ingest_state WHERE block = 'demo' AND state_key = 'users'")
    return None if not rows else json.loads(rows[0][0])["stream"]["stream_state"]["loop_offset"]


@pytest.mark.timeout(600)
def test_sigkill_at_random_points_then_rerun(project, destination):
    d, k = destination, KILL[destination.name]
    count = k["count"]
    # always_updated: every run re-reads all users with new updated_at values, so a rerun after a kill
    # re-delivers what was already landed and dedup on the primary key must absorb it.
    demo = blocks.demo_block(count, k["slice"], ("users",), seed=3, always_updated=True)
    project.write_config(blocks.dump({"defaults": d.defaults(batch=k["batch"]), "connectors": {"demo": demo}}))
    rng = random.Random(20261127)
    kills_with_data = 0
    for delay in [rng.uniform(0.0, k["max_delay"]) for _ in range(3)]:
        kill_when_flowing(["run", "demo"], project.root, d.env, delay)
        d.after_kill()
        offset = _state_offset(d)
        if "demo_users" in d.tables():
            assert d.scalar("SELECT count(*) - count(DISTINCT id) FROM demo_users") == 0
        if offset is not None and offset < count:
            kills_with_data += 1
            # State never ahead of data: every user the checkpoint claims (ids 1..offset) is in the table.
            assert d.scalar("SELECT count(DISTINCT id) FROM demo_users WHERE id <= ?", [offset]) == offset
    # status (read-only) already shows the last killed run as failing; the rerun records every one as killed
    dead = [r for (r,) in d.query("SELECT run_id FROM _ingest_runs WHERE status = 'running' ORDER BY started_at")]
    r = d.cli("status", "--json")
    users = json.loads(r.stdout)
    assert r.code == 1 and users["status"] == "failing" and users["failure_class"] == "killed", r.output
    assert dead[-1] in users["failure_message"]
    r = d.cli("run", "demo", timeout=300)
    assert r.code == 0, r.output
    # (each killed run was recorded by the next run: only the last one was still `running` before this rerun)
    killed = [k for (k,) in d.query("SELECT run_id FROM _ingest_runs WHERE status = 'killed' ORDER BY started_at")]
    assert dead == killed[-1:] and len(killed) >= 1
    events = d.query("SELECT run_id, payload FROM _ingest_events WHERE name = 'data_failed.demo.users'")
    assert sorted((run_id, json.loads(payload)["error_class"]) for run_id, payload in events) == sorted((k, "killed") for k in killed)
    assert d.scalar("SELECT count(*) FROM demo_users") == count
    assert d.scalar("SELECT count(DISTINCT id) FROM demo_users") == count
    assert d.scalar("SELECT min(id), max(id) FROM demo_users") == 1
    assert kills_with_data >= 1, "no kill landed between the first and the last checkpoint; the test proved nothing"
    statuses = [s for (s,) in d.query("SELECT status FROM _ingest_runs ORDER BY started_at")]
    # the SIGKILLed runs could not record their end: the rerun found them and recorded them as killed
    assert statuses[-1] == "succeeded" and statuses.count("killed") == len(statuses) - 1
    assert _state_offset(d) == count


def _shipped_demo_config(count: int) -> str:
    """The demo block exactly as connectors.yaml ships it (its config keys, e.g. always_updated, unchanged), at the
    release connectors.lock pins, with more users so that a kill can land mid-stream."""
    root = Path(__file__).resolve().parents[1]
    shipped = yaml.safe_load((root / "connectors.yaml").read_text())
    block = shipped["connectors"]["demo"]
    version = yaml.safe_load((root / "connectors.lock").read_text())["blocks"]["demo"]["version"]
    block["source"] = f"{block['source']}=={version}"
    block["config"]["count"] = count
    block["streams"] = [{"name": "users"}]
    return yaml.safe_dump({"defaults": {"duckdb": {"path": "warehouse.duckdb"}, "batch": {"max_records": 700}},
                           "connectors": {"demo": block}}, sort_keys=False)


@pytest.mark.timeout(600)
def test_the_shipped_demo_block_lands_everything_after_a_kill(project):
    """The README's promise for the block a newcomer runs first: kill it mid-stream, run it again, every user lands.
    (faker restarts a stream rather than resuming it mid-stream: with `always_updated: false` it would skip a stream
    that has any state, and a run killed at 71% stayed at 71% forever.)"""
    count = 100_000  # ~5 s of users: the kill (0.5 s after the first progress line at 0.5 s, or later) lands mid-stream
    project.write_config(_shipped_demo_config(count))
    for delay in (0.5, 1.5, 3.0):
        kill_when_flowing(["run", "demo"], project.root, delay=delay)
        offset = _state_offset(DuckDB(project))
        if offset is not None and offset < count:
            break
    else:
        pytest.fail("no kill landed between the first and the last checkpoint; the test proved nothing")
    r = project.cli("run", "demo", timeout=300)
    assert r.code == 0, r.output
    assert project.scalar("SELECT count(*) FROM demo_users") == count
    assert project.scalar("SELECT count(DISTINCT id) FROM demo_users") == count
