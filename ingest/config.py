"""connectors.yaml: models, validation and secret resolution.

Validation happens in two layers, both before anything runs or is written:
1. structure (`load_project`): unknown keys, wrong types, bad enums, bad cron — for every block, cheap;
2. per block (`resolve_block`): secret references resolved, and the block's `config` checked against the
   connector's own spec (read from the package files, without importing the Airbyte CDK).
Every problem is reported as `file:line: key.path: what was expected`, all at once, and exits 2.
This module must not import airbyte_cdk: `ingest list` and `ingest validate` stay fast.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import yamlfile
from .errors import ConfigError
from .secrets import REDACTOR, REFERENCE, load_provider, too_short

DEFAULT_CONFIG = "connectors.yaml"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# `airbyte-source-stripe` (newest at install time, then pinned in connectors.lock) or `airbyte-source-stripe==5.14.1`.
_PACKAGE = re.compile(r"^(?P<package>airbyte-source-[a-z0-9]+(-[a-z0-9]+)*)(==(?P<version>[0-9][0-9A-Za-z.+!-]*))?$")
_REQUIREMENT = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?(\[[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*\])?"
                          r"( *(==|!=|>=|<=|~=|>|<) *[0-9][0-9A-Za-z.*+!-]*( *, *(==|!=|>=|<=|~=|>|<) *[0-9][0-9A-Za-z.*+!-]*)*)?$")
# Destination settings that are secrets: like a connector's airbyte_secret fields they must be ${REF}s.
SNOWFLAKE_SECRET_KEYS = ("password", "private_key", "private_key_passphrase")
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

    _path = field_validator("path")(_file_path)


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

    @model_validator(mode="after")
    def _one_source(self) -> "BlockSpec":
        given = [k for k in ("source", "manifest", "puller") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "expected exactly one of 'source' (an Airbyte package), 'manifest' (a file) or 'puller'"
                + (f"; got {', '.join(given)}" if given else "")
            )
        if self.source and not _PACKAGE.match(self.source):
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
        if v and not REFERENCE.search(v):
            REDACTOR.add(v)
            raise ValueError("is a secret: give a reference like ${OPENLINEAGE_API_KEY}, never the value itself")
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


def _line_map(text: str, duplicates: list | None = None) -> dict[tuple, int]:
    """Path (tuple of keys/indexes) → 1-based line, so errors can point into the file.

    Duplicate keys in one mapping (which YAML loaders silently collapse to the last one) are appended to
    `duplicates` as (path, line of the first occurrence)."""
    lines: dict[tuple, int] = {}

    def walk(node, path):
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                child = path + (key_node.value,)
                line = key_node.start_mark.line + 1
                if isinstance(key_node, yaml.ScalarNode) and key_node.value in seen and duplicates is not None:
                    duplicates.append((child, seen[key_node.value]))
                seen.setdefault(key_node.value, line)
                lines[child] = line
                walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def _format_path(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Problems:
    """Problems found in one config file, reported as `file:line: key.path: message`, in file order."""

    def __init__(self, file: Path, lines: dict[tuple, int]):
        self.file, self.lines = file, lines
        self._found: list[tuple[int, str]] = []
        self.paths: list[tuple[tuple, str]] = []  # (key path, message) as added

    @property
    def items(self) -> list[str]:
        return [text for _, text in sorted(self._found, key=lambda item: item[0])]

    def line(self, path: tuple) -> int:
        """The line of `path`, or of its nearest ancestor present in the file (the document's first line at worst)."""
        probe = tuple(path)
        while True:
            line = self.lines.get(probe)
            if line is not None or not probe:
                return line or 1
            probe = probe[:-1]

    def add(self, path: tuple, message: str) -> None:
        line = self.line(path)
        item = f"{self.file}:{line}: {_format_path(path) or '(top level)'}: {REDACTOR.redact(message)}"
        if all(text != item for _, text in self._found):
            self._found.append((line, item))
            self.paths.append((tuple(path), message))

    def raise_if_any(self) -> None:
        if self._found:
            raise ConfigError(self.items)


_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_BOUNDS = {"greater_than_equal": ("ge", ">="), "greater_than": ("gt", ">"), "less_than_equal": ("le", "<="), "less_than": ("lt", "<")}


def _yaml_type(value: Any) -> str:
    """How a YAML user would name the type of `value` (never the value itself: it may be a secret)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _shown(value: Any) -> str:
    """A short scalar as written, anything else by its type."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and len(repr(value)) <= 60:
        return repr(value)
    return _yaml_type(value)


def _pydantic_message(err: dict) -> str:
    kind, msg, ctx = err["type"], err["msg"], err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected', '')}; got {_shown(err.get('input'))}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}; got {_yaml_type(err.get('input'))}"
    if kind == "too_short":
        n = ctx.get("min_length")
        return f"expected at least {n} item{'s' if n != 1 else ''}; got {ctx.get('actual_length', 0)}"
    if kind == "too_long":
        return f"expected at most {ctx.get('max_length')} items; got {ctx.get('actual_length')}"
    if kind in _BOUNDS:
        key, op = _BOUNDS[kind]
        return f"expected a number {op} {ctx.get(key)}; got {_shown(err.get('input'))}"
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    return msg[:1].lower() + msg[1:]


def _union_tag(part: Any) -> bool:
    """pydantic inserts the member type into the location of errors inside a union: 'str', 'list[str]',
    "literal['duckdb','snowflake']", 'DestinationSpec'. Our own keys are lowercase snake_case."""
    return isinstance(part, str) and ("[" in part or part[:1].isupper() or part in ("str", "int", "float", "bool", "none"))


def _split_loc(data: Any, loc: tuple) -> tuple[tuple, tuple | None, str | None, Any]:
    """pydantic loc → (path in the file, union site, union member, node at the path)."""
    path: tuple = ()
    site = tag = None
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            path, node = path + (part,), node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path, node = path + (part,), node[part]
        elif site is None and _union_tag(part):
            site, tag = path, part
        else:
            path, node = path + (part,), None
    return path, site, tag, node


def _structure_problems(data: Any, errors: list[dict], problems: "_Problems") -> None:
    """Turn pydantic errors into problems at the right file path; one message per union, not one per member."""
    plain: list[tuple[tuple, str]] = []
    unions: dict[tuple, dict[str, list[tuple[tuple, dict]]]] = {}
    for err in errors:
        path, site, tag, node = _split_loc(data, tuple(err["loc"]))
        if site is not None:
            unions.setdefault(site, {}).setdefault(tag, []).append((path, err))
            continue
        message = _pydantic_message(err)
        # A model-level check that names one key ('streams: duplicate ...') is reported at that key.
        m = re.match(r"^([a-z_]+): (.+)$", message, re.S)
        if m and isinstance(node, dict) and m.group(1) in node:
            path, message = path + (m.group(1),), m.group(2)
        plain.append((path, message))
    for site, members in unions.items():
        depth = {tag: max(len(p) - len(site) for p, _ in errs) for tag, errs in members.items()}
        deepest = max(depth.values())
        if deepest > 0:
            # A member that got past the type check is the one the user meant (e.g. a destination mapping).
            for tag, errs in members.items():
                if depth[tag] == deepest:
                    plain.extend((p, _pydantic_message(e)) for p, e in errs)
            continue
        wanted: list[str] = []
        value = None
        for errs in members.values():
            for _, e in errs:
                value = e.get("input")
                kind = e["type"]
                if kind == "literal_error":
                    text = f"one of {(e.get('ctx') or {}).get('expected', '')}"
                else:
                    text = _EXPECTED.get(kind) or _pydantic_message(e)
                if text not in wanted:
                    wanted.append(text)
        plain.append((site, f"expected {' or '.join(wanted)}; got {_shown(value)}"))
    for path, message in plain:
        problems.add(path, message)


# ---------------------------------------------------------------- the loaded project


@dataclass
class Stream:
    name: str
    sync: str | None
    write: str | None
    primary_key: list[str] | None
    cursor: str | None
    table: str


@dataclass
class Block:
    name: str
    spec: BlockSpec
    project: "Project"
    # Secrets resolved (only after resolve_block); kept out of repr() so a logged block never shows them.
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    resolved: bool = False

    @property
    def team(self) -> str:
        return self.spec.team

    @property
    def kind(self) -> str:
        return "puller" if self.spec.puller else ("manifest" if self.spec.manifest else "airbyte")

    @property
    def package(self) -> str | None:
        """The connector's PyPI name without a pin: airbyte-source-stripe."""
        return _PACKAGE.match(self.spec.source).group("package") if self.spec.source else None

    @property
    def pinned_version(self) -> str | None:
        """The release the block pins (`source: airbyte-source-stripe==5.14.1`), else None (the lock file decides)."""
        return _PACKAGE.match(self.spec.source).group("version") if self.spec.source else None

    @property
    def source_label(self) -> str:
        s = self.spec
        return s.source or (f"manifest:{s.manifest}" if s.manifest else f"puller:{s.puller}")

    @property
    def streams(self) -> list[Stream]:
        out = []
        for s in self.spec.streams:
            pk = [s.primary_key] if isinstance(s.primary_key, str) else s.primary_key
            out.append(Stream(s.name, s.sync, s.write, pk, s.cursor, s.table or table_name(self.name, s.name)))
        return out

    def path(self, relative: str | None) -> Path | None:
        """Paths in a block are relative to the connectors.yaml that names them."""
        if relative is None:
            return None
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.project.path.parent / p)

    @property
    def destination_type(self) -> str:
        d = self.spec.destination
        if d is None:
            return self.project.spec.defaults.destination
        return d if isinstance(d, str) else d.type


