"""Start a real `ingest` run in a subprocess and act once records are flowing (its first progress line,
"N records (...)" on stderr): SIGKILL it, signal it, or read beside it. One helper for every kill/signal test, so
"flowing" means the same thing everywhere."""
from __future__ import annotations

import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cli import start_cli

PROGRESS = "records ("


@dataclass
class Flowing:
    """A run that reported progress: its process, the thread reading its stderr, and the stderr lines so far."""

    proc: subprocess.Popen
    reader: threading.Thread
    lines: list[str] = field(default_factory=list)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def kill(self, settle: float = 0.0) -> None:
        """SIGKILL, reap, and give the connector's child (it dies with its parent) `settle` seconds to go away."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        if settle:
            time.sleep(settle)


def start_flowing(args: list[str], cwd: Path, env: dict | None = None, *, timeout: float = 120,
                  may_finish: bool = False) -> Flowing | None:
    """Start `ingest <args>` and return once it reports progress. `may_finish`: a run that ends (successfully)
    before its first progress line returns None instead of failing the test. The run is killed if it never flows."""
    started = time.monotonic()
    proc = start_cli(args, cwd, env=env)
    flowing = threading.Event()
    run = Flowing(proc, threading.Thread(daemon=True))

    def watch():
        for line in proc.stderr:
            run.lines.append(line)
            if PROGRESS in line:
                flowing.set()

    run.reader = threading.Thread(target=watch, daemon=True)
    run.reader.start()
    try:
        while not flowing.wait(timeout=0.1):
            if may_finish and proc.poll() is not None:  # done before its first progress line: nothing to act on
                assert proc.returncode == 0, proc.stdout.read()
                return None
            assert time.monotonic() - started < timeout, "the run never reported progress"
    except BaseException:
        if proc.poll() is None:
            run.kill()
        raise
    return run


def kill_when_flowing(args: list[str], cwd: Path, env: dict | None = None, delay: float = 0.0, *,
                      timeout: float = 120, settle: float = 0.3, may_finish: bool = False) -> None:
    """Start a run, wait until records are flowing, then SIGKILL it `delay` seconds later (killed even if the
    wait fails). `settle`: seconds for the connector's child to go away before the caller reopens the files."""
    run = start_flowing(args, cwd, env, timeout=timeout, may_finish=may_finish)
    if run is None:
        return
    try:
        time.sleep(delay)
    finally:
        run.kill(settle)
