"""The sync loop (one reading thread, one writing thread):
- the reading thread iterates the source's messages and only appends record dicts to a per-stream buffer
  (a few µs per record, so loading never slows the connector down);
- when a buffer reaches the batch bound, or a STATE message arrives for its stream, the buffer and that state are
  handed to the writer thread through a bounded queue (memory stays bounded by ~3 batches, never by the stream);
- the writer converts the batch to Arrow and calls `Destination.write`, which commits records + state together.
State is never ahead of data: a state goes to the writer with (after) the records read before it, and a staged
(replace) load holds its state back until the swap. Every CLI command, test and Metaflow step runs this loop: there
is one implementation of a sync.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time

import orjson

from ..destinations.base import Destination, RunRecord, StreamTarget
from ..errors import SyncError
from ..secrets import REDACTOR
from ..stopping import STOP_SIGNALS, stop_message as _stop_message
from .results import StreamResult
from .state import state_message_to_dict, stream_state_blob

# A STATE that follows no record at all since the stream's last committed state (an empty date window, a
# connector's heartbeat) is committed at most this often; in between it is held, and the stream's next state
# replaces it. A connector that walks hundreds of empty windows would otherwise cost a transaction each (seconds
# each on Snowflake). A kill loses at most this much progress through empty windows, and every commit still holds
# a state that covers exactly what was committed before it.
STATE_ONLY_EVERY = 5.0

log = logging.getLogger("ingest")


def read_and_land(source, configured, state, targets: dict[str, StreamTarget], results: dict[str, StreamResult],
                  dest: Destination, run: RunRecord, announcer, batch, progress) -> SyncError | None:
    """Read the source into the destination: the reading loop on this thread, the writer on its own. Records read
    before a failure are landed too; the returned error (None: the sync succeeded) is the run's outcome.
    `batch`: the project's batch bounds; `progress`: the progress callback (or None)."""
    writer = _Writer(dest, run.run_id)
    writer.start()
    loop = _Reader(targets, results, writer, batch.max_records, batch.max_bytes, progress)
    error = loop.read(source, configured, state, dest)
    error = loop.land(error, announcer, dest)
    # Landed means committed: a stream the connector completed but whose final commit failed did not land.
    announcer.landed &= writer.finished
    STOP_SIGNALS.done()
    loop.tally()
    return error


# ---------------------------------------------------------------- the reading thread


