"""EXPERIMENT (bench only): memory / CPU knobs for the DuckDB destination and Arrow, driven by environment variables.

  INGEST_BENCH_DUCKDB_THREADS=1        SET threads = 1 on the destination connection (default: DuckDB's, = cores)
  INGEST_BENCH_DUCKDB_MEMORY=128MB     SET memory_limit (default: 80% of RAM)
  INGEST_BENCH_ARROW_POOL=system       pyarrow default memory pool: system | jemalloc | mimalloc
  INGEST_BENCH_JEMALLOC_DECAY_MS=0     return freed jemalloc pages to the OS immediately
  INGEST_BENCH_DUCKDB_SQL="SET allocator_flush_threshold='8MB'"   any SQL run on the connection after opening
Use: INGEST_BENCH_DUCKDB_THREADS=1 python bench/throughput.py --patch bench/experiments/memory_knobs.py
"""
import os

import pyarrow as pa

from ingest.destinations import duckdb as D

_threads = os.environ.get("INGEST_BENCH_DUCKDB_THREADS")
_memory = os.environ.get("INGEST_BENCH_DUCKDB_MEMORY")
_pool = os.environ.get("INGEST_BENCH_ARROW_POOL")
_decay = os.environ.get("INGEST_BENCH_JEMALLOC_DECAY_MS")
_sql = os.environ.get("INGEST_BENCH_DUCKDB_SQL")

if _pool:
    pa.set_memory_pool({"system": pa.system_memory_pool, "jemalloc": pa.jemalloc_memory_pool,
                        "mimalloc": pa.mimalloc_memory_pool}[_pool]())
if _decay is not None:
    pa.jemalloc_set_decay_ms(int(_decay))

_init = D.DuckDBDestination.__init__


def __init__(self, *a, **k):  # signature-agnostic (the destination's parameters evolve)
    _init(self, *a, **k)
    if _threads:
        self.con.execute(f"SET threads = {int(_threads)}")
    if _memory:
        self.con.execute(f"SET memory_limit = '{_memory}'")
    if _sql:
        self.con.execute(_sql)


D.DuckDBDestination.__init__ = __init__
