"""Python connectors in their own environment: the runner's side of the isolated runtime.

A connector's dependencies are the connector's business (DESIGN.md, "Connectors and their environments"): each pinned
version has a virtualenv of its own, and its code runs there as a child process, `<env>/bin/python -I
isolated_child.py`. This module starts that child, hands it the command, config, catalog and state on stdin (never
argv or the environment: both are readable by any local user in /proc), and turns its frames back into what the sync
loop expects from any Source: protocol messages (sources/protocol.py; the runner never imports the CDK for a
connector run this way), plus `RecordBatch` for records, which arrive batched per
stream (see isolated_child.py for the frame format and why).

Lifetime: the child dies with the runner (PR_SET_PDEATHSIG, set by the child itself, race-free, and inherited by its
forked workers), runs in its own session so a terminal's Ctrl-C reaches only the runner, and is always terminated,
killed and reaped when a read ends early. The death signal follows the *thread* that started the child: start it
from a thread that outlives the operation (the sync loop's), not from a short-lived worker thread.
"""
from __future__ import annotations

import collections
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Iterator

import orjson

from ..errors import SyncError
from ..secrets import REDACTOR
from .base import RecordBatch, Source
from .isolated_child import DONE, ERROR, HEADER, RECORD_BATCH, error_line, without_traceback  # one definition
from .protocol import configured_catalog_to_dict, load_message
from .messages import check_message  # one wording for every runtime: no Python reprs, no quoted wrappers

log = logging.getLogger("ingest.connector")

CHILD_SCRIPT = Path(__file__).with_name("isolated_child.py")
BATCH_RECORDS = 1000  # records per frame: 250..4,000 measured alike on faker; 1 per frame costs ~5 µs/record CPU
PIPE_BYTES = 1 << 20  # a deeper stdout pipe lets the child produce the next batch while we consume this one
TERMINATE_GRACE_S = 3.0
AIRBYTE_LEVELS = {"FATAL": 50, "ERROR": 40, "WARN": 30, "INFO": 20, "DEBUG": 10, "TRACE": 5}


class _TimedOut(Exception):
    """The child gave no complete answer before its deadline and was killed."""


class IsolatedSource(Source):
    """A Python connector run by `python` (its environment's interpreter) from the distribution `package`."""

    def __init__(self, python: str | Path, package: str, config: dict, *, label: str = "",
                 check_timeout: float = 15.0):
        self.python, self.package, self.config = str(python), package, config
        self.label = label or package
        self.check_timeout = check_timeout
        self._spare: _Child | None = None  # a child kept for the next command (see discover)
        self._spare_finalizer: weakref.finalize | None = None  # closes the spare if it is never used

    # ------------------------------------------------------------ protocol

    def spec(self) -> dict:
        return self._answer("spec", "SPEC", child=self._child()).spec.connectionSpecification

    def check(self) -> tuple[bool, str | None]:
        try:
            status = self._answer("check", "CONNECTION_STATUS", child=self._child(),
                                  timeout=self.check_timeout).connectionStatus
        except SyncError as exc:
            return False, str(exc)
        except _TimedOut:
            return False, f"no answer within {self.check_timeout:g} s"
        if _value(status.status) == "SUCCEEDED":
            return True, None
        return False, check_message(_one_line(status.message or "check failed"))

    def discover(self, *, for_sync: bool = False):
        """The catalog. An interactive discover (`ingest discover`) answers within 4 x the check timeout, like the
        in-process runtime's (salesforce retried an unreachable login for 35 s); a sync's discover is not bounded."""
        if not for_sync:
            timeout = self.check_timeout * 4
            try:
                return self._answer("discover", "CATALOG", child=self._child(), timeout=timeout).catalog
            except _TimedOut:
                raise SyncError(f"discover: no answer within {timeout:g} s (is the host reachable from here?)",
                                failure_type="transient_error") from None
        # A sync reads right after it discovers: the same child serves the read, so the interpreter start and the
        # connector's imports (~1.2 s of CPU for a CDK 6 connector) are paid once per sync.
        child = _Child(self.python, self.label, self.package)
        catalog = self._answer("discover", "CATALOG", child=child, keep=True).catalog
        self._keep_for_next_command(child)
        return catalog

    def read(self, catalog, state: list) -> Iterator[Any]:
        # the state is already the stored JSON the child hands its connector
        yield from self._run(self._child(), "read", catalog=configured_catalog_to_dict(catalog), state=state)

    # ------------------------------------------------------------ the child

    def _answer(self, command: str, kind: str, *, child: _Child, timeout: float | None = None, keep: bool = False):
        """The first message of `kind` the connector sends for `command`; the child is stopped right after it, or
        with `keep`, left running (after the command is done) for another command."""
        answer = None
        with contextlib.closing(self._run(child, command, timeout=timeout, keep=keep)) as messages:
            for message in messages:
                if _kind(message) == kind and answer is None:
                    answer = message
                    if not keep:
                        return answer
        if answer is None:
            raise SyncError(f"{self.label}: the connector sent no {kind} message for {command!r}")
        return answer

    def _keep_for_next_command(self, child: _Child) -> None:
        if self._spare is not None:
            self._spare_finalizer.detach()
            self._spare.close()
        self._spare = child
        self._spare_finalizer = weakref.finalize(self, child.close)  # closed if the next command never comes

    def _child(self) -> _Child:
        """The child kept from the last command if there is one, else a new child."""
        child, self._spare = self._spare, None
        if child is None:
            return _Child(self.python, self.label, self.package)
        self._spare_finalizer.detach()
        return child

    def _run(self, child: _Child, command: str, *, timeout: float | None = None, catalog=None,
             state=None, keep: bool = False) -> Iterator[Any]:
        """Run one command in `child`; yield RecordBatch and AirbyteMessage objects as they arrive, then raise
        SyncError if the connector failed (after everything it sent was yielded), _TimedOut past `timeout`.
        `keep`: once the command is done, leave the child running for the next one (the caller closes it)."""
        first_error = final_error = None
        kept = False
        try:
            child.send({
                "command": command, "config": self.config, "catalog": catalog, "state": state or [],
                "debug": log.isEnabledFor(logging.DEBUG), "batch_records": BATCH_RECORDS,
            }, timeout, last=not keep)
            for kind, payload in child.frames():
                if kind == DONE:
                    kept = keep and first_error is None  # a connector that reported an error is not reused
                    break
                if kind == RECORD_BATCH:
                    stream, emitted_at, records = _loads(payload)
                    yield RecordBatch(stream, records, emitted_at)
                    continue
                message = _message(payload)
                error = _trace_error(message)
                if error is not None and error.stack_trace:
                    log.debug("%s: connector traceback:\n%s", self.label, REDACTOR.redact(error.stack_trace))
                if kind == ERROR:
                    final_error = error
                    continue
                if error is not None and first_error is None:
                    first_error = error
                if command != "read" and _kind(message) == "LOG":
                    # spec/check/discover end in one line of their own that says what failed; what the connector
                    # logged on the way there is detail (-v), not a second, longer error on stderr
                    _log_airbyte(self.label, _value(message.log.level), message.log.message, cap=logging.INFO)
                yield message
            if kept:
                child.stop_watchdog()
                return
            returncode = child.wait_exit()
        finally:
            if not kept:
                child.close()
        if child.timed_out:
            raise _TimedOut()
        if first_error is not None or final_error is not None:
            raise _sync_error(first_error or final_error, final_error)
        if returncode != 0:
            raise SyncError(child.death_message(returncode))


