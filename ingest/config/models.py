"""The pydantic models of connectors.yaml: what every key may hold, checked for every block when the file is loaded.

Only structure lives here (unknown keys, types, enums, cron, durations, one source per block; a block's `resources:`
in resources.py); turning pydantic's errors into `file:line: key: message` is `problems.py`'s job, and the checks that
need the connector or the secrets are `resolve.py`'s.
"""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..secrets import literal_secret
from .resources import ResourceSettings

# `airbyte-source-stripe` (newest at install time, then pinned in connectors.lock) or `airbyte-source-stripe==5.14.1`.
PACKAGE = re.compile(r"^(?P<package>airbyte-source-[a-z0-9]+(-[a-z0-9]+)*)(==(?P<version>[0-9][0-9A-Za-z.+!-]*))?$")
_REQUIREMENT = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?(\[[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*\])?"
                          r"( *(==|!=|>=|<=|~=|>|<) *[0-9][0-9A-Za-z.*+!-]*( *, *(==|!=|>=|<=|~=|>|<) *[0-9][0-9A-Za-z.*+!-]*)*)?$")
WriteMode = Literal["append", "dedup", "replace"]
SyncMode = Literal["incremental", "full_refresh"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatchSettings(_Strict):
    """Checkpoint bounds: records are committed at every source STATE message and at least this often."""

    max_records: int = Field(10_000, ge=1)
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024)


def _file_path(v: str | None) -> str | None:
    # An empty path would open the config's own directory as a database (or an in-memory one, losing every row).
    if v is not None and not v.strip():
        raise ValueError("expected a file path; got an empty string")
    return v


class DuckDBSettings(_Strict):
    path: str = "warehouse.duckdb"
    # DuckDB's own worker threads compete with the connector for CPU; the loader's per-batch SQL is small, so one
    # thread is faster end to end (bench/throughput.py: 0.95x vs 0.89x of the raw read on 2 cores, same run).
    threads: int = Field(1, ge=1)
    # DuckDB's buffer pool otherwise keeps every block it touched, up to 80% of the machine's RAM: a dedup load
    # scans the whole table per batch, so the runner grew with the table (faker, runner peak RSS: 239 MB at 150k
    # records, 527 MB at 1.5M; with 64MB: 220 MB at 150k, 233 MB at 600k; bench/README.md). Queries past the limit
    # spill to a temp file next to the database. `null`: DuckDB's default.
    memory_limit: str | None = "64MB"

    _path = field_validator("path")(_file_path)

    @field_validator("memory_limit")
    @classmethod
    def _memory_limit(cls, v: str | None) -> str | None:
        # the value goes into `SET memory_limit = '...'`: only DuckDB's own spelling, a number and a unit
        if v is not None and not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", v.strip()):
            raise ValueError(f"expected a size DuckDB understands, like '128MB', '512MiB' or '2GB'; got {v!r}")
        return v if v is None else v.strip()


class SnowflakeSettings(_Strict):
    account: str | None = None
    user: str | None = None
    password: str | None = None
    private_key_file: str | None = None
    private_key: str | None = None
    private_key_passphrase: str | None = None
    role: str | None = None
    warehouse: str | None = None
    database: str | None = None
    schema_: str | None = Field(None, alias="schema")
    # For tests and private links: talk to a specific host (e.g. a local fakesnow server).
    host: str | None = None
    port: int | None = None
    protocol: Literal["https", "http"] | None = None
    login_timeout: int | None = None
    network_timeout: int | None = None


class DestinationSpec(_Strict):
    type: Literal["duckdb", "snowflake"] = "duckdb"
    path: str | None = None  # duckdb only: overrides defaults.duckdb.path

    _path = field_validator("path")(_file_path)


class StreamSpec(_Strict):
    name: str
    sync: SyncMode | None = None  # default: incremental when the stream supports it
    write: WriteMode | None = None  # default: dedup if incremental with a primary key, replace if full refresh
    primary_key: list[str] | str | None = None
    cursor: str | None = None
    table: str | None = None  # destination table; default <block>_<stream>

    @field_validator("table")
    @classmethod
    def _table_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError("expected a plain identifier (letters, digits, underscores)")
        return v