class _Reader:
    """The reading thread's side: per-stream buffers, handed to the writer at the batch bounds and at each state."""

    def __init__(self, targets: dict[str, StreamTarget], results: dict[str, StreamResult], writer: _Writer,
                 batch_rows: int, batch_bytes: int, progress):
        self.targets, self.results, self.writer = targets, results, writer
        self.batch_rows, self.batch_bytes = batch_rows, batch_bytes
        self.buffers: dict[str, list] = {name: [] for name in targets}
        self.emitted: dict[str, list] = {name: [] for name in targets}
        self.sizes: dict[str, float] = {name: 0.0 for name in targets}
        self.pending_state: dict[str, dict | None] = {name: None for name in targets}  # held back for staged loads
        self.avg_size = 512.0
        self.counts = {name: 0 for name in targets}
        self.completed: set[str] = set()  # streams the connector said are complete
        self.errors_seen: dict[str, int] = {}  # connector error text → times (a bad token fails every date window)
        self.progress = _Progress(progress, self.counts)
        self.held_state: dict[str, dict | None] = {name: None for name in targets}  # state-only, not yet committed
        self.last_commit: dict[str, float] = {name: 0.0 for name in targets}
        self.rows_without_state: dict[str, bool] = {name: False for name in targets}  # committed since the last state

    def flush(self, name: str, state: dict | None) -> None:
        target = self.targets[name]
        if state is not None and not self.buffers[name] and not target.staged and not self.rows_without_state[name]:
            if time.monotonic() - self.last_commit[name] < STATE_ONLY_EVERY:
                self.held_state[name] = state  # see STATE_ONLY_EVERY
                return
        if state is None and not self.buffers[name]:
            state, self.held_state[name] = self.held_state[name], None  # the end (or a global state): commit it
            if state is None:
                return
        elif state is not None:
            self.held_state[name] = None  # a newer state supersedes the held one
        if target.staged and state is not None:
            self.pending_state[name], state = state, None
            if not self.buffers[name]:
                return
        self.writer.submit(("write", target, self.buffers[name], self.emitted[name], state))
        self.rows_without_state[name] = state is None
        self.buffers[name], self.emitted[name], self.sizes[name] = [], [], 0.0
        self.last_commit[name] = time.monotonic()

    def read(self, source, configured, state, dest: Destination) -> SyncError | None:
        """Every message of the source, until it ends or fails; the failure (or a stop signal) as the run's error."""
        error: SyncError | None = None
        try:
            for target in self.targets.values():
                self.writer.submit(("start", target))
            # closed here, whatever happens: a source's generator left to the garbage collector (a failed run's
            # traceback holds it) would stop its connector child only at interpreter shutdown, where that can hang
            with contextlib.closing(source.read(configured, state)) as messages:
                self._messages(messages)
        except SyncError as exc:
            error = exc
        except KeyboardInterrupt as exc:
            error = SyncError(_stop_message(exc), failure_type="interrupted")
        except Exception as exc:  # noqa: BLE001 - the writer's error re-raised at submit (or a bug): recorded like any
            # failure, and never escaping past the landing below (it stops the writer and unmutes the stop signals)
            log.debug("sync failed", exc_info=True)
            where = f"destination {dest.describe()}: " if exc is self.writer.error else ""
            error = SyncError(REDACTOR.redact(f"{where}{type(exc).__name__}: {exc}"))
        finally:
            self.progress.stop()
            STOP_SIGNALS.finishing()  # landing what was read must not be cut short by a second signal
        return error

    def _messages(self, messages) -> None:
        """The hot loop: a RECORD costs a few appends here (locals on purpose: this runs once per record)."""
        from ..sources.protocol import Type

        buffers, emitted, counts, sizes = self.buffers, self.emitted, self.counts, self.sizes
        batch_rows, batch_bytes, flush, progress = self.batch_rows, self.batch_bytes, self.flush, self.progress
        n = 0
        for message in messages:
            mtype = message.type
            if mtype == Type.RECORD:
                record = message.record
                name = record.stream
                buf = buffers.get(name)
                if buf is None:
                    continue  # a stream we did not ask for
                buf.append(record.data)
                emitted[name].append(record.emitted_at)
                counts[name] += 1
                n += 1
                if n & 255 == 0:  # sample record sizes; measuring each one would cost more than loading it
                    self.avg_size = 0.8 * self.avg_size + 0.2 * _record_size(record.data)
                    progress.tick(name)
                sizes[name] += self.avg_size
                if len(buf) >= batch_rows or sizes[name] >= batch_bytes:
                    flush(name, None)
            elif mtype == "RECORD_BATCH":  # an isolated connector's records, already batched by the child
                n += self._record_batch(message)
            elif mtype == Type.STATE:
                self._state(message.state)
            else:
                self._other(message)

    def _record_batch(self, message) -> int:
        name = message.stream
        buf = self.buffers.get(name)
        if buf is None:
            return 0
        buf.extend(message.records)
        self.emitted[name].extend(message.emitted_at)
        added = len(message.records)
        self.counts[name] += added
        if message.records:
            self.avg_size = 0.8 * self.avg_size + 0.2 * _record_size(message.records[-1])
        self.progress.tick(name)
        self.sizes[name] += self.avg_size * added
        if len(buf) >= self.batch_rows or self.sizes[name] >= self.batch_bytes:
            self.flush(name, None)
        return added

    def _state(self, st) -> None:
        from ..sources.protocol import AirbyteStateType

        as_dict = state_message_to_dict(st)
        if st.type == AirbyteStateType.STREAM and st.stream is not None:
            name = st.stream.stream_descriptor.name
            if name in self.targets:
                self.flush(name, as_dict)
                self.results[name].state_after = stream_state_blob(as_dict)
        else:
            # Global / legacy state covers every stream: flush them all first.
            for name in self.targets:
                self.flush(name, None)
            first = next(iter(self.targets.values()))
            self.writer.submit(("write", dataclasses.replace(first, stream="__global__", full_refresh=False, write="append"), [], [], as_dict))

    def _other(self, message) -> None:
        from ..sources.protocol import TraceType, Type

        mtype = message.type
        if mtype == Type.LOG:
            _log_connector(message.log)
        elif mtype == Type.TRACE and message.trace.type == TraceType.ERROR:
            text = REDACTOR.redact(message.trace.error.message)
            seen = self.errors_seen[text] = self.errors_seen.get(text, 0) + 1
            if seen == 1:
                log.error("connector error: %s", text)
        elif mtype == Type.TRACE and message.trace.type == TraceType.STREAM_STATUS:
            status = message.trace.stream_status
            if getattr(status.status, "value", status.status) == "COMPLETE":
                self.completed.add(status.stream_descriptor.name)

    def land(self, error: SyncError | None, announcer, dest: Destination) -> SyncError | None:
        """The final commit of every stream, after the read ended (well or not); the writer is closed after it."""
        writer, results = self.writer, self.results
        try:
            # Records read before a failure are still landed (state stays behind them), so a rerun re-reads less.
            # A staged (replace) load is only swapped in when the read succeeded: a failed run keeps the old table.
            for name, target in self.targets.items():
                # A stream landed if the whole sync succeeded, or the connector said the stream was complete.
                landed = error is None or name in self.completed
                if target.staged and not landed:
                    writer.submit(("abort", target))  # the old table stays; the half-built one goes
                    results[name].state_after = results[name].state_before  # nothing new was saved
                    continue
                self.flush(name, None)
                if landed:
                    announcer.landed.add(name)
                writer.submit(("finish", target, self.pending_state[name] if landed else None, announcer.landed_event if landed else None))
            writer.close()
        except Exception as exc:  # noqa: BLE001
            log.debug("destination failed", exc_info=True)
            error = error or SyncError(REDACTOR.redact(f"destination {dest.describe()}: {type(exc).__name__}: {exc}"))
            if writer.is_alive():
                writer.ops.put(None)
        return error

    def tally(self) -> None:
        for text, seen in self.errors_seen.items():
            if seen > 1:
                log.error("the same connector error %d more time(s): %s", seen - 1, text)
        for name, target in self.targets.items():
            self.results[name].records = self.counts[name]
            self.results[name].rows_written = target.rows_written
            self.results[name].rows_without_key = target.rows_without_key
            self.results[name].schema_changes = list(target.schema_changes)


