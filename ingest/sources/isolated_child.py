"""The connector side of the isolated runtime: runs one Python connector, in its own environment, as a child process.

Run as `<connector-env>/bin/python -I isolated_child.py` by `ingest/sources/isolated.py`. This file is a standalone
script: it imports only the standard library and what the connector's environment has (its airbyte_cdk, of any major
0.x..7, and orjson when importable), never `ingest` — the runner's packages are not in the connector's environment.

Why a child at all: connectors need different CDK majors and conflicting libraries, so each runs with its own
interpreter. Why this script rather than the connector's console script printing JSON lines: records are batched per
stream and sent as one binary frame, which keeps the child cheap and the runner's parsing a single orjson.loads per
batch, while state, logs and errors keep their exact order relative to the records.

Protocol (the parent, ingest/sources/isolated.py, holds the other half; keep the two in step):
  stdin   JSON lines: {package, parent_pid}, then (possibly much later: the runner may start a child before it
          needs it, so the imports overlap its own work) one or more commands {command: spec|check|discover|read,
          config, catalog, state, debug, batch_records}, each sent once the previous one is done (a sync's discover
          and read share one child: the connector's imports, ~1.2 s of CPU for a CDK 6 connector, are paid once).
          Secrets travel only here, never in argv or the environment. End of input: exit quietly.
  stdout  frames: 1 byte kind + 4 bytes big-endian payload length + payload (UTF-8 JSON)
            R  [stream, [emitted_at, ...], [data, ...]]  records of one stream, in the order the connector sent them
            M  one Airbyte protocol message (STATE, LOG, TRACE, CATALOG, SPEC, CONNECTION_STATUS, ...); every
               buffered record batch is flushed before it, so a STATE always follows the records it covers
            D  (empty) the command is done; the next command may follow on stdin
            E  a TRACE ERROR message: the connector raised; always the last frame
  stderr  everything else: stray prints, C-level output, whatever forked worker processes write
  exit    0, or 1 after an E frame
"""
from __future__ import annotations

import ctypes
import importlib.metadata
import io
import json
import logging
import os
import re
import signal
import struct
import sys
import threading
import time
import traceback

try:
    import orjson
except ImportError:  # very old connector environments
    orjson = None

HEADER = struct.Struct(">cI")
RECORD_BATCH, MESSAGE, ERROR, DONE = b"R", b"M", b"E", b"D"
EXIT_ERROR, EXIT_BROKEN_PIPE = 1, 3
MESSAGE_TYPES = {"RECORD", "STATE", "LOG", "TRACE", "CATALOG", "SPEC", "CONNECTION_STATUS", "CONTROL"}
TRACEBACK_MARKERS = ("Error traceback:", "Traceback (most recent call last):")
EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*: ")  # `ValueError: ...`, `requests.exceptions.ConnectionError: ...`
PR_SET_PDEATHSIG = 1


# ====================================================================== dying with the runner


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when the process (thread) that started it dies, even by SIGKILL:
    a connector must never outlive its runner and keep writing to an API or holding memory."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def check_parent_alive(parent_pid: int) -> None:
    """The death signal only covers a parent that dies *after* prctl: if it died before, we were already
    re-parented, so leave now."""
    if os.getppid() != parent_pid:
        os._exit(EXIT_BROKEN_PIPE)


# ====================================================================== frames


def default(value):
    """JSON for what orjson/json cannot encode: dates as ISO text (like the CDK's own JSON), anything else as str."""
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if isoformat is not None else str(value)


