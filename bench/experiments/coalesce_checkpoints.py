"""EXPERIMENT (bench only): coalesce checkpoints on the reading side.

Today `_sync` hands the writer one batch (and the writer commits one DuckDB transaction) per source STATE message:
faker emits one every 1,000 records -> 150 commits for 150k records, each with its dedup statements and a WAL sync.
Here the reading thread's `_Writer.submit` holds "write" ops for the same target and hands them over merged once
>= MIN_ROWS rows are held (env INGEST_BENCH_MIN_ROWS, default 10_000 = defaults.batch.max_records) or the oldest held
op is older than MAX_AGE s (env INGEST_BENCH_MAX_AGE, default 10). The merged op carries the *latest* state, which
only covers records in the merged batch or earlier ones: state is never ahead of data. Any other op (start, finish,
abort, a write for another target such as the global state) first hands over what is held, so order is kept.
The writer then converts and commits 10k-row batches.
Use: python bench/throughput.py --patch bench/experiments/coalesce_checkpoints.py
"""
import os
import time

from ingest.sync import loop as M

MIN_ROWS = int(os.environ.get("INGEST_BENCH_MIN_ROWS") or 10_000)
MAX_AGE = float(os.environ.get("INGEST_BENCH_MAX_AGE") or 10.0)
_submit = M._Writer.submit


def _hand_over(self) -> None:
    held = self.__dict__.pop("_held", None)
    if held is not None:
        target, records, emitted, state, _ = held
        _submit(self, ("write", target, records, emitted, state))


def submit(self, op) -> None:
    kind, target, *args = op
    held = self.__dict__.get("_held")
    if kind == "write" and len(args) == 3 and target.stream != "__global__":
        records, emitted, state = args
        if held is not None and held[0] is not target:
            _hand_over(self)
            held = None
        if held is None:
            held = self._held = [target, list(records), list(emitted), state, time.monotonic()]
        else:
            held[1].extend(records)
            held[2].extend(emitted)
            if state is not None:
                held[3] = state
        if len(held[1]) >= MIN_ROWS or time.monotonic() - held[4] >= MAX_AGE:
            _hand_over(self)
        return
    _hand_over(self)
    _submit(self, op)


_close = M._Writer.close


def close(self) -> None:
    _hand_over(self)
    _close(self)


M._Writer.submit, M._Writer.close = submit, close
