"""EXPERIMENT (bench only): group commit in the writer thread.

The reading thread is unchanged (it hands over a batch at every STATE message, i.e. every 1,000 faker records). The
writer converts each batch to Arrow as soon as it arrives (small Python work that mostly lands while the reader waits
for the connector's next slice) but lands the accumulated Arrow tables in ONE `Destination.write` (one transaction)
when >= MIN_ROWS rows are pending (env INGEST_BENCH_MIN_ROWS, default 10_000), the oldest pending batch is older than
MAX_AGE s (env INGEST_BENCH_MAX_AGE, default 10), or any other op arrives (start / finish / abort / another target's
write such as the global state / the end). The committed state is the latest of the group: never ahead of data.
Every op other than a grouped write is executed by ingest's own `_Writer.run` (fed one op at a time), so this keeps
working while that method gains new op kinds.
Use: python bench/throughput.py --patch bench/experiments/writer_group_commit.py
"""
import os
import queue
import time
import types

import pyarrow as pa

from ingest.sync import loop as M

MIN_ROWS = int(os.environ.get("INGEST_BENCH_MIN_ROWS") or 10_000)
MAX_AGE = float(os.environ.get("INGEST_BENCH_MAX_AGE") or 10.0)
_orig_run = M._Writer.run


def _delegate(self, op) -> None:
    """Run one op through ingest's own writer loop."""
    q: queue.Queue = queue.Queue()
    q.put(op)
    q.put(None)
    proxy = types.SimpleNamespace(ops=q, error=None, destination=self.destination, run_id=self.run_id)
    _orig_run(proxy)
    if proxy.error is not None:
        raise proxy.error


def run(self) -> None:
    from ingest.destinations import typing as T

    pending: list = []  # [target, [arrow tables], new_cols, state, rows, since]

    def land() -> None:
        if not pending:
            return
        target, tables, new_cols, state, _, _ = pending
        pending.clear()
        batch = None
        if tables:
            try:
                batch = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column typed differently across batches: one by one
                for t in tables[:-1]:
                    self.destination.write(target, t, new_cols, None)
                batch = tables[-1]
        self.destination.write(target, batch, new_cols, state)

    while True:
        op = self.ops.get()
        if self.error is not None:
            if op is None:
                return
            continue
        try:
            if op is None:
                land()
                return
            kind, target, *args = op
            if kind == "write" and target.stream != "__global__":
                records, emitted, state = args
                if pending and pending[0] is not target:
                    land()
                if not pending:
                    pending[:] = [target, [], {}, None, 0, time.monotonic()]
                if records:
                    cols = {**self.destination.table_columns(target), **pending[2]}
                    batch, new_cols = T.records_to_arrow(records, emitted, cols, self.run_id, target.load_id)
                    pending[1].append(batch)
                    pending[2].update(new_cols)
                    pending[4] += batch.num_rows
                if state is not None:
                    pending[3] = state
                if pending[4] >= MIN_ROWS or time.monotonic() - pending[5] >= MAX_AGE:
                    land()
                continue
            land()
            _delegate(self, op)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread, as ingest does
            self.error = exc
            if op is None:
                return


M._Writer.run = run
