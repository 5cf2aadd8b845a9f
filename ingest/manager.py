"""AirbyteManager: builds sources and destinations for a block and runs syncs.

The sync loop (one reading thread, one writing thread):
- the reading thread iterates the source's messages and only appends record dicts to a per-stream buffer
  (a few µs per record, so loading never slows the connector down);
- when a buffer reaches the batch bound, or a STATE message arrives for its stream, the buffer and that state are
  handed to the writer thread through a bounded queue (memory stays bounded by ~3 batches, never by the stream);
- the writer converts the batch to Arrow and calls `Destination.write`, which commits records + state together.
Every CLI command, test and Metaflow step calls into this module: there is one implementation of a sync.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import queue
import secrets as _random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import orjson

from .config import Block, ConfigError, Project, parse_duration
from .events import webhook_url
from .destinations import destination_choice, open_destination, open_for_reading
from .destinations.base import KILLED, Destination, RunRecord, StreamTarget, why_run_is_dead
from .errors import BusyError, IngestError, SyncError
from .lineage import Lineage
from .secrets import REDACTOR
from .stopping import STOP_SIGNALS, stop_message as _stop_message

log = logging.getLogger("ingest")


# ---------------------------------------------------------------- results


@dataclass
class StreamResult:
    stream: str
    table: str
    write: str
    sync: str
    records: int = 0
    rows_written: int = 0
    rows_without_key: int = 0  # dedup: records with a NULL or missing primary key value, appended instead of merged
    state_before: dict | None = None
    state_after: dict | None = None
    schema_changes: list[str] = field(default_factory=list)
    load_id: str = ""


@dataclass
class SyncResult:
    run: RunRecord
    streams: dict[str, StreamResult]
    destination: str
    seconds: float
    error: SyncError | None = None
    events_sent: int = 0
    event_errors: list[str] = field(default_factory=list)
    rows_history: dict[str, list[int]] = field(default_factory=dict)  # rows per landed load, last 12, per stream

    @property
    def ok(self) -> bool:
        return self.error is None


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + _random.token_hex(3)


# ---------------------------------------------------------------- building blocks


def state_message_to_dict(message) -> dict:
    from airbyte_cdk.models import AirbyteStateMessageSerializer

    return AirbyteStateMessageSerializer.dump(message)


def state_messages(stored: dict[str, dict], streams: set[str]) -> list:
    from airbyte_cdk.models import AirbyteStateMessageSerializer

    return [AirbyteStateMessageSerializer.load(v) for k, v in stored.items() if k in streams or k == "__global__"]


def stream_state_blob(state: dict | None):
    """The connector's own state (cursor) inside a stored state message, for display."""
    if not state:
        return None
    if state.get("stream"):
        return state["stream"].get("stream_state")
    return state.get("global") or state.get("data")


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
        from .destinations.typing import records_to_arrow

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


# ---------------------------------------------------------------- the manager


