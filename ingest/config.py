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

from .errors import ConfigError
from .secrets import REDACTOR, REFERENCE, load_provider

DEFAULT_CONFIG = "connectors.yaml"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
WriteMode = Literal["append", "dedup", "replace"]
SyncMode = Literal["incremental", "full_refresh"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatchSettings(_Strict):
    """Checkpoint bounds: records are committed at every source STATE message and at least this often."""

    max_records: int = Field(10_000, ge=1)
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024)


class DuckDBSettings(_Strict):
    path: str = "warehouse.duckdb"


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
        if self.source and not self.source.startswith("airbyte-source-"):
            raise ValueError(f"source: expected an Airbyte connector package like 'airbyte-source-jira', got {self.source!r}")
        if self.components and not self.manifest:
            raise ValueError("components: only valid together with 'manifest'")
        if self.overrides and self.puller:
            raise ValueError("overrides: only valid for Airbyte connectors, not pullers")
        names = [s.name for s in self.streams]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"streams: duplicate stream name(s) {', '.join(dupes)}")
        return self

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


class Defaults(_Strict):
    destination: Literal["duckdb", "snowflake"] = "duckdb"
    duckdb: DuckDBSettings = Field(default_factory=DuckDBSettings)
    snowflake: SnowflakeSettings | None = None
    batch: BatchSettings = Field(default_factory=BatchSettings)
    secrets: str = "env"  # 'env' or 'module:Class' implementing SecretProvider


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


def _line_map(text: str) -> dict[tuple, int]:
    """Path (tuple of keys/indexes) → 1-based line, so errors can point into the file."""
    lines: dict[tuple, int] = {}

    def walk(node, path):
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = path + (key_node.value,)
                lines[child] = key_node.start_mark.line + 1
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
    def __init__(self, file: Path, lines: dict[tuple, int]):
        self.file, self.lines, self.items = file, lines, []

    def add(self, path: tuple, message: str) -> None:
        line = None
        probe = path
        while probe and line is None:
            line = self.lines.get(probe)
            probe = probe[:-1]
        where = f"{self.file}:{line}" if line else str(self.file)
        self.items.append(f"{where}: {_format_path(path) or '(top level)'}: {REDACTOR.redact(message)}")

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(self.items)


def _pydantic_message(err: dict) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"expected one of {expected}; got {err.get('input')!r}"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{msg.lower()}; got {type(err.get('input')).__name__}"
    return msg


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
    config: dict[str, Any] = field(default_factory=dict)  # secrets resolved (only after resolve_block)
    resolved: bool = False

    @property
    def team(self) -> str:
        return self.spec.team

    @property
    def kind(self) -> str:
        return "puller" if self.spec.puller else ("manifest" if self.spec.manifest else "airbyte")

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
    text = file.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark else str(file)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    lines = _line_map(text)
    problems = _Problems(file, lines)
    if not isinstance(data, dict):
        problems.add((), "expected a mapping with a 'connectors' key")
        problems.raise_if_any()
    for name in (data.get("connectors") or {}) if isinstance(data.get("connectors"), dict) else {}:
        if not NAME.match(str(name)):
            problems.add(("connectors", name), "block names must be lowercase letters, digits and underscores")
    try:
        spec = ProjectSpec.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if p not in ("str", "DestinationSpec", "list[str]", "literal['duckdb','snowflake']"))
            # pydantic names union members in loc; drop those so the path matches the file
            loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p and "]" in p and p not in (data or {}))))
            problems.add(loc, _pydantic_message(err))
    problems.raise_if_any()
    project = Project(path=file, spec=spec, lines=lines)
    project.blocks = {name: Block(name=name, spec=b, project=project) for name, b in spec.connectors.items()}
    return project


# ---------------------------------------------------------------- per-block resolution


