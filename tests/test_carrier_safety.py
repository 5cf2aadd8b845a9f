"""The `carrier_safety` puller (FMCSA QCMobile) end to end, plus the shared HTTP plumbing (pullers/http.py).

* cassette: `ingest run carrier_safety` replayed from fixtures/cassettes/fmcsa/ (recorded by
  `python -m tests.fakes.fake_fmcsa record` from the LOCAL FAKE, not from the real QCMobile service);
* loopback: tests/fakes/fake_fmcsa.py in this process: carriers from a warehouse table through a fault storm
  (429 with Retry-After, 5xx, a maintenance page served with 200, a timeout, a dropped connection, malformed JSON)
  at -vv, a bad webKey, SIGKILL + resume of an unfinished snapshot;
* in process: pacing (achieved requests/s vs the limit), bounded concurrency, snapshot planning, parsing.
The webKey travels in the query string: every CLI test checks it never reaches stdout, stderr or a table.
"""
from __future__ import annotations

import datetime as dt
import json
import random
import signal
import subprocess
import threading
import time

import duckdb
import pytest
import yaml

from .support.cli import CliResult, Project, start_cli
from .fakes import fake_fmcsa as ff
from .fakes.fake_fmcsa import FakeFMCSA
from .support.net import MAINTENANCE_HTML, closed_port
from .support.pullers import CARRIER_STREAMS as STREAMS, KEY_ENV, assert_comments_match_schema, assert_no_secrets, puller_catalog
from .support.pullers import carrier_table as table
from .support.pullers import write_carrier_block as write_block

@pytest.fixture
def fmcsa():
    with FakeFMCSA() as fake:
        yield fake


def stored_states(project: Project) -> dict[str, dict]:
    rows = project.query("SELECT state_key, state FROM _ingest_state WHERE block = 'carrier_safety'") if project.db.exists() else []
    return {k: json.loads(v)["stream"]["stream_state"] for k, v in rows}


# ---------------------------------------------------------------------------------------------- unit: plumbing + parsing


def test_scrub_masks_the_webkey_in_urls_errors_and_logs():
    from ingest.secrets import REDACTOR
    from ingest.sources.pullers.http import HttpClient, HttpPolicy, RetryableHTTPError, scrub

    url = "https://mobile.fmcsa.dot.gov/qc/services/carriers/1?webKey=abc123SECRET&x=1"
    assert scrub(url) == "https://mobile.fmcsa.dot.gov/qc/services/carriers/1?webKey=****&x=1"
    assert scrub("GET /token?client_secret=s3cr3t&access_token=tok") == "GET /token?client_secret=****&access_token=****"
    REDACTOR.add("registered-secret-9876")
    assert "registered-secret-9876" not in scrub("in a body: registered-secret-9876")
    # A connection error's message embeds the URL; what we raise must not.
    port = closed_port()
    client = HttpClient(f"http://127.0.0.1:{port}/qc/services", HttpPolicy(max_retries=1, backoff_base=0.001, timeout=1), name="t")
    with pytest.raises(RetryableHTTPError) as err:
        client.request("GET", "carriers/1", params={"webKey": "abc123SECRET"})
    assert "abc123SECRET" not in str(err.value) and "connection failed" in str(err.value)
    assert "gave up after 2 attempts" in str(err.value) and "/qc/services/carriers/1" in str(err.value)


def test_backoff_is_exponential_jittered_capped_and_honours_retry_after():
    from ingest.sources.pullers.http import backoff_seconds

    random.seed(1)
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (8, 30.0)):
        waits = [backoff_seconds(attempt, 1.0, 30.0) for _ in range(200)]
        assert ceiling / 2 <= min(waits) and max(waits) <= ceiling and len(set(waits)) > 100  # jittered
    assert backoff_seconds(1, 0.1, 30.0, retry_after=5) == 5
    assert backoff_seconds(1, 0.1, 30.0, retry_after=500) == 30.0


