"""SIGKILL mid-sync, then rerun: no loss, no duplicates, and state is never ahead of the data it describes."""
from __future__ import annotations

import json
import random
from pathlib import Path

import duckdb
import yaml
import pytest

from .support.flowing import kill_when_flowing

COUNT = 60_000
CONFIG = f"""
defaults:
  duckdb: {{path: warehouse.duckdb}}
  batch: {{max_records: 700}}
connectors:
  demo:
    team: platform
    source: airbyte-source-faker==7.2.1
    # always_updated: every run re-reads all users with new updated_at values, so a rerun after a kill
    # re-delivers what was already landed and dedup on the primary key must absorb it.
    config: {{count: {COUNT}, seed: 3, records_per_slice: 500, parallelism: 1, always_updated: true}}
    streams:
      - name: users
"""


def _state_offset(db) -> int | None:
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute("SELECT state FROM _ingest_state WHERE block='demo' AND state_key='users'").fetchone()
        return None if row is None else json.loads(row[0])["stream"]["stream_state"]["loop_offset"]
    finally:
        con.close()


@pytest.mark.timeout(600)
def test_sigkill_at_random_points_then_rerun(project):
    project.write_config(CONFIG)
    rng = random.Random(20261127)
    kills_with_data = 0
    for delay in [rng.uniform(0.0, 2.0) for _ in range(3)]:
        kill_when_flowing(["run", "demo"], project.root, delay=delay)
        if not project.db.exists():
            continue
        offset = _state_offset(project.db)
        tables = {t for (t,) in project.query("SELECT table_name FROM information_schema.tables")}
        if offset is not None and offset < COUNT:
            kills_with_data += 1
            # State never ahead of data: every user the checkpoint claims (ids 1..offset) is in the table.
            landed = project.scalar("SELECT count(DISTINCT id) FROM demo_users WHERE id <= ?", [offset])
            assert landed == offset
        if "demo_users" in tables:
            assert project.scalar("SELECT count(*) - count(DISTINCT id) FROM demo_users") == 0
    r = project.cli("run", "demo", timeout=300)
    assert r.code == 0, r.output
    assert project.scalar("SELECT count(*) FROM demo_users") == COUNT
    assert project.scalar("SELECT count(DISTINCT id) FROM demo_users") == COUNT
    assert project.scalar("SELECT min(id), max(id) FROM demo_users") == 1
    assert kills_with_data >= 1, "no kill landed between the first and the last checkpoint; the test proved nothing"
    statuses = [s for (s,) in project.query("SELECT status FROM _ingest_runs ORDER BY started_at")]
    # the SIGKILLed runs could not record their end: the rerun found them and recorded them as killed
    assert statuses[-1] == "succeeded" and statuses.count("killed") == len(statuses) - 1


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
    count = 200_000  # ~5-10 s of users: the kill lands mid-stream
    project.write_config(_shipped_demo_config(count))
    for delay in (0.5, 1.5, 3.0):
        kill_when_flowing(["run", "demo"], project.root, delay=delay)
        offset = _state_offset(project.db) if project.db.exists() else None
        if offset is not None and offset < count:
            break
    else:
        pytest.fail("no kill landed between the first and the last checkpoint; the test proved nothing")
    r = project.cli("run", "demo", timeout=300)
    assert r.code == 0, r.output
    assert project.scalar("SELECT count(*) FROM demo_users") == count
    assert project.scalar("SELECT count(DISTINCT id) FROM demo_users") == count