def _record_size(record: dict) -> int:
    """Bytes of a record as JSON, for the batch size bound. A value orjson refuses (an integer beyond 64 bits, deep
    nesting) must not fail the sync: it is measured by the exact encoder the destination uses for it."""
    try:
        return len(orjson.dumps(record, default=str))
    except (TypeError, orjson.JSONEncodeError):
        from ..destinations.typing import _to_json

        return len(_to_json(record))


def _log_connector(log_message) -> None:
    level = getattr(log_message.level, "value", str(log_message.level))
    py_level = {"FATAL": 50, "ERROR": 40, "WARN": 30, "INFO": 20, "DEBUG": 10, "TRACE": 5}.get(level, 20)
    logging.getLogger("ingest.connector").log(py_level, "%s", REDACTOR.redact(log_message.message))


class _Progress:
    """Calls the progress callback at most every `interval` seconds with per-stream counts and rate; the first time
    `first` seconds after the read started, so a run shows it is flowing soon (and a test can act on it soon)."""

    def __init__(self, callback, counts: dict[str, int], interval: float = 2.0, first: float = 0.5):
        self.callback, self.counts, self.interval = callback, counts, interval
        self.started = time.monotonic()
        self.last = self.started - interval + first

    def tick(self, stream: str) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            total = sum(self.counts.values())
            self.callback({"stream": stream, "records": total, "rate": total / max(now - self.started, 1e-6), "counts": dict(self.counts)})

    def stop(self) -> None:
        pass


# ---------------------------------------------------------------- the writer thread


class _Writer(threading.Thread):
    """Owns the destination during a sync; applies ops in order. Errors stop it and surface to the reader."""

    def __init__(self, destination: Destination, run_id: str):
        super().__init__(name="ingest-writer", daemon=True)
        self.destination, self.run_id = destination, run_id
        self.ops: queue.Queue = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.finished: set[str] = set()  # streams whose final commit (swap, state, landed event) went through

    def run(self) -> None:
        from ..destinations.typing import records_to_arrow

        while True:
            try:
                op = self.ops.get(timeout=0.2)
            except queue.Empty:  # the connector is slow: a read command waiting for the file can go in now
                self._let_readers_in()
                continue
            if op is None:
                return
            if self.error is not None:
                continue  # drain so the reader never blocks; it raises at its next submit
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
            except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
                self.error = exc
            self._let_readers_in()

    def _let_readers_in(self) -> None:
        """Between ops no transaction is open: the one point where a DuckDB run can hand its file to a reader."""
        if self.error is None:
            try:
                self.destination.yield_to_readers()
            except BaseException as exc:  # noqa: BLE001 - e.g. the file could not be reopened: the sync fails
                self.error = exc

    def submit(self, op) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.ops.put(op, timeout=0.5)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        while self.is_alive():
            try:
                self.ops.put(None, timeout=0.5)
                break
            except queue.Full:
                continue
        self.join()
        if self.error is not None:
            raise self.error
