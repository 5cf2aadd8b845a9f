"""Declarative manifests run in-process on the runner's own CDK.

Two kinds of block end up here: a packaged connector (`source: airbyte-source-jira==4.0.0`) whose manifest is read
from its files dir in the connectors cache (`ConnectorCache.ensure_files`; the package is never installed), and a
standalone manifest file (`manifest:` + optional `components:`). Python connectors, and manifests the runner's CDK
cannot run (`manifest.in_process_blocker`), run isolated instead (sources/isolated.py).

A fresh CDK source is built per operation (its concurrent queue and thread pool are per instance), with the state
passed to the constructor (declarative sources ignore state given only to `read()`), inside `contained()` so
connector side effects stay inside the sync.
"""
from __future__ import annotations

import ast
import copy
import logging
import re
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from ..config import Block
from ..errors import SyncError
from ..secrets import REDACTOR
from . import manifest as mf
from .base import Source
from .containment import contained

log = logging.getLogger("ingest.source")
T = TypeVar("T")

DEFAULT_CHECK_TIMEOUT = 15.0


def _failure(exc: BaseException, trace_error: Any | None, stream: str | None = None) -> SyncError:
    """Turn whatever the connector raised into one clear, redacted message with its failure type."""
    from airbyte_cdk.utils.traced_exception import AirbyteTracedException

    failure_type = None
    message = None
    if trace_error is not None:
        failure_type = getattr(trace_error.failure_type, "value", trace_error.failure_type)
        message = trace_error.message or trace_error.internal_message
        if trace_error.internal_message and (message or "").startswith("Something went wrong in the connector"):
            message = trace_error.internal_message  # the generic text hides the cause (e.g. "Service unavailable")
    if isinstance(exc, AirbyteTracedException):
        failure_type = failure_type or getattr(exc.failure_type, "value", exc.failure_type)
        # "Concurrent read failure" is a wrapper; the trace message says what actually went wrong.
        message = message or exc.message or exc.internal_message
    if not message:
        message = f"{type(exc).__name__}: {exc}"
    return SyncError(REDACTOR.redact(message), failure_type=failure_type, stream=stream)


class InProcessSource(Source):
    """A declarative manifest on the runner's CDK. ``files_dir`` is the connector release's files dir for a
    ``source:`` block, None for a ``manifest:`` block. ``check()`` answers within ``check_timeout`` seconds."""

    def __init__(self, block: Block, files_dir: Path | None, *, check_timeout: float = DEFAULT_CHECK_TIMEOUT):
        if (files_dir is None) != bool(block.spec.manifest):
            raise ValueError(f"{block.name}: a files dir is needed for a `source:` block and only for one")
        self.block = block
        self.files_dir = Path(files_dir) if files_dir is not None else None
        self.module = mf.package_module(block.spec.source) if files_dir is not None else None
        self.check_timeout = check_timeout
        self._manifest: dict | None = None

    # ------------------------------------------------------------ building

    def manifest(self) -> dict:
        """The manifest as it will be built: packaged (schemas pinned) or standalone, with the block's override."""
        if self._manifest is None:
            s = self.block.spec
            if self.module is None:
                manifest = mf.load_yaml_file(self.block.path(s.manifest))
            else:
                manifest = mf.load_package_manifest(self.module, self.files_dir)
                if manifest is None:
                    raise SyncError(f"{s.source} has no manifest.yaml: it is a Python connector, which runs isolated")
            if s.overrides:
                manifest = mf.apply_override(manifest, mf.load_yaml_file(self.block.path(s.overrides)))
            self._manifest = manifest
        return self._manifest

    def _build(self, catalog=None, state=None, *, for_check: bool = False):
        config = copy.deepcopy(self.block.config)  # some connectors mutate their config
        components = self.block.spec.components
        source = mf.build_declarative_source(
            self.manifest(), catalog=catalog, config=config, state=state or [],  # (it builds from a copy)
            components_path=self.block.path(components) if components else None,
            package=(self.module, self.files_dir) if self.module else None,
            for_check=for_check,
        )
        return source, config

    # ------------------------------------------------------------ protocol

    def spec(self) -> dict:
        try:
            return mf.connector_spec(self.module, self.manifest(), self.files_dir)
        except (OSError, ValueError) as exc:
            raise SyncError(f"{self.block.source_label}: cannot read the connector's spec: {exc}") from None

    def check(self) -> tuple[bool, str | None]:
        """Can we connect? Bounded: no HTTP retries (see `build_declarative_source`) and an overall deadline,
        because some waits cannot be turned off from a manifest (OAuth token refresh backs off for up to 5 minutes
        in the CDK; a silently dropped connection waits for the socket timeout)."""
        with contained():
            try:
                status = _within(self.check_timeout, self._check_once)
            except TimeoutError:
                return False, f"no answer within {self.check_timeout:g} s (is the host reachable from here?)"
            except Exception as exc:  # noqa: BLE001 - reported as a failed check, not a stack trace
                return False, _check_message(str(_failure(exc, None)))
        ok = getattr(status.status, "value", status.status) == "SUCCEEDED"
        return ok, None if ok else _check_message(status.message or "check failed")

    def _check_once(self):
        source, config = self._build(for_check=True)
        return source.check(logging.getLogger("airbyte"), config)

    def discover(self):
        with contained():
            try:
                source, config = self._build()
                return source.discover(logging.getLogger("airbyte"), config)
            except SyncError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise _failure(exc, None) from None

    def read(self, catalog, state: list) -> Iterator[Any]:
        from airbyte_cdk.models import TraceType, Type

        first_error = None
        with contained():
            try:
                source, config = self._build(catalog, state)
                for message in source.read(logging.getLogger("airbyte"), config, catalog, state):
                    if message.type == Type.TRACE and message.trace.type == TraceType.ERROR and first_error is None:
                        first_error = message.trace.error
                    yield message
            except SyncError:
                raise
            except Exception as exc:  # noqa: BLE001
                stream = None
                if first_error is not None and first_error.stream_descriptor is not None:
                    stream = first_error.stream_descriptor.name
                raise _failure(exc, first_error, stream) from None
        if first_error is not None:
            raise _failure(RuntimeError("the connector reported an error"), first_error)


