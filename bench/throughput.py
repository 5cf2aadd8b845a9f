#!/usr/bin/env python
"""Throughput benchmark: raw in-process airbyte-source-faker read vs `ingest run` of the same block into DuckDB,
and vs the isolated runtime's read (ingest/sources/isolated.py).

One run measures, on the same workload (stream `users`, `count` records, seed 1, 1,000 records per slice,
parallelism 1), interleaved (raw, case, raw, case, ...), each case in its own fresh subprocess:

  raw       in faker's own environment (--connector-python; the runner's CDK 7 cannot import faker): build
            source_faker.SourceFaker(), discover, configure `users` incremental/append, iterate
            source.read(logger, config, catalog, []) and count + drop the records (the limit);
  ingest    `ingest run bench` through the real CLI entry point (ingest.cli.main) -- or, with --mode manager,
            AirbyteManager(load_project(path)).run("bench") -- into a fresh DuckDB file;
  isolated  in the runner's environment: IsolatedSource(<faker env python>, ...).discover(), then read() of the same
            catalog, counting records (RecordBatch) and STATE messages, no destination.

Timed "data phase" (inside the child, so interpreter start, imports and discover are excluded):
  raw       from the call to source.read() until the iterator is exhausted;
  ingest    AirbyteManager._sync (reading + writer thread + final flush/commit), via a timing wrapper that does not
            change behaviour;
  isolated  from the call to read() until the iterator is exhausted (includes starting the connector process).
Peak RSS: the parent samples the child's process tree with psutil (sum of RSS of the child and all descendants,
incl. faker's multiprocessing worker) every --sample-ms; the child also reports ru_maxrss (self / children).
Correctness: after every ingest run the parent counts rows (and distinct ids) in the DuckDB table and requires them
to equal the records produced by the raw read in the same pair; an isolated read must count the same records.

Usage:  python bench/throughput.py [--case ingest|isolated ...] [--count 150000] [--repeat 3] [--mode cli|manager]
        [--write default|append|dedup] [--variant LABEL=bench/experiments/x.py[,...]] [--connector-python PATH]
        [--quiet-wait 60] [--json out.json]   (see bench/README.md)
Exit code: 0 targets met and correct, 1 a target missed, 2 a correctness check failed or a child failed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
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
TARGET_THROUGHPUT = {"ingest": 0.9, "isolated": 0.85}  # case records/s >= target x raw (isolated: the floor for
TARGET_RSS = 1.3  # case peak RSS <= 1.3 x raw                  # the whole isolated `ingest run`, so well above it)
FAKER = "airbyte-source-faker==7.2.1"


def faker_config(count: int) -> dict:
    return {"count": count, "seed": 1, "records_per_slice": 1000, "parallelism": 1, "always_updated": False}


def users_catalog(catalog):
    """`users` configured incremental/append, built with whichever airbyte_cdk.models this interpreter has."""
    from airbyte_cdk.models import ConfiguredAirbyteCatalog, ConfiguredAirbyteStream, DestinationSyncMode, SyncMode

    stream = next(s for s in catalog.streams if s.name == STREAM)
    return ConfiguredAirbyteCatalog(streams=[ConfiguredAirbyteStream(
        stream=stream, sync_mode=SyncMode.incremental, destination_sync_mode=DestinationSyncMode.append,
        cursor_field=stream.default_cursor_field or None,
    )])


def connector_python(path: str | None) -> str:
    """faker's own environment (the runner's CDK 7 can no longer import it): --connector-python, or one built once
    with uv in ~/.cache/ingest-bench."""
    if path:
        return path
    env = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ingest-bench" / FAKER.replace("==", "-")
    python = env / "bin" / "python"
    if not python.exists():
        uv = Path(sys.executable).with_name("uv")
        print(f"building {FAKER} in {env} ...", flush=True)
        subprocess.run([str(uv), "venv", "-q", "--python", sys.executable, str(env)], check=True)
        subprocess.run([str(uv), "pip", "install", "-q", "--python", str(python), FAKER], check=True)
    return str(python)


# ====================================================================== children (each in a fresh interpreter)


def _rusage() -> dict:
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "maxrss_self_mb": s.ru_maxrss / 1024, "maxrss_children_mb": c.ru_maxrss / 1024,
        "cpu_self_s": s.ru_utime + s.ru_stime, "cpu_children_s": c.ru_utime + c.ru_stime,
        "cpu_rusage_total_s": s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime,
    }


def child_raw(args) -> dict:
    import logging

    import source_faker
    from airbyte_cdk.models import Type

    logger = logging.getLogger("airbyte")
    config = faker_config(args.count)
    source = source_faker.SourceFaker()
    configured = users_catalog(source.discover(logger, config))
    records = states = 0
    RECORD, STATE = Type.RECORD, Type.STATE
    setup_s = time.perf_counter() - args.t_start
    cpu0, pcpu0 = time.thread_time(), time.process_time()
    t0 = time.perf_counter()
    for message in source.read(logger, config, configured, []):
        t = message.type
        if t == RECORD:
            if message.record.stream == STREAM:
                records += 1
        elif t == STATE:
            states += 1
    seconds = time.perf_counter() - t0
    return {
        "records": records, "states": states, "seconds": seconds, "setup_s": setup_s,
        "cpu_reader_s": time.thread_time() - cpu0, "cpu_process_s": time.process_time() - pcpu0, **_rusage(),
    }


def child_isolated(args) -> dict:
    import resource

    _run_patches(args)
    from airbyte_cdk.models import Type

    from ingest.sources.isolated import IsolatedSource

    source = IsolatedSource(args.connector_python, FAKER.partition("==")[0], faker_config(args.count), label="bench")
    configured = users_catalog(source.discover())
    records = states = 0
    STATE = Type.STATE
    setup_s = time.perf_counter() - args.t_start
    before = resource.getrusage(resource.RUSAGE_CHILDREN)  # discover's child is not part of the data phase
    cpu0, pcpu0 = time.thread_time(), time.process_time()
    t0 = time.perf_counter()
    for message in source.read(configured, []):
        t = message.type
        if t == "RECORD_BATCH":
            if message.stream == STREAM:
                records += len(message.records)
        elif t == STATE:
            states += 1
    seconds = time.perf_counter() - t0
    usage = _rusage()
    usage["cpu_children_s"] -= before.ru_utime + before.ru_stime
    return {
        "records": records, "states": states, "seconds": seconds, "setup_s": setup_s,
        "cpu_reader_s": time.thread_time() - cpu0, "cpu_process_s": time.process_time() - pcpu0, **usage,
    }


def _run_patches(args) -> None:
    """Experiments: monkeypatches (--patch / --variant files) applied before anything is timed."""
    import runpy

    for patch in args.patch or []:
        runpy.run_path(patch, run_name="__bench_patch__")


def child_ingest(args) -> dict:
    import threading

    from ingest import manager as M
    from ingest.destinations import duckdb as D
    from ingest.destinations import typing as T

    _run_patches(args)  # before the timing wrappers below

    diag = {"to_arrow_s": 0.0, "db_write_s": 0.0, "batches": 0, "db_writes": 0, "submit_blocked_s": 0.0, "writer_cpu_s": 0.0}
    box: dict = {}
    lock = threading.Lock()

    # ---- timing wrappers (per call / per batch only; they do not change what the code does)
    orig_sync = M.AirbyteManager._sync

    import inspect

    sync_sig = inspect.signature(orig_sync)

    def timed_sync(self, *a, **k):  # signature-agnostic: _sync's parameters change as ingest evolves
        results = sync_sig.bind(self, *a, **k).arguments["results"]
        box["setup_s"] = time.perf_counter() - args.t_start
        cpu0, pcpu0 = time.thread_time(), time.process_time()
        t0 = time.perf_counter()
        err = orig_sync(self, *a, **k)
        box["seconds"] = time.perf_counter() - t0
        box["cpu_reader_s"] = time.thread_time() - cpu0
        box["cpu_process_s"] = time.process_time() - pcpu0
        box["records"] = sum(r.records for r in results.values())
        box["rows_written"] = sum(r.rows_written for r in results.values())
        box["write"] = ",".join(r.write for r in results.values())
        box["sync_error"] = None if err is None else str(err)
        return err

    M.AirbyteManager._sync = timed_sync

    orig_to_arrow = T.records_to_arrow  # looked up by _Writer.run at call time (function-level import)

    def timed_to_arrow(*a, **k):
        t0 = time.perf_counter()
        try:
            return orig_to_arrow(*a, **k)
        finally:
            with lock:
                diag["to_arrow_s"] += time.perf_counter() - t0
                diag["batches"] += 1

    T.records_to_arrow = timed_to_arrow

    orig_write = D.DuckDBDestination.write

    def timed_write(self, *a, **k):
        t0 = time.perf_counter()
        try:
            return orig_write(self, *a, **k)
        finally:
            with lock:
                diag["db_write_s"] += time.perf_counter() - t0
                diag["db_writes"] += 1

    D.DuckDBDestination.write = timed_write

    orig_run, orig_submit = M._Writer.run, M._Writer.submit

    def timed_writer_run(self):
        c0 = time.thread_time()
        try:
            orig_run(self)
        finally:
            diag["writer_cpu_s"] += time.thread_time() - c0

    def timed_submit(self, op):
        t0 = time.perf_counter()
        try:
            return orig_submit(self, op)
        finally:
            diag["submit_blocked_s"] += time.perf_counter() - t0

    M._Writer.run, M._Writer.submit = timed_writer_run, timed_submit

    if args.mode == "cli":
        from ingest.cli import main

        argv = ["-c", args.project, "run", BLOCK]
        try:
            main.main(args=argv, prog_name="ingest", standalone_mode=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        box["exit_code"] = code
    else:
        from ingest.config import load_project

        result = M.AirbyteManager(load_project(args.project)).run(BLOCK)
        box["exit_code"] = 0 if result.ok else 1
    if "seconds" not in box:
        raise RuntimeError(f"the sync never ran (exit code {box.get('exit_code')})")
    return {**box, "diag": diag, **_rusage()}


# ====================================================================== parent


def write_project(directory: Path, count: int, db: Path, write: str) -> Path:
    import yaml

    stream = {"name": STREAM}
    if write != "default":
        stream["write"] = write
    spec = {
        "defaults": {"destination": "duckdb", "duckdb": {"path": str(db)}},
        "connectors": {BLOCK: {
            "team": "bench", "description": "throughput benchmark", "source": "airbyte-source-faker",
            "config": faker_config(count), "streams": [stream],
        }},
    }
    path = directory / "connectors.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def tree_memory(proc, pss: bool = False) -> int:
    """Sum over the process and its descendants of RSS (shared pages counted in every process, e.g. what faker's
    forked worker inherits) or, with pss=True, of PSS (shared pages split between the processes sharing them)."""
    import psutil

    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_full_info().pss if pss else p.memory_info().rss
        except psutil.Error:
            pass
    return total


def cpu_busy_seconds() -> float:
    """Machine-wide busy CPU seconds so far (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(args) -> float:
    """Wait (up to --quiet-wait s) for a 2 s window where other processes use < --quiet-cores cores. Returns the last
    measured busy cores."""
    deadline = time.monotonic() + args.quiet_wait
    while True:
        b0, t0 = cpu_busy_seconds(), time.monotonic()
        time.sleep(2.0)
        busy = (cpu_busy_seconds() - b0) / (time.monotonic() - t0)
        if busy < args.quiet_cores or time.monotonic() >= deadline:
            return busy


def run_child(case: str, args, workdir: Path, tag: str, project: Path | None = None, patches=()) -> dict:
    import psutil

    busy_before = wait_for_quiet(args) if args.quiet_wait > 0 else None

    out = workdir / f"{tag}.json"
    python = args.connector_python if case == "raw" else sys.executable
    cmd = [python, str(HERE), "--child", case, "--count", str(args.count), "--out", str(out), "--mode", args.mode,
           "--connector-python", args.connector_python]
    for patch in patches:
        cmd += ["--patch", str(Path(patch).resolve())]
    if project is not None:
        cmd += ["--project", str(project)]
    stdout, stderr = open(workdir / f"{tag}.stdout", "wb"), open(workdir / f"{tag}.stderr", "wb")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0, busy0, mine0 = time.perf_counter(), cpu_busy_seconds(), time.process_time()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, cwd=str(workdir), env=env)
    ps = psutil.Process(proc.pid)
    peak = peak_pss = 0
    interval, next_pss = args.sample_ms / 1000, 0.0
    while proc.poll() is None:
        peak = max(peak, tree_memory(ps))
        now = time.perf_counter()
        if args.pss_ms > 0 and now >= next_pss:  # PSS reads smaps_rollup (~2 ms a process): sampled less often
            peak_pss, next_pss = max(peak_pss, tree_memory(ps, pss=True)), now + args.pss_ms / 1000
        time.sleep(interval)
    total_s, busy = time.perf_counter() - t0, cpu_busy_seconds() - busy0 - (time.process_time() - mine0)
    stdout.close(), stderr.close()
    result = {"case": case, "returncode": proc.returncode, "process_s": total_s, "peak_tree_rss_mb": peak / 2**20,
              "peak_tree_pss_mb": peak_pss / 2**20 if args.pss_ms > 0 else None}
    if out.exists():
        result.update(json.loads(out.read_text()))
    if proc.returncode != 0 or "error" in result or "records" not in result:
        tail = (workdir / f"{tag}.stderr").read_text(errors="replace")[-3000:]
        result.setdefault("error", f"child exited {proc.returncode}")
        result["stderr_tail"] = tail
    result["rps"] = result["records"] / result["seconds"] if result.get("seconds") else 0.0
    result["cpu_total_s"] = result.get("cpu_process_s", 0.0) + result.get("cpu_children_s", 0.0)
    # CPU used by everything else on the machine while this child ran (cores): noise indicator. The child's own CPU
    # is taken from its getrusage (self + children, incl. imports) and this sampler's from its own process time.
    own = result.get("cpu_rusage_total_s", 0.0)
    result["external_cores"] = max(0.0, (busy - own) / total_s) if total_s else None
    result["busy_before"] = busy_before
    return result