def test_rate_limiter_paces_all_threads_and_a_pause_stops_everyone():
    from ingest.sources.pullers.pacing import RateLimiter

    limiter = RateLimiter(50)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(10):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    stamps.sort()
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    # Slots are 20 ms apart; what a thread observes after waking jitters (13 ms seen on a loaded 2-core machine), so
    # check windows, not gaps: a gap only has to show no two threads went through one slot (a burst: ~0.1 ms apart).
    assert len(stamps) == 40 and min(gaps) >= 0.002 and (stamps[-1] - stamps[0]) >= 39 / 50 * 0.95
    assert max(sum(1 for t in stamps if s <= t < s + 0.2) for s in stamps) <= 0.2 * 50 + 1
    limiter.pause(0.2)
    t0 = time.monotonic()
    limiter.acquire()
    assert time.monotonic() - t0 >= 0.18


def test_values_in_mixed_formats_and_both_field_name_styles_are_parsed_without_failing():
    from ingest.sources.pullers.fmcsa import basic_rows, carrier_row, parse_dot

    live, doc = ff.carrier(2004), ff.carrier(331)
    assert "allowedToOperate" in live and "allowToOperate" in doc
    a, b = carrier_row(2004, "2025-01-15", live, None), carrier_row(331, "2025-01-15", doc, None)
    assert a.keys() == b.keys()
    assert a["allowed_to_operate"] is True and b["allowed_to_operate"] is True
    assert a["phy_zip"] == "93721" and b["phy_zip"] == "93721"
    assert a["safety_rating_date"] == live["safetyRatingDate"]  # ISO
    assert b["safety_rating_date"] == dt.datetime.strptime(doc["safetyRatingDate"], "%m/%d/%Y").date().isoformat()  # MM/DD/YYYY
    assert a["bipd_insurance_on_file"] == float(live["bipdInsuranceOnFile"]) and a["carrier_operation_code"] == "A"
    assert (a["extra"] or {}).get("ein") == live["ein"] and "allowedToOperate" not in (a["extra"] or {})
    broken = carrier_row(7007, "2025-01-15", ff.carrier(7007), None)  # "00/00/0000", totalDrivers "N/A"
    assert broken["safety_rating_date"] is None and broken["unparsed"] == {"safety_rating_date": "00/00/0000"}
    assert broken["total_drivers"] is None and broken["out_of_service"] is True and broken["out_of_service_date"]

    words = basic_rows(331, "2025-01-15", {"content": ff.basics(331)})
    assert {r["basic"] for r in words} == {"Unsafe Driving", "HOS Compliance", "Driver Fitness", "Controlled Substances/Alcohol",
                                           "Vehicle Maintenance"}
    assert {r["percentile_status"] for r in words} <= {"numeric", "insufficient data", "inconclusive", "no violations"}
    assert all((r["percentile"] is None) == (r["percentile_status"] != "numeric") for r in words)
    assert all(r["run_date"] == "2024-01-26" for r in words)
    wrapped = basic_rows(2004, "2025-01-15", {"content": ff.basics(2004)})
    assert {r["basic"] for r in wrapped} == {r["basic"] for r in words} and all(r["basic_id"] in range(11, 16) for r in wrapped)
    pct = {r["percentile_status"] for r in wrapped}
    assert pct <= {"numeric", "not public"}
    assert parse_dot("USDOT 4242") == 4242 and parse_dot(125550.0) == 125550 and parse_dot("n/a") is None and parse_dot(-3) is None


def test_snapshot_planning_resumes_unfinished_and_skips_complete(monkeypatch):
    from ingest.sources.pullers import models
    from ingest.sources.pullers import state_message as sm
    from ingest.sources.pullers.carrier_safety import CarrierSafetyPuller
    from ingest.sources.protocol import state_to_dict

    m = models()

    class Block:
        config = {"web_key": "k", "carriers": {"from": "list", "dot_numbers": [1]}}
        spec = None

    puller = CarrierSafetyPuller(Block())
    wanted = {name: type("CS", (), {"sync_mode": m.SyncMode.incremental})() for name in ("snapshots", "basics")}
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()

    def states(blob_a, blob_b=None):
        return [state_to_dict(sm("snapshots", blob_a).state), state_to_dict(sm("basics", blob_b or blob_a).state)]

    assert puller._plan(wanted, []) == (today, None, False, None)
    plan = puller._plan(wanted, states({"snapshot_date": "2024-01-02", "last_dot_number": 50, "complete": False},
                                       {"snapshot_date": "2024-01-02", "last_dot_number": 40, "complete": False}))
    assert plan[:3] == ("2024-01-02", 40, False) and "resuming" in plan[3]  # the slower stream decides
    assert puller._plan(wanted, states({"snapshot_date": today, "last_dot_number": 9, "complete": True}))[:3] == (today, 9, True)
    assert puller._plan(wanted, states({"snapshot_date": "2024-01-02", "last_dot_number": 9, "complete": True}))[:3] == (today, None, False)
    full = {"snapshots": type("CS", (), {"sync_mode": m.SyncMode.full_refresh})()}
    assert puller._plan(full, states({"snapshot_date": today, "last_dot_number": 9, "complete": True}))[:3] == (today, None, False)


