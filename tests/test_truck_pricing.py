"""The `truck_pricing` puller (Greenscreens prediction API v3) end to end, the way a user runs it.

* cassettes: `ingest run truck_prices` replayed from fixtures/cassettes/greenscreens/ (recorded by
  `python -m tests.fakes.fake_greenscreens record` from the LOCAL FAKE, not from the real API) with a dev-host
  config; the same cassette replays a block whose lanes come from a shipments table in the warehouse;
* loopback: tests/fakes/fake_greenscreens.py in this process, the CLI pointed at it with `base_url:`: a fault
  storm (429s, 5xx, a timeout, malformed JSON, an HTML page, a dropped connection, a token revoked mid-run),
  an exhausted retry budget and the rerun, bad credentials, SIGKILL at random points and the rerun;
* in process: lane parsing, 422/424 handling, per-item errors, bounded concurrency and the rate limit.
Secrets (client_secret, access tokens) are checked against stdout, stderr and every table after each CLI run.
"""
from __future__ import annotations

import datetime as dt
import json
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pytest
import yaml

from .support.cli import CliResult, Project, start_cli
from .fakes import fake_greenscreens as gsf
from .fakes.fake_greenscreens import FakeGreenscreens
from .support.pullers import PRICES_TABLE as TABLE, SECRET_ENV, assert_comments_match_schema, assert_no_secrets, gs_env
from .support.pullers import make_lanes_csv, puller_catalog
from .support.pullers import write_pricing_block as write_block

BATCH = gsf.BATCH_PATH
LANES_CSV_ROWS = 25  # fixtures/pullers/lanes.csv


# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def gs():
    with FakeGreenscreens() as fake:
        yield fake


def fake_secrets(fake: FakeGreenscreens) -> list[str]:
    return [fake.client_secret, *fake.tokens]


