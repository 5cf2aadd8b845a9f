"""Sharing one DuckDB file between processes: DuckDB lets a single process open it for writing, and no other
process even read it meanwhile. This module opens the file (waiting its turn), lets read commands in between a run's
commits, and words "the file is locked" for the user (which process holds it, what to do).
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import duckdb

READER_TURN_S = 2.0  # at most this long per turn for readers (they poll every 50 ms and read for milliseconds)
READER_TURN_REOPEN_S = 120.0  # a run waits this long to get its file back from a reader before failing
READ_REQUEST_FRESH_S = 2.0  # a request older than this is from a reader that gave up or died: ignored


class ReaderTurns:
    """How read commands and a running sync share one DuckDB file.

    A reader that finds the file held touches `<file>.read-request` every 50 ms while it waits; the run, between two
    commits, sees a fresh request, marks `<file>.yielding` (with its pid: queued *writers* stay out), closes the file,
    waits until the readers are in and removed the request (at most READER_TURN_S), and reopens it. Neither file is
    the database: read commands still create and write nothing in it."""

    def __init__(self, path: Path):
        self.request = path.with_name(path.name + ".read-request")
        self.marker = path.with_name(path.name + ".yielding")
        self._asked = False

    # -- reader side
    def ask(self) -> None:
        try:
            self.request.touch()
            self._asked = True
        except OSError:  # a read-only directory: no turn can be asked for, the reader just retries
            pass

    def done(self) -> None:
        if self._asked:
            self.request.unlink(missing_ok=True)
            self._asked = False

    # -- writer side
    def asked(self) -> bool:
        try:
            return time.time() - self.request.stat().st_mtime < READ_REQUEST_FRESH_S
        except OSError:
            return False

    def wait_for_readers(self) -> None:
        deadline = time.monotonic() + READER_TURN_S
        time.sleep(0.1)  # a reader polls every 50 ms
        while self.asked() and time.monotonic() < deadline:
            time.sleep(0.02)

    def yielding(self, on: bool) -> None:
        try:
            if on:
                self.marker.write_text(str(os.getpid()))
            else:
                self.marker.unlink(missing_ok=True)
        except OSError:
            pass

    def writer_yielding(self) -> bool:
        """Another run has let readers in and will reopen the file: a queued writer must not take it meanwhile."""
        try:
            pid = int(self.marker.read_text() or 0)
        except (OSError, ValueError):
            return False
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False  # a run killed while yielding
        except PermissionError:
            pass
        return True


def connect(path: Path, turns: ReaderTurns, read_only: bool, wait: float, threads: int | None = None,
            memory_limit: str | None = None):
    """Open the file, waiting up to `wait` s while another process holds it. A reader asks the holder for a turn
    meanwhile; a writer also waits while a run lets readers in, so it cannot take the run's file away."""
    deadline = time.monotonic() + wait
    try:
        while True:
            if read_only or not turns.writer_yielding():
                try:
                    con = duckdb.connect(str(path), read_only=read_only)
                    break
                except duckdb.IOException as exc:
                    if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                        raise
            if time.monotonic() >= deadline:
                raise duckdb.IOException(f'Could not set lock on file "{path}": another run is letting readers in')
            if read_only:
                turns.ask()
            time.sleep(0.05 if read_only else 0.25)
    finally:
        if read_only:
            turns.done()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:  # validated in the config (a number and a unit)
        con.execute(f"SET memory_limit = '{memory_limit}'")
    return con


def is_busy(exc: BaseException) -> bool:
    """DuckDB's "Could not set lock on file": another process holds it."""
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def busy_message(path: str, error: str, read_only: bool, waited: float) -> str:
    pid = re.search(r"PID (\d+)", error)
    holder = f"another process{f' (pid {pid.group(1)})' if pid else ''}"
    if read_only:
        return (f"{path} is in use by {holder}, which did not let readers in within {waited:g}s (an ingest run lets "
                f"them in between its commits; another program holding the file may not). Retry later, or pass "
                f"--wait SECONDS to wait longer.")
    return (f"{path} is in use by {holder}: DuckDB allows one writer at a time. Retry later, or pass --wait SECONDS "
            f"to queue behind it.")