class _Child:
    """One connector process: started on construction, read frame by frame, always reaped by close().

    The child leads its own process group, so signalling the group reaches whatever it started. The group is only
    signalled while the child is not yet reaped (a zombie still holds its pid), so the group id cannot have been
    reused by an unrelated process: we wait for the exit with WNOWAIT, sweep the group, then reap.
    """

    def __init__(self, python: str, label: str, package: str):
        self.label = label
        self.timed_out = False
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self.lock = threading.Lock()  # signalling vs reaping (the watchdog runs in its own thread)
        try:
            self.proc = subprocess.Popen(
                [python, "-I", str(CHILD_SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=_child_environment(python), start_new_session=True,
            )
        except OSError as exc:
            raise SyncError(f"{label}: cannot start the connector's Python {python}: {exc.strerror or exc}") from None
        _deepen_pipe(self.proc.stdout.fileno())
        self.stderr_reader = threading.Thread(target=self._read_stderr, name=f"{label}-stderr", daemon=True)
        self.stderr_reader.start()
        self.watchdog: threading.Timer | None = None
        self._write({"package": package, "parent_pid": os.getpid()})

    def send(self, request: dict, timeout: float | None, *, last: bool = True) -> None:
        """The command (the child has been importing the connector meanwhile); killed after `timeout` s. `last`:
        end the input after it, so the child exits once the command is done."""
        if timeout is not None:
            self.watchdog = threading.Timer(timeout, self._expire)
            self.watchdog.daemon = True
            self.watchdog.start()
        self._write(request)
        if last:
            self.proc.stdin.close()

    def stop_watchdog(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None

    def frames(self) -> Iterator[tuple[bytes, bytes]]:
        stdout = self.proc.stdout
        while True:
            header = stdout.read(HEADER.size)
            if len(header) < HEADER.size:
                break
            kind, length = HEADER.unpack(header)
            payload = stdout.read(length)
            if len(payload) < length:
                break
            yield kind, payload
        if header:  # a frame cut short: the child died while writing it, or is stuck; don't wait for it
            self._signal(signal.SIGKILL)

    def wait_exit(self) -> int:
        """Wait for the child to end on its own (its output has ended, or its last command is done), then stop and
        reap; its exit code."""
        if not self.proc.stdin.closed:
            self.proc.stdin.close()  # no further command: the child exits
        self._exited(None)
        self.close()
        return self.proc.returncode

    def close(self) -> None:
        """Terminate (then kill) the child's process group and reap the child. Safe to call at any point."""
        if self.watchdog is not None:
            self.watchdog.cancel()
        if not self.proc.stdin.closed:
            self.proc.stdin.close()  # a spare never used: end of input tells it to exit
        with self.lock:
            if self.proc.returncode is None:
                if not self._exited(0):
                    self._signal(signal.SIGTERM)
                    self._exited(TERMINATE_GRACE_S)
                self._signal(signal.SIGKILL)  # the child past its grace period, or what it left behind
                self.proc.wait()
        self.proc.stdout.close()
        self.stderr_reader.join(TERMINATE_GRACE_S)
        if not self.stderr_reader.is_alive():  # else a process that left our group still holds it: leave it be
            self.proc.stderr.close()

    def _write(self, line: dict) -> None:
        try:
            self.proc.stdin.write(orjson.dumps(line, default=str) + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the child died at start; frames() sees the end and death_message() says why

    def death_message(self, returncode: int) -> str:
        """The child ended without a TRACE ERROR: say how, with the last stderr line that names a cause rather than
        the whole traceback."""
        how = (f"was killed by {signal.Signals(-returncode).name}" if returncode < 0
               else f"exited with code {returncode}")
        cause = error_line("\n".join(self.stderr_tail))[:500]
        return REDACTOR.redact(f"{self.label}: the connector process {how}" + (f": {cause}" if cause else ""))

    def _exited(self, timeout: float | None) -> bool:
        """Has the child exited (waiting up to `timeout` s, None = for ever)? Leaves it unreaped."""
        if timeout is None:
            os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)
            return True
        deadline = time.monotonic() + timeout
        while os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def _expire(self) -> None:
        with self.lock:
            self.timed_out = True
            self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def _read_stderr(self) -> None:
        """Runs in a thread: stderr holds what the connector wrote outside the protocol. Airbyte LOG lines (from
        forked workers) are logged at their level, anything else at DEBUG; the tail is kept for death_message()."""
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line.strip():
                continue
            message = _airbyte_log(line)
            if message is not None:
                _log_airbyte(self.label, *message)
            else:
                self.stderr_tail.append(line)
                log.debug("%s: %s", self.label, REDACTOR.redact(line))


# ====================================================================== helpers


def _message(payload: bytes):
    """A frame as a protocol message. A line that is not one is the connector's bug, said as such (not a traceback)."""
    try:
        return load_message(_loads(payload))
    except ValueError as exc:
        raise SyncError(f"the connector sent a message the runner cannot read: {exc}") from None


def _child_environment(python: str) -> dict:
    """The runner's environment, as if the connector's env were activated, minus every variable holding a secret:
    a resolved `${SECRET}` usually came from the environment, and /proc/<pid>/environ is readable."""
    env = {k: v for k, v in os.environ.items() if REDACTOR.redact(v) == v and k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    bin_dir = os.path.dirname(os.path.abspath(python))
    env["VIRTUAL_ENV"] = os.path.dirname(bin_dir)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", os.defpath)])
    return env


def _deepen_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (AttributeError, OSError):  # not Linux, or above /proc/sys/fs/pipe-max-size: the default still works
        pass


def _loads(payload: bytes):
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:  # the child's json fallback (e.g. NaN, huge integers)
        import json

        return json.loads(payload)


def _value(x) -> str:
    return getattr(x, "value", x)


def _kind(message) -> str:
    return _value(message.type)


def _trace_error(message):
    if _kind(message) == "TRACE" and _value(message.trace.type) == "ERROR":
        return message.trace.error
    return None


def _sync_error(error, final_error) -> SyncError:
    """One clear, redacted line with the connector's failure type (as sources/airbyte.py does in-process): the first
    TRACE ERROR names the cause; the exception that ended the run is often only a wrapper ("Concurrent read
    failure", "During the sync, the following streams did not sync successfully")."""
    message = error.message
    if error.internal_message and (not message or message.startswith("Something went wrong in the connector")):
        message = error.internal_message
    failure_type = _value(error.failure_type) or (_value(final_error.failure_type) if final_error else None)
    stream = error.stream_descriptor.name if error.stream_descriptor is not None else None
    return SyncError(_one_line(message or "the connector failed"), failure_type=failure_type, stream=stream)


def _one_line(text: str) -> str:
    """A connector's message as one line: without the traceback it may carry (or be: then its last line, which names
    the error), first line only, redacted."""
    lines = [line.strip() for line in without_traceback(text).splitlines() if line.strip()]
    return REDACTOR.redact(lines[0] if lines else text.strip())


def _airbyte_log(line: str) -> tuple[str, str] | None:
    """(level, message) when `line` is an Airbyte LOG message in JSON (or the CDK's {"type": "DEBUG"} lines), else
    None."""
    if not line.startswith("{"):
        return None
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    if data.get("type") == "DEBUG":
        return "DEBUG", str(data.get("message", ""))
    if data.get("type") == "LOG" and isinstance(data.get("log"), dict):
        return str(data["log"].get("level", "INFO")), str(data["log"].get("message", ""))
    return None


def _log_airbyte(label: str, level: str, message: str, cap: int = logging.CRITICAL) -> None:
    text = message if log.isEnabledFor(logging.DEBUG) else without_traceback(message)
    log.log(min(AIRBYTE_LEVELS.get(level, logging.INFO), cap), "%s: %s", label, REDACTOR.redact(text))