class AirbyteManager:
    """Runs connector blocks: spec, check, discover, and sync into a destination."""

    def __init__(self, project: Project, progress: Callable[[dict], None] | None = None, lock_wait: float = 0.0):
        self.project = project
        self.progress = progress
        self.lock_wait = lock_wait

    # -- simple operations

    def block(self, name: str) -> Block:
        """The block, ready to run: its connector release locked and fetched, secrets resolved, config checked."""
        from .sources.connector import prepare

        block = self.project.block(name)
        prepare(block)
        return block

    def source(self, block: Block):
        from .sources.connector import make_source

        return make_source(block, check_timeout=parse_duration(self.project.defaults.check_timeout))

    def spec(self, name: str) -> dict:
        from .sources.connector import block_spec

        return block_spec(self.project.block(name)) or {}

    def check(self, name: str) -> tuple[bool, str | None]:
        return self.source(self.block(name)).check()

    def discover(self, name: str):
        return self.source(self.block(name)).discover()

    def state(self, name: str, destination: str | None = None, wait: float = 30.0) -> dict[str, dict]:
        """The block's saved state; read-only (a missing DuckDB file means no state: nothing is created)."""
        block = self.project.block(name)
        dest = open_for_reading(self.project, block, destination, wait)
        if dest is None:
            return {}
        with dest:
            return dest.read_state(name)

    def reset_state(self, name: str, streams: list[str] | None = None, destination: str | None = None) -> int:
        block = self.project.block(name)
        known = {s.name for s in block.streams}
        unknown = [s for s in streams or [] if s not in known]
        if unknown:
            raise ConfigError(f"--stream: block {name!r} has no stream(s) {', '.join(unknown)} (streams: {', '.join(sorted(known))})")
        with open_destination(self.project, block, destination) as dest:
            return dest.reset_state(name, streams)

    # -- the sync

    def configured_catalog(self, block: Block, catalog, only: list[str] | None, full_refresh: bool):
        """The block's streams → a ConfiguredAirbyteCatalog plus our per-stream write settings."""
        from airbyte_cdk.models import ConfiguredAirbyteCatalog, ConfiguredAirbyteStream, DestinationSyncMode, SyncMode

        available = {s.name: s for s in catalog.streams}
        wanted = block.streams
        if only:
            names = {s.name for s in wanted}
            unknown = [s for s in only if s not in names]
            if unknown:
                raise ConfigError(f"--stream: block {block.name!r} has no stream(s) {', '.join(unknown)} (streams: {', '.join(sorted(names))})")
            wanted = [s for s in wanted if s.name in only]
        problems, configured, settings = [], [], {}
        index = {s.name: i for i, s in enumerate(block.streams)}
        for s in wanted:
            stream = available.get(s.name)
            i = index[s.name]
            line = self.project.lines.get(("connectors", block.name, "streams", i, "name"))
            where = f"{self.project.path}{f':{line}' if line else ''}: connectors.{block.name}.streams[{i}]"
            if stream is None:
                problems.append(f"{where}: the connector has no stream {s.name!r} (it offers: {', '.join(sorted(available))})")
                continue
            modes = [getattr(m, "value", m) for m in stream.supported_sync_modes or []]
            sync = s.sync or ("incremental" if "incremental" in modes else "full_refresh")
            if sync not in modes:
                problems.append(f"{where}.sync: the stream supports {', '.join(modes)}, not {sync}")
                continue
            # A configured key or cursor that the stream does not have would silently merge nothing (or everything):
            # refuse it before anything is written, at the line that sets it.
            fields = sorted((stream.json_schema or {}).get("properties") or {})
            wrong = [("primary_key", f) for f in _not_fields(stream.json_schema, s.primary_key or [])]
            wrong += [("cursor", f) for f in _not_fields(stream.json_schema, [s.cursor] if s.cursor else [])]
            for key, field in wrong:
                key_line = self.project.lines.get(("connectors", block.name, "streams", i, key)) or line
                problems.append(f"{self.project.path}{f':{key_line}' if key_line else ''}: connectors.{block.name}."
                                f"streams[{i}].{key}: {field!r} is not a field of stream {s.name!r} "
                                f"(its fields: {', '.join(fields)})")
            if wrong:
                continue
            pk = s.primary_key or [p[0] for p in (stream.source_defined_primary_key or []) if p]
            cursor = s.cursor or ((stream.default_cursor_field or [None])[0] if sync == "incremental" else None)
            from .destinations.typing import RESERVED, field_key

            # A field named like one of our columns lands renamed (`_ingest_load_id` → `_ingest_load_id_2`); keying
            # or ordering on it would merge on OUR column (one value per load) and collapse the stream to one row.
            ours = [(k, f) for k, f in [("primary_key", f) for f in pk] + [("cursor", cursor)] if f and f.lower() in RESERVED]
            for key, field in ours:
                problems.append(f"{where}.{key}: {field!r} is named like one of ingest's own columns (it lands as "
                                f"{field_key(field)!r}); a {key.replace('_', ' ')} on it is not supported: choose "
                                "another field, or land the stream with write: append")
            if ours:
                continue
            write = s.write or ("dedup" if sync == "incremental" and pk else "append" if sync == "incremental" else "replace")
            if write == "dedup" and not pk:
                problems.append(f"{where}.write: dedup needs a primary key; the connector declares none, so set primary_key")
                continue
            dsm = {"append": DestinationSyncMode.append, "dedup": DestinationSyncMode.append_dedup, "replace": DestinationSyncMode.overwrite}[write]
            configured.append(
                ConfiguredAirbyteStream(
                    stream=stream,
                    sync_mode=SyncMode(sync),
                    destination_sync_mode=dsm,
                    cursor_field=[cursor] if cursor else None,
                    primary_key=[[k] for k in pk] if pk else None,
                )
            )
            settings[s.name] = (s, sync, write, pk or None, cursor)
        if problems:
            raise ConfigError(problems)
        return ConfiguredAirbyteCatalog(streams=configured), settings

    def run(
        self,
        name: str,
        streams: list[str] | None = None,
        full_refresh: bool = False,
        destination: str | None = None,
        run_id: str | None = None,
        run_pathspec: str | None = None,
        wait: float = 0.0,
    ) -> SyncResult:
        """Sync a block. `run_pathspec` is the Metaflow task that runs it (events carry it); default `cli/<run id>`."""
        from .destinations.typing import columns_from_schema

        block = self.block(name)
        started = time.monotonic()
        destination_choice(self.project, block, destination)  # a bad flag fails before anything is opened
        source = self.source(block)
        run = RunRecord(
            run_id=run_id or new_run_id(), block=block.name, team=block.team, streams=[],
            started_at=dt.datetime.now(dt.timezone.utc),
        )
        results: dict[str, StreamResult] = {}
        # Discover and check the streams before the destination is opened: a stream the connector doesn't offer
        # is a config error (exit 2) and must leave no file behind.
        try:
            catalog = source.discover(for_sync=True)
        except SyncError as exc:
            catalog, discover_error = None, exc
        else:
            discover_error = None
            configured, settings = self.configured_catalog(block, catalog, streams, full_refresh)
        dest = open_destination(self.project, block, destination, lock_wait=max(self.lock_wait, wait), run_id=run.run_id)
        run.destination = dest.describe()
        lineage = Lineage.from_settings(self.project.defaults.lineage, base_dir=self.project.path.parent,
                                        secrets=self.project.defaults.secrets)
        targets: dict[str, StreamTarget] = {}
        heartbeat: _Heartbeat | None = None
        announcer: _Announcer | None = None
        if hasattr(source, "use_warehouse"):
            # Pullers may read their inputs (shipments, carriers) from the block's destination.
            source.use_warehouse(dest.query)
        try:
            if discover_error is not None:
                raise discover_error
            run.streams = list(settings)
            locks_before = _locks_of(dest, block.name)
            heartbeat = _hold_locks(dest, block, run, parse_duration(self.project.defaults.lock_ttl), wait)
            killed = _record_dead_runs(dest, block, run, webhook_url(self.project.defaults.events.webhook), locks_before)
            run.started_at = dt.datetime.now(dt.timezone.utc)  # time spent queueing (--wait) is not run time
            stored = {} if full_refresh else dest.read_state(block.name)
            state = state_messages(stored, set(settings))
            for cs in configured.streams:
                s, sync, write, pk, cursor = settings[cs.stream.name]
                targets[s.name] = StreamTarget(
                    block=block.name, team=block.team, source=block.source_label, stream=s.name, table=s.table,
                    write=write, primary_key=pk, cursor=cursor, columns=columns_from_schema(cs.stream.json_schema),
                    run_id=run.run_id, load_id=f"{run.run_id}-{s.name}", full_refresh=full_refresh,
                )
                results[s.name] = StreamResult(
                    stream=s.name, table=s.table, write=("replace" if full_refresh else write), sync=sync,
                    state_before=stream_state_blob(stored.get(s.name)), load_id=targets[s.name].load_id,
                )
            dest.record_run(run)
            lineage.start(block=block, run=run, targets=targets, parent_pathspec=run_pathspec)
            announcer = _Announcer(self.project, block, dest, run, results, run_pathspec, also_publish=killed)
            error = self._sync(source, configured, state, targets, results, dest, run, announcer)
        except KeyboardInterrupt as exc:  # a stop signal outside the reading loop (e.g. while queueing for locks)
            if heartbeat is None:  # it never started: nothing was written, nothing to record
                dest.close()
                raise SyncError(f"{_stop_message(exc)} before the sync started; nothing was written") from None
            error = SyncError(_stop_message(exc), failure_type="interrupted")
        except (ConfigError, BusyError) as exc:
            dest.close()
            if lineage.started:  # a refused run (BusyError) never started: it owes no event
                lineage.finish(block=block, run=run, targets=targets, results=results, error=exc)
            raise
        except IngestError as exc:
            error = exc if isinstance(exc, SyncError) else SyncError(str(exc))
        except Exception as exc:  # noqa: BLE001 - a destination bug must still be recorded and reported clearly
            log.debug("sync failed", exc_info=True)
            error = SyncError(REDACTOR.redact(f"{type(exc).__name__}: {exc}"))
        STOP_SIGNALS.finishing()
        try:
            return self._finish_run(block, run, dest, results, targets, error, heartbeat, announcer, lineage, streams,
                                    run_pathspec, started)
        finally:
            STOP_SIGNALS.done()

    def _finish_run(self, block, run, dest, results, targets, error, heartbeat, announcer, lineage, streams,
                    run_pathspec, started) -> SyncResult:
        """Record the run's end, then release its locks (that order: a `running` row without a live lock means the
        run died), write data_failed events, publish, close. Stop signals are held off meanwhile."""
        run.ended_at = dt.datetime.now(dt.timezone.utc)
        run.rows = sum(r.records for r in results.values())
        run.status = "failed" if error else "succeeded"
        run.error = REDACTOR.redact(f"{error.failure_type or 'error'}: {error}") if error else None
        sent, event_errors, history = 0, [], {}
        if heartbeat is not None:
            heartbeat.stop()
        try:
            dest.record_run(run)
        except Exception as exc:  # noqa: BLE001 - never mask the sync's own outcome
            log.warning("could not record run %s in %s: %s", run.run_id, dest.describe(), REDACTOR.redact(exc))
        try:
            dest.release_locks(run.run_id)
        except Exception:  # noqa: BLE001 - an unreleased lock expires by itself
            log.warning("could not release the locks of run %s", run.run_id, exc_info=True)
        try:
            # The one built before the sync knows which streams landed; a run that failed earlier has none.
            announcer = announcer or _Announcer(self.project, block, dest, run, results, run_pathspec)
            if error is not None:
                # Owners hear about breakage first: one data_failed event per stream that did not land.
                for name in [n for n in run.streams or [s.name for s in block.streams] if n not in announcer.landed] or ["*"]:
                    dest.record_event(announcer.failed(name, error))
            sent, event_errors = announcer.publish()
            history = _rows_history(dest, block.name, list(results))
        except Exception as exc:  # noqa: BLE001 - never mask the sync's own outcome
            log.warning("could not record the run or its events in %s: %s", dest.describe(), REDACTOR.redact(exc))
            log.debug("record_run failed", exc_info=True)
        dest.close()
        # After close: a slow lineage backend must not hold the destination (or its locks) any longer.
        lineage.finish(block=block, run=run, targets=targets, results=results, error=error, streams=streams,
                       parent_pathspec=run_pathspec)
        return SyncResult(run=run, streams=results, destination=dest.describe(), seconds=time.monotonic() - started,
                          error=error, events_sent=sent, event_errors=event_errors, rows_history=history)

    def _sync(self, source, configured, state, targets, results, dest, run, announcer) -> SyncError | None:
        from airbyte_cdk.models import AirbyteStateType, TraceType, Type

        batch_rows = self.project.defaults.batch.max_records
        batch_bytes = self.project.defaults.batch.max_bytes
        writer = _Writer(dest, run.run_id)
        writer.start()
        buffers: dict[str, list] = {name: [] for name in targets}
        emitted: dict[str, list] = {name: [] for name in targets}
        sizes: dict[str, float] = {name: 0.0 for name in targets}
        pending_state: dict[str, dict | None] = {name: None for name in targets}  # held back for staged loads
        avg_size = [512.0]
        counts = {name: 0 for name in targets}
        progress = _Progress(self.progress, counts)

        def flush(name: str, state: dict | None) -> None:
            target = targets[name]
            if not buffers[name] and state is None:
                return
            if target.staged and state is not None:
                pending_state[name], state = state, None
                if not buffers[name]:
                    return
            writer.submit(("write", target, buffers[name], emitted[name], state))
            buffers[name], emitted[name], sizes[name] = [], [], 0.0

        error: SyncError | None = None
        completed: set[str] = set()
        try:
            for target in targets.values():
                writer.submit(("start", target))
            n = 0
            for message in source.read(configured, state):
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
                        avg_size[0] = 0.8 * avg_size[0] + 0.2 * _record_size(record.data)
                        progress.tick(name)
                    sizes[name] += avg_size[0]
                    if len(buf) >= batch_rows or sizes[name] >= batch_bytes:
                        flush(name, None)
                elif mtype == "RECORD_BATCH":  # an isolated connector's records, already batched by the child
                    name = message.stream
                    buf = buffers.get(name)
                    if buf is None:
                        continue
                    buf.extend(message.records)
                    emitted[name].extend(message.emitted_at)
                    added = len(message.records)
                    counts[name] += added
                    n += added
                    if message.records:
                        avg_size[0] = 0.8 * avg_size[0] + 0.2 * _record_size(message.records[-1])
                    progress.tick(name)
                    sizes[name] += avg_size[0] * added
                    if len(buf) >= batch_rows or sizes[name] >= batch_bytes:
                        flush(name, None)
                elif mtype == Type.STATE:
                    st = message.state
                    as_dict = state_message_to_dict(st)
                    if st.type == AirbyteStateType.STREAM and st.stream is not None:
                        name = st.stream.stream_descriptor.name
                        if name in targets:
                            flush(name, as_dict)
                            results[name].state_after = stream_state_blob(as_dict)
                    else:
                        # Global / legacy state covers every stream: flush them all first.
                        for name in targets:
                            flush(name, None)
                        first = next(iter(targets.values()))
                        writer.submit(("write", dataclasses.replace(first, stream="__global__", full_refresh=False, write="append"), [], [], as_dict))
                elif mtype == Type.LOG:
                    _log_connector(message.log)
                elif mtype == Type.TRACE and message.trace.type == TraceType.ERROR:
                    log.error("connector error: %s", REDACTOR.redact(message.trace.error.message))
                elif mtype == Type.TRACE and message.trace.type == TraceType.STREAM_STATUS:
                    status = message.trace.stream_status
                    if getattr(status.status, "value", status.status) == "COMPLETE":
                        completed.add(status.stream_descriptor.name)
        except SyncError as exc:
            error = exc
        except KeyboardInterrupt as exc:
            error = SyncError(_stop_message(exc), failure_type="interrupted")
        except Exception as exc:  # noqa: BLE001 - the writer's error re-raised at submit (or a bug): recorded like any
            # failure, and never escaping past the landing below (it stops the writer and unmutes the stop signals)
            log.debug("sync failed", exc_info=True)
            where = f"destination {dest.describe()}: " if exc is writer.error else ""
            error = SyncError(REDACTOR.redact(f"{where}{type(exc).__name__}: {exc}"))
        finally:
            progress.stop()
            STOP_SIGNALS.finishing()  # landing what was read must not be cut short by a second signal
        try:
            # Records read before a failure are still landed (state stays behind them), so a rerun re-reads less.
            # A staged (replace) load is only swapped in when the read succeeded: a failed run keeps the old table.
            for name, target in targets.items():
                # A stream landed if the whole sync succeeded, or the connector said the stream was complete.
                landed = error is None or name in completed
                if target.staged and not landed:
                    writer.submit(("abort", target))  # the old table stays; the half-built one goes
                    results[name].state_after = results[name].state_before  # nothing new was saved
                    continue
                flush(name, None)
                if landed:
                    announcer.landed.add(name)
                writer.submit(("finish", target, pending_state[name] if landed else None, announcer.landed_event if landed else None))
            writer.close()
        except Exception as exc:  # noqa: BLE001
            log.debug("destination failed", exc_info=True)
            error = error or SyncError(REDACTOR.redact(f"destination {dest.describe()}: {type(exc).__name__}: {exc}"))
            if writer.is_alive():
                writer.ops.put(None)
        # Landed means committed: a stream the connector completed but whose final commit failed did not land.
        announcer.landed &= writer.finished
        STOP_SIGNALS.done()
        for name, target in targets.items():
            results[name].records = counts[name]
            results[name].rows_written = target.rows_written
            results[name].rows_without_key = target.rows_without_key
            results[name].schema_changes = list(target.schema_changes)
        return error