def check_db(db: Path) -> dict:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows, ids = con.execute(f'SELECT count(*), count(DISTINCT id) FROM "{TABLE}"').fetchone()
        status = con.execute("SELECT status FROM _ingest_runs ORDER BY started_at DESC LIMIT 1").fetchone()
    except Exception as exc:  # noqa: BLE001
        return {"db_rows": -1, "db_ids": -1, "db_error": f"{type(exc).__name__}: {exc}"}
    finally:
        con.close()
    return {"db_rows": rows, "db_ids": ids, "run_status": status[0] if status else None}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def main_parent(args) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    args.connector_python = connector_python(args.connector_python)
    # the cases: raw, then each --case (with --patch files, if any), then every --variant LABEL=FILE[,FILE] (a
    # variant of the first --case)
    cases = args.case or ["isolated"]
    variants: list[tuple[str, str, list[str]]] = [(case, case, list(args.patch or [])) for case in cases]
    for v in args.variant or []:
        label, _, files = v.partition("=")
        variants.append((cases[0], label, [f for f in files.split(",") if f]))
    print(f"workload: {FAKER} ({args.connector_python}) stream {STREAM!r}, {faker_config(args.count)}")
    print(f"ingest via {'CLI (ingest.cli.main: ingest -c … run bench)' if args.mode == 'cli' else 'AirbyteManager.run'}, "
          f"write={args.write}; cases: raw, " + ", ".join(f"{lbl}{' (' + ', '.join(Path(f).name for f in fs) + ')' if fs else ''}"
                                                      for _, lbl, fs in variants)
          + f"; {args.repeat} interleaved repetition(s); scratch dir {workdir}")
    print(f"load average at start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])} ({os.cpu_count()} cores)\n")
    reps: list[dict[str, dict]] = []
    problems: list[str] = []
    try:
        for i in range(args.repeat):
            rep: dict[str, dict] = {}
            raw = rep["raw"] = run_child("raw", args, workdir, f"raw{i}")
            _report_line(i, "raw", raw)
            if "error" in raw:
                problems.append(f"rep {i} raw: {raw['error']}\n{raw.get('stderr_tail', '')}")
            order = variants[i % len(variants):] + variants[: i % len(variants)]  # rotate: no variant always runs first
            for case, label, patches in order:
                result = rep[label] = run_case(case, args, workdir, f"{label}{i}".replace("/", "_"), patches)
                problems += check_case(case, label, i, raw, result, args)
                _report_line(i, label, result)
            reps.append(rep)
    finally:
        if args.json:
            Path(args.json).write_text(json.dumps(reps, indent=2, default=str))
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"load average at end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    return _summary(args, reps, [(case, lbl) for case, lbl, _ in variants], problems)


