"""The loaded project: connectors.yaml parsed and structurally validated, as `Project` and `Block` objects.

`load_project` checks every block's structure (models.py) and that no two streams write one table; nothing here
resolves secrets or reads connector code (resolve.py does, per block), so `ingest list` and `ingest validate` stay fast.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import yamlfile
from ..errors import ConfigError
from ..secrets import SNOWFLAKE_SECRET_KEYS, literal_secret
from .models import PACKAGE, BlockSpec, Defaults, DestinationSpec, ProjectSpec
from .problems import Problems, format_path, line_map, problems_for, structure_problems, yaml_type

DEFAULT_CONFIG = "connectors.yaml"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")


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
        return PACKAGE.match(self.spec.source).group("package") if self.spec.source else None

    @property
    def pinned_version(self) -> str | None:
        """The release the block pins (`source: airbyte-source-stripe==5.14.1`), else None (the lock file decides)."""
        return PACKAGE.match(self.spec.source).group("version") if self.spec.source else None

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


def table_problems(project: "Project", only_block: str | None = None) -> Problems:
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
            first_at = f"{format_path(first_where[:4])} (stream {first.name!r}, {project.path}:{problems.line(first_where)})"
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
    lines = line_map(text, duplicates)
    problems = Problems(file, lines)
    for path, first in duplicates:
        problems.add(path, f"duplicate key (first on line {first}); YAML would silently keep only the last one")
    if not isinstance(data, dict):
        problems.add((), f"expected a mapping with a 'connectors' key; got {yaml_type(data)}")
        problems.raise_if_any()
    connectors = data.get("connectors")
    for name in connectors if isinstance(connectors, dict) else {}:
        if not NAME.match(str(name)):
            problems.add(("connectors", name), "block names must be lowercase letters, digits and underscores")
    _literal_destination_secrets(data, problems)
    try:
        spec = ProjectSpec.model_validate(data)
    except ValidationError as exc:
        structure_problems(data, exc.errors(), problems)
    problems.raise_if_any()
    project = Project(path=file, spec=spec, lines=lines)
    project.blocks = {name: Block(name=name, spec=b, project=project) for name, b in spec.connectors.items()}
    return project


def _literal_destination_secrets(data: dict, problems: Problems) -> None:
    """defaults.snowflake credentials written as values, not `${REF}`s: refused for the whole file at load time."""
    defaults = data.get("defaults")
    snowflake = defaults.get("snowflake") if isinstance(defaults, dict) else None
    for key in SNOWFLAKE_SECRET_KEYS if isinstance(snowflake, dict) else ():
        if literal := literal_secret(snowflake.get(key), f"SNOWFLAKE_{key.upper()}"):
            problems.add(("defaults", "snowflake", key), literal)