# ---------------------------------------------------------------------------------------------- cassette


def test_cassette_is_sanitized_and_documented():
    text = ff.CARRIERS.read_text()
    data = yaml.safe_load(text)
    uris = [i["request"]["uri"] for i in data["interactions"]]
    assert len(uris) == 8 * 4 + 2 and all(u.startswith(ff.SITE + ff.PREFIX + "/carriers/") and "webKey=****" in u for u in uris)
    assert ff.RECORDING_KEY not in text and "127.0.0.1" not in text
    readme = (ff.CASSETTE_DIR / "README.md").read_text()
    assert "not from the real QCMobile" in readme and "fake_fmcsa" in readme


def test_cassette_replay_lands_typed_streams_and_reports_unknown_carriers(project):
    write_block(project)
    proc = subprocess.run(ff.cassette_command(ff.CARRIERS, "run", "carrier_safety"), cwd=project.root,
                          env=ff.cassette_env("replay-key-0000"), capture_output=True, text=True, timeout=240)
    r = CliResult(proc.returncode, proc.stdout, proc.stderr)
    assert r.code == 0, r.output
    snaps = table(project, "snapshots")
    assert [s["dot_number"] for s in snaps] == [88, 331, 731, 2004, 4242, 7007, 125550, 1048576]
    assert {s["snapshot_date"] for s in snaps} == {dt.date(2025, 1, 15)}
    assert all(s["legal_name"] and s["allowed_to_operate"] is not None and s["phy_zip"] for s in snaps)  # both name styles
    assert all(s["_ingest_rejected"] is None for s in snaps)
    types = dict(project.query("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'carrier_safety_snapshots'"))
    assert types["safety_rating_date"] == "DATE" and types["total_drivers"] == "BIGINT" and types["allowed_to_operate"] == "BOOLEAN"
    assert types["driver_oos_rate"] == "DOUBLE" and types["retrieved_at"] == "TIMESTAMP WITH TIME ZONE" and types["extra"] == "JSON"
    basics = table(project, "basics", "dot_number, basic")
    assert len(basics) == 8 * 5 and all(b["basic"] for b in basics)
    words = {b["percentile_status"] for b in basics}
    assert "numeric" in words and words & {"insufficient data", "inconclusive", "no violations", "not public"}
    assert len(table(project, "out_of_service")) == 8 * 3 and len(table(project, "authority")) >= 8
    errors = {e["input"]: e["reason"] for e in table(project, "lookup_errors", "input")}
    assert errors == {"5404": "not_found", "12404": "not_found", "n/a": "invalid_dot_number"}
    assert "2 of 10 DOT numbers not found in FMCSA (5404, 12404)" in r.stderr and "WARNING" in r.stderr
    states = stored_states(project)
    assert set(states) == set(STREAMS)
    assert all(s == {"snapshot_date": "2025-01-15", "last_dot_number": 1048576, "complete": True} for s in states.values())
    assert project.scalar("SELECT count(*) FROM _ingest_tables WHERE block = 'carrier_safety' AND write_mode = 'dedup'") == 5
    for name, (schema, _, _) in puller_catalog("carrier_safety").items():  # issue 13: the schema's words are the comments
        assert_comments_match_schema(project, f"carrier_safety_{name}", schema)
    assert_no_secrets(project, r, ["replay-key-0000", ff.RECORDING_KEY])