def rows(project: Project) -> dict[str, dict]:
    con = duckdb.connect(str(project.db), read_only=True)
    try:
        cur = con.execute(f"SELECT * FROM {TABLE}")
        names = [d[0] for d in cur.description]
        out = [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        con.close()
    ids = [r["lane_id"] for r in out]
    assert len(ids) == len(set(ids)), "duplicate lane_id rows"
    return {r["lane_id"]: r for r in out}


def expected_lanes(csv: Path = gsf.LANES_CSV) -> dict[str, object]:
    from ingest.sources.pullers import read_csv_rows
    from ingest.sources.pullers.lanes import lane_from_row, merge_lanes

    return {lane.lane_id: lane for lane in merge_lanes([lane_from_row(r) for r in read_csv_rows(csv)])}


def stored_cursor(project: Project) -> dict | None:
    if not project.db.exists():
        return None
    con = duckdb.connect(str(project.db), read_only=True)
    try:
        tables = {t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "_ingest_state" not in tables:
            return None
        row = con.execute("SELECT state FROM _ingest_state WHERE block = 'truck_prices' AND state_key = 'lane_rates'").fetchone()
    finally:
        con.close()
    return None if row is None else json.loads(row[0])["stream"]["stream_state"]


# ---------------------------------------------------------------------------------------------- unit: lanes


def test_lanes_are_read_by_name_normalized_and_merged():
    from ingest.sources.pullers.lanes import lane_from_row, merge_lanes

    lanes = expected_lanes()
    assert len(lanes) == 24  # 25 rows, SHP-1001/1006 differ by date, SHP-1015/1016 are the same lane: merged
    la = lanes["2024-03-05|VAN|US-CA-LOS ANGELES-90012|US-NV-LAS VEGAS-89101"]
    assert la.shipment_ids == ["SHP-1015", "SHP-1016"] and la.problem is None
    boston = next(lane for lane in lanes.values() if lane.origin["city"] == "Boston")
    assert boston.origin["zip"] == "02116"  # a ZIP that lost its leading zero in a spreadsheet
    assert lanes["2024-03-02|VAN|US-OH-COLUMBUS-43215|US-TN-NASHVILLE-37203"].transport_type == "VAN"  # 03/02/2024, "V"
    timed = next(lane for lane in lanes.values() if lane.origin["city"] == "Omaha")
    assert timed.pickup_datetime == "2024-03-02T08:30:00Z"
    problems = {lane.shipment_ids[0]: lane.problem for lane in lanes.values() if lane.problem}
    assert set(problems) == {"SHP-1012", "SHP-1019", "SHP-1020"}
    assert "SPACESHIP" in problems["SHP-1012"] and "missing" in problems["SHP-1019"] and "2015-01-01" in problems["SHP-1020"]

    lane = lane_from_row({"pickup_at": dt.datetime(2024, 5, 1, 14, 0), "equipment": "dry van", "orig_city": " St.  Louis ",
                          "orig_state": "mo", "dest_city": "Tulsa", "dest_state": "OK", "dest_zip": 74103})
    assert lane.problem is None and lane.transport_type == "VAN" and lane.origin == {"country": "US", "state": "MO", "city": "St. Louis", "zip": None}
    assert lane.lane_id == "2024-05-01|VAN|US-MO-ST. LOUIS-|US-OK-TULSA-74103" and lane.pickup_datetime == "2024-05-01T14:00:00Z"
    body = lane.request("USD")
    assert body["stops"][0] == {"order": 0, "country": "US", "city": "St. Louis", "state": "MO"} and body["currency"] == "USD"
    assert len(merge_lanes([lane, lane_from_row({"pickup_date": "2024-05-01", "transport_type": "VAN", "origin_city": "St. Louis",
                                                   "origin_state": "MO", "destination_city": "Tulsa", "destination_state": "OK",
                                                   "destination_zip": "74103"})])) == 1


def test_spec_marks_the_secret_and_validate_refuses_a_literal(project):
    from ingest.sources.pullers import PULLERS, puller_spec

    assert set(PULLERS) >= {"truck_pricing", "carrier_safety"}
    assert puller_spec("truck_pricing")["properties"]["client_secret"]["airbyte_secret"] is True
    assert puller_spec("nope") is None
    write_block(project)
    text = (project.root / "connectors.yaml").read_text().replace("${GREENSCREENS_CLIENT_SECRET}", "literal-secret-value-123")
    (project.root / "connectors.yaml").write_text(text)
    r = project.cli("validate")
    assert r.code == 2 and "client_secret: is a secret" in r.stderr and "literal-secret-value-123" not in r.output
    write_block(project)
    r = project.cli("validate", env=gs_env())
    assert r.code == 0 and re.search(r"^ok +truck_prices +puller:truck_pricing$", r.stdout, re.M), r.output


# ---------------------------------------------------------------------------------------------- cassettes


def vcr_run(project: Project, cassette: Path, *args: str) -> CliResult:
    proc = subprocess.run(gsf.cassette_command(cassette, *args), cwd=project.root, env=gsf.cassette_env("replay-secret-0000"),
                          capture_output=True, text=True, timeout=240)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def test_cassettes_are_sanitized_and_documented():
    for cassette in (gsf.INITIAL, gsf.INCREMENTAL):
        text = cassette.read_text()
        data = yaml.safe_load(text)
        paths = [i["request"]["uri"] for i in data["interactions"]]
        assert paths[0] == f"{gsf.SITE}{gsf.TOKEN_PATH}" and all(p == f"{gsf.SITE}{BATCH}" for p in paths[1:])
        for interaction in data["interactions"]:
            assert not {h.lower() for h in interaction["request"]["headers"]} & {"authorization", "cookie"}
            assert interaction["response"]["status"]["code"] == 200
        assert "client_secret=****" in text and gsf.RECORDING_SECRET not in text and "127.0.0.1" not in text
        assert gsf.CASSETTE_TOKEN in text and ".fake" not in text
    readme = (gsf.CASSETTE_DIR / "README.md").read_text()
    assert "not from the real" in readme and "fake_greenscreens" in readme


def test_cassette_replay_csv_lanes_then_incremental(project):
    """A dev-host config; every request answered from the cassettes (record mode none), nothing unplayed."""
    write_block(project)
    first = vcr_run(project, gsf.INITIAL, "run", "truck_prices")
    assert first.code == 0, first.output
    got = rows(project)
    lanes = expected_lanes()
    assert set(got) == set(lanes)
    ok = {k for k, r in got.items() if r["status"] == "OK"}
    assert len(ok) == 20 and all(got[k]["target_buy_rate"] > 0 and got[k]["distance"] > 0 for k in ok)
    errors = {got[k]["shipment_ids"]: (got[k]["error_http_code"], got[k]["error_code"]) for k in got if k not in ok}
    assert errors == {'["SHP-1011"]': (424, "not_found_distance"), '["SHP-1012"]': (None, "invalid_input"),
                      '["SHP-1019"]': (None, "invalid_input"), '["SHP-1020"]': (None, "invalid_input")}
    cursor = stored_cursor(project)
    assert cursor == {"pickup_date": "2024-03-07", "lane_id": max(k for k in lanes if not k.startswith("?"))}
    types = dict(project.query(f"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{TABLE}'"))
    assert types["pickup_date"] == "DATE" and types["target_buy_rate"] == "DOUBLE" and types["confidence_level"] == "BIGINT"
    assert types["priced_at"] == "TIMESTAMP WITH TIME ZONE" and types["acceptance_rates"] == "JSON"
    assert project.scalar("SELECT count(*) FROM _ingest_tables WHERE table_name = ? AND write_mode = 'dedup'", [TABLE]) == 1
    assert_comments_match_schema(project, TABLE, puller_catalog("truck_pricing")["lane_rates"][0])  # issue 13

    # New shipments were added: only lanes after the cursor are priced (one batch call in the cassette).
    shutil.copyfile(gsf.LANES_MORE_CSV, project.root / "lanes.csv")
    second = vcr_run(project, gsf.INCREMENTAL, "run", "truck_prices")
    assert second.code == 0, second.output
    after = rows(project)
    assert set(after) == set(expected_lanes(gsf.LANES_MORE_CSV))
    last_run = project.scalar("SELECT run_id FROM _ingest_runs ORDER BY started_at DESC LIMIT 1")  # run ids order by second only
    new = {k for k, r in after.items() if r["_ingest_run_id"] == last_run}
    assert len(new) == 5 + 1 and all(k > cursor["lane_id"] or k.startswith("?") for k in new)  # + the undated ERROR row
    assert_no_secrets(project, second, ["replay-secret-0000", gsf.RECORDING_SECRET])


def test_cassette_replay_with_lanes_from_a_warehouse_shipments_table(project):
    """The same shipments as lanes.csv, but typed rows in the block's DuckDB file and a SQL query with other column
    names: the API requests are byte-for-byte the same (the initial cassette replays) and so are the prices."""
    from ingest.sources.pullers import read_csv_rows

    con = duckdb.connect(str(project.db))
    con.execute("""CREATE TABLE shipments (id VARCHAR, pickup_at TIMESTAMP, equipment VARCHAR, o_city VARCHAR, o_state VARCHAR,
                   o_zip VARCHAR, d_city VARCHAR, d_state VARCHAR, d_zip VARCHAR, commodity VARCHAR, customer VARCHAR)""")
    from ingest.sources.pullers.values import parse_datetime

    for r in read_csv_rows(gsf.LANES_CSV):
        con.execute("INSERT INTO shipments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'acme')", [
            r["shipment_id"], parse_datetime(r["pickup_date"]).replace(tzinfo=None) if r["pickup_date"] else None, r["equipment_type"],
            r["origin_city"], r["origin_state"], (r["origin_zip"] or "").zfill(5), r["destination_city"], r["destination_state"],
            r["destination_zip"], r["commodity"]])
    con.execute("INSERT INTO shipments VALUES ('OTHER-1', '2024-03-03', 'VAN', 'Reno', 'NV', '89501', 'Boise', 'ID', '83702', NULL, 'other')")
    con.close()
    query = ("SELECT id AS shipment_id, pickup_at AS pickup_date, equipment AS equipment_type, o_city AS origin_city, "
             "o_state AS origin_state, o_zip AS origin_zip, d_city AS destination_city, d_state AS destination_state, "
             "d_zip AS destination_zip, commodity FROM shipments WHERE customer = 'acme'")
    write_block(project, lanes=json.dumps({"from": "warehouse", "query": query}), csv=None)
    r = vcr_run(project, gsf.INITIAL, "run", "truck_prices")
    assert r.code == 0, r.output
    got = rows(project)
    assert set(got) == set(expected_lanes())
    assert sum(1 for x in got.values() if x["status"] == "OK") == 20


# ---------------------------------------------------------------------------------------------- loopback: faults


def test_fault_storm_is_retried_and_every_lane_lands_once(project, gs):
    """429 storm (no Retry-After), 500/503, a timeout, malformed JSON, an HTML maintenance page, a dropped connection
    and the token revoked mid-run: the run succeeds, nothing is lost or duplicated, no secret is printed (-vv)."""
    make_lanes_csv(project.root / "many.csv", 300, bad_every=97)
    write_block(project, gs, csv=project.root / "many.csv", batch_size=25, max_concurrency=3, requests_per_second=200,
                max_retries=8, timeout_seconds=0.5)
    gs.fail_next(6, 429, path=BATCH)
    gs.fail_next(1, 500, path=BATCH)
    gs.fail_next(1, 503, path=BATCH)
    gs.stall_next(1, 1.5, path=BATCH)
    gs.malformed_next(1, path=BATCH)
    gs.html_next(1, path=BATCH)
    gs.drop_next(1, path=BATCH)
    gs.expire_tokens_after(5)
    r = project.cli("-vv", "run", "truck_prices", env=gs_env(gs))
    assert r.code == 0, r.output[-4000:]
    got = rows(project)
    assert len(got) == 300
    assert sum(1 for x in got.values() if x["status"] == "ERROR") == 3  # the unroutable zips, as rows
    statuses = [q.status for q in gs.calls_to(BATCH)]
    assert statuses.count(429) == 6 and 500 in statuses and 503 in statuses and statuses.count(401) >= 1
    assert gs.tokens_issued >= 2, "the revoked token was not replaced"
    assert "retry" in r.stderr and "non-JSON" in r.stderr and "401, fetching a new token" in r.stderr
    assert gs.max_in_flight <= 3 + 1  # 3 workers (+ a request the server still held after a client timeout)
    assert_no_secrets(project, r, fake_secrets(gs))


def run_in_process(project: Project, fake: FakeGreenscreens, monkeypatch, block: str = "truck_prices"):
    """AirbyteManager.run, the library entry point the CLI and the Metaflow flow call (no subprocess: fast)."""
    from ingest.config import load_project
    from ingest.sync.runner import AirbyteManager

    monkeypatch.setenv(SECRET_ENV, fake.client_secret)
    return AirbyteManager(load_project(project.root / "connectors.yaml")).run(block)


def test_exhausted_retries_fail_transient_keep_checkpoints_and_the_rerun_completes(project, gs, monkeypatch):
    make_lanes_csv(project.root / "many.csv", 200)
    write_block(project, gs, csv=project.root / "many.csv", batch_size=20, max_concurrency=1, checkpoint_lanes=20, max_retries=2)
    # The first 4 batches are answered, then the API answers 503 to every batch call.
    seen = {"batches": 0}
    original = gs.handle

    def handle(method, path, query, headers, raw):
        if path == BATCH:
            seen["batches"] += 1
            if seen["batches"] > 4:
                return 503, {"code": "service_unavailable", "message": "Service unavailable"}, {}, {}
        return original(method, path, query, headers, raw)

    gs.handle = handle
    result = run_in_process(project, gs, monkeypatch)
    assert not result.ok and result.error.failure_type == "transient_error" and result.error.stream == "lane_rates"
    assert "HTTP 503" in str(result.error) and "gave up after 3 attempts" in str(result.error)
    cursor = stored_cursor(project)
    got = rows(project)
    lanes = expected_lanes(project.root / "many.csv")
    assert cursor is not None and len(got) == 80
    assert {k for k in lanes if k <= cursor["lane_id"]} <= set(got), "state ahead of data"
    assert project.scalar("SELECT status FROM _ingest_runs ORDER BY started_at DESC LIMIT 1") == "failed"

    gs.handle = original
    gs.clear_requests()
    again = run_in_process(project, gs, monkeypatch)
    assert again.ok, again.error
    assert set(rows(project)) == set(lanes)
    assert sum(q.lanes for q in gs.calls_to(BATCH)) == 120, "the rerun re-priced lanes before the cursor"
    assert_no_secrets(project, None, fake_secrets(gs))


def test_cursor_start_date_and_lookback_select_lanes_and_the_cursor_never_moves_back(project, gs, monkeypatch):
    write_block(project, gs)
    first = run_in_process(project, gs, monkeypatch)
    assert first.ok, first.error
    cursor = stored_cursor(project)
    assert cursor["pickup_date"] == "2024-03-07"
    # Late shipments: re-price the last 2 days before the cursor; the cursor must not move back.
    write_block(project, gs, lookback_days=2, start_date="2024-03-03")
    gs.clear_requests()
    second = run_in_process(project, gs, monkeypatch)
    assert second.ok, second.error
    sent = [r["pickupDateTime"][:10] for q in gs.calls_to(BATCH) for r in q.body["requests"]]
    assert sent and set(sent) == {"2024-03-05", "2024-03-06", "2024-03-07"}
    assert stored_cursor(project) == cursor
    puller = _puller(project, gs, monkeypatch, start_date="2024-03-06")
    undated, todo, skipped = puller.select(list(expected_lanes().values()), {})
    assert len(undated) == 1 and {lane.pickup_date.isoformat() for lane in todo} == {"2024-03-06", "2024-03-07"}
    assert skipped == 24 - 1 - len(todo)


def test_bad_credentials_fail_with_config_error_and_never_print_the_secret(project, gs):
    write_block(project, gs)
    wrong = "not-the-secret-5e8a1b"
    r = project.cli("run", "truck_prices", env=gs_env(gs, secret=wrong))
    assert r.code == 1
    assert "[config_error]" in r.stderr and "refused the client credentials" in r.stderr and "HTTP 401" in r.stderr
    assert not gs.calls_to(BATCH)
    assert_no_secrets(project, r, [wrong, gs.client_secret])


def test_check_reports_credentials_and_inputs(project, gs, monkeypatch):
    puller = _puller(project, gs, monkeypatch)
    assert puller.check() == (True, None)
    puller.config["client_secret"] = "wrong-secret-1234"
    ok, message = puller.check()
    assert not ok and "refused the client credentials" in message and "wrong-secret-1234" not in message
    puller = _puller(project, gs, monkeypatch)
    (project.root / "lanes.csv").unlink()
    ok, message = puller.check()
    assert not ok and "lanes.path: file not found" in message


# ---------------------------------------------------------------------------------------------- SIGKILL + rerun


@pytest.mark.timeout(300)
def test_sigkill_at_random_points_then_rerun_loses_nothing_and_duplicates_nothing(project):
    n = 1500
    make_lanes_csv(project.root / "many.csv", n)
    lanes = expected_lanes(project.root / "many.csv")
    rng = random.Random(20261127)
    kills_between_checkpoints = 0
    with FakeGreenscreens(latency=0.04) as fake:
        write_block(project, fake, csv=project.root / "many.csv", batch_size=30, max_concurrency=2, checkpoint_lanes=30)
        for attempt in range(2):
            before = len(fake.calls_to(BATCH))
            proc = start_cli(["run", "truck_prices"], project.root, env=gs_env(fake))
            # A checkpoint is one batch of 30 lanes. The first run's first commit also creates the tables, so
            # pricing runs ahead of it by a dozen batches or so: kill it later, where checkpoints have landed.
            wait_for = before + (rng.randint(18, 32) if attempt == 0 else rng.randint(3, 12))
            deadline = time.monotonic() + 60
            while len(fake.calls_to(BATCH)) < wait_for and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.05))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            cursor = stored_cursor(project)
            if cursor is None:
                continue
            got = rows(project)  # asserts one row per lane_id
            claimed = {k for k in lanes if k <= cursor["lane_id"]}
            assert claimed <= set(got), "state is ahead of the data it describes"
            if len(claimed) < n:
                kills_between_checkpoints += 1
        r = project.cli("run", "truck_prices", env=gs_env(fake))
        assert r.code == 0, r.output
        got = rows(project)
        assert set(got) == set(lanes) and all(x["status"] == "OK" for x in got.values())
        priced = sum(q.lanes for q in fake.calls_to(BATCH) if q.status == 200)
        assert priced <= n + 2 * 8 * 30, "more re-pricing than the lanes in flight at the kills"
    assert kills_between_checkpoints >= 1, "no kill landed mid-run; the test proved nothing"
    statuses = [s for (s,) in project.query("SELECT status FROM _ingest_runs ORDER BY started_at")]
    assert statuses[-1] == "succeeded"


