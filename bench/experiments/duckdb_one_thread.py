"""EXPERIMENT (bench only): DuckDB limited to one thread, so its engine does not compete with the connector's
worker process for the 2 cores. Use: python bench/throughput.py --variant t1=bench/experiments/duckdb_one_thread.py
"""
from ingest.destinations import duckdb as D

_orig = D.DuckDBDestination.__init__


def __init__(self, *args, **kwargs):
    _orig(self, *args, **kwargs)
    self.con.execute("SET threads = 1")


D.DuckDBDestination.__init__ = __init__