# ---------------------------------------------------------------------------------------------- loopback


def test_fault_storm_with_carriers_from_the_warehouse(project, fmcsa):
    """DOT numbers from a table in the block's DuckDB file; 429s (with Retry-After), 503, a maintenance page with
    status 200, a timeout, a dropped connection and malformed JSON are all retried; nothing secret is printed (-vv)."""
    con = duckdb.connect(str(project.db))
    con.execute("CREATE TABLE carriers_we_use (usdot VARCHAR, active BOOLEAN)")
    con.executemany("INSERT INTO carriers_we_use VALUES (?, ?)", [[str(1000 + 7 * i), True] for i in range(30)]
                    + [["1404", True], ["oops", True], ["999999", False]])
    con.close()
    write_block(project, fmcsa, carriers=json.dumps({"from": "warehouse", "query": "SELECT usdot FROM carriers_we_use WHERE active"}),
                max_concurrency=3, requests_per_second=300, max_retries=8, timeout_seconds=0.5, checkpoint_every=5)
    fmcsa.fail_next(4, 429, headers={"Retry-After": "0.05"})
    fmcsa.fail_next(2, 503)
    fmcsa.html_next(2)
    fmcsa.stall_next(1, 1.2)
    fmcsa.drop_next(1)
    fmcsa.malformed_next(1)
    r = project.cli("-vv", "run", "carrier_safety", env={KEY_ENV: fmcsa.web_key})
    assert r.code == 0, r.output[-4000:]
    snaps = table(project, "snapshots")
    assert sorted(s["dot_number"] for s in snaps) == [1000 + 7 * i for i in range(30)]
    assert {e["input"]: e["reason"] for e in table(project, "lookup_errors", "input")} == {"1404": "not_found", "oops": "invalid_dot_number"}
    assert "999999" not in {str(q.path.split("/")[4]) for q in fmcsa.requests}
    assert len(table(project, "basics")) == 30 * 5
    statuses = [q.status for q in fmcsa.requests]
    assert statuses.count(429) == 4 and statuses.count(503) == 2
    assert "non-JSON" in r.stderr and "maintenance" in r.stderr and "retry" in r.stderr
    assert fmcsa.max_in_flight <= 3 + 1
    assert all(q.query.get("webKey") == fmcsa.web_key for q in fmcsa.requests if q.status)
    assert "webKey=****" in r.stderr or "webKey" not in r.stderr
    assert_no_secrets(project, r, [fmcsa.web_key])


def test_bad_webkey_is_a_config_error_and_the_key_is_never_printed(project, fmcsa):
    write_block(project, fmcsa)
    wrong = "wrong-webkey-51ab9e"
    r = project.cli("run", "carrier_safety", env={KEY_ENV: wrong})
    assert r.code == 1 and "[config_error]" in r.stderr and "FMCSA refused the webKey" in r.stderr and "Webkey not found" in r.stderr
    assert "${FMCSA_WEB_KEY}" in r.stderr  # which secret to fix
    assert len(fmcsa.requests) == 1, "a bad key must not be retried or tried on every carrier"
    assert_no_secrets(project, r, [wrong, fmcsa.web_key])


