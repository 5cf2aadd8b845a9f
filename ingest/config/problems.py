"""Problems in a YAML file people wrote, reported as `file:line: key.path: message`, all at once.

The line map (key path → line, duplicate keys found on the way) and the translation of pydantic's validation errors
into messages a YAML user understands (never echoing a value: it may be a secret). Nothing here knows connectors.yaml:
any settings file validated by a pydantic model (connectors.yaml, defaults.snowflake) can report through `Problems`.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import ConfigError
from ..secrets import REDACTOR

if TYPE_CHECKING:
    from .project import Project


def line_map(text: str, duplicates: list | None = None) -> dict[tuple, int]:
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


def format_path(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class Problems:
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
        item = f"{self.file}:{line}: {format_path(path) or '(top level)'}: {REDACTOR.redact(message)}"
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


def yaml_type(value: Any) -> str:
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
    return yaml_type(value)


def _pydantic_message(err: dict) -> str:
    kind, msg, ctx = err["type"], err["msg"], err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected', '')}; got {_shown(err.get('input'))}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}; got {yaml_type(err.get('input'))}"
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


def structure_problems(data: Any, errors: list[dict], problems: "Problems") -> None:
    """Turn pydantic errors into problems at the right file path; one message per union, not one per member."""
    for path, message in structure_messages(data, errors):
        problems.add(path, message)


def structure_messages(data: Any, errors: list[dict]) -> list[tuple[tuple, str]]:
    """pydantic errors → (key path in `data`, message) pairs, without a file: for checks that have no file at hand
    (a deployed flow's config) and for `structure_problems`."""
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
    return plain


def problems_for(project: "Project") -> Problems:
    """A fresh problem list for `project`'s file: other modules report `file:line: key: message` through it."""
    return Problems(project.path, project.lines)