def _record_size(record: dict) -> int:
    """Bytes of a record as JSON, for the batch size bound. A value orjson refuses (an integer beyond 64 bits, deep
    nesting) must not fail the sync: it is measured by the exact encoder the destination uses for it."""
    try:
        return len(orjson.dumps(record, default=str))
    except (TypeError, orjson.JSONEncodeError):
        from .destinations.typing import _to_json

        return len(_to_json(record))


def _rows_history(dest: Destination, block: str, streams: list[str], last: int = 12) -> dict[str, list[int]]:
    """Rows per landed load for each stream, oldest first (for the card's sparkline), from the events ledger."""
    from .events import DATA_LANDED

    history: dict[str, list[int]] = {s: [] for s in streams}
    for row in dest.list_events(block=block):
        payload = row["payload"]
        if payload.get("event") == DATA_LANDED and row["stream"] in history:
            history[row["stream"]].append(payload.get("rows") or 0)
    return {s: rows[-last:] for s, rows in history.items()}


class _Heartbeat(threading.Thread):
    """Keeps a run's locks alive while it runs; a run that dies stops heart-beating and its locks expire."""

    def __init__(self, dest: Destination, run_id: str, ttl: float):
        super().__init__(name="ingest-lock-heartbeat", daemon=True)
        self.dest, self.run_id, self.ttl = dest, run_id, ttl
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(max(self.ttl / 3, 0.5)):
            try:
                self.dest.refresh_locks(self.run_id, self.ttl)
            except Exception:  # noqa: BLE001 - a missed beat is survivable; the TTL covers a few
                log.debug("lock heartbeat failed", exc_info=True)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def _hold_locks(dest: Destination, block: Block, run: RunRecord, ttl: float, wait: float) -> _Heartbeat:
    """One sync per (block, stream) at a time: take the run's stream locks or refuse, naming the holder."""
    holder = {"block": block.name, "run_id": run.run_id, "host": socket.gethostname(), "pid": os.getpid()}
    deadline = time.monotonic() + wait
    while True:
        held = dest.acquire_locks(holder, run.streams, ttl)
        if not held:
            break
        if time.monotonic() >= deadline:
            h = held[0]
            streams = ", ".join(sorted({r["stream"] for r in held}))
            raise BusyError(
                f"{block.name}: stream(s) {streams} are being synced by run {h['run_id']} on {h['host']} "
                f"(pid {h['pid']}) since {h['started_at']:%Y-%m-%d %H:%M:%S %Z}; refused so the two runs don't interleave. "
                f"Retry later, or pass --wait SECONDS to queue behind it."
            )
        time.sleep(0.5)
    beat = _Heartbeat(dest, run.run_id, ttl)
    beat.start()
    return beat


