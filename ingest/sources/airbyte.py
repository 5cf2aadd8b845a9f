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

import builtins
import copy
import logging
import re
import threading
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from ..config import Block
from ..errors import SyncError
from ..secrets import REDACTOR
from . import manifest as mf
from .base import Source
from .containment import contained
from .messages import OAUTH_NETWORK, check_message, connection_problem

log = logging.getLogger("ingest.source")
T = TypeVar("T")

DEFAULT_CHECK_TIMEOUT = 15.0
# discover answers within this multiple of the check timeout (60 s for the default 15 s): a check makes one or two
# requests, discover one per dynamic stream definition and per dynamic schema (hubspot: one per object type).
DISCOVER_TIMEOUT_FACTOR = 4


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
    ``source:`` block, None for a ``manifest:`` block.

    ``check()`` answers within ``check_timeout`` seconds (the project's ``defaults.check_timeout``), ``discover()``
    within ``discover_timeout`` = `DISCOVER_TIMEOUT_FACTOR` x ``check_timeout``: both without HTTP retries, with
    one attempt per OAuth token refresh (`manifest.bounded_requests`), and with one clean line when they fail. A
    discover of static streams makes no request and is not affected; one of dynamic streams (hubspot's custom
    objects, google-sheets' sheets) fails fast when the API cannot be reached - also at the start of a sync, before
    anything is written, so a transient failure there fails the run rather than being retried in it."""

    def __init__(self, block: Block, files_dir: Path | None, *, check_timeout: float = DEFAULT_CHECK_TIMEOUT):
        if (files_dir is None) != bool(block.spec.manifest):
            raise ValueError(f"{block.name}: a files dir is needed for a `source:` block and only for one")
        self.block = block
        self.files_dir = Path(files_dir) if files_dir is not None else None
        self.module = mf.package_module(block.spec.source) if files_dir is not None else None
        self.check_timeout = check_timeout
        self._manifest: dict | None = None

    @property
    def discover_timeout(self) -> float:
        return self.check_timeout * DISCOVER_TIMEOUT_FACTOR

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

    def _build(self, catalog=None, state=None, *, manifest: dict | None = None, for_check: bool = False,
               for_discover: bool = False):
        config = copy.deepcopy(self.block.config)  # some connectors mutate their config
        components = self.block.spec.components
        source = mf.build_declarative_source(
            manifest or self.manifest(), catalog=catalog, config=config, state=state or [],  # (builds from a copy)
            components_path=self.block.path(components) if components else None,
            package=(self.module, self.files_dir) if self.module else None,
            for_check=for_check, for_discover=for_discover,
        )
        return source, config

    # ------------------------------------------------------------ protocol

    def spec(self) -> dict:
        try:
            return mf.connector_spec(self.module, self.manifest(), self.files_dir)
        except (OSError, ValueError) as exc:
            raise SyncError(f"{self.block.source_label}: cannot read the connector's spec: {exc}") from None

    def check(self) -> tuple[bool, str | None]:
        """Can we connect? Bounded: no HTTP retries (see `build_declarative_source`), one attempt per OAuth token
        refresh, and an overall deadline, because some waits cannot be turned off from a manifest (a silently
        dropped connection waits for the socket timeout). The manifest's check is repaired first where it cannot
        work as written (`manifest.repaired_check`: github's names no stream, zendesk's a stream in the wrong case)."""
        attempt = _Attempt()
        with contained():
            try:
                status = _within(self.check_timeout, lambda: self._check_once(attempt))
            except TimeoutError:
                return False, f"no answer within {self.check_timeout:g} s (is the host reachable from here?)"
            except Exception as exc:  # noqa: BLE001 - reported as a failed check, not a stack trace
                attempt.errors.append(exc)
                return False, self._explained(check_message(str(_failure(exc, None))), attempt)
        ok = getattr(status.status, "value", status.status) == "SUCCEEDED"
        return ok, None if ok else self._explained(check_message(status.message or "check failed"), attempt)

    def _check_once(self, attempt: "_Attempt"):
        manifest, note = mf.repaired_check(self.manifest(), [s.name for s in self.block.spec.streams])
        if note:
            log.info("%s: %s", self.block.source_label, note)
        with mf.bounded_requests() as attempt.requests:
            source, config = self._build(manifest=manifest, for_check=True)
            return source.check(attempt.logger(), config)

    def discover(self, *, for_sync: bool = False):
        """The catalog. Bounded like `check` (no HTTP retries, one OAuth refresh attempt), within
        ``discover_timeout``; a failure is one SyncError line saying what discover needed the network for.
        `for_sync`: the discover that starts a sync keeps the manifest's retries and no deadline (a 429 while
        listing a connector's dynamic streams is waited out, as the reads that follow would be)."""
        if for_sync:
            return self._discover_for_sync()
        attempt = _Attempt()
        with contained():
            try:
                return _within(self.discover_timeout, lambda: self._discover_once(attempt))
            except TimeoutError:
                raise SyncError(self._discover_problem(
                    f"no answer within {self.discover_timeout:g} s (is the host reachable from here?)", network=True),
                    failure_type="transient_error") from None
            except SyncError:
                raise
            except Exception as exc:  # noqa: BLE001
                attempt.errors.append(exc)
                failure = _failure(exc, None)
                trace = getattr(exc, "internal_message", None) or ""
                detail = self._explained(check_message(str(failure)), attempt, also=trace)
                network = attempt.requests is not None and attempt.requests.oauth_error is not None
                raise SyncError(self._discover_problem(detail, network=network or "cannot connect to " in detail),
                                failure_type=failure.failure_type) from None

    def _discover_for_sync(self):
        attempt = _Attempt()
        with contained():
            try:
                source, config = self._build()
                return source.discover(attempt.logger(), config)
            except SyncError:
                raise
            except Exception as exc:  # noqa: BLE001
                attempt.errors.append(exc)
                failure = _failure(exc, None)
                raise SyncError(self._explained(check_message(str(failure)), attempt),
                                failure_type=failure.failure_type) from None

    def _discover_once(self, attempt: "_Attempt"):
        with mf.bounded_requests() as attempt.requests:
            source, config = self._build(for_discover=True)
            return source.discover(attempt.logger(), config)

    def _discover_problem(self, detail: str, *, network: bool) -> str:
        needs = mf.network_needs(self.manifest()) if network else None
        if needs:
            return f"discover needs the network for this connector's {needs}: {detail}"
        return f"discover: {detail}" if network else detail

    def _explained(self, message: str, attempt: "_Attempt", *, also: str = "") -> str:
        """A failure line made specific: an OAuth refresh that could not connect says where to, and an
        AttributeError raised in the connector's own components on a CDK object says that they need another CDK."""
        oauth = attempt.requests.oauth_error if attempt.requests is not None else None
        where = connection_problem(str(oauth)) if oauth is not None else None
        if where is None and OAUTH_NETWORK in message:
            where = connection_problem(also)
        if where:
            message = message.replace(OAUTH_NETWORK, f"{where} while refreshing the OAuth token")
        if any(self._components_attribute_error(exc) for exc in attempt.errors):
            message += self._components_hint()
        return message

    def _package_dir(self) -> Path | None:
        return (self.files_dir / self.module).resolve() if self.module and self.files_dir else None

    def _components_attribute_error(self, exc: BaseException | None = None, stack_trace: str | None = None) -> bool:
        """True for an AttributeError raised in the connector package's own code (its innermost frame is there) on
        an object of the CDK or of the package: a CDK API the components expect and the runner's CDK lacks
        (gitlab 4.3.7: ``'DefaultStream' object has no attribute 'stream_slices'``). A connector bug such as
        ``'NoneType' object has no attribute 'get'`` is not one."""
        package = self._package_dir()
        if package is None:
            return False
        if exc is not None:
            frames = traceback.extract_tb(exc.__traceback__) if isinstance(exc, AttributeError) else []
            owner = type(getattr(exc, "obj", None)).__module__.split(".")[0]
            return bool(frames) and _inside(frames[-1].filename, package) and owner in ("airbyte_cdk", self.module)
        files = re.findall(r'File "([^"]+)"', stack_trace or "")
        error = _ATTRIBUTE_ERROR.search(stack_trace or "")
        return bool(files and error) and _inside(files[-1], package) and error.group("type") not in _BUILTIN_TYPES

    def _components_hint(self) -> str:
        written = mf.components_written_for(self.files_dir, self.manifest())
        runner = mf.runner_cdk_version().split(".")[0]
        what = f"were written for CDK {written}" if written else "need another CDK"
        where = "set `runtime: isolated`" if not self.block.spec.overrides else (
            "manifest overrides need the in-process runtime: drop the override to run it isolated")
        return f" (the connector's components {what}, not the runner's CDK {runner}; {where})"

    def read(self, catalog, state: list) -> Iterator[Any]:
        from airbyte_cdk.models import AirbyteStateMessageSerializer, TraceType, Type

        first_error = None
        with contained():
            state = [AirbyteStateMessageSerializer.load(s) for s in state]  # the CDK's own state classes
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
                failure = _failure(exc, first_error, stream)
                raise self._with_components_hint(failure, exc, first_error) from None
        if first_error is not None:
            failure = _failure(RuntimeError("the connector reported an error"), first_error)
            raise self._with_components_hint(failure, None, first_error)

    def _with_components_hint(self, failure: SyncError, exc: BaseException | None, trace_error) -> SyncError:
        stack = getattr(trace_error, "stack_trace", None)
        if not (self._components_attribute_error(exc) or self._components_attribute_error(stack_trace=stack)):
            return failure
        message = str(failure)
        internal = getattr(trace_error, "internal_message", None)
        if internal and internal not in message:  # "An unexpected error occurred in stream projects: AttributeError"
            message += f": {REDACTOR.redact(internal)}"
        return SyncError(message + self._components_hint(), failure_type=failure.failure_type, stream=failure.stream)


class _Attempt:
    """What one bounded check or discover saw besides its answer: the OAuth refresh it could not make
    (`manifest.bounded_requests`) and the exceptions the connector logged with their tracebacks (the CDK's check
    keeps only ``str(error)``)."""

    def __init__(self) -> None:
        self.requests: mf.BoundedRequests | None = None
        self.errors: list[BaseException] = []

    def logger(self) -> logging.Logger:
        """A logger for the CDK's ``check``/``discover``: it behaves as the ``airbyte`` logger (same name and
        filters, its records go on to that logger's parents) and also keeps the exceptions logged with
        ``exc_info``. Not registered with ``logging``, so it goes away with the operation."""
        attempt = self

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.exc_info and record.exc_info[1] is not None:
                    attempt.errors.append(record.exc_info[1])

        airbyte = logging.getLogger("airbyte")
        logger = logging.Logger("airbyte", airbyte.level)
        logger.parent, logger.propagate = airbyte.parent, airbyte.propagate
        for keep_out in airbyte.filters:
            logger.addFilter(keep_out)
        for handler in airbyte.handlers:
            logger.addHandler(handler)
        logger.addHandler(Keep(logging.ERROR))
        return logger


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


# An AttributeError in a traceback's text, and the builtin types it may name (not a CDK API the components miss).
_ATTRIBUTE_ERROR = re.compile(r"^AttributeError: '(?P<type>\w+)' object has no attribute ", re.MULTILINE)
_BUILTIN_TYPES = {name for name, value in vars(builtins).items() if isinstance(value, type)} | {"NoneType"}


def _inside(filename: str, directory: Path) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(directory)
    except (OSError, ValueError):
        return False