class BlockSpec(_Strict):
    team: str
    description: str | None = None
    source: str | None = None  # a PyPI connector package, e.g. airbyte-source-jira
    manifest: str | None = None  # or a declarative manifest file
    components: str | None = None  # custom components for a manifest
    puller: str | None = None  # or one of our built-in pullers
    overrides: str | None = None  # manifest patch for declarative connectors
    # Where a `source:` connector runs: in-process on the runner's CDK (declarative manifests), isolated in its own
    # environment as a child process, or auto (in-process when the manifest can, isolated otherwise).
    runtime: Literal["auto", "in_process", "isolated"] = "auto"
    # Requirements that replace what an isolated connector's release asks for, in its own environment only (uv
    # --override): for a release whose metadata pins something that does not exist (airbyte-source-s3 4.16.1 pins
    # smart-open[s3]==4.16.1). Plain `name[extras]<specifiers>` only: no URLs, paths, markers or options.
    dependency_overrides: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    streams: list[StreamSpec] = Field(min_length=1)
    destination: Literal["duckdb", "snowflake"] | DestinationSpec | None = None
    schedule: str | None = None
    freshness: str | None = None
    # CPU and memory of each `sync` pod when the block runs as a scheduled flow (resources.py has the default).
    resources: ResourceSettings = Field(default_factory=ResourceSettings)

    @model_validator(mode="after")
    def _one_source(self) -> "BlockSpec":
        given = [k for k in ("source", "manifest", "puller") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "expected exactly one of 'source' (an Airbyte package), 'manifest' (a file) or 'puller'"
                + (f"; got {', '.join(given)}" if given else "")
            )
        if self.source and not PACKAGE.match(self.source):
            raise ValueError(f"source: expected an Airbyte connector package like 'airbyte-source-jira' or "
                             f"'airbyte-source-jira==4.0.0', got {self.source!r}")
        if self.runtime != "auto" and not self.source:
            raise ValueError("runtime: only for 'source:' connectors (manifests and pullers run in-process)")
        if self.dependency_overrides and (not self.source or self.runtime == "in_process"):
            raise ValueError("dependency_overrides: only for 'source:' connectors that run isolated (in-process "
                             "connectors use the runner's own libraries)")
        if self.components and not self.manifest:
            raise ValueError("components: only valid together with 'manifest'")
        if self.overrides and self.puller:
            raise ValueError("overrides: only valid for Airbyte connectors, not pullers")
        names = [s.name for s in self.streams]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"streams: duplicate stream name(s) {', '.join(dupes)}")
        return self

    @field_validator("dependency_overrides")
    @classmethod
    def _requirements(cls, v: list[str]) -> list[str]:
        for item in v:
            if not isinstance(item, str) or not _REQUIREMENT.match(item.strip()):
                raise ValueError(f"expected requirements like 'smart-open[s3]>=7,<8' (a name, extras, version "
                                 f"specifiers; no URLs, paths, markers or options), got {item!r}")
        return [item.strip() for item in v]

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            check_cron(v)
        return v

    @field_validator("freshness")
    @classmethod
    def _freshness(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v


class EventSettings(_Strict):
    """Where "data landed" events go. INGEST_EVENTS_WEBHOOK in the environment wins (set per cluster)."""

    webhook: str | None = None  # e.g. the Argo Events webhook: http://argo-events-webhook:12000/ingest


class LineageSettings(_Strict):
    """OpenLineage run events for every sync (docs/lineage.md). Off unless configured."""

    transport: Literal["off", "http", "file", "console"] = "off"
    url: str | None = None  # http: the OpenLineage API root, e.g. http://marquez:5000
    endpoint: str = "api/v1/lineage"  # http: path under url
    api_key: str | None = None  # http: a ${SECRET} reference, sent as "Authorization: Bearer <key>"
    path: str | None = None  # file: JSON lines, relative to this file
    namespace: str = "ingest"  # the jobs' namespace
    timeout: float = Field(2.0, gt=0, le=30)  # seconds per request; a sync waits at most twice this at its end

    @field_validator("api_key")
    @classmethod
    def _api_key_is_a_reference(cls, v: str | None) -> str | None:
        if v and (literal := literal_secret(v, "OPENLINEAGE_API_KEY")):
            raise ValueError(literal)
        return v

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/?#\s]+", v):
            raise ValueError("expected an http(s):// URL")
        return v

    @model_validator(mode="after")
    def _transport_needs(self) -> "LineageSettings":
        if self.transport == "http" and not self.url:
            raise ValueError("url: required when transport is http")
        if self.transport == "file" and not self.path:
            raise ValueError("path: required when transport is file")
        return self


class Defaults(_Strict):
    destination: Literal["duckdb", "snowflake"] = "duckdb"
    events: EventSettings = Field(default_factory=EventSettings)
    lineage: LineageSettings = Field(default_factory=LineageSettings)
    duckdb: DuckDBSettings = Field(default_factory=DuckDBSettings)
    snowflake: SnowflakeSettings | None = None
    batch: BatchSettings = Field(default_factory=BatchSettings)
    check_timeout: str = "15s"  # `ingest check` gives up (one clear line, exit 1) after this long
    lock_ttl: str = "5m"  # a run's stream locks expire this long after its last heartbeat (SIGKILL, lost host)
    secrets: str = "env"  # 'env' or 'module:Class' implementing SecretProvider
    # The connectors cache (files and environments per connector release); default $INGEST_CONNECTORS_DIR or
    # ~/.cache/ingest/connectors. Relative to this file.
    connectors_dir: str | None = None

    @field_validator("check_timeout", "lock_ttl")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v


class ProjectSpec(_Strict):
    defaults: Defaults = Field(default_factory=Defaults)
    connectors: dict[str, BlockSpec]


# ---------------------------------------------------------------- helpers

_CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")
_CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
_CRON_NAMES = ["minute", "hour", "day of month", "month", "day of week"]


def check_cron(expr: str) -> None:
    parts = expr.split()
    if len(parts) != 5:
        raise ValueError(f"expected a 5-field cron expression like '0 * * * *', got {expr!r}")
    for part, (lo, hi), name in zip(parts, _CRON_RANGES, _CRON_NAMES):
        if not _CRON_FIELD.match(part):
            raise ValueError(f"cron {name} field {part!r} is not valid")
        for number in re.findall(r"\d+", re.sub(r"/\d+", "", part)):
            if not lo <= int(number) <= hi:
                raise ValueError(f"cron {name} field {part!r}: {number} is outside {lo}-{hi}")


_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d)$")


def parse_duration(text: str) -> int:
    """'90m' → 5400 seconds."""
    m = _DURATION.match(str(text).strip())
    if not m:
        raise ValueError(f"expected a duration like '30m', '2h' or '1d', got {text!r}")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]