def _locks_of(dest: Destination, block: str) -> list[dict]:
    try:
        return dest.list_locks(block=block)
    except NotImplementedError:
        return []


def _record_dead_runs(dest: Destination, block: Block, run: RunRecord, webhook: str | None,
                      locks_before: list[dict]) -> list[str]:
    """Runs of this block still recorded as `running` whose process is gone (SIGKILL, out of memory, a lost node:
    see why_run_is_dead) are recorded as `killed`, each with a data_failed event per stream, by the next run of the
    block, once it holds its own locks. `locks_before`: the block's locks before this run took over the stale ones
    (they say why a run is dead). Returns the run ids (their events get published with this run's)."""
    from .events import DATA_FAILED, PENDING, RECORDED, Event

    try:
        running = [r for r in dest.list_runs(block=block.name, status="running") if r["run_id"] != run.run_id]
        locks = dest.list_locks(block=block.name) if running else []  # read after the runs: see why_run_is_dead
    except NotImplementedError:
        return []
    now = dt.datetime.now(dt.timezone.utc)
    killed = []
    for row in running:
        if why_run_is_dead(row, locks, now) is None:
            continue
        why = why_run_is_dead(row, locks_before, now) or "its locks were taken over"
        error = f"killed: the run stopped without recording its end ({why}); found by run {run.run_id}"
        if not dest.mark_run_killed(row["run_id"], now, error):
            continue  # it recorded its own end meanwhile
        log.warning("%s: run %s was %s", block.name, row["run_id"], error)
        for stream in list(row.get("streams") or []) or ["*"]:
            dest.record_event(Event(
                kind=DATA_FAILED, team=row.get("team") or block.team, block=block.name, stream=stream,
                table=next((s.table for s in block.streams if s.name == stream), ""), destination=dest.describe(),
                run_id=row["run_id"], load_id=f"{row['run_id']}-{stream}", run_pathspec=f"unknown/{row['run_id']}",
                rows=row.get("rows") or 0, error_class=KILLED, error_message=error,
                status=PENDING if webhook else RECORDED,
            ))
        killed.append(row["run_id"])
    return killed


