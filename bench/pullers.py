#!/usr/bin/env python
"""Puller benchmarks against loopback fakes (tests/fakes/), through the real runner (AirbyteManager.run → DuckDB).

1. truck_pricing: price `--lanes` distinct lanes (default 10,000) against FakeGreenscreens with `--latency` per
   request (default 50 ms), two ways, in the same run:
     batched   batch-rates with 1,000 lanes per call, max_concurrency 4, requests_per_second 10 (the defaults a
               block would use for a backfill);
     baseline  lane at a time: /v3/prediction/rates, one lane per call, max_concurrency 1, no client rate limit.
   Reported: HTTP calls the fake answered (token calls included), wall time of the whole run (read, price, land,
   checkpoints), lanes/s, and the ratios. Both runs must land every lane exactly once with the same prices.
   `--baseline-lanes N` prices only N lanes lane-at-a-time and extrapolates linearly (labelled as such): the full
   baseline takes ~lanes x (latency + ~5 ms).

2. carrier_safety: `--carriers` DOT numbers (default 60) with all five streams (4 requests per known carrier),
   `requests_per_second` = `--rate` (default 5, the issue-10 case) = the fake's limit: at most that many requests in
   any 1-second window, else 429 with Retry-After (whole seconds); max_concurrency 4, fake latency 20 ms. Two runs in
   the same invocation: the adaptive pacer (pullers/pacing.RateLimiter) and the baseline, the fixed pacer it replaced.
   Reported per run: requests, 429s, answered requests/s between the first and the last request vs the limit, the
   busiest 1-second window, wall time.

    .venv/bin/python bench/pullers.py                      # both, full size (~10 min: the baseline is the slow part)
    .venv/bin/python bench/pullers.py --baseline-lanes 1000 # extrapolated baseline (~1.5 min)
    .venv/bin/python bench/pullers.py --only pricing|carriers
    .venv/bin/python bench/pullers.py --only carriers --rate 100 --carriers 1000   # a fast API
Exit code 0 when every correctness check passed and the adaptive pacer kept its promise at the limit (at most 5
429s, answered requests >= 0.9 x the limit), else 1.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("METAFLOW_USER", "bench")


def _project(root: Path, block_yaml: str) -> Path:
    path = root / "connectors.yaml"
    path.write_text("defaults:\n  duckdb: {path: warehouse.duckdb}\n  batch: {max_records: 10000}\nconnectors:\n" + block_yaml)
    return path


def _run(config: Path, block: str):
    from ingest.config import load_project
    from ingest.sync.runner import AirbyteManager

    started = time.monotonic()
    result = AirbyteManager(load_project(config)).run(block)
    return result, time.monotonic() - started


def _lanes_csv(path: Path, n: int) -> None:
    cities = [("Chicago", "IL", "60611"), ("Dallas", "TX", "75204"), ("Atlanta", "GA", "30303"), ("Denver", "CO", "80202"),
              ("Fresno", "CA", "93721"), ("Seattle", "WA", "98101"), ("Omaha", "NE", "68102"), ("Memphis", "TN", "38103")]
    import datetime as dt

    lines = ["shipment_id,pickup_date,transport_type,origin_city,origin_state,origin_zip,destination_city,destination_state,destination_zip"]
    for i in range(n):
        o, d = cities[i % 8], cities[(i // 8 + 1 + i) % 8]
        if o == d:
            d = cities[(cities.index(d) + 1) % 8]
        day = dt.date(2024, 1, 1) + dt.timedelta(days=i // 100)
        lines.append(f"S{i},{day},{('VAN', 'REEFER', 'FLATBED')[i % 3]},{o[0]},{o[1]},{o[2]},{d[0]},{d[1]},{d[2]}-{i:05d}")
    path.write_text("\n".join(lines) + "\n")


PRICING_BLOCK = """\
  bench_prices:
    team: pricing
    puller: truck_pricing
    config:
      base_url: {base_url}
      client_id: {client_id}
      client_secret: ${{BENCH_GS_SECRET}}
      lanes: {{from: csv, path: lanes.csv}}
      batch_size: {batch_size}
      max_concurrency: {concurrency}
      requests_per_second: {rps}
      checkpoint_lanes: 1000
    streams: [{{name: lane_rates}}]