def _within(seconds: float, fn: Callable[[], T]) -> T:
    """``fn()`` in a daemon thread, or TimeoutError after ``seconds``. The thread is abandoned, not killed (Python
    cannot kill it): daemon, so a stuck connector never keeps the process alive (a ThreadPoolExecutor's workers
    would be joined at exit)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="ingest-check", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError
    if "error" in box:
        raise box["error"]
    return box["value"]


# How the CDK's CheckStream words a failure (CDK 7.39), and what the user is told instead.
_STREAM_FAILED = re.compile(
    r"^(?:Encountered an error while checking availability of stream (?P<a>\S+)\. Error: "
    r"|Stream (?P<b>\S+) is not available: )")
_OTHER_FAILURE = re.compile(r"^Encountered an error while (?P<action>[^.]+)\. Error: ")
_UNKNOWN_CHECK_STREAM = re.compile(r"(?P<name>\S+) is not part of the catalog\. Expected one of ")
_EXHAUSTED = "Exhausted available request attempts. Please see logs for more details. Exception: "
_HOST_PORT = re.compile(r"host='(?P<host>[^']+)', port=(?P<port>\d+)")
_CONNECTION_PROBLEMS = (
    ("NameResolutionError", "cannot resolve the host name"),
    ("Failed to resolve", "cannot resolve the host name"),
    ("Connection refused", "connection refused"),
    ("ConnectTimeout", "connection timed out"),
    ("timed out", "timed out"),
    ("SSLError", "TLS handshake failed"),
    ("Network is unreachable", "network unreachable"),
)


def _check_message(raw: str) -> str:
    """One clean line from the CDK's check failure. The CDK hands back ``repr(error)`` (a quoted Python string)
    wrapped around a requests exception's text; users get 'stream projects: cannot connect to
    jira.example.com:443 (connection refused)', never quotes, object reprs or tracebacks."""
    text = _unquoted(raw.strip()).split("Error traceback:")[0]
    if unknown := _UNKNOWN_CHECK_STREAM.search(text):  # zendesk-support 4.9.1's check names `Tags`, not `tags`
        return f"the manifest's check names stream {unknown.group('name')!r}, which this connector does not have"
    subject, text = _subject(text)
    text = text.replace(_EXHAUSTED, "")
    detail = _connection_problem(text) or text.replace("HTTP Status Code: ", "HTTP ").replace(". Error: ", ": ", 1)
    return REDACTOR.redact(" ".join((f"{subject}: {detail}" if subject else detail).split()))


def _unquoted(text: str) -> str:
    """The string a Python repr stands for ("'Encountered ...'" -> "Encountered ..."); other text as it is."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        try:
            return str(ast.literal_eval(text))
        except (ValueError, SyntaxError):
            return text[1:-1]
    return text


def _subject(text: str) -> tuple[str | None, str]:
    """What failed ('stream projects', 'discovering streams') and the rest of the CDK's message."""
    if match := _STREAM_FAILED.match(text):
        return f"stream {match.group('a') or match.group('b')}", text[match.end():]
    if match := _OTHER_FAILURE.match(text):
        return match.group("action"), text[match.end():]
    return None, text


def _connection_problem(text: str) -> str | None:
    """'cannot connect to host:port (why)' for a requests/urllib3 connection error text, else None."""
    where = _HOST_PORT.search(text)
    if not where or "Max retries exceeded" not in text:
        return None
    why = next((reason for needle, reason in _CONNECTION_PROBLEMS if needle in text), "connection failed")
    return f"cannot connect to {where.group('host')}:{where.group('port')} ({why})"