class _Announcer:
    """Builds a run's DataLanded / data_failed events and publishes what the ledger holds as pending."""

    def __init__(self, project: Project, block: Block, dest: Destination, run: RunRecord, results, run_pathspec,
                 also_publish: list[str] | None = None):
        from .events import WebhookPublisher, webhook_url

        url = webhook_url(project.defaults.events.webhook)
        self.publisher = WebhookPublisher(url) if url else None
        self.block, self.dest, self.run, self.results = block, dest, run, results
        self.run_pathspec = run_pathspec or f"cli/{run.run_id}"
        self.landed: set[str] = set()
        self.also_publish = also_publish or []  # runs found dead by this one: their data_failed events

    def _event(self, kind: str, stream: str, table: str, load_id: str, **extra):
        from .events import PENDING, RECORDED, Event

        return Event(
            kind=kind, team=self.block.team, block=self.block.name, stream=stream, table=table,
            destination=self.dest.describe(), run_id=self.run.run_id, load_id=load_id, run_pathspec=self.run_pathspec,
            status=PENDING if self.publisher else RECORDED, **extra,
        )

    def landed_event(self, target: StreamTarget):
        """Called on the writer thread right before the stream's final commit, so rows and schema are final."""
        from .events import DATA_LANDED, schema_hash

        r = self.results[target.stream]
        return self._event(
            DATA_LANDED, target.stream, target.table, target.load_id, rows=target.rows_written,
            rows_without_key=target.rows_without_key,
            cursor_before=r.state_before, cursor_after=r.state_after,
            schema_hash=schema_hash(self.dest.table_columns(target)),
        )

    def failed(self, stream: str, error: SyncError):
        from .events import DATA_FAILED

        r = self.results.get(stream)
        return self._event(
            DATA_FAILED, stream, r.table if r else "", r.load_id if r else f"{self.run.run_id}-{stream}",
            rows=r.rows_written if r else 0, cursor_before=r.state_before if r else None,
            error_class=error.failure_type or "error", error_message=REDACTOR.redact(str(error)),
        )

    def publish(self) -> tuple[int, list[str]]:
        from .events import publish_pending

        sent, errors = publish_pending(self.dest, self.publisher, run_id=self.run.run_id)
        for run_id in self.also_publish:
            more, more_errors = publish_pending(self.dest, self.publisher, run_id=run_id)
            sent, errors = sent + more, errors + more_errors
        return sent, errors


def _not_fields(json_schema: dict | None, names: list[str]) -> list[str]:
    """The names that are not declared fields of a stream. A schema that declares no properties at all is open
    (anything may come): nothing can be checked up front, and records lacking the key count as rows_without_key."""
    props = (json_schema or {}).get("properties") or {}
    return [n for n in names if props and n not in props]


def _log_connector(log_message) -> None:
    level = getattr(log_message.level, "value", str(log_message.level))
    py_level = {"FATAL": 50, "ERROR": 40, "WARN": 30, "INFO": 20, "DEBUG": 10, "TRACE": 5}.get(level, 20)
    logging.getLogger("ingest.connector").log(py_level, "%s", REDACTOR.redact(log_message.message))


class _Progress:
    """Calls the progress callback at most every `interval` seconds with per-stream counts and rate."""

    def __init__(self, callback, counts: dict[str, int], interval: float = 2.0):
        self.callback, self.counts, self.interval = callback, counts, interval
        self.started = self.last = time.monotonic()

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
