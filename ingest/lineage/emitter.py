"""The emitter: one OpenLineage run per sync, sent from a background thread so lineage never holds a sync up.

`Lineage.from_settings` turns `defaults.lineage` into a transport (http, file, console; `off` is the no-op emitter);
`start` / `complete` / `fail` / `finish` build events (facets.py) and queue them; the end of a sync waits at most
`2 × timeout` seconds for delivery. Every problem is a logged warning, never an exception.
"""
from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..secrets import REDACTOR, REFERENCE, load_provider, resolve_references
from .facets import build_event
from .naming import metaflow_parent, url_origin

if TYPE_CHECKING:
    from ..destinations.base import DestinationIdentity

log = logging.getLogger("ingest.lineage")

TRANSPORTS = ("off", "http", "file", "console")
DEFAULT_NAMESPACE = "ingest"
DEFAULT_ENDPOINT = "api/v1/lineage"
DEFAULT_TIMEOUT = 2.0
# Short, bounded retries: one more try for a refused connection or a 429/5xx, no retry after a read timeout (the
# receiver may have the event), never sleep for a server's Retry-After.
HTTP_RETRY = {
    "total": 1, "connect": 1, "read": 0, "status": 1, "backoff_factor": 0.2,
    "status_forcelist": [429, 500, 502, 503, 504], "allowed_methods": ["POST"],
    "respect_retry_after_header": False,
}


class LineageSettingsError(ValueError):
    pass


def _settings_dict(settings: Any) -> dict:
    if settings is None:
        return {}
    if hasattr(settings, "model_dump"):
        return settings.model_dump()
    if isinstance(settings, dict):
        return dict(settings)
    raise LineageSettingsError(f"expected a mapping, got {type(settings).__name__}")



def resolve_secret(value: str | None, secrets: str | None = "env") -> str | None:
    """`${NAME}` references → their values (through the configured SecretProvider), registered with the redactor."""
    if value is None or value == "":
        return None
    value = str(value)
    if not REFERENCE.search(value):
        REDACTOR.add(value)  # config validation refuses literals; if one gets here it is still never shown
        return value

    def problem(message: str) -> None:
        raise LineageSettingsError(message)

    return resolve_references(value, load_provider(secrets), problem)


def _safe_url(url: str) -> str:
    """A URL for log messages: without user:password."""
    try:
        parts = urlsplit(url)
        if parts.username or parts.password:
            host = parts.hostname or ""
            netloc = f"{host}{f':{parts.port}' if parts.port else ''}"
            url = parts._replace(netloc=netloc).geturl()
    except ValueError:
        pass
    return REDACTOR.redact(url)


def _make_transport(cfg: dict, base_dir: Path | None, secrets: str | None):
    kind = cfg.get("transport") or "off"
    timeout = float(cfg.get("timeout") or DEFAULT_TIMEOUT)
    if kind == "http":
        from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport, TokenProvider

        url = cfg.get("url")
        if not url or not url_origin(str(url)):
            raise LineageSettingsError("transport http needs `url` (http(s)://host[:port])")
        api_key = resolve_secret(cfg.get("api_key"), secrets)
        auth = ApiKeyTokenProvider({"apiKey": api_key}) if api_key else TokenProvider({})
        config = HttpConfig(
            url=str(url), endpoint=str(cfg.get("endpoint") or DEFAULT_ENDPOINT), timeout=timeout, auth=auth,
            retry=dict(HTTP_RETRY),
        )
        return HttpTransport(config), f"http {_safe_url(str(url))}"
    if kind == "file":
        from openlineage.client.transport.file import FileConfig, FileTransport

        raw = cfg.get("path")
        if not raw:
            raise LineageSettingsError("transport file needs `path` (a JSON-lines file)")
        path = Path(str(raw)).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileTransport(FileConfig(log_file_path=str(path), append=True)), f"file {path}"
    if kind == "console":
        from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport

        # The console transport logs each event at INFO on this logger: make it visible without -v.
        logging.getLogger("openlineage.client.transport.console").setLevel(logging.INFO)
        return ConsoleTransport(ConsoleConfig()), "console"
    raise LineageSettingsError(f"unknown transport {kind!r}; expected one of {', '.join(TRANSPORTS)}")


def _run_streams(block, run, targets: dict, asked: list[str] | None = None) -> list[str]:
    """The streams a run syncs, for its `ingest.streams` tag: its targets once they are known, else what the run
    record or the caller asked for; a run that asked for no subset covers every stream of the block."""
    return (list(targets) or list(run.streams or []) or list(asked or [])
            or [s.name for s in getattr(block, "streams", None) or []])


# ---------------------------------------------------------------- the emitter


