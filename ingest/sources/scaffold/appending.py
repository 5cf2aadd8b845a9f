"""Appending a block to connectors.yaml (`append_block`): the file's existing bytes are kept, the block goes at the
end of the `connectors:` mapping, and the result is checked (it parses, holds the block as written, shares no
table) before it atomically replaces the file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ...errors import ConfigError


def _connectors_node(text: str, path: Path):
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader) if text.strip() else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"{path}{f':{mark.line + 1}' if mark else ''}: not valid YAML; fix it before adding a block") from None
    if root is None:
        return None, None, None
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}: expected a mapping with a 'connectors' key")
    for index, (key, value) in enumerate(root.value):
        if isinstance(key, yaml.ScalarNode) and key.value == "connectors":
            return root, index, value
    return root, None, None


def append_block(config_path: str | Path, text: str) -> None:
    """Add a block (text from `block_text`) at the end of the file's `connectors:` mapping. Every existing byte is
    kept — comments, layout, other sections; only new lines are inserted. Refuses (ConfigError) when a block of that
    name exists or the file is not a connectors.yaml it can extend safely."""
    path = Path(config_path)
    original = ""
    if path.exists():
        with open(path, encoding="utf-8", newline="") as f:  # no newline translation: every byte is kept
            original = f.read()
    block = yaml.safe_load(text)
    if not isinstance(block, dict) or len(block) != 1:
        raise ValueError("append_block: expected the text of exactly one block")
    name = next(iter(block))
    root, index, node = _connectors_node(original, path)
    lines = original.splitlines(keepends=True)
    newline = "\r\n" if original.count("\r\n") and original.count("\r\n") == original.count("\n") else "\n"
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += newline  # the only change to an existing line: a file without a trailing newline gets one

    if index is None:
        # No `connectors:` yet (an empty file, or only `defaults:`): add the key at the end.
        insert_at, indent = len(lines), 2
        text = "connectors:\n" + text
    else:
        insert_at, indent = _insertion_point(lines, root, index, node, name, path)
    if indent != 2:
        text = _reindent(text, indent - 2)
    new_lines = text.splitlines(keepends=True)
    if newline != "\n":
        new_lines = [ln.rstrip("\n") + newline for ln in new_lines]
    result = "".join(lines[:insert_at] + new_lines + lines[insert_at:])
    _check_appended(result, name, block[name], path)
    _refuse_shared_tables(result, name, path)
    _write_atomically(path, result)


def _insertion_point(lines: list[str], root, index: int, node, name: str, path: Path) -> tuple[int, int]:
    """(the line a new block goes before, the indentation of the blocks) in a file whose `connectors:` is the
    ``index``-th top-level key, with value ``node``; refuses a flow-style or non-mapping `connectors:` and a name
    that is taken."""
    if isinstance(node, yaml.MappingNode) and node.flow_style:
        raise ConfigError(f"{path}:{node.start_mark.line + 1}: connectors: is written in flow style ({{...}}); "
                          f"write it as an indented mapping to add blocks")
    if isinstance(node, yaml.MappingNode):
        names = [k.value for k, _ in node.value]
        if name in names:
            line = next(k.start_mark.line + 1 for k, _ in node.value if k.value == name)
            raise ConfigError(f"{path}:{line}: connectors.{name}: a block of that name exists; choose another (--name)")
        indent = node.value[0][0].start_mark.column if node.value else 2
        last_value = node.value[-1][1] if node.value else node
    elif isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null") and node.tag.endswith(":null"):
        indent, last_value = 2, root.value[index][0]
    else:
        raise ConfigError(f"{path}:{node.start_mark.line + 1}: connectors: expected a mapping of blocks")
    if index == len(root.value) - 1:
        return len(lines), indent  # `connectors:` is the last top-level key: the block goes at the end
    end = _last_leaf(last_value).end_mark  # a block collection's own end mark runs past trailing comments
    insert_at = end.line + (1 if end.column > 0 else 0)
    # Keep the last block's trailing indented comments (commented-out streams, `# schedule:`) with it.
    probe = insert_at
    while probe < len(lines):
        stripped = lines[probe].strip()
        if stripped.startswith("#") and lines[probe][:1] in (" ", "\t"):
            insert_at = probe = probe + 1
        elif not stripped:
            probe += 1
        else:
            break
    return insert_at, indent


def _last_leaf(node):
    while isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.value and not node.flow_style:
        last = node.value[-1]
        node = last[1] if isinstance(node, yaml.MappingNode) else last
    return node


def _reindent(text: str, shift: int) -> str:
    out = []
    for ln in text.splitlines(keepends=True):
        if not ln.strip():
            out.append(ln)
        elif shift > 0:
            out.append(" " * shift + ln)
        else:
            lead = len(ln) - len(ln.lstrip(" "))
            out.append(ln[min(-shift, lead):])
    return "".join(out)


def _check_appended(text: str, name: str, expected: Any, path: Path) -> None:
    """The new file parses and holds the block exactly as written (never write a file we would misread)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # pragma: no cover - a bug here, not the user's
        raise ConfigError(f"{path}: adding block {name!r} would make the file invalid YAML ({exc}); nothing was changed") from None
    got = (data or {}).get("connectors", {}) if isinstance(data, dict) else {}
    if not isinstance(got, dict) or got.get(name) != expected:
        raise ConfigError(f"{path}: could not place block {name!r} inside `connectors:` safely; nothing was changed")


def _refuse_shared_tables(text: str, name: str, path: Path) -> None:
    """The new block's streams write no table another stream of the file writes (`jira` + `issues` derives
    `jira_issues`, which an existing block may write already): two writers would overwrite each other."""
    from ...config import parse_project, table_problems

    try:
        project = parse_project(text, path)
    except ConfigError:
        return  # the file has other problems already; `ingest validate` lists them, this one among them
    problems = table_problems(project, only_block=name)
    if problems.paths:
        where, message = problems.paths[0]
        raise ConfigError(f"{path}: adding block {name!r}: {'.'.join(map(str, where[:2]))}.streams[{where[3]}]: "
                          f"{message}; nothing was changed")


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
