"""AirbyteManager: the conductor of a block's operations — spec, check, discover, state, and the sync.

A sync's stages each have their home in this package (plan → loop → finish); `AirbyteManager.run` calls them in
order and decides what a failure at each point means (a config error raised with nothing written, a refused run,
or a failed run recorded like any other). Every CLI command, test and Metaflow step calls into this class.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Callable

from ..config import Block, ConfigError, Project, parse_duration
from ..destinations.base import RunRecord, StreamTarget
from ..errors import BusyError, IngestError, SyncError
from ..events import webhook_url
from ..lineage import Lineage
from ..destinations import destination_choice, open_destination, open_for_reading
from ..secrets import REDACTOR
from ..stopping import STOP_SIGNALS, stop_message as _stop_message
from .finish import Announcer, Heartbeat, finish_run, hold_locks, locks_of, record_dead_runs
from .loop import read_and_land
from .plan import configured_catalog, discover_and_plan, stream_targets
from .results import StreamResult, SyncResult, new_run_id
from .state import state_messages

log = logging.getLogger("ingest")


class AirbyteManager:
    """Runs connector blocks: spec, check, discover, and sync into a destination."""

    def __init__(self, project: Project, progress: Callable[[dict], None] | None = None, lock_wait: float = 0.0):
        self.project = project
        self.progress = progress
        self.lock_wait = lock_wait

    # -- simple operations

    def block(self, name: str) -> Block:
        """The block, ready to run: its connector release locked and fetched, secrets resolved, config checked."""
        from ..sources.connector import prepare

        block = self.project.block(name)
        prepare(block)
        return block

    def source(self, block: Block, warehouse=None):
        from ..sources.connector import make_source

        return make_source(block, check_timeout=parse_duration(self.project.defaults.check_timeout), warehouse=warehouse)

    def spec(self, name: str) -> dict:
        from ..sources.connector import block_spec

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
        return configured_catalog(self.project, block, catalog, only, full_refresh)

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
        block = self.block(name)
        started = time.monotonic()
        destination_choice(self.project, block, destination)  # a bad flag fails before anything is opened
        # Pullers may read their inputs (shipments, carriers) from the block's destination, which is opened only after
        # discovery below: they get a reader that reaches it when they query (during the sync, once it is open).
        source = self.source(block, warehouse=lambda sql, params=None: dest.query(sql, params))
        run = RunRecord(
            run_id=run_id or new_run_id(), block=block.name, team=block.team, streams=[],
            started_at=dt.datetime.now(dt.timezone.utc),
        )
        # Discover and check the streams before the destination is opened: a stream the connector doesn't offer
        # is a config error (exit 2) and must leave no file behind.
        plan = discover_and_plan(self.project, block, source, streams, full_refresh)
        dest = open_destination(self.project, block, destination, lock_wait=max(self.lock_wait, wait), run_id=run.run_id)
        run.destination = dest.describe()
        lineage = Lineage.from_settings(self.project.defaults.lineage, base_dir=self.project.path.parent,
                                        secrets=self.project.defaults.secrets, destination=dest.identity)
        return self._sync_and_finish(block, source, run, dest, lineage, plan, streams, full_refresh, run_pathspec,
                                     wait, started)

    def _sync_and_finish(self, block, source, run, dest, lineage, plan, streams, full_refresh, run_pathspec, wait,
                         started) -> SyncResult:
        """Take the streams' locks, sync, and record the end whatever happened (a refused run raises instead)."""
        configured, settings, discover_error = plan
        results: dict[str, StreamResult] = {}
        targets: dict[str, StreamTarget] = {}
        heartbeat: Heartbeat | None = None
        announcer: Announcer | None = None
        try:
            if discover_error is not None:
                raise discover_error
            run.streams = list(settings)
            locks_before = locks_of(dest, block.name)
            heartbeat = hold_locks(dest, block, run, parse_duration(self.project.defaults.lock_ttl), wait)
            killed = record_dead_runs(dest, block, run, webhook_url(self.project.defaults.events.webhook), locks_before)
            run.started_at = dt.datetime.now(dt.timezone.utc)  # time spent queueing (--wait) is not run time
            stored = {} if full_refresh else dest.read_state(block.name)
            state = state_messages(stored, set(settings))
            planned = stream_targets(block, run, configured, settings, stored, full_refresh)
            targets.update(planned[0])
            results.update(planned[1])
            dest.record_run(run)
            lineage.start(block=block, run=run, targets=targets, parent_pathspec=run_pathspec)
            announcer = Announcer(self.project, block, dest, run, results, run_pathspec, also_publish=killed)
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
            return finish_run(self.project, block, run, dest, results, targets, error, heartbeat, announcer, lineage,
                              streams, run_pathspec, started)
        finally:
            STOP_SIGNALS.done()

    def _sync(self, source, configured, state, targets, results, dest, run, announcer) -> SyncError | None:
        """The reading loop and the writer thread (loop.py); the run's error, or None."""
        return read_and_land(source, configured, state, targets, results, dest, run, announcer,
                             self.project.defaults.batch, self.progress)
