#!/usr/bin/env python
"""Throughput benchmark: the isolated runtime and `ingest run` against a raw in-process read of the same connector,
paired and interleaved in one run (a noisy 2-core machine: only ratios to a baseline measured next to them count).

Cases (each repetition of each case in its own fresh subprocess; see bench/README.md for where each runs):

  faker group -- workload: airbyte-source-faker==7.2.1, stream `users`, `count` records, seed 1, 1,000 records per
  slice, parallelism 1 (faker generates in a multiprocessing worker and emits a STATE message every 1,000 records)
    raw       THE BASELINE, in faker's own environment (its virtualenv in the connectors cache, Python 3.11 like the
              runner; faker cannot be imported by the runner any more): source_faker.SourceFaker(), discover,
              `users` incremental/append, iterate source.read(logger, config, catalog, []) and count + drop the
              records. No destination;
    isolated  in the runner's environment: IsolatedSource(<faker env python>, ...).discover(for_sync=True), then read() of the
              same catalog, counting records (RecordBatch) and STATE messages. No destination;
    run       `ingest -c <tmp>/connectors.yaml run bench` through the real CLI entry point (ingest.cli.main) -- or,
              with --mode manager, AirbyteManager(load_project(path)).run("bench") -- with the block pinned to
              airbyte-source-faker==7.2.1 and `runtime: isolated` (the only way the runner runs faker), into a
              fresh DuckDB file;
  jira group (in-process declarative manifest; its own baseline) -- airbyte-source-jira==4.0.0 with the project's
  override, stream `issues`, against tests/fakes/fake_jira.py (loopback HTTP, `--jira-issues` issues, 50 a page)
  served from this parent process
    jira-raw  the jira baseline, in the runner's environment: the block's InProcessSource (the manifest on the runner's
              CDK 7) read() of `issues`, counting records. No destination;
    jira-run  `ingest -c <tmp>/connectors.yaml run jira --stream issues` into a fresh DuckDB file.

Timed "data phase" (inside the child, so interpreter start, imports and discover are excluded):
  raw, isolated, jira-raw   from the call to read() until the iterator is exhausted (isolated: includes whatever is
                            left of the connector child's start -- it is pre-started at discover -- and its imports);
  run, jira-run             AirbyteManager._sync (reading + writer thread + final flush/commit), via a timing
                            wrapper that does not change behaviour.
records/s = records / data phase. "first record" = seconds from the start of the data phase to the first message.
Peak RSS: the parent samples the child's process tree with psutil (sum of RSS of the child and all its descendants:
the isolated connector process, faker's multiprocessing worker) every --sample-ms over the child's whole life; PSS
(shared pages counted once) every --pss-ms. CPU: the child's process time in the data phase plus its reaped
children's (getrusage), per record.
Correctness: every faker run must count `count` records (isolated: as many STATE messages as raw in the same
repetition); every `run` must land `count` rows == distinct ids in DuckDB with status succeeded; the jira cases
likewise with `--jira-issues`.

Usage:  python bench/throughput.py [--case isolated|run|jira ...] [--count 100000] [--jira-issues 3000]
        [--repeat 3] [--mode cli|manager] [--write default|append|dedup] [--variant LABEL=bench/experiments/x.py]
        [--connectors-dir DIR] [--connector-python PATH] [--quiet-wait 60] [--json out.json]   (see bench/README.md)
Exit code: 0 the isolated target (>= 0.85 x raw) met and every run correct, 1 the target missed, 2 a correctness
check failed or a child failed.
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
FAKER_PACKAGE, FAKER_VERSION = "airbyte-source-faker", "7.2.1"
JIRA_PACKAGE, JIRA_VERSION = "airbyte-source-jira", "4.0.0"
FAKER = f"{FAKER_PACKAGE}=={FAKER_VERSION}"
JIRA = f"{JIRA_PACKAGE}=={JIRA_VERSION}"
BLOCK, STREAM = "bench", "users"
JIRA_BLOCK, JIRA_STREAM = "jira", "issues"
JIRA_DOMAIN = "bench.atlassian.net"

# Targets. Judged (exit code): the issue's "isolated runtime >= 0.85 x the raw in-process read". Shown for reference
# only: the performance anchors' `ingest run` targets (>= 0.9 x raw throughput, <= 1.3 x raw peak RSS), set when
# faker still ran in-process in the runner.
TARGET_ISOLATED = 0.85
ANCHOR_RUN_THROUGHPUT, ANCHOR_RUN_RSS = 0.9, 1.3


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


# ====================================================================== children (each in a fresh interpreter)


def _rusage() -> dict:
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "maxrss_self_mb": s.ru_maxrss / 1024, "maxrss_children_mb": c.ru_maxrss / 1024,
        "cpu_self_s": s.ru_utime + s.ru_stime, "cpu_children_s": c.ru_utime + c.ru_stime,
        "cpu_rusage_total_s": s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime,
    }


def _children_cpu() -> float:
    import resource

    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return c.ru_utime + c.ru_stime


def _count_read(messages, stream: str, args) -> dict:
    """Consume a read: records of `stream` (RECORD messages or RecordBatch frames) and STATE messages, timed."""
    records = states = 0
    first = None
    setup_s = time.perf_counter() - args.t_start
    children0 = _children_cpu()  # e.g. discover's connector process is not part of the data phase
    cpu0, pcpu0 = time.thread_time(), time.process_time()
    t0 = time.perf_counter()
    for message in messages():
        if first is None:
            first = time.perf_counter() - t0
        t = message.type
        if t == "RECORD_BATCH":
            if message.stream == stream:
                records += len(message.records)
        elif t == RECORD_TYPE[0]:
            if message.record.stream == stream:
                records += 1
        elif t == RECORD_TYPE[1]:
            states += 1
    seconds = time.perf_counter() - t0
    usage = _rusage()
    usage["cpu_children_s"] -= children0
    return {
        "records": records, "states": states, "seconds": seconds, "setup_s": setup_s, "first_s": first,
        "cpu_reader_s": time.thread_time() - cpu0, "cpu_process_s": time.process_time() - pcpu0, **usage,
    }


RECORD_TYPE: list = []


def _message_types() -> None:
    try:  # the runner's vocabulary (no CDK import: an isolated read in the runner never imports it)
        from ingest.sources.protocol import Type
    except ImportError:  # faker's own environment (the raw read)
        from airbyte_cdk.models import Type

    RECORD_TYPE[:] = [Type.RECORD, Type.STATE]


def child_raw(args) -> dict:
    """faker's own read, in faker's environment (this script run by its python)."""
    import logging

    import source_faker

    _message_types()
    logger = logging.getLogger("airbyte")
    config = faker_config(args.count)
    source = source_faker.SourceFaker()
    configured = users_catalog(source.discover(logger, config))
    return _count_read(lambda: source.read(logger, config, configured, []), STREAM, args)


def child_isolated(args) -> dict:
    _run_patches(args)
    _message_types()
    from ingest.sources.isolated import IsolatedSource

    source = IsolatedSource(args.connector_python, FAKER_PACKAGE, faker_config(args.count), label="bench")
    configured = users_catalog(source.discover(for_sync=True))  # as a sync does: the same child serves the read
    return _count_read(lambda: source.read(configured, []), STREAM, args)


def child_jira_raw(args) -> dict:
    """The jira block's in-process source (manifest + override on the runner's CDK), prepared as `ingest run` does."""
    _run_patches(args)
    _message_types()
    from ingest.config import load_project
    from ingest.sync.runner import AirbyteManager

    manager = AirbyteManager(load_project(args.project))
    block = manager.block(JIRA_BLOCK)
    source = manager.source(block)
    configured, _ = manager.configured_catalog(block, source.discover(), [JIRA_STREAM], False)
    return _count_read(lambda: source.read(configured, []), JIRA_STREAM, args)


def _run_patches(args) -> None:
    """Experiments: monkeypatches (--patch / --variant files) applied before anything is timed."""
    import runpy

    for patch in args.patch or []:
        runpy.run_path(patch, run_name="__bench_patch__")


def child_ingest(args) -> dict:
    import inspect
    import threading

    from ingest.sync import loop as L, runner as M
    from ingest.destinations import duckdb as D
    from ingest.destinations import typing as T

    _run_patches(args)  # before the timing wrappers below

    diag = {"to_arrow_s": 0.0, "db_write_s": 0.0, "batches": 0, "db_writes": 0, "submit_blocked_s": 0.0, "writer_cpu_s": 0.0}
    box: dict = {}
    lock = threading.Lock()

    # ---- timing wrappers (per call / per batch / per message only; they do not change what the code does)
    orig_sync = M.AirbyteManager._sync
    sync_sig = inspect.signature(orig_sync)

    def timed_sync(self, *a, **k):  # signature-agnostic: _sync's parameters change as ingest evolves
        bound = sync_sig.bind(self, *a, **k).arguments
        results, source = bound["results"], bound.get("source")
        t0 = time.perf_counter()
        if source is not None:  # time to the first message the sync loop gets
            orig_read = source.read

            def read(*ra, **rk):
                for message in orig_read(*ra, **rk):
                    if "first_s" not in box:
                        box["first_s"] = time.perf_counter() - t0
                    yield message

            source.read = read
        box["setup_s"] = time.perf_counter() - args.t_start
        children0 = _children_cpu()  # discover's connector process is not part of the data phase
        cpu0, pcpu0 = time.thread_time(), time.process_time()
        t0 = time.perf_counter()
        err = orig_sync(self, *a, **k)
        box["seconds"] = time.perf_counter() - t0
        box["cpu_reader_s"] = time.thread_time() - cpu0
        box["cpu_process_s"] = time.process_time() - pcpu0
        box["cpu_children_data_s"] = _children_cpu() - children0
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

    orig_run, orig_submit = L._Writer.run, L._Writer.submit

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

    L._Writer.run, L._Writer.submit = timed_writer_run, timed_submit

    streams = [args.stream] if args.stream else None
    if args.mode == "cli":
        from ingest.cli import main

        argv = ["-c", args.project, "run", args.block] + (["--stream", args.stream] if args.stream else [])
        try:
            main.main(args=argv, prog_name="ingest", standalone_mode=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        box["exit_code"] = code
    else:
        from ingest.config import load_project

        result = M.AirbyteManager(load_project(args.project)).run(args.block, streams=streams)
        box["exit_code"] = 0 if result.ok else 1
    if "seconds" not in box:
        raise RuntimeError(f"the sync never ran (exit code {box.get('exit_code')})")
    usage = _rusage()
    usage["cpu_children_s"] = box.pop("cpu_children_data_s")
    return {**box, "diag": diag, **usage}


# ====================================================================== parent: cases and projects


class Case:
    def __init__(self, label: str, child: str, group: str, baseline: str | None, patches=(), where: str = ""):
        self.label, self.child, self.group, self.baseline = label, child, group, baseline
        self.patches, self.where = list(patches), where


def write_faker_project(directory: Path, args, db: Path) -> Path:
    import yaml

    stream = {"name": STREAM}
    if args.write != "default":
        stream["write"] = args.write
    spec = {
        "defaults": {"destination": "duckdb", "duckdb": {"path": str(db)}, "connectors_dir": str(args.connectors_dir)},
        "connectors": {BLOCK: {
            "team": "bench", "description": "throughput benchmark (the demo block's connector, users only)",
            "source": FAKER, "runtime": "isolated", "config": faker_config(args.count), "streams": [stream],
        }},
    }
    path = directory / "connectors.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def write_jira_project(directory: Path, args, db: Path, base_url: str) -> Path:
    import yaml

    (directory / "overrides").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "overrides" / "source-jira.yaml", directory / "overrides" / "source-jira.yaml")
    spec = {
        "defaults": {"destination": "duckdb", "duckdb": {"path": str(db)}, "connectors_dir": str(args.connectors_dir)},
        "connectors": {JIRA_BLOCK: {
            "team": "bench", "description": "throughput benchmark (in-process declarative manifest)",
            "source": JIRA, "overrides": "overrides/source-jira.yaml",
            "config": {"domain": "${JIRA_DOMAIN}", "base_url": base_url, "email": "${JIRA_EMAIL}",
                       "api_token": "${JIRA_API_TOKEN}", "start_date": "2024-01-01T00:00:00Z", "max_retries": 0},
            "streams": [{"name": JIRA_STREAM}],
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


def run_child(case: Case, args, workdir: Path, tag: str, project: Path | None = None, env_extra: dict | None = None) -> dict:
    import psutil

    busy_before = wait_for_quiet(args) if args.quiet_wait > 0 else None

    out = workdir / f"{tag}.json"
    python = args.connector_python if case.child == "raw" else sys.executable
    cmd = [python, str(HERE), "--child", case.child, "--count", str(args.count), "--out", str(out), "--mode", args.mode,
           "--connector-python", args.connector_python]
    for patch in case.patches:
        cmd += ["--patch", str(Path(patch).resolve())]
    if project is not None:
        cmd += ["--project", str(project)]
    if case.group == "jira":
        cmd += ["--block", JIRA_BLOCK, "--stream", JIRA_STREAM]
    else:
        cmd += ["--block", BLOCK]
    stdout, stderr = open(workdir / f"{tag}.stdout", "wb"), open(workdir / f"{tag}.stderr", "wb")
    env = dict(os.environ, PYTHONUNBUFFERED="1", INGEST_CONNECTORS_DIR=str(args.connectors_dir), **(env_extra or {}))
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
    # This process's CPU while the child ran (the sampler, and the jira fake's server threads) is not "other load".
    total_s, busy = time.perf_counter() - t0, cpu_busy_seconds() - busy0 - (time.process_time() - mine0)
    stdout.close(), stderr.close()
    result = {"case": case.label, "child": case.child, "returncode": proc.returncode, "process_s": total_s,
              "peak_tree_rss_mb": peak / 2**20, "peak_tree_pss_mb": peak_pss / 2**20 if args.pss_ms > 0 else None}
    if out.exists():
        result.update(json.loads(out.read_text()))
        result["case"] = case.label
    if proc.returncode != 0 or "error" in result or "records" not in result:
        tail = (workdir / f"{tag}.stderr").read_text(errors="replace")[-3000:]
        result.setdefault("error", f"child exited {proc.returncode}")
        result["stderr_tail"] = tail
    result["rps"] = result["records"] / result["seconds"] if result.get("seconds") else 0.0
    result["cpu_total_s"] = result.get("cpu_process_s", 0.0) + result.get("cpu_children_s", 0.0)
    # CPU used by everything else on the machine while this child ran (cores): noise indicator. The child's own CPU
    # is taken from its getrusage (self + children, incl. imports).
    own = result.get("cpu_rusage_total_s", 0.0)
    result["external_cores"] = max(0.0, (busy - own) / total_s) if total_s else None
    result["busy_before"] = busy_before
    return result


def check_db(db: Path, table: str) -> dict:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows, ids = con.execute(f'SELECT count(*), count(DISTINCT id) FROM "{table}"').fetchone()
        status = con.execute("SELECT status FROM _ingest_runs ORDER BY started_at DESC LIMIT 1").fetchone()
    except Exception as exc:  # noqa: BLE001
        return {"db_rows": -1, "db_ids": -1, "db_error": f"{type(exc).__name__}: {exc}"}
    finally:
        con.close()
    return {"db_rows": rows, "db_ids": ids, "run_status": status[0] if status else None}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def interpreter(python: str) -> str:
    """'Python 3.11.7, airbyte-cdk 6.61.6' for an interpreter (one short subprocess)."""
    code = ("import sys, importlib.metadata as m; v = sys.version_info\n"
            "try: cdk = m.version('airbyte-cdk')\nexcept Exception: cdk = 'none'\n"
            "print(f'Python {v.major}.{v.minor}.{v.micro}, airbyte-cdk {cdk}')")
    try:
        return subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    except Exception as exc:  # noqa: BLE001
        return f"? ({exc})"


def main_parent(args) -> int:
    sys.path.insert(0, str(REPO))
    from ingest.sources.environments import ConnectorCache, default_cache_dir

    args.connectors_dir = Path(args.connectors_dir or default_cache_dir()).resolve()
    cache = ConnectorCache(args.connectors_dir, notify=lambda line: print(f"  {line}", flush=True))
    if not args.connector_python:
        args.connector_python = str(cache.ensure_venv(FAKER_PACKAGE, FAKER_VERSION))
    wanted = {"run" if c == "ingest" else c for c in (args.case or ["isolated", "run", "jira"])}
    if args.jira_issues <= 0:
        wanted.discard("jira")

    runner_py, faker_py = interpreter(sys.executable), interpreter(args.connector_python)
    cases = [Case("raw", "raw", "faker", None, where=f"faker's venv ({faker_py}), in-process, no destination")]
    if "isolated" in wanted:
        cases.append(Case("isolated", "isolated", "faker", "raw", args.patch or [],
                          where=f"runner ({runner_py}) + faker child in faker's venv, no destination"))
    if "run" in wanted:
        cases.append(Case("run", "ingest", "faker", "raw", args.patch or [],
                          where=f"`ingest run` in the runner, faker isolated, into DuckDB"))
    for v in args.variant or []:
        label, _, files = v.partition("=")
        cases.append(Case(label, "ingest", "faker", "raw", [f for f in files.split(",") if f],
                          where=f"`ingest run` + {files}"))

    fake = None
    if "jira" in wanted:
        try:
            from tests.fakes.fake_jira import FakeJira

            cache.ensure_files(JIRA_PACKAGE, JIRA_VERSION)
            fake = FakeJira(seed=1, issue_count=args.jira_issues).start()
        except Exception as exc:  # noqa: BLE001 - the faker cases still run
            print(f"jira cases skipped: {type(exc).__name__}: {exc}")
    if fake is not None:
        cases.append(Case("jira-raw", "jira_raw", "jira", None,
                          where=f"runner ({runner_py}), manifest in-process, no destination"))
        cases.append(Case("jira-run", "ingest", "jira", "jira-raw", args.patch or [],
                          where="`ingest run` in the runner, manifest in-process, into DuckDB"))
    if runner_py.split(",")[0] != faker_py.split(",")[0]:
        print(f"WARNING: the runner runs {runner_py.split(',')[0]} but faker's environment {faker_py.split(',')[0]}")

    workdir = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    print(f"faker workload: {FAKER} ({args.connector_python}) stream {STREAM!r}, {faker_config(args.count)}; "
          f"write={args.write}")
    if fake is not None:
        print(f"jira workload: {JIRA} in-process with overrides/source-jira.yaml, stream {JIRA_STREAM!r}, "
              f"{args.jira_issues:,} issues from tests/fakes/fake_jira.py at {fake.base_url}")
    print(f"connectors cache: {args.connectors_dir}; `ingest run` via "
          f"{'the CLI (ingest.cli.main)' if args.mode == 'cli' else 'AirbyteManager.run'}; "
          f"{args.repeat} interleaved repetition(s) of: {', '.join(c.label for c in cases)}; scratch dir {workdir}")
    for c in cases:
        print(f"  {c.label:<10} {c.where}")
    print(f"load average at start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])} ({os.cpu_count()} cores)\n")
    reps: list[dict[str, dict]] = []
    problems: list[str] = []
    try:
        for i in range(args.repeat):
            rep: dict[str, dict] = {}
            for group in ("faker", "jira"):
                members = [c for c in cases if c.group == group]
                for case in members[i % len(members):] + members[: i % len(members)] if members else []:
                    tag = f"{case.label}{i}".replace("/", "_")
                    result = rep[case.label] = run_case(case, args, workdir, tag, fake)
                    _report_line(i, case.label, result)
            for case in cases:
                problems += check_case(case, i, rep, args)
            reps.append(rep)
    finally:
        if fake is not None:
            fake.stop()
        if args.json:
            Path(args.json).write_text(json.dumps(reps, indent=2, default=str))
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"load average at end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    return _summary(args, reps, cases, problems)


def run_case(case: Case, args, workdir: Path, tag: str, fake) -> dict:
    env = {}
    if case.group == "jira":
        env = {"JIRA_DOMAIN": JIRA_DOMAIN, "JIRA_EMAIL": fake.email, "JIRA_API_TOKEN": fake.token}
    if case.child in ("raw", "isolated"):
        return run_child(case, args, workdir, tag)
    db = workdir / f"{tag}.duckdb"
    (workdir / f"p_{tag}").mkdir()
    if case.group == "jira":
        project = write_jira_project(workdir / f"p_{tag}", args, db, fake.base_url)
    else:
        project = write_faker_project(workdir / f"p_{tag}", args, db)
    result = run_child(case, args, workdir, tag, project, env)
    if case.child == "ingest" and db.exists() and "error" not in result:
        result.update(check_db(db, f"{JIRA_BLOCK}_{JIRA_STREAM}" if case.group == "jira" else f"{BLOCK}_{STREAM}"))
    return result


def check_case(case: Case, i: int, rep: dict, args) -> list[str]:
    """Correctness of one run (against the workload's size and its baseline in the same repetition)."""
    result = rep.get(case.label)
    if result is None:
        return []
    if "error" in result:
        return [f"rep {i} {case.label}: {result['error']}\n{result.get('stderr_tail', '')}"]
    expect = args.jira_issues if case.group == "jira" else args.count
    checks = {f"records == {expect:,}": result.get("records") == expect}
    if case.child == "ingest":
        checks.update({
            "DuckDB rows == records": result.get("db_rows") == expect,
            "DuckDB distinct ids == records": result.get("db_ids") == expect,
            "run status succeeded, exit 0": result.get("run_status") == "succeeded" and result.get("exit_code") == 0,
        })
    base = rep.get(case.baseline) if case.baseline else None
    if case.child == "isolated" and base is not None and "error" not in base:
        checks["STATE messages == raw STATE messages"] = result.get("states") == base.get("states")
    result["checks"] = checks
    return [f"rep {i} {case.label}: check failed: {k} (records {result.get('records')}, db rows {result.get('db_rows')}, "
            f"ids {result.get('db_ids')}, status {result.get('run_status')}, states {result.get('states')})"
            for k, ok in checks.items() if not ok]


def _report_line(i: int, label: str, r: dict) -> None:
    if "error" in r:
        print(f"  rep {i} {label:<10} FAILED: {r['error']}", flush=True)
        return
    extra = ""
    if r.get("child") == "ingest":
        d = r["diag"]
        extra = (f"\n      writer cpu {d['writer_cpu_s']:.1f}s, wall in to_arrow {d['to_arrow_s']:.1f}s / duckdb write "
                 f"{d['db_write_s']:.1f}s ({d['batches']} conversions, {d.get('db_writes')} DuckDB transactions); "
                 f"reader blocked on queue {d['submit_blocked_s']:.1f}s; DuckDB rows {r.get('db_rows')}")
    first = f" (first msg {r['first_s']:.2f}s)" if r.get("first_s") is not None else ""
    print(f"  rep {i} {label:<10} {r['records']:>8,} rec {r['seconds']:7.2f}s{first} {r['rps']:>8,.0f} rec/s  "
          f"peak tree RSS {r['peak_tree_rss_mb']:4.0f} MB" + (f" (PSS {r['peak_tree_pss_mb']:4.0f})" if r.get("peak_tree_pss_mb") else "")
          + f"  CPU {1e6 * r['cpu_total_s'] / max(r['records'], 1):5.1f} µs/rec  other load {r['external_cores']:.1f} cores{extra}",
          flush=True)


def _ratios(reps, case: Case, get) -> list[float]:
    """Per-repetition ratio of `case` to its baseline in the same repetition (both must have succeeded)."""
    out = []
    for rep in reps:
        a, b = rep.get(case.label), rep.get(case.baseline)
        if a is None or b is None or "error" in a or "error" in b:
            continue
        x, y = get(a), get(b)
        if x is not None and y:
            out.append(x / y)
    return out


def _summary(args, reps, cases: list[Case], problems) -> int:
    print()
    ok = {c.label: [rep[c.label] for rep in reps if c.label in rep and "error" not in rep[c.label]] for c in cases}
    fmt = lambda v, f: f.format(v) if v is not None and v == v else "-"  # noqa: E731

    # ---- 1. one row per case
    print(f"medians over {args.repeat} repetition(s) (faker count={args.count:,}"
          + (f", jira issues={args.jira_issues:,}" if any(c.group == "jira" for c in cases) else "")
          + "); ratio = median of the per-repetition ratios to the baseline measured in the same repetition")
    pw = max(14, 6 * args.repeat)  # "per repetition" column: 0.95, 0.80, ...
    head = (f"  {'case':<10} {'baseline':<9} {'records/s':>10} {'ratio':>6}  {'per repetition':<{pw}} {'peak RSS MB':>11} "
            f"{'RSS ratio':>9} {'PSS MB':>7} {'CPU µs/rec':>10} {'CPU cores':>9} {'first msg s':>11} {'wall s':>6} {'other load':>10}")
    print(head)
    for c in cases:
        runs = ok[c.label]
        if not runs:
            print(f"  {c.label:<10} all runs failed")
            continue
        tp = _ratios(reps, c, lambda r: r["rps"]) if c.baseline else []
        rss = _ratios(reps, c, lambda r: r["peak_tree_rss_mb"]) if c.baseline else []
        cpu = med([1e6 * r["cpu_total_s"] / r["records"] for r in runs if r["records"]])
        cores = med([r["cpu_total_s"] / r["seconds"] for r in runs if r["seconds"]])
        print(f"  {c.label:<10} {c.baseline or '(itself)':<9} {med([r['rps'] for r in runs]):>10,.0f} "
              f"{fmt(med(tp) if tp else None, '{:.2f}'):>6}  {', '.join(f'{x:.2f}' for x in tp) or '-':<{pw}} "
              f"{med([r['peak_tree_rss_mb'] for r in runs]):>11,.0f} {fmt(med(rss) if rss else None, '{:.2f}'):>9} "
              f"{fmt(med([r.get('peak_tree_pss_mb') for r in runs]), '{:,.0f}'):>7} {cpu:>10.1f} {cores:>9.2f} "
              f"{fmt(med([r.get('first_s') for r in runs]), '{:.2f}'):>11} {med([r['process_s'] for r in runs]):>6.1f} "
              f"{med([r['external_cores'] for r in runs]):>10.2f}")
    print()

    # ---- 2. details (medians)
    rows = [
        ("records", lambda r: r["records"], "{:,.0f}"),
        ("data phase (s)", lambda r: r["seconds"], "{:.2f}"),
        ("  first message after (s)", lambda r: r.get("first_s"), "{:.2f}"),
        ("records/s after the first message", lambda r: r["records"] / (r["seconds"] - r["first_s"])
         if r.get("first_s") is not None and r["seconds"] > r["first_s"] else None, "{:,.0f}"),
        ("peak tree RSS (MB)", lambda r: r["peak_tree_rss_mb"], "{:,.0f}"),
        ("peak tree PSS (MB)", lambda r: r["peak_tree_pss_mb"], "{:,.0f}"),
        ("ru_maxrss self (MB)", lambda r: r["maxrss_self_mb"], "{:,.0f}"),
        ("ru_maxrss children (MB)", lambda r: r["maxrss_children_mb"], "{:,.0f}"),
        ("CPU µs/rec: total", lambda r: 1e6 * r["cpu_total_s"] / r["records"], "{:.1f}"),
        ("  main process, all threads", lambda r: 1e6 * r["cpu_process_s"] / r["records"], "{:.1f}"),
        ("  reading thread only", lambda r: 1e6 * r["cpu_reader_s"] / r["records"], "{:.1f}"),
        ("  writer thread only", lambda r: 1e6 * r["diag"]["writer_cpu_s"] / r["records"] if "diag" in r else None, "{:.1f}"),
        ("  child processes (reaped)", lambda r: 1e6 * r["cpu_children_s"] / r["records"], "{:.1f}"),
        ("writer wall: records_to_arrow (s)", lambda r: r["diag"]["to_arrow_s"] if "diag" in r else None, "{:.2f}"),
        ("writer wall: DuckDB write (s)", lambda r: r["diag"]["db_write_s"] if "diag" in r else None, "{:.2f}"),
        ("DuckDB write transactions", lambda r: r["diag"].get("db_writes") if "diag" in r else None, "{:.0f}"),
        ("reader blocked in submit (s)", lambda r: r["diag"]["submit_blocked_s"] if "diag" in r else None, "{:.2f}"),
        ("process wall incl. imports (s)", lambda r: r["process_s"], "{:.1f}"),
        ("other processes' load (cores)", lambda r: r["external_cores"], "{:.2f}"),
    ]
    width = max(11, *(len(c.label) + 2 for c in cases))
    print(f"  {'details (medians)':<36}" + "".join(f"{c.label:>{width}}" for c in cases))
    for label, get, f in rows:
        vals = []
        for c in cases:
            try:
                vals.append(med([get(r) for r in ok[c.label]]))
            except (KeyError, ZeroDivisionError, TypeError):
                vals.append(None)
        print(f"  {label:<36}" + "".join(f"{fmt(v, f):>{width}}" for v in vals))
    print()

    # ---- 3. targets and correctness
    exit_code = 0
    for c in cases:
        if not c.baseline:
            continue
        tp = _ratios(reps, c, lambda r: r["rps"])
        rss = _ratios(reps, c, lambda r: r["peak_tree_rss_mb"])
        clean = [x for rep, x in zip(reps, tp)
                 if max(rep[c.label].get("external_cores") or 0, rep[c.baseline].get("external_cores") or 0) < args.clean_load] \
            if len(tp) == len(reps) else []
        if c.label == "isolated":
            verdict = f"(target >= {TARGET_ISOLATED}) {'PASS' if tp and med(tp) >= TARGET_ISOLATED else 'FAIL'}"
            if not tp or med(tp) < TARGET_ISOLATED:
                exit_code = 1
        elif c.child == "ingest" and c.group == "faker":
            verdict = f"(anchor >= {ANCHOR_RUN_THROUGHPUT}, not judged)"
        else:
            verdict = "(info)"
        print(f"{c.label}/{c.baseline} throughput: {', '.join(f'{x:.2f}' for x in tp) or '-'} -> median "
              f"{fmt(med(tp) if tp else None, '{:.2f}')} {verdict}; clean pairs (other load < {args.clean_load} cores): "
              + (f"{', '.join(f'{x:.2f}' for x in clean)} -> {med(clean):.2f}" if clean else "none"))
        rss_note = f" (anchor <= {ANCHOR_RUN_RSS}, not judged)" if c.child == "ingest" and c.group == "faker" else ""
        print(f"{' ' * len(c.label)}  peak RSS ratio: {', '.join(f'{x:.2f}' for x in rss) or '-'} -> median "
              f"{fmt(med(rss) if rss else None, '{:.2f}')}{rss_note}")
    for c in cases:
        runs = [rep[c.label] for rep in reps if c.label in rep]
        n_ok = sum(1 for r in runs if r.get("checks") and all(r["checks"].values()))
        print(f"correctness {c.label}: {n_ok}/{len(runs)} runs with "
              + ", ".join(next((r["checks"] for r in runs if r.get("checks")), {}) or ["(no successful run)"])
              + f" {'PASS' if runs and n_ok == len(runs) else 'FAIL'}")
    for p in problems:
        print("PROBLEM:", p)
    return 2 if problems else exit_code


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", action="append", choices=["isolated", "run", "jira", "ingest"],
                   help="what to measure next to the raw faker read; repeatable (default: all three; 'ingest' is an "
                        "old name of 'run'; 'jira' adds the jira-raw/jira-run pair)")
    p.add_argument("--connectors-dir", metavar="DIR",
                   help="the connectors cache (default: $INGEST_CONNECTORS_DIR, else ingest's default); faker's "
                        "environment is built there on first use")
    p.add_argument("--connector-python", metavar="PATH",
                   help=f"python of an environment with {FAKER} (default: the connectors cache's)")
    p.add_argument("--count", type=int, default=100_000, help="faker records (default 100000)")
    p.add_argument("--jira-issues", type=int, default=3000,
                   help="issues the jira fake serves (default 3000; 0 = no jira cases)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved repetitions of every case (default 3)")
    p.add_argument("--mode", choices=["cli", "manager"], default="cli",
                   help="`ingest run` through the CLI entry point (default) or AirbyteManager.run")
    p.add_argument("--write", choices=["default", "append", "dedup"], default="default",
                   help="write mode for faker's users stream (default: ingest's choice, i.e. dedup on id)")
    p.add_argument("--sample-ms", type=float, default=25, help="RSS sampling interval (default 25 ms)")
    p.add_argument("--pss-ms", type=float, default=250,
                   help="PSS sampling interval (default 250 ms; 0 disables). PSS counts shared pages once")
    p.add_argument("--patch", action="append", metavar="FILE",
                   help="run FILE in the runner's children (isolated, run, jira-run) before anything is "
                        "timed (monkeypatch experiments, e.g. bench/experiments/*.py); repeatable. raw is never patched")
    p.add_argument("--quiet-wait", type=float, default=0, metavar="S",
                   help="before each case wait up to S s for a 2 s window where the machine uses < --quiet-cores "
                        "cores (default 0 = don't wait)")
    p.add_argument("--quiet-cores", type=float, default=0.5, help="see --quiet-wait (default 0.5)")
    p.add_argument("--clean-load", type=float, default=0.3,
                   help="also report throughput ratios over the pairs where other processes used < this many cores "
                        "(default 0.3)")
    p.add_argument("--variant", action="append", metavar="LABEL=FILE[,FILE]",
                   help="an extra faker `ingest run` case with these patch files, in every repetition next to the "
                        "plain one (paired comparison of changes); repeatable")
    p.add_argument("--json", help="also write every measurement to this JSON file")
    p.add_argument("--keep", action="store_true", help="keep the scratch dir (DuckDB files, child logs)")
    p.add_argument("--child", choices=["raw", "ingest", "isolated", "jira_raw"], help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--project", help=argparse.SUPPRESS)
    p.add_argument("--block", default=BLOCK, help=argparse.SUPPRESS)
    p.add_argument("--stream", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not args.child:
        return main_parent(args)
    args.t_start = T_START
    try:
        result = {"raw": child_raw, "ingest": child_ingest, "isolated": child_isolated,
                  "jira_raw": child_jira_raw}[args.child](args)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        import traceback

        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
    Path(args.out).write_text(json.dumps(result, default=str))
    sys.stdout.flush()
    os._exit(0 if "error" not in result else 1)  # skip interpreter teardown (not part of the data phase)


T_START = time.perf_counter()
if __name__ == "__main__":
    sys.exit(main())
