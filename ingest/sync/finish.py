"""What surrounds the reading loop: the run's stream locks (held, heart-beaten, released), runs found dead, the
run record in `_ingest_runs`, the run's events (data_landed / data_failed) and their publishing.

The order at the end matters: the run's end is recorded before its locks are released (a `running` row without a
live lock means the run died), then data_failed events are written and the pending events published.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time

from ..config import Block, Project
from ..destinations.base import KILLED, Destination, RunRecord, StreamTarget, why_run_is_dead
from ..errors import BusyError, SyncError
from ..secrets import REDACTOR
from .results import SyncResult

log = logging.getLogger("ingest")


# ---------------------------------------------------------------- before the loop: locks, runs found dead


class Heartbeat(threading.Thread):
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


def hold_locks(dest: Destination, block: Block, run: RunRecord, ttl: float, wait: float) -> Heartbeat:
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
    beat = Heartbeat(dest, run.run_id, ttl)
    beat.start()
    return beat


def locks_of(dest: Destination, block: str) -> list[dict]:
    try:
        return dest.list_locks(block=block)
    except NotImplementedError:
        return []


def record_dead_runs(dest: Destination, block: Block, run: RunRecord, webhook: str | None,
                     locks_before: list[dict]) -> list[str]:
    """Runs of this block still recorded as `running` whose process is gone (SIGKILL, out of memory, a lost node:
    see why_run_is_dead) are recorded as `killed`, each with a data_failed event per stream, by the next run of the
    block, once it holds its own locks. `locks_before`: the block's locks before this run took over the stale ones
    (they say why a run is dead). Returns the run ids (their events get published with this run's)."""
    from ..events import DATA_FAILED, PENDING, RECORDED, Event

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


# ---------------------------------------------------------------- the run's events


class Announcer:
    """Builds a run's DataLanded / data_failed events and publishes what the ledger holds as pending."""

    def __init__(self, project: Project, block: Block, dest: Destination, run: RunRecord, results, run_pathspec,
                 also_publish: list[str] | None = None):
        from ..events import WebhookPublisher, webhook_url

        url = webhook_url(project.defaults.events.webhook)
        self.publisher = WebhookPublisher(url) if url else None
        self.block, self.dest, self.run, self.results = block, dest, run, results
        self.run_pathspec = run_pathspec or f"cli/{run.run_id}"
        self.landed: set[str] = set()
        self.also_publish = also_publish or []  # runs found dead by this one: their data_failed events

    def _event(self, kind: str, stream: str, table: str, load_id: str, **extra):
        from ..events import PENDING, RECORDED, Event

        return Event(
            kind=kind, team=self.block.team, block=self.block.name, stream=stream, table=table,
            destination=self.dest.describe(), run_id=self.run.run_id, load_id=load_id, run_pathspec=self.run_pathspec,
            status=PENDING if self.publisher else RECORDED, **extra,
        )

    def landed_event(self, target: StreamTarget):
        """Called on the writer thread right before the stream's final commit, so rows and schema are final."""
        from ..events import DATA_LANDED, schema_hash

        r = self.results[target.stream]
        return self._event(
            DATA_LANDED, target.stream, target.table, target.load_id, rows=target.rows_written,
            rows_without_key=target.rows_without_key,
            cursor_before=r.state_before, cursor_after=r.state_after,
            schema_hash=schema_hash(self.dest.table_columns(target)),
        )

    def failed(self, stream: str, error: SyncError):
        from ..events import DATA_FAILED

        r = self.results.get(stream)
        return self._event(
            DATA_FAILED, stream, r.table if r else "", r.load_id if r else f"{self.run.run_id}-{stream}",
            rows=r.rows_written if r else 0, cursor_before=r.state_before if r else None,
            error_class=error.failure_type or "error", error_message=REDACTOR.redact(str(error)),
        )

    def publish(self) -> tuple[int, list[str]]:
        from ..events import publish_pending

        sent, errors = publish_pending(self.dest, self.publisher, run_id=self.run.run_id)
        for run_id in self.also_publish:
            more, more_errors = publish_pending(self.dest, self.publisher, run_id=run_id)
            sent, errors = sent + more, errors + more_errors
        return sent, errors


def rows_history(dest: Destination, block: str, streams: list[str], last: int = 12) -> dict[str, list[int]]:
    """Rows per landed load for each stream, oldest first (for the card's sparkline), from the events ledger."""
    from ..events import DATA_LANDED

    history: dict[str, list[int]] = {s: [] for s in streams}
    for row in dest.list_events(block=block):
        payload = row["payload"]
        if payload.get("event") == DATA_LANDED and row["stream"] in history:
            history[row["stream"]].append(payload.get("rows") or 0)
    return {s: rows[-last:] for s, rows in history.items()}


# ---------------------------------------------------------------- after the loop


def finish_run(project: Project, block: Block, run: RunRecord, dest: Destination, results, targets, error, heartbeat,
               announcer, lineage, streams, run_pathspec, started) -> SyncResult:
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
        announcer = announcer or Announcer(project, block, dest, run, results, run_pathspec)
        if error is not None:
            # Owners hear about breakage first: one data_failed event per stream that did not land.
            for name in [n for n in run.streams or [s.name for s in block.streams] if n not in announcer.landed] or ["*"]:
                dest.record_event(announcer.failed(name, error))
        sent, event_errors = announcer.publish()
        history = rows_history(dest, block.name, list(results))
    except Exception as exc:  # noqa: BLE001 - never mask the sync's own outcome
        log.warning("could not record the run or its events in %s: %s", dest.describe(), REDACTOR.redact(exc))
        log.debug("record_run failed", exc_info=True)
    dest.close()
    # After close: a slow lineage backend must not hold the destination (or its locks) any longer.
    lineage.finish(block=block, run=run, targets=targets, results=results, error=error, streams=streams,
                   parent_pathspec=run_pathspec)
    return SyncResult(run=run, streams=results, destination=dest.describe(), seconds=time.monotonic() - started,
                      error=error, events_sent=sent, event_errors=event_errors, rows_history=history)