def dumps(obj) -> bytes:
    if orjson is not None:
        try:
            return orjson.dumps(obj, default=default, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # e.g. an integer beyond 64 bits: the slow path still encodes it
            pass
    return json.dumps(obj, default=default, separators=(",", ":")).encode()


def loads(text):
    return orjson.loads(text) if orjson is not None else json.loads(text)


def without_traceback(text: str) -> str:
    """The CDK appends whole tracebacks to log and error texts ("Error traceback: ..."), or sends one as the text:
    40-100 lines a user cannot act on (the runner asks for them only at debug verbosity). Keep the text before the
    traceback and the line that names the error, unless the text already says it."""
    cut = min((i for i in (text.find(m) for m in TRACEBACK_MARKERS) if i >= 0), default=-1)
    if cut < 0:
        return text
    head, error = text[:cut].rstrip(" :\n"), error_line(text[cut:])
    if not head:
        return error or text
    if not error or error.split(": ", 1)[-1] in head:
        return head
    return f"{head} {error}" if head.endswith((".", "!", "?")) else f"{head}: {error}"


def error_line(traceback_text: str) -> str:
    """The last `SomeError: message` line of a traceback (chained exceptions: the last one raised). Not simply the
    last line: exception texts may go on over several lines (e.g. the CDK's file-based errors end in `stream=x`)."""
    lines = [line.strip() for line in traceback_text.splitlines() if line.strip() and not line[:1].isspace()]
    errors = [line for line in lines if EXCEPTION_LINE.match(line)]
    return errors[-1] if errors else (lines[-1] if lines else "")


class FrameWriter:
    """Writes frames to the saved stdout fd. Records are buffered per stream; any other message flushes them all
    first. One lock: messages come from the reading loop, log handlers on connector threads and prints."""

    def __init__(self, fd: int):
        self.fd = fd
        self.batch_records = 1000  # the command sets it
        self.batches: dict[str, tuple[list, list]] = {}
        self.lock = threading.Lock()

    def record(self, stream: str, emitted_at: int, data) -> None:
        with self.lock:
            batch = self.batches.get(stream)
            if batch is None:
                batch = self.batches[stream] = ([], [])
            batch[0].append(emitted_at)
            batch[1].append(data)
            if len(batch[0]) >= self.batch_records:
                self._flush_stream(stream)

    def message(self, payload: dict | str, kind: bytes = MESSAGE) -> None:
        """A non-record message, as the protocol dict or its JSON text."""
        with self.lock:
            self._flush_all()
            self._write(kind, payload if isinstance(payload, bytes) else payload.encode() if isinstance(payload, str) else dumps(payload))

    def flush(self) -> None:
        with self.lock:
            self._flush_all()

    def _flush_all(self) -> None:
        for stream in list(self.batches):
            self._flush_stream(stream)

    def _flush_stream(self, stream: str) -> None:
        emitted_at, records = self.batches.pop(stream)
        self._write(RECORD_BATCH, dumps([stream, emitted_at, records]))

    def _write(self, kind: bytes, payload: bytes) -> None:
        view = memoryview(HEADER.pack(kind, len(payload)) + payload)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except BrokenPipeError:
            os._exit(EXIT_BROKEN_PIPE)  # the runner is gone or stopped listening: nothing left to do


class Emitter:
    """Turns what the CDK's entrypoint yields (message objects; JSON strings on CDKs that cannot give objects;
    protocol dicts from printed lines) into frames."""

    def __init__(self, writer: FrameWriter):
        self.writer = writer
        self.debug = False  # the command sets it
        self.to_string = None  # the CDK's message -> JSON text function, once the CDK is imported

    def __call__(self, message) -> None:
        if isinstance(message, str):
            message = loads(message)
        if isinstance(message, dict):
            self._emit_dict(message)
            return
        kind = getattr(message.type, "value", message.type)
        if kind == "RECORD":
            record = message.record
            self.writer.record(record.stream, record.emitted_at, record.data)
            return
        if kind == "LOG" and not self.debug:
            message.log.message = without_traceback(message.log.message)
        self.writer.message(self.to_string(message))

    def _emit_dict(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "RECORD":
            record = message["record"]
            self.writer.record(record["stream"], record.get("emitted_at", 0), record["data"])
            return
        if kind == "LOG" and not self.debug:
            message["log"]["message"] = without_traceback(message["log"].get("message", ""))
        self.writer.message(message)


class StdoutRouter(io.TextIOBase):
    """Stands in for sys.stdout and sys.__stdout__: a connector that prints an Airbyte message itself (or a CDK log
    handler writing JSON lines) still reaches the runner, as a frame; any other text goes to stderr. Forked worker
    processes inherit this object but not the frame stream, so they always write to stderr."""

    def __init__(self, emit, stderr):
        self.emit, self.stderr, self.pid = emit, stderr, os.getpid()
        self.pending = ""
        self.lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if os.getpid() != self.pid:
            return self.stderr.write(text)
        with self.lock:
            lines = (self.pending + text).split("\n")
            self.pending = lines.pop()
        for line in lines:
            self._route(line)
        return len(text)

    def flush(self) -> None:
        if os.getpid() == self.pid:
            with self.lock:
                line, self.pending = self.pending, ""
            if line:
                self._route(line)
        self.stderr.flush()

    def _route(self, line: str) -> None:
        stripped = line.strip()
        if stripped.startswith("{"):
            try:
                message = loads(stripped)
            except ValueError:
                message = None
            if isinstance(message, dict) and message.get("type") in MESSAGE_TYPES:
                self.emit(message)
                return
        if stripped:
            self.stderr.write(line + "\n")


# ====================================================================== running the connector


def take_stdout() -> int:
    """Keep the real stdout for frames and point fd 1 at stderr: whatever else writes to fd 1 (C libraries,
    subprocesses, forked workers) lands on stderr and can never corrupt the frame stream."""
    frames_fd = os.dup(1)
    os.dup2(2, 1)
    return frames_fd


def memfd_path(name: str, obj) -> str:
    """A path to an in-memory file holding `obj` as JSON: secrets never touch the disk, and a connector may open the
    path as often as it likes (each open starts at offset 0)."""
    fd = os.memfd_create(name)
    view = memoryview(dumps(obj))
    while view:
        view = view[os.write(fd, view):]
    return f"/proc/self/fd/{fd}"


def connector_argv(request: dict) -> list[str]:
    command = request["command"]
    argv = [command]
    if command != "spec":
        argv += ["--config", memfd_path("config", request.get("config") or {})]
    if command == "read":
        argv += ["--catalog", memfd_path("catalog", request["catalog"])]
        if request.get("state"):
            argv += ["--state", memfd_path("state", request["state"])]
    if request.get("debug"):
        argv.append("--debug")
    return argv


def console_script(package: str):
    """The entry point the connector's distribution declares (e.g. `source-faker = source_faker.run:run`): running
    the connector's own start-up code keeps its config migrations and custom setup."""
    scripts = [ep for ep in importlib.metadata.distribution(package).entry_points if ep.group == "console_scripts"]
    preferred = package.removeprefix("airbyte-")
    for ep in scripts:
        if ep.name == preferred:
            return ep
    if len(scripts) == 1:
        return scripts[0]
    raise RuntimeError(f"{package} declares {len(scripts)} console scripts, none named {preferred!r}")


def install_launch(emit: Emitter) -> None:
    """Replace the CDK's `launch` before the connector's run module imports it: ours drives the same
    AirbyteEntrypoint.run, but hands message objects to `emit` instead of printing JSON. Must run before the
    connector's modules are imported (they bind `launch` at import time)."""
    import airbyte_cdk
    import airbyte_cdk.entrypoint as entrypoint

    def launch(source, args) -> None:
        route_log_handlers(airbyte_cdk)
        source_entrypoint = entrypoint.AirbyteEntrypoint(source)
        for message in source_entrypoint.run(source_entrypoint.parse_args(args)):
            emit(message)

    entrypoint.launch = launch
    if hasattr(airbyte_cdk, "launch"):
        airbyte_cdk.launch = launch


def object_messages(entrypoint_class):
    """Make AirbyteEntrypoint.run yield message objects (no JSON text per record) where the CDK allows it; return
    the CDK's own message -> JSON text function, used for the few non-record messages. None on CDKs whose run()
    yields strings only (the emitter then parses them)."""
    to_string = getattr(entrypoint_class, "airbyte_message_to_string", None)
    if to_string is not None:
        entrypoint_class.airbyte_message_to_string = staticmethod(lambda message: message)
    return to_string


def route_log_handlers(airbyte_cdk) -> None:
    """The CDK 6+ log handler writes Airbyte JSON lines to a print buffer that flushes only every 0.1 s and only
    when the next line arrives. Point it at the router so each log line becomes a frame right away. (Older CDKs bind
    the handler to sys.stdout, which is already the router.)"""
    print_buffer = getattr(getattr(airbyte_cdk, "logger", None), "PRINT_BUFFER", None)
    for handler in logging.getLogger().handlers:
        if print_buffer is not None and isinstance(handler, logging.StreamHandler) and handler.stream is print_buffer:
            handler.setStream(sys.stdout)


def error_message(exc: BaseException) -> dict:
    """The connector raised: one TRACE ERROR message with a one-line text and the failure type; the traceback goes
    in stack_trace (the runner logs it at debug level)."""
    failure_type = getattr(exc, "failure_type", None)
    failure_type = getattr(failure_type, "value", failure_type)
    message, internal = getattr(exc, "message", None), getattr(exc, "internal_message", None)
    if not isinstance(message, str) or not message or (internal and message.startswith("Something went wrong")):
        message = internal or f"{type(exc).__name__}: {exc}"  # the CDK's generic text hides the cause
    lines = [line.strip() for line in without_traceback(str(message)).splitlines() if line.strip()]
    error = {
        "message": lines[0] if lines else type(exc).__name__,
        "failure_type": failure_type if isinstance(failure_type, str) else "system_error",
        "stack_trace": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }
    return {"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": int(time.time() * 1000), "error": error}}


def prepare(package: str, emit: Emitter):
    """Everything that needs no command yet: our stdout router and launch in place, the CDK and the connector's
    modules imported (~1 s for a CDK 6 connector). The runner may start a child early so this overlaps its own
    work. Returns the connector's console-script function and name."""
    stdout = StdoutRouter(emit, sys.stderr)
    sys.stdout = sys.__stdout__ = stdout  # before the CDK's import binds its log handler to sys.stdout
    import airbyte_cdk.entrypoint

    emit.to_string = object_messages(airbyte_cdk.entrypoint.AirbyteEntrypoint)
    install_launch(emit)
    script = console_script(package)
    return script.load(), script.name


def run(request: dict, connector_main, name: str) -> None:
    """Call the connector's console script with the protocol's argv."""
    sys.argv = [name, *connector_argv(request)]
    try:
        connector_main()
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise RuntimeError(f"the connector exited with code {exc.code}") from None
    finally:
        sys.stdout.flush()


def forked_child_setup(frames_fd: int):
    """An at-fork hook: forked workers (faker's multiprocessing pool) must die with this process too, and must not
    hold the frame stream open (the runner would never see its end) or write to it. Only our direct children own
    `frames_fd`; deeper descendants may have reused that number for something else."""
    owner = os.getpid()

    def setup() -> None:
        die_with_parent()
        # The death signal covers a parent that dies after prctl only: a parent killed between fork and here has
        # already left us re-parented (measured: a faker worker outlived a runner SIGKILLed at that moment).
        if os.getppid() != _forking.get("pid"):
            os._exit(EXIT_BROKEN_PIPE)
        if os.getppid() == owner:
            os.close(frames_fd)

    return setup


_forking: dict[str, int] = {}  # the pid that is forking, recorded just before it forks (inherited by the child)


def _about_to_fork() -> None:
    _forking["pid"] = os.getpid()


def read_line() -> dict | None:
    line = sys.stdin.buffer.readline()
    return json.loads(line) if line.strip() else None


def main() -> int:
    frames_fd = take_stdout()
    die_with_parent()
    hello = read_line()
    if hello is None:
        return EXIT_BROKEN_PIPE  # the runner died (or changed its mind) before saying anything
    check_parent_alive(hello["parent_pid"])
    os.register_at_fork(before=_about_to_fork, after_in_child=forked_child_setup(frames_fd))
    writer = FrameWriter(frames_fd)
    emit = Emitter(writer)
    code = 0
    try:
        connector_main, name = prepare(hello["package"], emit)
        # End of input: the runner is done with us (or started us early, then did not need us).
        while (request := read_line()) is not None:
            writer.batch_records, emit.debug = request["batch_records"], bool(request.get("debug"))
            run(request, connector_main, name)
            writer.flush()
            writer.message(b"", kind=DONE)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes the final E frame
        writer.message(error_message(exc), kind=ERROR)
        code = EXIT_ERROR
    sys.stderr.flush()
    return code


if __name__ == "__main__":
    # os._exit: no interpreter teardown, which can hang on a connector's non-daemon threads after all was sent.
    os._exit(main())