def run_case(case: str, args, workdir: Path, tag: str, patches: list[str]) -> dict:
    if case == "isolated":
        return run_child("isolated", args, workdir, tag, patches=patches)
    db = workdir / f"{tag}.duckdb"
    (workdir / f"p_{tag}").mkdir()
    project = write_project(workdir / f"p_{tag}", args.count, db, args.write)
    result = run_child("ingest", args, workdir, tag, project, patches)
    if db.exists() and "error" not in result:
        result.update(check_db(db))
    return result


def check_case(case: str, label: str, i: int, raw: dict, result: dict, args) -> list[str]:
    """Correctness of one run against the raw read of the same pair; the problems found."""
    if "error" in result:
        return [f"rep {i} {label}: {result['error']}\n{result.get('stderr_tail', '')}"]
    if "error" in raw:
        return []
    expect = raw.get("records")
    checks = {
        "raw records == --count": raw.get("records") == args.count,
        f"{case} records == raw records": result.get("records") == expect,
    }
    if case == "ingest":
        checks.update({
            "DuckDB rows == raw records": result.get("db_rows") == expect,
            "DuckDB distinct ids == raw records": result.get("db_ids") == expect,
            "run status succeeded": result.get("run_status") == "succeeded" and result.get("exit_code") == 0,
        })
    else:
        checks["STATE messages == raw STATE messages"] = result.get("states") == raw.get("states")
    result["checks"] = checks
    return [f"rep {i} {label}: check failed: {k} (raw {expect}, {label} {result.get('records')}, db rows "
            f"{result.get('db_rows')}, ids {result.get('db_ids')}, status {result.get('run_status')}, states "
            f"{result.get('states')} vs raw {raw.get('states')})" for k, ok in checks.items() if not ok]


