"""OpenLineage run events for every sync: START at the beginning, COMPLETE or FAIL at the end.

One OpenLineage *run* per sync. Its job is the block (`jira`), or `<block>.<stream>[+<stream>...]` when the sync
covers only some of the block's streams (a Metaflow task syncs one stream), in the configured job namespace.
Inputs are the source's streams (namespace from the connector and its host), outputs the warehouse tables
(namespace and name per the OpenLineage naming spec), with schema, row counts and the owning team.
Inside Metaflow the parent run is the Metaflow run, so lineage chains API → table → downstream flow.
See docs/lineage.md.

Lineage never fails a sync and never holds it up for long: events are built inside try/except, handed to one
background thread that sends them with the openlineage-python client (short timeout, at most one retry), and the
end of a sync waits at most `2 × timeout` seconds for delivery. Every problem is a logged warning. Secrets never go
into an event: the API key only travels in the Authorization header, URLs lose their user:password part, and every
free text (error messages, descriptions, tags) goes through the redactor. Dataset namespaces are identifiers and are
NOT redacted: the redactor masks every resolved `${REF}`, so `domain: ${JIRA_DOMAIN}` would otherwise become
`jira://****`; they come only from non-secret config keys (`base_url`, `domain`) and carry just scheme://host[:port].
"""
from __future__ import annotations

import datetime as dt
import logging
import queue
import re
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .secrets import REDACTOR, REFERENCE, load_provider, too_short

log = logging.getLogger("ingest.lineage")

TRANSPORTS = ("off", "http", "file", "console")
DEFAULT_NAMESPACE = "ingest"
DEFAULT_ENDPOINT = "api/v1/lineage"
DEFAULT_TIMEOUT = 2.0
METAFLOW_NAMESPACE = "metaflow"
TEAM_OWNER_TYPE = "TEAM"
# Short, bounded retries: one more try for a refused connection or a 429/5xx, no retry after a read timeout (the
# receiver may have the event), never sleep for a server's Retry-After.
HTTP_RETRY = {
    "total": 1, "connect": 1, "read": 0, "status": 1, "backoff_factor": 0.2,
    "status_forcelist": [429, 500, 502, 503, 504], "allowed_methods": ["POST"],
    "respect_retry_after_header": False,
}
_ADDED_COLUMN = re.compile(r"^added column (\S+) (.+)$")  # StreamTarget.schema_changes entries


def ingest_run_uuid(run_id: str) -> str:
    """The OpenLineage runId of an ingest run: deterministic, so anyone holding our run id can find the run."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ingest:{run_id}"))


def metaflow_run_uuid(run_pathspec: str) -> str:
    """The OpenLineage runId we give a Metaflow run (`IngestFlow/123`); a downstream flow can compute the same."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"metaflow:{run_pathspec}"))


def metaflow_parent(pathspec: str | None) -> tuple[str, str] | None:
    """`IngestFlow/123/sync/4` (a task) or `IngestFlow/123` (a run) → ('IngestFlow', 'IngestFlow/123').
    None outside Metaflow (no pathspec, or the CLI's `cli/<run id>`)."""
    parts = [p for p in str(pathspec or "").split("/") if p]
    if len(parts) < 2 or parts[0] == "cli":
        return None
    return parts[0], f"{parts[0]}/{parts[1]}"


# ---------------------------------------------------------------- naming