# ---------------------------------------------------------------------------------------------- in process


def _puller(project: Project, fake: FakeGreenscreens, monkeypatch, **config):
    from ingest.config import load_project

    from .support.blocks import prepared
    from ingest.sources.pullers.truck_pricing import TruckPricingPuller

    write_block(project, fake, **config)
    monkeypatch.setenv(SECRET_ENV, fake.client_secret)
    return TruckPricingPuller(prepared(load_project(project.root / "connectors.yaml").block("truck_prices")))


def test_a_refused_batch_is_narrowed_to_the_lanes_at_fault(project, gs, monkeypatch):
    """422 naming `requests[i]` marks those lanes directly; a 422/424 that names no lane is bisected; either way the
    other lanes are priced and the bad ones become rows that explain the error."""
    from ingest.sources.pullers.lanes import lane_from_row

    puller = _puller(project, gs, monkeypatch, batch_size=8)
    client = puller._client()
    good = [lane_from_row({"pickup_date": f"2024-04-{d:02d}", "transport_type": "VAN", "origin_city": "Chicago", "origin_state": "IL",
                           "destination_city": "Dallas", "destination_state": "TX"}) for d in range(1, 9)]
    bad = good[5]
    bad.transport_type = "SPACEX"  # slipped past local validation: the API refuses the whole batch with a 422
    out = puller._price_batch(client, good, "2024-05-01T00:00:00+00:00")
    assert out[bad.lane_id]["status"] == "ERROR" and out[bad.lane_id]["error_http_code"] == 422
    assert "transportType" in out[bad.lane_id]["error_message"] and "SPACEX" in out[bad.lane_id]["error_message"]
    assert all(out[lane.lane_id]["status"] == "OK" for lane in good if lane is not bad)
    assert len(gs.calls_to(BATCH)) == 2  # the refused batch + the 7 others

    # A 424 for the whole batch (no per-lane field): bisected down to the lane at fault.
    gs.clear_requests()
    original = gs._batch

    def batch_with_424(body):
        if any(r["stops"][0].get("zip") == "66666" for r in body["requests"]):
            return 424, {"code": "distance_calculation_error", "message": "Unable to calculate distance between zips 66666, reason: no route"}
        return original(body)

    gs._batch = batch_with_424
    for lane in good:
        lane.transport_type = "VAN"
    good[2].origin["zip"] = "66666"
    out = puller._price_batch(client, good, "2024-05-01T00:00:00+00:00")
    assert out[good[2].lane_id]["error_http_code"] == 424 and "Unable to calculate distance" in out[good[2].lane_id]["error_message"]
    assert "dependency failed" in out[good[2].lane_id]["error_message"]
    assert sum(1 for r in out.values() if r["status"] == "OK") == 7
    assert len(gs.calls_to(BATCH)) <= 1 + 2 * 3  # log2(8) levels
    client.close()