class Lineage:
    """Emits one OpenLineage run per sync. `Lineage()` (transport off) does nothing at all.

    Per sync: `start(...)` once the streams are known, then `complete(...)` or `fail(...)` (or `finish(...)`,
    which picks one). Never raises; `sent` and `errors` tell what happened."""

    def __init__(self, client=None, *, namespace: str = DEFAULT_NAMESPACE, timeout: float = DEFAULT_TIMEOUT,
                 where: str = "off", destination: "DestinationIdentity | None" = None):
        """`destination`: where this sync's tables live (the destination's `identity`), naming the output datasets."""
        self.client = client
        self.namespace = namespace or DEFAULT_NAMESPACE
        self.timeout = float(timeout)
        self.where = where
        self.destination = destination
        self.sent = 0
        self.errors: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._job: str | None = None  # fixed at START, reused by COMPLETE/FAIL
        self._streams: list[str] = []  # the streams this run syncs (a tag of the run; the job is the block)
        self._parent: tuple[str, str] | None = None
        self._pathspec: str | None = None

    @property
    def enabled(self) -> bool:
        return self.client is not None

    @property
    def started(self) -> bool:
        """start() ran for this sync (so COMPLETE or FAIL is owed)."""
        return self._job is not None

    @classmethod
    def from_settings(cls, settings: Any = None, *, base_dir: str | Path | None = None,
                      secrets: str | None = "env", destination: "DestinationIdentity | None" = None) -> "Lineage":
        """`defaults.lineage` (a dict or the pydantic model) → an emitter. 'off', missing or unusable settings
        give the no-op emitter (unusable ones with a warning): lineage problems never stop a sync.
        `base_dir` anchors a relative file `path` (the directory of connectors.yaml); `secrets` is
        `defaults.secrets` (how `${REF}`s in `api_key` are resolved); `destination` is the identity of the
        destination the sync writes to."""
        try:
            cfg = _settings_dict(settings)
            if (cfg.get("transport") or "off") == "off":
                return cls()
            from openlineage.client import OpenLineageClient

            transport, where = _make_transport(cfg, Path(base_dir) if base_dir else None, secrets)
            client = OpenLineageClient(transport=transport)
            return cls(client, namespace=str(cfg.get("namespace") or DEFAULT_NAMESPACE),
                       timeout=float(cfg.get("timeout") or DEFAULT_TIMEOUT), where=where, destination=destination)
        except Exception as exc:  # noqa: BLE001
            log.warning("lineage disabled for this run: %s", REDACTOR.redact(f"{type(exc).__name__}: {exc}"))
            return cls()

    # -- the three moments of a run

    def start(self, *, block, run, targets: dict, parent_pathspec: str | None = None) -> None:
        if not self.enabled:
            return
        try:
            self._parent = metaflow_parent(parent_pathspec)
            self._pathspec = parent_pathspec
            self._job, self._streams = block.name, _run_streams(block, run, targets)
            self._send(self._build("START", block, run, targets, None, None))
        except Exception as exc:  # noqa: BLE001
            self._problem("START", exc)

    def complete(self, *, block, run, targets: dict, results: dict) -> None:
        self.finish(block=block, run=run, targets=targets, results=results, error=None)

    def fail(self, *, block, run, targets: dict, results: dict, error: BaseException | None,
             streams: list[str] | None = None) -> None:
        self.finish(block=block, run=run, targets=targets, results=results, error=error or Exception("failed"),
                    streams=streams)

    def finish(self, *, block, run, targets: dict, results: dict, error: BaseException | None = None,
               streams: list[str] | None = None, parent_pathspec: str | None = None) -> None:
        """COMPLETE (error is None) or FAIL, then wait at most 2 × timeout for delivery. A FAIL without a START
        (the sync failed before its streams were known) is sent on its own; `streams` (what was asked for) then
        go into its tags, and `parent_pathspec` names the parent."""
        if not self.enabled:
            return
        state = "FAIL" if error is not None else "COMPLETE"
        try:
            if self._job is None:
                self._parent = metaflow_parent(parent_pathspec)
                self._pathspec = parent_pathspec
                self._job = block.name
                self._streams = _run_streams(block, run, targets, streams)
            self._send(self._build(state, block, run, targets or {}, results or {}, error))
        except Exception as exc:  # noqa: BLE001
            self._problem(state, exc)
        self.flush(2 * self.timeout)

    # -- delivery

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the queued events are sent (or failed), at most `timeout` seconds. True when all went."""
        with self._lock:
            thread = self._thread
            if thread is None:
                return True
            self._queue.put(None)
            self._thread = None
        thread.join(self.timeout * 2 if timeout is None else timeout)
        if thread.is_alive():
            log.warning("lineage: gave up waiting for %s after %.1fs; undelivered events are dropped",
                        self.where, self.timeout * 2 if timeout is None else timeout)
            return False
        return True

    def _send(self, event) -> None:
        with self._lock:
            self._queue.put(event)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, args=(self._queue,), name="ingest-lineage", daemon=True)
                self._thread.start()

    def _work(self, q: queue.Queue) -> None:
        while True:
            event = q.get()
            if event is None:
                return
            try:
                self.client.emit(event)
                self.sent += 1
            except Exception as exc:  # noqa: BLE001 - the receiver's problem, never the sync's
                message = REDACTOR.redact(f"{type(exc).__name__}: {exc}")
                self.errors.append(f"{event.eventType.value} {event.job.name}: {message}")
                log.warning("lineage: %s event for job %s not delivered to %s: %s",
                            event.eventType.value, event.job.name, self.where, message)

    def _problem(self, state: str, exc: BaseException) -> None:
        message = REDACTOR.redact(f"{type(exc).__name__}: {exc}")
        self.errors.append(f"{state}: {message}")
        log.warning("lineage: could not build the %s event: %s", state, message, exc_info=log.isEnabledFor(logging.DEBUG))

    # -- building events

    def _build(self, state: str, block, run, targets: dict, results: dict | None, error: BaseException | None):
        return build_event(state, namespace=self.namespace, job=self._job, block=block, run=run, targets=targets,
                           results=results, error=error, destination=self.destination, parent=self._parent,
                           pathspec=self._pathspec, streams=self._streams)