def table_name(block: str, stream: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", f"{block}_{stream}".lower())


# ingest's own tables (_ingest_state, _ingest_runs, _ingest_events, _ingest_locks, _ingest_tables), the staging and
# load tables of a replace (_ingest_staging_<table>, Snowflake's _INGEST_LOAD_<table>) and DuckDB's scratch tables
# (__ingest_dedup): a stream writing one of them would destroy the bookkeeping (a --full-refresh into _ingest_locks
# breaks every later run). Matched case-insensitively: Snowflake upper-cases, DuckDB ignores case.
RESERVED_TABLE = re.compile(r"_+ingest_", re.IGNORECASE)


def _destination(project: "Project", block: Block) -> tuple[tuple, str]:
    """(identity, description) of where a block's tables live. Every Snowflake block writes to the one database
    and schema of defaults.snowflake; DuckDB blocks to a file, compared by its resolved path (two spellings of one
    file are one destination)."""
    if block.destination_type == "snowflake":
        return ("snowflake",), "snowflake"
    path = project.duckdb_path(block)
    return ("duckdb", str(path.resolve())), f"duckdb {path}"


def table_problems(project: "Project", only_block: str | None = None) -> _Problems:
    """Tables two streams would share, and tables in ingest's reserved namespace, each at the stream's line.

    Two streams in one table overwrite each other (a `replace` drops the other's rows, a dedup merge nulls its
    columns), silently; so, per destination and case-insensitively, every table must have one writer — across
    blocks and teams, for explicit `table:`s and derived names alike (`a-b`, `a_b` and `A B` all derive `x_a_b`).
    Uses `Block.streams`, the table names the sync writes to, so validation and runtime cannot disagree.
    `only_block`: report only the problems of that block's streams (a block `ingest add` is appending)."""
    problems = problems_for(project)
    writers: dict[tuple, tuple[tuple, Stream]] = {}  # (destination, table lower-cased) -> its first writer
    for block in project.blocks.values():
        destination, described = _destination(project, block)
        for index, (spec, stream) in enumerate(zip(block.spec.streams, block.streams)):
            where = ("connectors", block.name, "streams", index) + (("table",) if spec.table is not None else ())
            report = problems.add if only_block in (None, block.name) else (lambda *_: None)
            if spec.table is not None and RESERVED_TABLE.match(stream.table):
                report(where, f"{stream.table!r} is in the reserved '_ingest_' namespace (ingest's own "
                                    "bookkeeping tables: state, runs, events, locks, staging); choose another table")
                continue
            key = (destination, stream.table.lower())
            if key not in writers:
                writers[key] = (where, stream)
                continue
            first_where, first = writers[key]
            first_at = f"{_format_path(first_where[:4])} (stream {first.name!r}, {project.path}:{problems.line(first_where)})"
            spelled = f" as {first.table!r}" if first.table != stream.table else ""
            report(where, f"table {stream.table!r} is also written by {first_at}{spelled} in the same destination "
                                f"({described}); " + ("table names are case-insensitive, and " if spelled else "")
                                + "two streams in one table overwrite each other: give one of them its own 'table:'")
    return problems


def redirected_table_problems(project: "Project", block: Block, kind: str, path: str | None) -> list[str]:
    """`ingest run --destination` sends one block somewhere else for one run: its tables must not be tables another
    block writes there (the same one-writer-per-table rule `table_problems` applies to the file itself)."""
    target = ("snowflake",) if kind == "snowflake" else ("duckdb", str(Path(path).resolve()))
    mine = {stream.table.lower(): stream for stream in block.streams}
    problems = []
    for other in project.blocks.values():
        if other.name == block.name or _destination(project, other)[0] != target:
            continue
        for index, stream in enumerate(other.streams):
            if (own := mine.get(stream.table.lower())) is not None:
                where = f"connectors.{other.name}.streams[{index}]"
                problems.append(f"--destination {kind if kind == 'snowflake' else path}: table {own.table!r} of stream "
                                f"{block.name}.{own.name} is written there by {where} (stream {stream.name!r}, "
                                f"{project.path}:{project.lines.get(('connectors', other.name, 'streams', index), '?')}); "
                                "two streams in one table overwrite each other")
    return problems


@dataclass
class Project:
    path: Path
    spec: ProjectSpec
    lines: dict[tuple, int]
    blocks: dict[str, Block] = field(default_factory=dict)

    @property
    def defaults(self) -> Defaults:
        return self.spec.defaults

    def block(self, name: str) -> Block:
        if name not in self.blocks:
            known = ", ".join(sorted(self.blocks)) or "none"
            raise ConfigError(f"{self.path}: no connector block named {name!r} (blocks: {known})")
        return self.blocks[name]

    @property
    def lock_path(self) -> Path:
        """connectors.yaml → connectors.lock (connectors.prod.yaml → connectors.prod.lock), next to it."""
        return self.path.with_suffix(".lock")

    @property
    def connectors_dir(self) -> Path | None:
        raw = self.defaults.connectors_dir
        if not raw:
            return None
        p = Path(raw).expanduser()
        return p if p.is_absolute() else self.path.parent / p

    def duckdb_path(self, block: Block | None = None) -> Path:
        d = block.spec.destination if block else None
        raw = d.path if isinstance(d, DestinationSpec) and d.path else self.defaults.duckdb.path
        p = Path(raw).expanduser()
        return p if p.is_absolute() else self.path.parent / p


def config_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("INGEST_CONFIG") or DEFAULT_CONFIG)