"""


def bench_pricing(lanes: int, latency: float, baseline_lanes: int) -> bool:
    import duckdb

    from tests.fakes.fake_greenscreens import BATCH_PATH, RATES_PATH, TOKEN_PATH, FakeGreenscreens

    results = {}
    ok = True
    for name, n, batch_size, concurrency, rps in (("batched", lanes, 1000, 4, 10), ("baseline", baseline_lanes, 1, 1, 100000)):
        with FakeGreenscreens(latency=latency) as fake, tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
            root = Path(tmp)
            _lanes_csv(root / "lanes.csv", n)
            config = _project(root, PRICING_BLOCK.format(base_url=fake.base_url, client_id=fake.client_id,
                                                         batch_size=batch_size, concurrency=concurrency, rps=rps))
            os.environ["BENCH_GS_SECRET"] = fake.client_secret
            print(f"  {name}: pricing {n:,} lanes ...", file=sys.stderr, flush=True)
            result, seconds = _run(config, "bench_prices")
            con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
            total, distinct, okrows = con.execute(
                "SELECT count(*), count(DISTINCT lane_id), count(*) FILTER (status = 'OK') FROM bench_prices_lane_rates").fetchone()
            prices = dict(con.execute("SELECT lane_id, target_buy_rate FROM bench_prices_lane_rates").fetchall())
            con.close()
            calls = {p: len(fake.calls_to(p)) for p in (TOKEN_PATH, BATCH_PATH, RATES_PATH)}
            correct = result.ok and total == distinct == okrows == n
            ok &= correct
            results[name] = {"lanes": n, "seconds": seconds, "calls": sum(calls.values()), "detail": calls, "prices": prices,
                             "correct": correct}
    b, s = results["batched"], results["baseline"]
    same = all(b["prices"].get(k) == v for k, v in s["prices"].items())
    ok &= same
    scale = lanes / s["lanes"]
    base_calls, base_seconds = s["calls"] * scale if scale != 1 else s["calls"], s["seconds"] * scale
    label = "" if scale == 1 else f" (measured on {s['lanes']:,} lanes, x{scale:g} extrapolated)"
    print(f"\ntruck_pricing: {lanes:,} lanes, fake latency {latency * 1000:.0f} ms per request")
    print(f"  {'':10} {'HTTP calls':>11} {'wall s':>9} {'lanes/s':>9}")
    print(f"  {'batched':10} {b['calls']:>11,} {b['seconds']:>9.2f} {lanes / b['seconds']:>9,.0f}   "
          f"(token {b['detail'][TOKEN_PATH]}, batch-rates {b['detail'][BATCH_PATH]}; batch 1000, concurrency 4, 10 req/s)")
    print(f"  {'baseline':10} {base_calls:>11,.0f} {base_seconds:>9.2f} {lanes / base_seconds:>9,.0f}   "
          f"(rates one lane per call, concurrency 1){label}")
    print(f"  → {base_calls / b['calls']:,.0f}x fewer calls, {base_seconds / b['seconds']:,.1f}x faster; "
          f"same prices: {same}; every lane landed once: {b['correct'] and s['correct']}")
    return ok


CARRIER_BLOCK = """\
  bench_carriers:
    team: compliance
    puller: carrier_safety
    config:
      base_url: {base_url}
      web_key: ${{BENCH_FMCSA_KEY}}
      carriers: {{from: warehouse, query: "SELECT dot FROM bench_carriers_in ORDER BY dot"}}
      snapshot_date: "2025-01-15"
      requests_per_second: {rate}
      max_concurrency: 4
      checkpoint_every: 100
    streams: [{{name: snapshots}}, {{name: basics}}, {{name: out_of_service}}, {{name: authority}}, {{name: lookup_errors}}]
