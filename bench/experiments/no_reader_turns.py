"""EXPERIMENT (bench only): the sync loop as it was before read commands could take turns on a DuckDB file a run
writes: the writer thread blocks on its queue (no 0.2 s wake-ups) and never checks for a waiting reader. Paired with
the plain `run` case it prices the reader turns (issue 10: no more than 2% slower).
Use: python bench/throughput.py --case run --variant noturns=bench/experiments/no_reader_turns.py
"""
from ingest.sync import loop as M
from ingest.destinations import duckdb as D


def run(self) -> None:  # _Writer.run before reader turns (ops.get() without a timeout, no yield)
    from ingest.destinations.typing import records_to_arrow

    while True:
        op = self.ops.get()
        if op is None:
            return
        if self.error is not None:
            continue
        try:
            kind, target, *args = op
            if kind == "start":
                self.destination.start_stream(target)
            elif kind == "write":
                records, emitted, state = args
                batch, new_cols = (None, {})
                if records:
                    cols = self.destination.table_columns(target)
                    batch, new_cols = records_to_arrow(records, emitted, cols, self.run_id, target.load_id)
                self.destination.write(target, batch, new_cols, state)
            elif kind == "finish":
                state, make_event = args
                self.destination.finish_stream(target, state, make_event(target) if make_event else None)
                self.finished.add(target.stream)
            elif kind == "abort":
                self.destination.abort_stream(target)
        except BaseException as exc:  # noqa: BLE001
            self.error = exc


M._Writer.run = run
D.DuckDBDestination.yield_to_readers = lambda self: False