def load_project(path: str | Path | None = None) -> Project:
    """Parse and structurally validate connectors.yaml (all blocks). No secrets, no connector code."""
    file = config_path(str(path) if path else None)
    if not file.exists():
        raise ConfigError(f"{file}: file not found (pass --config or set INGEST_CONFIG)")
    try:
        text = yamlfile.read_text(file)
    except yamlfile.YAMLFileError as exc:
        raise ConfigError(str(exc)) from None
    project = parse_project(text, file)
    table_problems(project).raise_if_any()
    return project


def parse_project(text: str, file: Path) -> Project:
    """`load_project` on text already read (`ingest add` checks the file it is about to write), without the
    per-destination table checks (`table_problems`)."""
    try:
        data = yamlfile.load(text, file)
    except yamlfile.YAMLFileError as exc:
        raise ConfigError(str(exc)) from None
    duplicates: list[tuple[tuple, int]] = []
    lines = _line_map(text, duplicates)
    problems = _Problems(file, lines)
    for path, first in duplicates:
        problems.add(path, f"duplicate key (first on line {first}); YAML would silently keep only the last one")
    if not isinstance(data, dict):
        problems.add((), f"expected a mapping with a 'connectors' key; got {_yaml_type(data)}")
        problems.raise_if_any()
    connectors = data.get("connectors")
    for name in connectors if isinstance(connectors, dict) else {}:
        if not NAME.match(str(name)):
            problems.add(("connectors", name), "block names must be lowercase letters, digits and underscores")
    defaults = data.get("defaults")
    snowflake = defaults.get("snowflake") if isinstance(defaults, dict) else None
    for key in SNOWFLAKE_SECRET_KEYS if isinstance(snowflake, dict) else ():
        raw = snowflake.get(key)
        if raw is not None and raw != "" and not (isinstance(raw, str) and REFERENCE.search(raw)):
            REDACTOR.add(str(raw))
            problems.add(("defaults", "snowflake", key), f"is a secret: give a reference like ${{SNOWFLAKE_{key.upper()}}}, never the value itself")
    try:
        spec = ProjectSpec.model_validate(data)
    except ValidationError as exc:
        _structure_problems(data, exc.errors(), problems)
    problems.raise_if_any()
    project = Project(path=file, spec=spec, lines=lines)
    project.blocks = {name: Block(name=name, spec=b, project=project) for name, b in spec.connectors.items()}
    return project