"""


class FixedPacer:
    """The baseline: the pacer before issue 10 (fixed slots 1/rate apart; a 429 only pushes the next free slot out,
    threads already waiting for a slot still send on their old schedule; the pace never changes)."""

    def __init__(self, rate: float | None):
        import threading

        self.interval = 1.0 / rate if rate else 0.0
        self.limit, self.pace, self.clock = rate, rate, time.monotonic
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self, cancelled=None) -> float:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        wait = slot - now
        if wait > 0:
            time.sleep(wait)
        return max(wait, 0.0)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)

    def throttled(self, sent_at: float, pause: float | None) -> bool:
        self.pause(pause or 0.0)
        return False


def _carriers_once(dots: list[int], rate: float, pacer) -> dict:
    """One carrier_safety run against a fake that allows `rate` requests in any 1-second window (429 + Retry-After
    in whole seconds beyond it), the block configured at exactly that limit."""
    import duckdb

    from ingest.sources.pullers import http
    from tests.fakes.fake_fmcsa import FakeFMCSA

    original = http.RateLimiter
    http.RateLimiter = pacer  # the pacer every HttpClient of this run builds
    try:
        with FakeFMCSA(latency=0.02, rate_limit=rate) as fake, tempfile.TemporaryDirectory(prefix="bench-fmcsa-") as tmp:
            root = Path(tmp)
            con = duckdb.connect(str(root / "warehouse.duckdb"))
            con.execute("CREATE TABLE bench_carriers_in (dot BIGINT)")
            con.executemany("INSERT INTO bench_carriers_in VALUES (?)", [[d] for d in dots])
            con.close()
            config = _project(root, CARRIER_BLOCK.format(base_url=fake.base_url, rate=rate))
            os.environ["BENCH_FMCSA_KEY"] = fake.web_key
            result, seconds = _run(config, "bench_carriers")
            con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
            snaps = con.execute("SELECT count(*), count(DISTINCT dot_number) FROM bench_carriers_snapshots").fetchone()
            unknown = con.execute("SELECT count(*) FROM bench_carriers_lookup_errors").fetchone()[0]
            con.close()
            requests = sorted((q.at, q.status) for q in fake.requests)
    finally:
        http.RateLimiter = original
    known = sum(1 for d in dots if d % 1000 != 404)
    accepted = [at for at, status in requests if status != 429]
    span = requests[-1][0] - requests[0][0]
    return {
        "requests": len(requests), "429": len(requests) - len(accepted), "span": span, "seconds": seconds,
        # What the limit is about: answered requests per second, first request to last.
        "achieved": (len(accepted) - 1) / span,
        "busiest": max(sum(1 for t in accepted[i:i + int(rate) + 2] if t - a < 1.0) for i, a in enumerate(accepted)),
        "correct": result.ok and snaps == (known, known) and unknown == len(dots) - known,
        "rows": sum(r.records for r in result.streams.values()),
    }


def bench_carriers(carriers: int, rate: float) -> bool:
    import random

    from ingest.sources.pullers.pacing import RateLimiter

    dots = sorted(random.Random(3).sample(range(10_000, 3_000_000), carriers))
    runs = {}
    for name, pacer in (("adaptive", RateLimiter), ("fixed", FixedPacer)):
        print(f"  carrier_safety ({name} pacer): {carriers:,} carriers at {rate:g} req/s ...", file=sys.stderr, flush=True)
        runs[name] = _carriers_once(dots, rate, pacer)
    print(f"\ncarrier_safety: {carriers:,} carriers, 5 streams (4 requests per known carrier), requests_per_second {rate:g} "
          f"= the fake's limit ({rate:g} requests in any 1-s window; 429 + Retry-After beyond), max_concurrency 4, latency 20 ms")
    print(f"  {'pacer':9} {'requests':>9} {'429s':>5} {'429 %':>6} {'answered/s':>11} {'x limit':>8} {'busiest 1 s':>12} {'run s':>7}")
    for name, m in runs.items():
        print(f"  {name:9} {m['requests']:>9,} {m['429']:>5} {100 * m['429'] / m['requests']:>5.1f}% {m['achieved']:>11.2f} "
              f"{m['achieved'] / rate:>8.3f} {m['busiest']:>12} {m['seconds']:>7.1f}")
    a, f = runs["adaptive"], runs["fixed"]
    print(f"  → adaptive: {a['429']} x 429 (fixed: {f['429']}), {a['achieved'] / rate:.3f} x the limit "
          f"(fixed: {f['achieved'] / rate:.3f}); every carrier landed once: {a['correct'] and f['correct']}")
    return a["correct"] and f["correct"] and a["429"] <= 5 and a["achieved"] >= 0.9 * rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lanes", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--baseline-lanes", type=int, default=None, help="lanes priced lane-at-a-time (default: --lanes)")
    parser.add_argument("--carriers", type=int, default=60)
    parser.add_argument("--rate", type=float, default=5.0, help="carrier_safety requests_per_second = the fake's limit")
    parser.add_argument("--only", choices=("pricing", "carriers"))
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from ingest.sources.pullers import models

    models()  # import the CDK (~3 s) before anything is timed
    ok = True
    if args.only in (None, "pricing"):
        ok &= bench_pricing(args.lanes, args.latency, args.baseline_lanes or args.lanes)
    if args.only in (None, "carriers"):
        ok &= bench_carriers(args.carriers, args.rate)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
