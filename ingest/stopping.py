"""Stop signals: SIGTERM (what Kubernetes and Argo send before SIGKILL) ends a sync the way Ctrl-C does.

Grace period: after SIGTERM a run stops reading at once, lands what it read up to the last checkpoint, records
itself as failed (data_failed events), releases its locks and exits with code 1. An isolated connector's child gets
SIGTERM and, if it ignores it, SIGKILL 3 s later (its process group: no orphan). Measured: well under Kubernetes'
default 30 s grace period (see tests/test_signals.py). Kept small on purpose: no heavy imports (the CLI installs it
for every command).
"""
from __future__ import annotations

import atexit
import logging
import signal
import threading

log = logging.getLogger("ingest")


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGINT asked this process to stop."""

    def __init__(self, signum: int):
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signal_name}")


class _StopSignals:
    """SIGTERM (Kubernetes evicting a pod, Argo stopping a workflow, `kill`) stops a run exactly like Ctrl-C: the
    first signal interrupts the reading loop; what was read is committed up to its last checkpoint, the run is
    recorded as failed with a data_failed event, locks are released and an isolated connector's child is stopped
    (SIGTERM, then SIGKILL after 3 s). While the run records its end (`finishing()`), a signal is noted but does not
    interrupt: cutting that short is what leaves a run `running` with its locks held. Later signals are ignored
    (SIGKILL still ends the process; the next run or `ingest status` then reports the run as killed)."""

    def __init__(self):
        self.received: str | None = None
        self._finishing = 0

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            log.warning("%s received again: still stopping (recording the run's end); SIGKILL forces it", name)
            return
        self.received = name
        # Python puts the default handlers back while the interpreter shuts down: a repeated signal arriving then
        # would kill the process (exit -15) after the run had stopped cleanly. From exit on, ignore them.
        atexit.register(self._ignore_from_now_on)
        if self._finishing:
            log.warning("%s received: the run is recording its end; stopping right after", name)
            return
        raise Stopped(signum)

    @staticmethod
    def _ignore_from_now_on() -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)

    def finishing(self) -> None:
        """From here until `done()`, the run records its end: signals no longer interrupt it."""
        self._finishing += 1

    def done(self) -> None:
        self._finishing = max(0, self._finishing - 1)


STOP_SIGNALS = _StopSignals()


def stop_on_signals() -> None:
    """Make SIGTERM and SIGINT stop a sync cleanly (the CLI and the Metaflow step call this; main thread only)."""
    STOP_SIGNALS.install()


def stop_message(exc: KeyboardInterrupt) -> str:
    return str(exc) if isinstance(exc, Stopped) else "interrupted"
