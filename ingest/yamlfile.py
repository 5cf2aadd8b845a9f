"""Reading YAML files people wrote (connectors.yaml, overrides, manifests) without letting the file attack the reader.

One place for every YAML file we read, because the YAML loader alone is not safe against hostile or broken input:
- an alias bomb ("billion laughs": anchors that alias anchors, 10x per level) is a few hundred bytes that expand to
  10^9 nodes: PyYAML shares the aliased objects, so loading is quick, but anything that walks the result (our
  validation, applying an override, pydantic) hangs;
- an alias inside its own anchor (`&a [*a]`) makes a cyclic structure: every walk recurses until RecursionError;
- deep nesting (`[[[[...]]]]`) exhausts Python's recursion limit inside the loader itself;
- a UTF-16 or Latin-1 file, binary garbage, or a directory raise UnicodeDecodeError / IsADirectoryError.

So a file is first decoded strictly (UTF-8, a UTF-8 byte-order mark allowed), then its event stream is scanned once,
without building anything, to bound nesting depth and the size the aliases expand to; only then is it loaded.
Every refusal is a `YAMLFileError`: one line, `file:line: what is wrong`, found in time linear in the file's size.
"""
from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml

# libyaml when available: github's 19k-line manifest parses in 0.1 s instead of 0.7 s.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Bounds far above what real files use (of the connector manifests in the cache, the largest, github 2.7.1, has
# 19.6k lines, 32k nodes with its aliases expanded, and the deepest, notion 3.2.0, nests 26 levels), and far below
# what hurts: Python walks ~1M nodes a second, so anything we do with 250k stays well under a second; a billion
# laughs never ends. MAX_DEPTH also keeps the pure-Python composer far from the recursion limit.
MAX_DEPTH = 100
MAX_EXPANDED_NODES = 250_000

# Longest first: the UTF-32-LE mark begins with the UTF-16-LE one.
_FOREIGN_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


class YAMLFileError(ValueError):
    """A YAML file we refuse to read, and why: `file:line: reason[: detail]` (line when one can be named)."""

    def __init__(self, file: str | Path, line: int | None, reason: str, detail: str | None = None):
        self.file, self.line, self.reason, self.detail = file, line, reason, detail
        where = f"{file}:{line}" if line else str(file)
        super().__init__(f"{where}: {reason}" + (f": {detail}" if detail else ""))

    def in_file(self) -> str:
        """The problem without the file name, for a message that names the file already (`overrides: x.yaml: ...`)."""
        return self.reason + (f" (line {self.line})" if self.line else "") + (f": {self.detail}" if self.detail else "")


def read_text(path: str | Path) -> str:
    """The text of a YAML file, decoded strictly as UTF-8; anything else is a YAMLFileError naming the file."""
    if Path(path).is_dir():
        raise YAMLFileError(path, None, "is a directory, not a YAML file")
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise YAMLFileError(path, None, "file not found") from None
    except OSError as exc:
        raise YAMLFileError(path, None, f"cannot read it: {exc.strerror or type(exc).__name__}") from None
    return decode(raw, path)


def decode(raw: bytes, path: str | Path) -> str:
    """UTF-8 bytes → text. A UTF-8 byte-order mark (which some Windows editors add) is dropped; UTF-16/32, other
    encodings and binary data are refused with the line of the first bad byte."""
    for bom, encoding in _FOREIGN_BOMS:
        if raw.startswith(bom):
            raise YAMLFileError(path, 1, f"the file is {encoding} encoded; save it as UTF-8")
    raw = raw.removeprefix(codecs.BOM_UTF8)
    if b"\0" in raw:
        # Valid UTF-8 in principle, but no text file has NUL bytes: binary data, or UTF-16 without a byte-order mark.
        at = raw.index(b"\0")
        raise YAMLFileError(path, raw.count(b"\n", 0, at) + 1,
                            "contains NUL bytes: not a text file (UTF-16 without a byte-order mark?); save it as UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YAMLFileError(path, raw.count(b"\n", 0, exc.start) + 1,
                            f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8") from None


def check_bounds(text: str, path: str | Path) -> None:
    """Refuse nesting deeper than MAX_DEPTH, an alias inside its own anchor, and aliases that expand to more than
    MAX_EXPANDED_NODES nodes. One pass over the parser's events, building nothing: an alias costs the size its
    anchor was measured at, so a billion-laughs file is refused after reading its few hundred bytes."""
    open_nodes: list[list] = []  # per open collection: [nodes so far, its anchor]
    measured: dict[str, int] = {}  # anchor -> expanded size of its (closed) node
    total = 0

    def add(count: int, event: yaml.Event) -> None:
        nonlocal total
        if open_nodes:
            open_nodes[-1][0] += count
            size = open_nodes[-1][0]
        else:
            total += count
            size = total
        if size > MAX_EXPANDED_NODES:
            raise YAMLFileError(path, _line(event),
                                f"YAML aliases expand to more than {MAX_EXPANDED_NODES:,} nodes (an alias bomb?); "
                                "refusing to load it")

    for event in _events(text, path):
        if isinstance(event, yaml.AliasEvent):
            if any(anchor == event.anchor for _, anchor in open_nodes):
                raise YAMLFileError(path, _line(event),
                                    f"recursive YAML alias *{event.anchor}: it is inside its own anchor &{event.anchor}")
            add(measured.get(event.anchor, 1), event)  # an undefined alias is reported by the loader, with its line
        elif isinstance(event, yaml.ScalarEvent):
            add(1, event)
            if event.anchor:
                measured[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            if len(open_nodes) >= MAX_DEPTH:
                raise YAMLFileError(path, _line(event), f"nested more than {MAX_DEPTH} levels deep; refusing to load it")
            open_nodes.append([1, event.anchor])
        elif isinstance(event, yaml.CollectionEndEvent):
            size, anchor = open_nodes.pop()
            if anchor:
                measured[anchor] = size
            add(size, event)


def load(text: str, path: str | Path) -> Any:
    """Parse one YAML document (safe tags only) within the bounds above; YAMLFileError on anything wrong."""
    check_bounds(text, path)
    try:
        return yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, text, path) from None
    except RecursionError:  # unreachable within MAX_DEPTH; a one-line error rather than a traceback if not
        raise YAMLFileError(path, None, "nested too deeply to load") from None


def load_file(path: str | Path) -> Any:
    """read_text + load: the one way to read a YAML file someone wrote."""
    return load(read_text(path), path)


def _events(text: str, path: str | Path):
    try:
        yield from yaml.parse(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, text, path) from None


def _line(event: yaml.Event) -> int | None:
    mark = getattr(event, "start_mark", None)
    return mark.line + 1 if mark is not None else None


def _syntax_error(exc: yaml.YAMLError, text: str, path: str | Path) -> YAMLFileError:
    """`file:line: not valid YAML: <the parser's problem>` (a reader error, e.g. a control character, has only an
    offset into the text)."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        line = mark.line + 1
    elif isinstance(getattr(exc, "position", None), int):
        line = text.count("\n", 0, exc.position) + 1
    else:
        line = 1
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc).splitlines()[0]
    if "maximum nesting depth" in str(problem):  # libyaml's own limit (1000 levels) can come before ours
        return YAMLFileError(path, line, f"nested more than {MAX_DEPTH} levels deep; refusing to load it")
    return YAMLFileError(path, line, "not valid YAML", problem)
