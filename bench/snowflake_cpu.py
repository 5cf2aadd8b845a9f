#!/usr/bin/env python
"""Client-side CPU of the Snowflake path vs the DuckDB path, and statements per batch.

One run, same workload for both (airbyte-source-faker stream `users`, `--count` records, seed 1, 1,000 records per
slice, parallelism 1, default write mode = dedup on `id`), interleaved (duckdb, snowflake, duckdb, ...), each case in
its own fresh child process running `AirbyteManager.run("bench")`:

  duckdb     into a fresh DuckDB file (the database engine runs IN the measured process);
  snowflake  into a fakesnow server (`python -m fakesnow -s`, a separate process started by this script and NOT
             measured: on Snowflake the database work happens in the warehouse, so only the client side counts).

Measured inside the child: CPU seconds (`time.process_time()`, all threads of the process) of the data phase,
`AirbyteManager._sync` (read + convert + load + commit), plus CPU of reaped child processes (faker's worker, if any)
from `resource.getrusage(RUSAGE_CHILDREN)`; reported per 1,000 records, with the snowflake/duckdb ratio.
Statements: every statement the Snowflake destination sends is counted per `write()` call (one checkpoint). Two more
Snowflake runs use one faker slice (a single STATE at the end), so batches are bounded by size only, at
`--batch-small` and `--batch-large` records: the statements per batch must be the same (O(1)); only the number of
batches changes.
Correctness: rows and distinct ids landed equal the records read, in both destinations.

Usage:  python bench/snowflake_cpu.py [--count 20000] [--repeat 3] [--batch 1000] [--batch-small 500] [--batch-large 5000]
Exit code: 0 ok; 2 a correctness check failed or a child failed. (No CPU target: the figures are reported.)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
BLOCK, STREAM = "bench", "users"
TABLE = f"{BLOCK}_{STREAM}"


def faker_config(count: int, per_slice: int = 1000) -> dict:
    return {"count": count, "seed": 1, "records_per_slice": per_slice, "parallelism": 1, "always_updated": False}


# ====================================================================== child


def child(args) -> dict:
    import inspect
    import resource
    import threading

    from ingest.sync import loop as L, runner as M
    from ingest.config import load_project

    box: dict = {"writes": []}
    lock = threading.Lock()
    orig_sync = M.AirbyteManager._sync
    signature = inspect.signature(orig_sync)

    def timed_sync(self, *a, **k):  # whatever _sync's parameters are today; `results` is found by name
        results = signature.bind(self, *a, **k).arguments["results"]
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0, t0 = time.process_time(), time.perf_counter()
        err = orig_sync(self, *a, **k)
        box["cpu_s"] = time.process_time() - cpu0
        box["seconds"] = time.perf_counter() - t0
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        box["cpu_children_s"] = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
        box["records"] = sum(r.records for r in results.values())
        box["sync_error"] = None if err is None else str(err)
        return err

    M.AirbyteManager._sync = timed_sync
    orig_writer_run = L._Writer.run

    def timed_writer_run(self):  # the writer thread owns the destination: Arrow conversion + the load itself
        c0 = time.thread_time()
        try:
            orig_writer_run(self)
        finally:
            box["cpu_writer_s"] = box.get("cpu_writer_s", 0.0) + time.thread_time() - c0

    L._Writer.run = timed_writer_run
    if args.child == "snowflake":
        from ingest.destinations.snowflake.destination import SnowflakeDestination
        from ingest.destinations.snowflake.session import Session

        orig_write, orig_execute = SnowflakeDestination.write, Session.execute
        sent = {"statements": 0}

        def counted_execute(self, *args, **kwargs):
            sent["statements"] += 1
            return orig_execute(self, *args, **kwargs)

        def counted_write(self, target, batch, new_columns, state):
            before = sent["statements"]
            try:
                return orig_write(self, target, batch, new_columns, state)
            finally:
                with lock:
                    box["writes"].append({"rows": 0 if batch is None else batch.num_rows, "state": state is not None,
                                          "statements": sent["statements"] - before})

        Session.execute = counted_execute
        SnowflakeDestination.write = counted_write
    cpu_start = time.process_time()
    destination = "snowflake" if args.child == "snowflake" else None
    result = M.AirbyteManager(load_project(args.project)).run(BLOCK, destination=destination)
    box["cpu_total_s"] = time.process_time() - cpu_start  # incl. connect, discover, meta tables
    box["ok"] = result.ok
    box["error"] = None if result.ok else str(result.error)
    return box


# ====================================================================== parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_fakesnow(workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    log = open(workdir / "fakesnow.log", "wb")
    env = {**os.environ, "TMPDIR": str(workdir)}  # fakesnow's stage files go to a temp dir: keep it in the scratch dir
    proc = subprocess.Popen([sys.executable, "-m", "fakesnow", "-s", "-p", str(port)], stdout=log, stderr=log, cwd=str(workdir), env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"fakesnow server did not start; see {workdir / 'fakesnow.log'}")


def write_project(directory: Path, count: int, batch: int, port: int, database: str, per_slice: int = 1000) -> Path:
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    spec = {
        "defaults": {
            "destination": "duckdb", "duckdb": {"path": str(directory / "bench.duckdb")},
            "batch": {"max_records": batch},
            "snowflake": {
                "account": "bench", "user": "bench", "password": "${INGEST_BENCH_SF_PASSWORD}", "database": database,
                "schema": "RAW", "warehouse": "BENCH_WH", "host": "127.0.0.1", "port": port, "protocol": "http",
                "login_timeout": 30, "network_timeout": 120,
            },
        },
        "connectors": {BLOCK: {"team": "bench", "source": "airbyte-source-faker", "config": faker_config(count, per_slice),
                               "streams": [{"name": STREAM}]}},
    }
    path = directory / "connectors.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_child(case: str, project: Path, workdir: Path, tag: str) -> dict:
    out = workdir / f"{tag}.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1", INGEST_BENCH_SF_PASSWORD="bench-password")
    env.setdefault("METAFLOW_USER", "bench")
    cmd = [sys.executable, str(HERE), "--child", case, "--project", str(project), "--out", str(out)]
    with open(workdir / f"{tag}.stderr", "wb") as err:
        code = subprocess.call(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=str(workdir), env=env)
    result = json.loads(out.read_text()) if out.exists() else {}
    result.update(case=case, returncode=code)
    if code != 0 or not result.get("ok"):
        result["failure"] = result.get("error") or (workdir / f"{tag}.stderr").read_text(errors="replace")[-3000:]
    return result


def landed_duckdb(project: Path) -> tuple[int, int]:
    import duckdb

    con = duckdb.connect(str(project.parent / "bench.duckdb"), read_only=True)
    try:
        return con.execute(f"SELECT count(*), count(DISTINCT id) FROM {TABLE}").fetchone()
    finally:
        con.close()


def landed_snowflake(port: int, database: str) -> tuple[int, int]:
    import snowflake.connector

    con = snowflake.connector.connect(account="bench", user="bench", password="x", host="127.0.0.1", port=port, protocol="http",
                                      database=database, schema="RAW", network_timeout=60)
    try:
        return con.cursor().execute(f"SELECT COUNT(*), COUNT(DISTINCT ID) FROM {TABLE.upper()}").fetchone()
    finally:
        con.close()


def per_k(result: dict) -> float:
    return 1000 * (result["cpu_s"] + result.get("cpu_children_s", 0.0)) / max(result["records"], 1)


def writer_k(result: dict) -> float:
    return 1000 * result.get("cpu_writer_s", 0.0) / max(result["records"], 1)


def statements_summary(writes: list[dict]) -> dict:
    """Statements per write() call that landed rows, split by whether it also committed a state row."""
    data = [w for w in writes if w["rows"]][1:]  # the first batch also creates the temporary stage (once per session)
    out = {"batches": len(data) + 1, "total": sum(w["statements"] for w in writes),
           "rows": sorted({w["rows"] for w in data})}
    for key, label in ((False, "without_state"), (True, "with_state")):
        out[label] = sorted({w["statements"] for w in data if w["state"] is key})
    out["state_only"] = sorted({w["statements"] for w in writes if not w["rows"] and w["state"]})
    return out


def main_parent(args) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="ingest-sfbench-"))
    server, port = start_fakesnow(workdir)
    print(f"workload: airbyte-source-faker stream {STREAM!r}, {faker_config(args.count)}, write=dedup (default), "
          f"batch.max_records={args.batch}; {args.repeat} interleaved pair(s); fakesnow server on 127.0.0.1:{port} "
          f"(not measured); scratch dir {workdir}\n")
    problems: list[str] = []
    pairs = []
    try:
        for i in range(args.repeat):
            duck_project = write_project(workdir / f"duck{i}", args.count, args.batch, port, f"BENCH{i}")
            duck = run_child("duckdb", duck_project, workdir, f"duck{i}")
            sf_project = write_project(workdir / f"sf{i}", args.count, args.batch, port, f"BENCH{i}")
            snow = run_child("snowflake", sf_project, workdir, f"sf{i}")
            for r in (duck, snow):
                if r.get("failure"):
                    problems.append(f"pair {i} {r['case']}: {r['failure']}")
            if not problems:
                for name, landed in (("duckdb", landed_duckdb(duck_project)), ("snowflake", landed_snowflake(port, f"BENCH{i}"))):
                    r = duck if name == "duckdb" else snow
                    if tuple(landed) != (r["records"], r["records"]) or r["records"] != args.count:
                        problems.append(f"pair {i} {name}: landed rows/ids {tuple(landed)} for {r['records']} records read")
                print(f"pair {i}: duckdb {per_k(duck):.3f} CPU s/1k records (writer thread {writer_k(duck):.3f}; {duck['records']:,} rec, "
                      f"{duck['seconds']:.1f}s wall) | snowflake {per_k(snow):.3f} (writer {writer_k(snow):.3f}; {snow['seconds']:.1f}s wall) "
                      f"| ratio {per_k(snow) / per_k(duck):.2f}")
            pairs.append((duck, snow))
        if problems:
            print("\nFAILED:\n" + "\n".join(problems))
            return 2
        # O(1) statements per batch: one STATE at the end (a single faker slice), batches bounded by size only
        sizes = {}
        for batch in (args.batch_small, args.batch_large):
            project = write_project(workdir / f"sf_b{batch}", args.count, batch, port, f"BENCHB{batch}", per_slice=args.count)
            result = run_child("snowflake", project, workdir, f"sf_b{batch}")
            if result.get("failure"):
                print(f"\nFAILED: snowflake at batch {batch}: {result['failure']}")
                return 2
            sizes[batch] = statements_summary(result["writes"])
    finally:
        server.kill()
        server.wait()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    duck_k = statistics.median(per_k(d) for d, _ in pairs)
    snow_k = statistics.median(per_k(s) for _, s in pairs)
    print("\nclient CPU per 1,000 records (median; data phase = AirbyteManager._sync, all threads + reaped children)")
    print(f"  duckdb     {duck_k:.3f} s   (includes the DuckDB engine itself, in process)")
    print(f"  snowflake  {snow_k:.3f} s   (Parquet + PUT/COPY + HTTP; the warehouse's work is not on the client)")
    print(f"  ratio snowflake/duckdb = {snow_k / duck_k:.2f}")
    duck_w = statistics.median(writer_k(d) for d, _ in pairs)
    snow_w = statistics.median(writer_k(s) for _, s in pairs)
    print(f"  of which the writer thread (Arrow conversion + the destination): duckdb {duck_w:.3f} s, snowflake {snow_w:.3f} s, "
          f"ratio {snow_w / duck_w:.2f}; the rest is the connector's own read (DuckDB's engine threads count only in the totals)")
    print(f"  whole run incl. connect/discover: duckdb {statistics.median(d['cpu_total_s'] for d, _ in pairs):.2f} s, "
          f"snowflake {statistics.median(s['cpu_total_s'] for _, s in pairs):.2f} s")
    print("\nstatements per checkpoint (Snowflake destination, dedup, per write() call that landed rows)")
    paired = statements_summary(pairs[0][1]["writes"])
    print(f"  the CPU workload (a STATE every 1,000 records, batch {args.batch}): {paired['batches']} batches, statements per "
          f"batch {paired['without_state']} without a state row, {paired['with_state']} with one; a state-only checkpoint "
          f"{paired['state_only']}")
    for batch, st in sizes.items():
        print(f"  batch.max_records {batch:>6}: {st['batches']:>3} batches, statements per batch: {st['without_state']} without "
              f"a state row, {st['with_state']} with one; {st['total']} statements in all writes")
    per_batch = {tuple(st["without_state"]) for st in sizes.values()}
    if len(per_batch) != 1 or len(next(iter(per_batch))) != 1:
        print("  NOTE: statements per batch changed with the batch size")
        return 2
    print(f"  → {next(iter(per_batch))[0]} statements per batch whatever its size (+2 when the batch also carries its state "
          "row): O(1) per batch, O(batches) per run")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--batch-small", type=int, default=500)
    p.add_argument("--batch-large", type=int, default=5000)
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--child", choices=["duckdb", "snowflake"], help=argparse.SUPPRESS)
    p.add_argument("--project", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        sys.path.insert(0, str(REPO))
        try:
            result = child(args)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        Path(args.out).write_text(json.dumps(result, default=str))
        return 0 if result.get("ok") else 1
    return main_parent(args)


if __name__ == "__main__":
    sys.exit(main())
