"""A large project and its ledger, written straight into a DuckDB file (for the status scale test and bench/status.py).

`blocks` blocks of one stream (`users`) each, `loads` data_landed events per block, one a minute, the newest
`minutes_ago` minutes ago. Every 10th block (b0000, b0010, ...) also failed after its last load; every 100th block
(b0005, b0105, ...) has a run still recorded as `running` whose lock expired (a SIGKILLed run nobody recorded yet).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from ingest.destinations.duckdb import DuckDBDestination


def block_name(i: int) -> str:
    return f"b{i:04d}"


def write_config(root: Path, blocks: int) -> Path:
    lines = ["defaults:", "  duckdb: {path: warehouse.duckdb}", "connectors:"]
    for i in range(blocks):
        lines += [f"  {block_name(i)}:", f"    team: team{i % 7}", "    source: airbyte-source-faker==7.2.1",
                  "    config: {count: 10}", "    streams:", "      - name: users"]
    path = root / "connectors.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def expected_rows(load: int) -> int:
    """Rows of the load-th load (0-based) of every block."""
    return 100 + load


def write_ledger(db: Path, blocks: int, loads: int, now: dt.datetime | None = None) -> None:
    now = now or dt.datetime.now(dt.timezone.utc)
    DuckDBDestination(db).close()  # the metadata tables, as a run creates them
    con = duckdb.connect(str(db))
    try:
        con.execute("SET TimeZone = 'UTC'")
        # load i of block b landed (loads - i) minutes before now
        con.execute(
            """
            INSERT INTO _ingest_events (event_id, name, idempotency_key, block, stream, team, run_id, payload, status,
                                        created_at)
            SELECT md5(b.n || '-' || l.i), 'data_landed.' || name_b || '.users', name_b || ':users:r' || l.i,
                   name_b, 'users', 'team' || (b.n % 7), 'r' || l.i,
                   json_object('event', 'data_landed', 'block', name_b, 'stream', 'users', 'rows', 100 + l.i,
                               'landed_at', strftime(landed, '%Y-%m-%dT%H:%M:%S+00:00'),
                               'cursor_after', '{"loop_offset": ' || (100 + l.i) || '}'),
                   'recorded', landed
            FROM (SELECT range AS n, 'b' || lpad(range::VARCHAR, 4, '0') AS name_b FROM range(?)) b,
                 (SELECT range AS i, ?::TIMESTAMPTZ - to_minutes(? - range) AS landed FROM range(?)) l
            """,
            [blocks, now, loads, loads],
        )
        con.execute(
            """
            INSERT INTO _ingest_events (event_id, name, idempotency_key, block, stream, team, run_id, payload, status,
                                        created_at)
            SELECT md5('failed-' || b.n), 'data_failed.' || name_b || '.users', name_b || ':users:f', name_b, 'users',
                   'team' || (b.n % 7), 'f',
                   json_object('event', 'data_failed', 'error_class', 'transient_error', 'error_message', 'HTTP 503',
                               'failed_at', strftime(?::TIMESTAMPTZ - INTERVAL 30 SECOND, '%Y-%m-%dT%H:%M:%S+00:00')),
                   'pending', ?::TIMESTAMPTZ - INTERVAL 30 SECOND
            FROM (SELECT range AS n, 'b' || lpad(range::VARCHAR, 4, '0') AS name_b FROM range(?)) b WHERE b.n % 10 = 0
            """,
            [now, now, blocks],
        )
        con.execute(
            """
            INSERT INTO _ingest_runs
            SELECT 'dead-' || name_b, name_b, 'team' || (n % 7), ['users'], 'duckdb', ?::TIMESTAMPTZ - INTERVAL 20 SECOND,
                   NULL, 'running', 0, NULL
            FROM (SELECT range AS n, 'b' || lpad(range::VARCHAR, 4, '0') AS name_b FROM range(?)) WHERE n % 100 = 5
            """,
            [now, blocks],
        )
        con.execute(
            """
            INSERT INTO _ingest_locks
            SELECT block, 'users', run_id, 'lost-node-3', 4242, started_at, started_at + INTERVAL 5 SECOND FROM _ingest_runs
            WHERE status = 'running'
            """
        )
    finally:
        con.close()