# ---------------------------------------------------------------- per-block resolution


_MALFORMED_REFERENCE = re.compile(r"\$\{")


def _resolve_refs(value: Any, path: tuple, provider, problems: _Problems, secret_names: set[str], unset: _Problems):
    """Substitute ${NAME} references. Malformed or unreadable ones go to `problems`, unset ones to `unset`
    (the same list when secrets are required)."""
    if isinstance(value, dict):
        return {k: _resolve_refs(v, path + (k,), provider, problems, secret_names, unset) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(v, path + (i,), provider, problems, secret_names, unset) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        if _MALFORMED_REFERENCE.search(REFERENCE.sub("", value)):
            # Never echo the value: a mistyped reference may well be a pasted secret.
            problems.add(path, "malformed secret reference: expected ${NAME} (letters, digits and underscores, not starting with a digit)")
            return value

        def sub(m: re.Match) -> str:
            name = m.group(1)
            try:
                secret = provider.get(name)
            except Exception as exc:  # noqa: BLE001 - a failing secret store is a config problem, not a crash
                problems.add(path, f"secret reference ${{{name}}} could not be read: {type(exc).__name__}: {exc}")
                return ""
            if secret is None or secret == "":
                unset.add(path, f"secret reference ${{{name}}} is not set (export {name}=... or configure defaults.secrets)")
                return ""
            if not isinstance(secret, str):
                secret = str(secret)
            if short := too_short(name, secret):
                problems.add(path, short)
                return ""
            REDACTOR.add(secret)
            secret_names.add(name)
            return secret

        return REFERENCE.sub(sub, value)
    return value


def _secret_keys(spec: dict, prefix: tuple = ()) -> list[tuple]:
    """Config paths the connector marks as secret (`airbyte_secret: true`), also inside oneOf/anyOf/allOf options."""
    out: list[tuple] = []
    if not isinstance(spec, dict):
        return out
    for key, prop in (spec.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        if prop.get("airbyte_secret"):
            out.append(prefix + (key,))
        out.extend(_secret_keys(prop, prefix + (key,)))
    for combinator in ("oneOf", "anyOf", "allOf"):
        for option in spec.get(combinator) or []:
            out.extend(_secret_keys(option, prefix))
    return list(dict.fromkeys(out))


def _json_types(expected: Any) -> str:
    names = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
             "object": "a mapping", "array": "a list", "null": "null"}
    kinds = expected if isinstance(expected, list) else [expected]
    return " or ".join(names.get(k, str(k)) for k in kinds)


def _spec_error_message(err) -> str:
    # Never echo the instance: it may be a secret.
    v, value = err.validator, err.validator_value
    if v == "required":
        missing = [m for m in value if isinstance(err.instance, dict) and m not in err.instance]
        return f"required key {', '.join(repr(m) for m in missing)} is missing"
    if v == "type":
        return f"expected {_json_types(value)}; got {_yaml_type(err.instance)}"
    if v == "enum":
        return f"expected one of {', '.join(repr(x) for x in value)}"
    if v == "const":
        return f"expected {value!r}"
    if v == "pattern":
        return f"does not match the pattern {value}"
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if v in bounds:
        return f"expected a number {bounds[v]} {value} ({v})"
    sizes = {"minLength": ("at least", "characters"), "maxLength": ("at most", "characters"),
             "minItems": ("at least", "items"), "maxItems": ("at most", "items"),
             "minProperties": ("at least", "keys"), "maxProperties": ("at most", "keys")}
    if v in sizes:
        how, what = sizes[v]
        return f"expected {how} {value} {what} ({v})"
    if v == "uniqueItems":
        return "expected unique items"
    if v == "format":
        return f"expected format {value}"
    if v == "additionalProperties" and isinstance(err.instance, dict):
        known = set((err.schema or {}).get("properties") or {})
        extra = [k for k in err.instance if k not in known]
        return f"unknown key{'s' if len(extra) != 1 else ''} {', '.join(repr(k) for k in extra)} (the connector allows no others)"
    return f"does not satisfy the connector spec's {v!r} rule"


def _option_selected(option: Any, instance: Any) -> bool:
    """Does `instance` pick this oneOf/anyOf option by a discriminator (a property with a `const` or one-value enum)?"""
    if not isinstance(option, dict) or not isinstance(instance, dict):
        return False
    tags = {}
    for key, prop in (option.get("properties") or {}).items():
        if isinstance(prop, dict):
            if "const" in prop:
                tags[key] = prop["const"]
            elif isinstance(prop.get("enum"), list) and len(prop["enum"]) == 1:
                tags[key] = prop["enum"][0]
    present = {k: c for k, c in tags.items() if k in instance}
    return bool(present) and all(instance[k] == c for k, c in present.items())


def _spec_problems(err) -> list[tuple[tuple, str]]:
    """A jsonschema error → (config path, message) pairs. For a oneOf/anyOf the option the config selects
    (e.g. by `auth_type`) is explained key by key; otherwise the options are listed."""
    if err.validator in ("oneOf", "anyOf") and isinstance(err.validator_value, list):
        options = err.validator_value
        chosen = [i for i, option in enumerate(options) if _option_selected(option, err.instance)]
        if len(chosen) == 1 and err.context:
            inner = [e for e in err.context if e.relative_schema_path and e.relative_schema_path[0] == chosen[0]]
            if inner:
                return [p for e in inner for p in _spec_problems(e)]
        names = []
        for i, option in enumerate(options):
            name = option.get("title") if isinstance(option, dict) else None
            names.append(str(name or f"option {i + 1}"))
        return [(tuple(err.absolute_path), f"matches none of the allowed options: {', '.join(names)}")]
    if err.validator == "additionalProperties" and isinstance(err.instance, dict) and isinstance(err.schema, dict):
        known = set(err.schema.get("properties") or {})
        extra = [k for k in err.instance if k not in known]
        if extra:
            return [(tuple(err.absolute_path) + (k,), "unknown key (the connector's spec allows no others)") for k in extra]
    return [(tuple(err.absolute_path), _spec_error_message(err))]


def problems_for(project: "Project") -> _Problems:
    """A fresh problem list for `project`'s file: other modules report `file:line: key: message` through it."""
    return _Problems(project.path, project.lines)


def resolve_block(block: Block, spec: dict | None, *, require_secrets: bool = True) -> list[str]:
    """Resolve the block's secret references and check its config against the connector's `spec` (its
    connectionSpecification, found by `ingest.sources`; None for a puller without one).

    Raises ConfigError listing every problem. Unset references are problems when `require_secrets` (run, check);
    otherwise (`ingest validate` as a pull-request check, where production secrets are absent) they are returned
    as warnings, the config is checked everywhere else, and the block stays unresolved.
    """
    if block.resolved:
        return []
    project = block.project
    problems = _Problems(project.path, project.lines)
    unset = _Problems(project.path, project.lines)
    base = ("connectors", block.name)
    s = block.spec
    for key in ("manifest", "components", "overrides"):
        rel = getattr(s, key)
        if rel and not block.path(rel).is_file():
            problems.add(base + (key,), f"file not found: {block.path(rel)}")
    problems.raise_if_any()

    try:
        provider = load_provider(project.defaults.secrets)
    except Exception as exc:  # noqa: BLE001 - any import problem is a config problem
        problems.add(("defaults", "secrets"), f"cannot load secret provider: {type(exc).__name__}: {exc}")
        problems.raise_if_any()
    used: set[str] = set()
    config = _resolve_refs(s.config, base + ("config",), provider, problems, used, unset if not require_secrets else problems)
    # Destination credentials (defaults.snowflake) are resolved by the Snowflake destination
    # (ingest/destinations/snowflake.py: resolve_config); load_project already rejects literal ones.

    if spec:
        for secret_path in _secret_keys(spec):
            raw = config_value(s.config, secret_path)
            if raw is None or raw == "" or (isinstance(raw, str) and (REFERENCE.search(raw) or "${" in raw)):
                continue  # a reference (a malformed one is reported by _resolve_refs)
            if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
                REDACTOR.add(str(raw))
            problems.add(
                base + ("config",) + secret_path,
                "is a secret: give a reference like ${MY_TOKEN}, never the value itself",
            )
    # Unset references, literal secrets and unreadable files first: spec errors on half-resolved values would mislead.
    problems.raise_if_any()

    if spec:
        import jsonschema

        unresolved = {path for path, _ in unset.paths}
        try:
            validator_cls = jsonschema.validators.validator_for(spec, default=jsonschema.Draft7Validator)
            validator = validator_cls(spec, format_checker=validator_cls.FORMAT_CHECKER)
            found = [p for err in validator.iter_errors(config) for p in _spec_problems(err)]
        except Exception as exc:  # noqa: BLE001 - a broken spec (SchemaError, unknown type ...) is not the user's crash
            key = "manifest" if s.manifest else ("overrides" if s.overrides else ("source" if s.source else "puller"))
            problems.add(base + (key,), f"the connector's spec is not a valid JSON schema: {type(exc).__name__}")
            found = []
        for path, message in found:  # _Problems lists them in file order
            full = base + ("config",) + path
            if any(full[: len(u)] == u for u in unresolved):
                continue  # a value we could not resolve (only in warning mode): its reference is what to fix
            problems.add(full, message)
    problems.raise_if_any()
    if unset.items:
        return unset.items
    block.config = config
    block.resolved = True
    return []


def config_value(config: dict, path: tuple):
    """The value at `path` in a nested config, or None."""
    for part in path:
        if not isinstance(config, dict):
            return None
        config = config.get(part)
    return config
