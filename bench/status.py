#!/usr/bin/env python
"""`ingest status` on a large project: 1,000 blocks with 50 loads each (issue 10: under 5 s).

The project and its ledger are generated straight into a DuckDB file (tests/support/ledger.py: one stream per block,
50 data_landed events each, every 10th block failing, every 100th with a dead `running` run). Each repetition times,
as a user runs them, through the real CLI in a fresh subprocess:
  list     THE BASELINE: `ingest list` on the same connectors.yaml (interpreter start, imports, config load; no
           warehouse) — what any command costs on this config;
  status   `ingest status --json`.
Both interleaved (order rotated per repetition); medians reported, with status/list and status minus list (the cost
of reading the ledger). Exit 0 when the median status time is under --target seconds, else 1.

Usage: python bench/status.py [--blocks 1000] [--loads 50] [--repeat 5] [--target 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.ledger import write_config, write_ledger  # noqa: E402


def timed(args: list[str], cwd: Path) -> tuple[float, int]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ingest.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    took = time.perf_counter() - started
    if "Traceback" in proc.stderr:
        sys.exit(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return took, len(proc.stdout.splitlines())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=1000)
    parser.add_argument("--loads", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--target", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ingest-bench-status-") as tmp:
        root = Path(tmp)
        write_config(root, args.blocks)
        started = time.perf_counter()
        write_ledger(root / "warehouse.duckdb", args.blocks, args.loads)
        print(f"ledger: {args.blocks} blocks x {args.loads} loads = {args.blocks * args.loads:,} events "
              f"(generated in {time.perf_counter() - started:.1f}s)")
        times: dict[str, list[float]] = {"list": [], "status": []}
        cases = [("list", ["list"]), ("status", ["status", "--json"])]
        for rep in range(args.repeat):
            for name, argv in cases[rep % 2:] + cases[:rep % 2]:
                took, lines = timed(argv, root)
                if name == "status" and lines != args.blocks:
                    sys.exit(f"status printed {lines} streams, expected {args.blocks}")
                times[name].append(took)
            print(f"  rep {rep + 1}: list {times['list'][-1]:.2f}s  status {times['status'][-1]:.2f}s", flush=True)
    list_s, status_s = statistics.median(times["list"]), statistics.median(times["status"])
    print(f"median: list {list_s:.2f}s (baseline), status {status_s:.2f}s = {status_s / list_s:.2f}x list, "
          f"ledger reading {status_s - list_s:+.2f}s; target < {args.target:g}s: {'met' if status_s < args.target else 'MISSED'}")
    return 0 if status_s < args.target else 1


if __name__ == "__main__":
    sys.exit(main())