def _origin(url: str) -> str | None:
    """scheme://host[:port] of a URL, never its user:password, path or query."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        if not parts.scheme or not host:
            return None
        host = f"[{host}]" if ":" in host else host
        return f"{parts.scheme.lower()}://{host}{f':{parts.port}' if parts.port else ''}"
    except ValueError:
        return None


def _connector_name(block) -> str:
    """airbyte-source-jira → jira; a manifest → its file stem; a puller → its name."""
    s = block.spec
    if s.source:
        return block.package.removeprefix("airbyte-source-")
    if s.manifest:
        return Path(s.manifest).stem
    return str(s.puller)


def _scheme(text: str) -> str:
    """Something usable as a URI scheme: lowercase letters, digits, '+', '-', '.'."""
    return re.sub(r"[^a-z0-9+.-]+", "-", text.lower()).strip("-") or "source"


def source_namespace(block) -> str:
    """Where a block reads from, as a dataset namespace:
    - `base_url` in the config → its scheme://host[:port] (`http://127.0.0.1:8080`, `https://api.greenscreens.ai`);
    - `domain` → `<connector>://<domain>` (`jira://acme.atlassian.net`);
    - a puller without base_url → the API host it uses by default (from its spec);
    - otherwise the connector itself, locally (`airbyte-source-faker://local`)."""
    config = getattr(block, "config", None) or {}
    base_url = config.get("base_url")
    if isinstance(base_url, str) and (origin := _origin(base_url)):
        return origin
    domain = config.get("domain")
    if isinstance(domain, str) and domain.strip():
        host = _origin(domain if "://" in domain else f"https://{domain}")
        if host:
            return f"{_scheme(_connector_name(block))}://{host.split('://', 1)[1]}"
    if block.spec.puller:
        try:
            from .sources.pullers import puller_spec

            default = ((puller_spec(block.spec.puller) or {}).get("properties") or {}).get("base_url", {}).get("default")
            if isinstance(default, str) and (origin := _origin(default)):
                return origin
        except Exception:  # noqa: BLE001 - naming must never fail an event
            log.debug("lineage: no default base_url for puller %s", block.spec.puller, exc_info=True)
    s = block.spec
    label = block.package or (f"manifest-{Path(s.manifest).stem}" if s.manifest else f"puller-{s.puller}")
    return f"{_scheme(label)}://local"


def destination_dataset(destination: str, table: str) -> tuple[str, str, str]:
    """(namespace, name, kind) of a table in a destination described as `duckdb:<path>` or
    `snowflake:<account>/<database>.<schema>[ via ...]` (Destination.describe()).
    DuckDB: `duckdb://<absolute path>` + table. Snowflake (OpenLineage naming spec): `snowflake://<account>` +
    `DATABASE.SCHEMA.TABLE` in Snowflake's own (upper-case) spelling."""
    destination = str(destination or "")
    if destination.startswith("duckdb:"):
        raw = destination.removeprefix("duckdb:").removeprefix("//")
        path = Path(raw).expanduser()
        try:
            path = path.resolve()
        except OSError:
            path = path.absolute()
        return f"duckdb://{path.as_posix()}", table, "duckdb"
    m = re.match(r"^snowflake:([^/\s]+)/([^.\s]+)\.(\S+)", destination)
    if m:
        account, database, schema = m.groups()
        return f"snowflake://{account.lower()}", f"{database}.{schema}.{table}".upper(), "snowflake"
    return destination or "unknown", table, destination.partition(":")[0] or "unknown"


def _sql_types(kind: str) -> dict[str, str]:
    """Ingest column type → the destination's SQL type (the schema facet shows what the warehouse holds)."""
    try:
        if kind == "duckdb":
            from .destinations.duckdb import SQL_TYPES

            return dict(SQL_TYPES)
        if kind == "snowflake":
            from .destinations.snowflake.sql import SQL_TYPES

            return dict(SQL_TYPES)
    except Exception:  # noqa: BLE001 - fall back to ingest's own type names
        log.debug("lineage: no SQL types for %s", kind, exc_info=True)
    return {}


def _meta_columns() -> dict[str, str]:
    from .destinations.typing import META_COLUMNS

    return dict(META_COLUMNS)


# ---------------------------------------------------------------- settings


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
    provider = load_provider(secrets)

    def sub(m: re.Match) -> str:
        secret = provider.get(m.group(1))
        if secret is None or secret == "":
            raise LineageSettingsError(f"secret reference ${{{m.group(1)}}} is not set")
        if short := too_short(m.group(1), str(secret)):
            raise LineageSettingsError(short)
        REDACTOR.add(str(secret))
        return str(secret)

    return REFERENCE.sub(sub, value)


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
        if not url or not _origin(str(url)):
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


# ---------------------------------------------------------------- the emitter