@pytest.mark.timeout(300)
def test_sigkill_then_rerun_resumes_the_snapshot_without_loss_or_duplicates(project, monkeypatch):
    dots = sorted(random.Random(7).sample(range(10_000, 99_999), 120))
    kills_mid_snapshot = 0
    with FakeFMCSA(latency=0.02) as fake:
        write_block(project, fake, carriers=json.dumps({"from": "list", "dot_numbers": dots}), max_concurrency=2,
                    requests_per_second=200, checkpoint_every=5, streams=("snapshots", "basics"), snapshot_date=None)
        rng = random.Random(11)
        for _ in range(2):
            before = len(fake.requests)
            proc = start_cli(["run", "carrier_safety"], project.root, env={KEY_ENV: fake.web_key})
            target = before + rng.randint(20, 60)  # a checkpoint is 5 carriers = 10 requests
            deadline = time.monotonic() + 60
            while len(fake.requests) < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            states = stored_states(project)
            if not states:
                continue
            for name, st in states.items():
                landed = {r["dot_number"] for r in table(project, name)}
                claimed = {d for d in dots if st["last_dot_number"] is not None and d <= st["last_dot_number"]}
                assert claimed <= landed, f"{name}: state is ahead of the data it describes"
            snaps = [r["dot_number"] for r in table(project, "snapshots")]
            assert len(snaps) == len(set(snaps)), "duplicate carriers"
            if not all(st["complete"] for st in states.values()):
                kills_mid_snapshot += 1
        resume_from = min((st["last_dot_number"] or 0) for st in stored_states(project).values()) if stored_states(project) else 0
        fake.clear_requests()
        r = project.cli("run", "carrier_safety", env={KEY_ENV: fake.web_key})
        assert r.code == 0, r.output
        first_fetched = int(fake.requests[0].path.split("/")[4])
        assert first_fetched > resume_from, "the rerun started over instead of resuming"
        snaps = table(project, "snapshots")
        assert sorted(s["dot_number"] for s in snaps) == [d for d in dots if d % 1000 != 404]
        basics = table(project, "basics")
        assert len(basics) == 5 * len(snaps) and len({(b["dot_number"], b["basic"]) for b in basics}) == len(basics)

        # The snapshot is complete: another run today fetches nothing.
        fake.clear_requests()
        from ingest.config import load_project
        from ingest.sync.runner import AirbyteManager

        monkeypatch.setenv(KEY_ENV, fake.web_key)
        again = AirbyteManager(load_project(project.root / "connectors.yaml")).run("carrier_safety")
        assert again.ok and not fake.requests and again.streams["snapshots"].records == 0
    assert kills_mid_snapshot >= 1, "no kill landed mid-snapshot; the test proved nothing"


# ---------------------------------------------------------------------------------------------- in process


def test_pacing_holds_the_rate_limit_with_bounded_concurrency(project, monkeypatch):
    from ingest.config import load_project
    from ingest.sync.runner import AirbyteManager

    with FakeFMCSA(latency=0.01) as fake:
        write_block(project, fake, carriers=json.dumps({"from": "list", "dot_numbers": list(range(500, 530))}),
                    max_concurrency=4, requests_per_second=60, streams=("snapshots", "basics"))
        monkeypatch.setenv(KEY_ENV, fake.web_key)
        result = AirbyteManager(load_project(project.root / "connectors.yaml")).run("carrier_safety")
        assert result.ok, result.error
        arrivals = sorted(q.at for q in fake.requests)
        achieved = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
        # Never faster than the limit (correctness). How close it gets to the limit is speed, measured in
        # bench/pullers.py: on a busy 2-core machine a lower bound here only measures the machine.
        assert len(arrivals) == 60 and achieved <= 60 * 1.05, f"{achieved:.1f}/s against a 60/s limit"
        assert fake.max_in_flight <= 4


def test_a_maintenance_page_that_never_ends_fails_transient_and_keeps_checkpoints(project, monkeypatch):
    from ingest.config import load_project
    from ingest.sync.runner import AirbyteManager

    with FakeFMCSA() as fake:
        write_block(project, fake, carriers=json.dumps({"from": "list", "dot_numbers": list(range(100, 112))}),
                    max_concurrency=1, checkpoint_every=2, max_retries=2, streams=("snapshots",))
        original = fake.handle

        def handle(method, path, query, headers, raw):
            if path.endswith("/carriers/106"):
                return 200, MAINTENANCE_HTML, {"Content-Type": "text/html; charset=utf-8"}, {}
            return original(method, path, query, headers, raw)

        fake.handle = handle
        monkeypatch.setenv(KEY_ENV, fake.web_key)
        result = AirbyteManager(load_project(project.root / "connectors.yaml")).run("carrier_safety")
    assert not result.ok and result.error.failure_type == "transient_error"
    assert "non-JSON body" in str(result.error) and "carriers/106" in str(result.error) and fake.web_key not in str(result.error)
    assert stored_states(project)["snapshots"]["last_dot_number"] == 105
    assert [s["dot_number"] for s in table(project, "snapshots")] == list(range(100, 106))