def _report_line(i: int, label: str, r: dict) -> None:
    if "error" in r:
        print(f"  rep {i} {label:<10} FAILED: {r['error']}", flush=True)
        return
    extra = ""
    if r["case"] == "ingest":
        d = r["diag"]
        extra = (f"\n      writer cpu {d['writer_cpu_s']:.1f}s, wall in to_arrow {d['to_arrow_s']:.1f}s / duckdb write "
                 f"{d['db_write_s']:.1f}s ({d['batches']} conversions, {d.get('db_writes')} DuckDB transactions); reader blocked on queue {d['submit_blocked_s']:.1f}s; "
                 f"DuckDB rows {r.get('db_rows')}")
    print(f"  rep {i} {label:<10} {r['records']:>8,} rec {r['seconds']:7.2f}s {r['rps']:>8,.0f} rec/s  "
          f"peak tree RSS {r['peak_tree_rss_mb']:4.0f} MB" + (f" (PSS {r['peak_tree_pss_mb']:4.0f})" if r.get("peak_tree_pss_mb") else "") + "  "
          f"CPU {1e6 * r['cpu_total_s'] / r['records']:5.1f} µs/rec  other load {r['external_cores']:.1f} cores{extra}", flush=True)


def _summary(args, reps, case_labels: list[tuple[str, str]], problems) -> int:
    print()
    labels = [label for _, label in case_labels]
    good = [rep for rep in reps if all("error" not in r for r in rep.values()) and len(rep) == len(labels) + 1]
    if not good:
        print("no repetition where every case succeeded")
        for p in problems:
            print("PROBLEM:", p)
        return 2
    cases = ["raw"] + labels
    rows = [
        ("records", lambda r: r["records"], "{:,.0f}", True),
        ("data phase (s)", lambda r: r["seconds"], "{:.2f}", True),
        ("records/s", lambda r: r["rps"], "{:,.0f}", True),
        ("peak tree RSS (MB)", lambda r: r["peak_tree_rss_mb"], "{:,.0f}", True),
        ("peak tree PSS (MB, info)", lambda r: r["peak_tree_pss_mb"], "{:,.0f}", True),
        ("ru_maxrss self (MB)", lambda r: r["maxrss_self_mb"], "{:,.0f}", False),
        ("ru_maxrss children (MB)", lambda r: r["maxrss_children_mb"], "{:,.0f}", False),
        ("CPU µs/rec: total", lambda r: 1e6 * r["cpu_total_s"] / r["records"], "{:.1f}", True),
        ("  main process, all threads", lambda r: 1e6 * r["cpu_process_s"] / r["records"], "{:.1f}", False),
        ("  reading thread only", lambda r: 1e6 * r["cpu_reader_s"] / r["records"], "{:.1f}", False),
        ("  writer thread only", lambda r: 1e6 * r["diag"]["writer_cpu_s"] / r["records"] if "diag" in r else None, "{:.1f}", False),
        ("  faker worker process", lambda r: 1e6 * r["cpu_children_s"] / r["records"], "{:.1f}", False),
        ("writer wall: records_to_arrow (s)", lambda r: r["diag"]["to_arrow_s"] if "diag" in r else None, "{:.2f}", False),
        ("writer wall: DuckDB write (s)", lambda r: r["diag"]["db_write_s"] if "diag" in r else None, "{:.2f}", False),
        ("records_to_arrow calls", lambda r: r["diag"]["batches"] if "diag" in r else None, "{:.0f}", False),
        ("DuckDB write transactions", lambda r: r["diag"].get("db_writes") if "diag" in r else None, "{:.0f}", False),
        ("reader blocked in submit (s)", lambda r: r["diag"]["submit_blocked_s"] if "diag" in r else None, "{:.2f}", False),
        ("process wall incl. imports (s)", lambda r: r["process_s"], "{:.1f}", False),
        ("other processes' load (cores)", lambda r: r["external_cores"], "{:.2f}", False),
    ]
    width = max(12, *(len(c) + 2 for c in cases))
    print(f"medians over {len(good)} repetition(s), count={args.count:,}, write={good[0][labels[0]].get('write')}"
          f"  (ratio = median of per-repetition ratios to raw)")
    print(f"  {'':<34}" + "".join(f"{c:>{width}}" for c in cases) + "".join(f"{c + '/raw':>{width + 4}}" for c in labels))
    for label, get, fmt, ratio in rows:
        vals = [med([get(rep[c]) for rep in good]) for c in cases]
        line = f"  {label:<34}" + "".join(f"{fmt.format(v) if v == v else '-':>{width}}" for v in vals)
        if ratio:
            for c in labels:
                rs = [get(rep[c]) / get(rep["raw"]) for rep in good if get(rep[c]) and get(rep["raw"])]
                line += f"{med(rs):>{width + 4}.2f}"
        print(line)
    print()
    exit_code = 0
    for case, c in case_labels:
        tp = [rep[c]["rps"] / rep["raw"]["rps"] for rep in good]
        rss = [rep[c]["peak_tree_rss_mb"] / rep["raw"]["peak_tree_rss_mb"] for rep in good]
        target = TARGET_THROUGHPUT[case]
        tp_ok, rss_ok = med(tp) >= target, med(rss) <= TARGET_RSS
        print(f"{c}: throughput {c}/raw per repetition {', '.join(f'{x:.2f}' for x in tp)} -> median {med(tp):.2f} "
              f"(target >= {target}) {'PASS' if tp_ok else 'FAIL'}")
        clean = [rep[c]["rps"] / rep["raw"]["rps"] for rep in good
                 if max(rep[c].get("external_cores") or 0, rep["raw"].get("external_cores") or 0) < args.clean_load]
        print(f"{' ' * len(c)}  throughput on clean pairs only (other load < {args.clean_load} cores during both runs): "
              + (f"{', '.join(f'{x:.2f}' for x in clean)} -> median {med(clean):.2f}" if clean else "none"))
        print(f"{' ' * len(c)}  peak RSS {c}/raw per repetition {', '.join(f'{x:.2f}' for x in rss)} -> median {med(rss):.2f} "
              f"(target <= {TARGET_RSS}) {'PASS' if rss_ok else 'FAIL'}")
        runs = [rep[c] for rep in reps if c in rep]
        n_ok = sum(1 for r in runs if r.get("checks") and all(r["checks"].values()))
        what = ("DuckDB rows == distinct ids == raw records == {:,} and status succeeded" if case == "ingest"
                else "records == raw records == {:,} and as many STATE messages as raw")
        print(f"{' ' * len(c)}  correctness: {n_ok}/{len(reps)} runs with {what.format(args.count)} "
              f"{'PASS' if n_ok == len(reps) else 'FAIL'}")
        if c == labels[0] and not (tp_ok and rss_ok):
            exit_code = 1
    for p in problems:
        print("PROBLEM:", p)
    return 2 if problems else exit_code


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", action="append", choices=["ingest", "isolated"],
                   help="what to pair with raw; repeatable (default: isolated -- `ingest` needs the manager to run "
                        "faker isolated). The exit code is judged on the first")
    p.add_argument("--connector-python", metavar="PATH",
                   help=f"python of an environment with {FAKER} (default: built once with uv in ~/.cache/ingest-bench)")
    p.add_argument("--count", type=int, default=150_000, help="faker records (default 150000, like the anchors)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved repetitions of raw + every case (default 3)")
    p.add_argument("--mode", choices=["cli", "manager"], default="cli",
                   help="ingest through the CLI entry point (default) or AirbyteManager.run")
    p.add_argument("--write", choices=["default", "append", "dedup"], default="default",
                   help="write mode for the users stream (default: ingest's choice, i.e. dedup on id)")
    p.add_argument("--sample-ms", type=float, default=25, help="RSS sampling interval (default 25 ms)")
    p.add_argument("--pss-ms", type=float, default=250,
                   help="PSS sampling interval (default 250 ms; 0 disables). PSS counts pages shared with the forked "
                        "faker worker once; the RSS target uses the RSS sum")
    p.add_argument("--patch", action="append", metavar="FILE",
                   help="run FILE in the ingest child before the sync (monkeypatch experiments, e.g. "
                        "bench/experiments/*.py); repeatable. The raw case is never patched.")
    p.add_argument("--quiet-wait", type=float, default=0, metavar="S",
                   help="before each case wait up to S s for a 2 s window where the machine uses < --quiet-cores "
                        "cores (default 0 = don't wait)")
    p.add_argument("--quiet-cores", type=float, default=0.5, help="see --quiet-wait (default 0.5)")
    p.add_argument("--clean-load", type=float, default=0.3,
                   help="also report throughput ratios over the pairs where other processes used < this many cores "
                        "(default 0.3)")
    p.add_argument("--variant", action="append", metavar="LABEL=FILE[,FILE]",
                   help="an extra case (a variant of the first --case) with these patch files, run in every repetition next to the plain "
                        "one (paired comparison of changes); repeatable. Exit code is judged on the plain case")
    p.add_argument("--json", help="also write every measurement to this JSON file")
    p.add_argument("--keep", action="store_true", help="keep the scratch dir (DuckDB files, child logs)")
    p.add_argument("--child", choices=["raw", "ingest", "isolated"], help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--project", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not args.child:
        return main_parent(args)
    args.t_start = T_START
    try:
        result = {"raw": child_raw, "ingest": child_ingest, "isolated": child_isolated}[args.child](args)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        import traceback

        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
    result["case"] = args.child
    Path(args.out).write_text(json.dumps(result, default=str))
    sys.stdout.flush()
    os._exit(0 if "error" not in result else 1)  # skip interpreter teardown (not part of the data phase)


T_START = time.perf_counter()
if __name__ == "__main__":
    sys.exit(main())