class Lineage:
    """Emits one OpenLineage run per sync. `Lineage()` (transport off) does nothing at all.

    Per sync: `start(...)` once the streams are known, then `complete(...)` or `fail(...)` (or `finish(...)`,
    which picks one). Never raises; `sent` and `errors` tell what happened."""

    def __init__(self, client=None, *, namespace: str = DEFAULT_NAMESPACE, timeout: float = DEFAULT_TIMEOUT,
                 where: str = "off"):
        self.client = client
        self.namespace = namespace or DEFAULT_NAMESPACE
        self.timeout = float(timeout)
        self.where = where
        self.sent = 0
        self.errors: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._job: str | None = None  # fixed at START, reused by COMPLETE/FAIL
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
                      secrets: str | None = "env") -> "Lineage":
        """`defaults.lineage` (a dict or the pydantic model) → an emitter. 'off', missing or unusable settings
        give the no-op emitter (unusable ones with a warning): lineage problems never stop a sync.
        `base_dir` anchors a relative file `path` (the directory of connectors.yaml); `secrets` is
        `defaults.secrets` (how `${REF}`s in `api_key` are resolved)."""
        try:
            cfg = _settings_dict(settings)
            if (cfg.get("transport") or "off") == "off":
                return cls()
            from openlineage.client import OpenLineageClient

            transport, where = _make_transport(cfg, Path(base_dir) if base_dir else None, secrets)
            client = OpenLineageClient(transport=transport)
            return cls(client, namespace=str(cfg.get("namespace") or DEFAULT_NAMESPACE),
                       timeout=float(cfg.get("timeout") or DEFAULT_TIMEOUT), where=where)
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
            self._job = self._job_name(block, list(targets) or list(run.streams or []))
            self._send(self._event("START", block, run, targets, None, None))
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
        names the job, and `parent_pathspec` the parent."""
        if not self.enabled:
            return
        state = "FAIL" if error is not None else "COMPLETE"
        try:
            if self._job is None:
                self._parent = metaflow_parent(parent_pathspec)
                self._pathspec = parent_pathspec
                self._job = self._job_name(block, list(targets) or list(run.streams or []) or list(streams or []))
            self._send(self._event(state, block, run, targets or {}, results or {}, error))
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

    @staticmethod
    def _job_name(block, streams: list[str]) -> str:
        every = [s.name for s in block.streams]
        if not streams or sorted(set(streams)) == sorted(every):
            return block.name
        return f"{block.name}.{'+'.join(sorted(set(streams)))}"

    def _event(self, state: str, block, run, targets: dict, results: dict | None, error: BaseException | None):
        from openlineage.client.event_v2 import Job, Run, RunEvent, RunState

        producer = _producer()
        if state == "START":
            when = run.started_at
        else:
            when = run.ended_at or dt.datetime.now(dt.timezone.utc)
        return RunEvent(
            eventType=RunState[state],
            eventTime=_iso(when),
            run=Run(runId=ingest_run_uuid(run.run_id), facets=self._run_facets(block, run, error, producer)),
            job=Job(namespace=self.namespace, name=self._job, facets=_job_facets(block, producer)),
            inputs=[_input(block, t, (results or {}).get(name), producer) for name, t in targets.items()],
            outputs=[_output(run, t, (results or {}).get(name), state, error, producer) for name, t in targets.items()],
            producer=producer,
        )

    def _run_facets(self, block, run, error, producer) -> dict:
        from openlineage.client.facet_v2 import error_message_run, parent_run, processing_engine_run, tags_run

        facets: dict = {
            "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
                version=_version("ingest"), name="ingest", openlineageAdapterVersion=_version("openlineage-python"),
                producer=producer,
            ),
        }
        tags = [("ingest.run_id", run.run_id), ("ingest.block", block.name), ("ingest.team", block.team),
                ("ingest.source", block.source_label)]
        if self._pathspec and self._parent:
            tags.append(("metaflow.pathspec", self._pathspec))
        facets["tags"] = tags_run.TagsRunFacet(
            tags=[tags_run.TagsRunFacetFields(key=k, value=REDACTOR.redact(v), source="INGEST") for k, v in tags if v],
            producer=producer,
        )
        if self._parent:
            flow, run_pathspec = self._parent
            parent_uuid = metaflow_run_uuid(run_pathspec)
            kwargs: dict = {}
            if "root" in {f.name for f in _attrs_fields(parent_run.ParentRunFacet)}:
                kwargs["root"] = parent_run.Root(run=parent_run.RootRun(runId=parent_uuid),
                                                 job=parent_run.RootJob(namespace=METAFLOW_NAMESPACE, name=flow))
            facets["parent"] = parent_run.ParentRunFacet(
                run=parent_run.Run(runId=parent_uuid), job=parent_run.Job(namespace=METAFLOW_NAMESPACE, name=flow),
                producer=producer, **kwargs,
            )
        if error is not None:
            kind = getattr(error, "failure_type", None) or "error"
            message = run.error or f"{kind}: {error}"
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=REDACTOR.redact(message), programmingLanguage="python", producer=producer,
            )
        return facets


def _attrs_fields(cls):
    import attr

    return attr.fields(cls)


def _job_facets(block, producer) -> dict:
    from openlineage.client.facet_v2 import documentation_job, job_type_job, ownership_job

    facets: dict = {
        "jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="INGEST", jobType="SYNC", producer=producer),
        "ownership": ownership_job.OwnershipJobFacet(
            owners=[ownership_job.Owner(name=f"team:{block.team}", type=TEAM_OWNER_TYPE)], producer=producer,
        ),
    }
    description = getattr(block.spec, "description", None)
    if description:
        facets["documentation"] = documentation_job.DocumentationJobFacet(description=REDACTOR.redact(description), producer=producer)
    return facets


def _input(block, target, result, producer):
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.facet_v2 import datasource_dataset, schema_dataset

    namespace = source_namespace(block)
    facets = {
        "dataSource": datasource_dataset.DatasourceDatasetFacet(name=block.source_label, uri=namespace, producer=producer),
        "schema": schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=c, type=t) for c, t in target.columns.items()],
            producer=producer,
        ),
    }
    input_facets: dict = {}
    if result is not None:
        try:
            from openlineage.client.facet_v2 import input_statistics_input_dataset as stats

            input_facets["inputStatistics"] = stats.InputStatisticsInputDatasetFacet(rowCount=int(result.records), producer=producer)
        except ImportError:  # older clients have no input statistics facet
            pass
    return InputDataset(namespace=namespace, name=target.stream, facets=facets, inputFacets=input_facets)


def _output(run, target, result, state: str, error, producer):
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.facet_v2 import (datasource_dataset, lifecycle_state_change_dataset,
                                             output_statistics_output_dataset, ownership_dataset, schema_dataset)

    namespace, name, kind = destination_dataset(run.destination, target.table)
    sql = _sql_types(kind)
    columns = {c: sql.get(t, t) for c, t in target.columns.items()}
    for change in target.schema_changes or []:
        m = _ADDED_COLUMN.match(change)
        if m:
            columns[m.group(1)] = m.group(2)
    for c, t in _meta_columns().items():
        columns.setdefault(c, sql.get(t, t))
    if kind == "snowflake":
        columns = {c.upper(): t for c, t in columns.items()}
    facets: dict = {
        "dataSource": datasource_dataset.DatasourceDatasetFacet(name=kind, uri=namespace, producer=producer),
        "schema": schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=c, type=t) for c, t in columns.items()],
            producer=producer,
        ),
        "ownership": ownership_dataset.OwnershipDatasetFacet(
            owners=[ownership_dataset.Owner(name=f"team:{target.team}", type=TEAM_OWNER_TYPE)], producer=producer,
        ),
    }
    output_facets: dict = {}
    if state == "COMPLETE" and target.staged:
        facets["lifecycleStateChange"] = lifecycle_state_change_dataset.LifecycleStateChangeDatasetFacet(
            lifecycleStateChange=lifecycle_state_change_dataset.LifecycleStateChange.OVERWRITE, producer=producer,
        )
    # Rows are counted when they are committed: on COMPLETE, and on FAIL for append/dedup loads (their checkpoints
    # stay). A failed staged (replace) load may or may not have been swapped in, so no count is claimed for it.
    if result is not None and (state == "COMPLETE" or not target.staged):
        output_facets["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
            rowCount=int(result.rows_written), producer=producer,
        )
    return OutputDataset(namespace=namespace, name=name, facets=facets, outputFacets=output_facets)


# ---------------------------------------------------------------- small helpers


def _iso(value) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.isoformat()
    return dt.datetime.now(dt.timezone.utc).isoformat()


_VERSIONS: dict[str, str] = {}


def _version(package: str) -> str:
    if package not in _VERSIONS:
        try:
            from importlib.metadata import version

            _VERSIONS[package] = version(package)
        except Exception:  # noqa: BLE001
            _VERSIONS[package] = "unknown"
    return _VERSIONS[package]


def _producer() -> str:
    """The `producer` URI of our events and facets."""
    return f"urn:ingest:{_version('ingest')}"


__all__ = ["Lineage", "destination_dataset", "ingest_run_uuid", "metaflow_parent", "metaflow_run_uuid",
           "resolve_secret", "source_namespace"]