def test_item_errors_5xx_are_retried_4xx_are_kept_and_single_lane_mode_explains(project, gs, monkeypatch):
    puller = _puller(project, gs, monkeypatch, batch_size=10)
    client = puller._client()
    lanes = [lane for lane in expected_lanes().values() if not lane.problem]
    gs.item_error_next(3, 500)
    out = puller._price_batch(client, lanes[:10], "t")
    assert all(r["status"] == "OK" for r in out.values())
    assert len(gs.calls_to(BATCH)) == 2 and client.stats.retry_reasons["item-error"] == 1
    client.close()

    puller = _puller(project, gs, monkeypatch, batch_size=1)
    client = puller._client()
    gs.clear_requests()
    unroutable = next(lane for lane in lanes if lane.origin["zip"] == "99999")
    records = puller._price(client, [lanes[0], unroutable])
    assert [r["status"] for r in records] == ["OK", "ERROR"]
    assert records[1]["error_http_code"] == 424 and records[1]["error_code"] == "distance_calculation_error"
    assert [q.path for q in gs.requests if q.path != gsf.TOKEN_PATH] == [gsf.RATES_PATH] * 2
    client.close()


def test_concurrency_is_bounded_and_the_rate_limit_holds(project, monkeypatch):
    with FakeGreenscreens(latency=0.03) as fake:
        make_lanes_csv(project.root / "many.csv", 400)
        puller = _puller(project, fake, monkeypatch, csv=project.root / "many.csv", batch_size=10, max_concurrency=3,
                         requests_per_second=40)
        from ingest.sources.pullers.base import ordered_map

        client = puller._client()
        lanes = sorted(expected_lanes(project.root / "many.csv").values(), key=lambda lane: lane.lane_id)
        batches = [lanes[i:i + 10] for i in range(0, 400, 10)]
        started = time.monotonic()
        results = list(ordered_map(lambda b: puller._price(client, b), batches, 3, cancelled=client.cancelled))
        elapsed = time.monotonic() - started
        client.close()
    assert [r[0]["lane_id"] for r in results] == [b[0].lane_id for b in batches], "results out of input order"
    assert fake.max_in_flight <= 3
    arrivals = [q.at for q in fake.calls_to(BATCH)]
    rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert len(arrivals) == 40 and rate <= 40 * 1.1, f"{rate:.1f} requests/s over a 40/s limit"
    assert elapsed >= 39 / 40 * 0.9


def test_warehouse_query_errors_are_config_errors(project, gs, monkeypatch):
    from ingest.config import load_project
    from ingest.sync.runner import AirbyteManager

    write_block(project, gs, lanes=json.dumps({"from": "warehouse", "query": "SELECT * FROM no_such_table"}), csv=None)
    monkeypatch.setenv(SECRET_ENV, gs.client_secret)
    result = AirbyteManager(load_project(project.root / "connectors.yaml")).run("truck_prices")
    assert not result.ok and result.error.failure_type == "config_error"
    assert "lanes.query: the warehouse query failed" in str(result.error) and "no_such_table" in str(result.error)
    assert not gs.requests