def _resolve_refs(value: Any, path: tuple, provider, problems: _Problems, secret_names: set[str]):
    if isinstance(value, dict):
        return {k: _resolve_refs(v, path + (k,), provider, problems, secret_names) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(v, path + (i,), provider, problems, secret_names) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def sub(m: re.Match) -> str:
            name = m.group(1)
            secret = provider.get(name)
            if secret is None or secret == "":
                problems.add(path, f"secret reference ${{{name}}} is not set (export {name}=... or configure defaults.secrets)")
                return ""
            REDACTOR.add(secret)
            secret_names.add(name)
            return secret

        return REFERENCE.sub(sub, value)
    return value


def _secret_keys(spec: dict, prefix: tuple = ()) -> list[tuple]:
    """Config paths the connector marks as secret (`airbyte_secret: true`)."""
    out = []
    for key, prop in (spec.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        if prop.get("airbyte_secret"):
            out.append(prefix + (key,))
        if prop.get("type") == "object" or "properties" in prop:
            out.extend(_secret_keys(prop, prefix + (key,)))
    return out


def _spec_error_message(err) -> str:
    # Never echo the instance: it may be a secret.
    v = err.validator
    if v == "required":
        missing = [m for m in err.validator_value if isinstance(err.instance, dict) and m not in err.instance]
        return f"required key {', '.join(repr(m) for m in missing)} is missing"
    if v == "type":
        return f"expected {err.validator_value}, got {type(err.instance).__name__}"
    if v == "enum":
        return f"expected one of {err.validator_value}"
    if v == "pattern":
        return f"does not match the pattern {err.validator_value}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems"):
        return f"violates {v} {err.validator_value}"
    if v == "format":
        return f"expected format {err.validator_value}"
    return REDACTOR.redact(err.message)


def connector_spec_for(block: Block) -> dict | None:
    """The connector's connectionSpecification, read from package files (no CDK import); None for pullers."""
    from .sources import manifest as mf

    s = block.spec
    if s.puller:
        from .sources.pullers import puller_spec

        return puller_spec(s.puller)
    if s.manifest:
        manifest = mf.load_yaml_file(block.path(s.manifest))
        module = None
    else:
        module = package_module(s.source)
        manifest = mf.load_package_manifest(module)
    if s.overrides:
        override = mf.load_yaml_file(block.path(s.overrides))
        if manifest is not None:
            manifest = mf.apply_override(manifest, override)
        else:
            manifest = {"spec": override.get("spec")} if override.get("spec") else None
    return mf.connector_spec(module, manifest)


def package_module(package: str) -> str:
    """airbyte-source-jira → source_jira"""
    return package.removeprefix("airbyte-").replace("-", "_")


def resolve_block(block: Block) -> Block:
    """Resolve secrets and check the config against the connector's spec. Raises ConfigError listing every problem."""
    if block.resolved:
        return block
    project = block.project
    problems = _Problems(project.path, project.lines)
    base = ("connectors", block.name)
    s = block.spec
    for key in ("manifest", "components", "overrides"):
        rel = getattr(s, key)
        if rel and not block.path(rel).exists():
            problems.add(base + (key,), f"file not found: {block.path(rel)}")
    if s.source:
        from .sources.manifest import package_dir

        try:
            package_dir(package_module(s.source))
        except (ModuleNotFoundError, FileNotFoundError):
            problems.add(base + ("source",), f"connector package {s.source!r} is not installed (pip install {s.source})")
    if s.puller:
        from .sources.pullers import PULLERS

        if s.puller not in PULLERS:
            problems.add(base + ("puller",), f"unknown puller {s.puller!r}; expected one of {', '.join(sorted(PULLERS))}")
    problems.raise_if_any()

    try:
        provider = load_provider(project.defaults.secrets)
    except Exception as exc:  # noqa: BLE001 - any import problem is a config problem
        problems.add(("defaults", "secrets"), f"cannot load secret provider: {exc}")
        problems.raise_if_any()
    used: set[str] = set()
    config = _resolve_refs(s.config, base + ("config",), provider, problems, used)
    # Destination credentials are secrets too.
    problems.raise_if_any()

    spec = connector_spec_for(block)
    if spec:
        for secret_path in _secret_keys(spec):
            raw = s.config
            for part in secret_path:
                raw = raw.get(part) if isinstance(raw, dict) else None
            if isinstance(raw, str) and raw and not REFERENCE.search(raw):
                if config_value(config, secret_path):
                    REDACTOR.add(raw)
                problems.add(
                    base + ("config",) + secret_path,
                    "is a secret: give a reference like ${MY_TOKEN}, never the value itself",
                )
        import jsonschema

        validator_cls = jsonschema.validators.validator_for(spec, default=jsonschema.Draft7Validator)
        validator = validator_cls(spec, format_checker=validator_cls.FORMAT_CHECKER)
        for err in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path)):
            problems.add(base + ("config",) + tuple(err.absolute_path), _spec_error_message(err))
    problems.raise_if_any()
    block.config = config
    block.resolved = True
    return block


def config_value(config: dict, path: tuple):
    for part in path:
        if not isinstance(config, dict):
            return None
        config = config.get(part)
    return config
