"""Scaffolding: write a new connectors.yaml block from a connector's spec (`ingest add`), and dummy configs that
satisfy a spec without reaching any real system (to measure connectors offline: scripts/connector_compat.py).

    add_block(connectors.yaml, "stripe", team="payments")
        ─► newest release (ConnectorCache.newest) ─► spec (Connector.spec) ─► stream names (the manifest's)
        ─► block_text(...) ─► append_block(...): the file's existing bytes are kept, the block goes at the end of
                                                 the `connectors:` mapping

A written block holds the spec's required keys (and the authentication a connector needs though its spec marks it
optional), secrets as `${BLOCK_FIELD}` references, the optional keys as comments with their default and
description, and the streams. It loads with `ingest.config.load_project` as written; `ingest validate` then says
which secrets to export. Import-light: stdlib + PyYAML (the CDK is imported only by `add_block`, through Connector,
and only when a spec has to be asked of the connector itself).
"""
from __future__ import annotations

import copy
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

from .. import yamlfile
from ..errors import ConfigError

# Reserved by RFC 2606: never resolves, anywhere, so a check with a dummy config ends at DNS.
DUMMY_HOST = "ingest-dummy.invalid"
DUMMY_SECRET = "dummy-secret-not-real"
DUMMY_DATE_TIME = "2024-01-01T00:00:00Z"
DUMMY_DATE = "2024-01-01"
MANY_STREAMS = 5  # more streams than this: the first is written active, the others as comments

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_HOST_WORDS = ("host", "domain", "url", "endpoint", "server", "hostname", "uri", "address")
# A spec property that holds the connector's authentication (ingest/sources/requirements.py uses the same names).
_AUTH_NAMES = {"credentials", "authorization", "auth", "authentication", "auth_method", "credentials_json"}
# Candidate strings tried against a `pattern` when neither examples nor defaults match.
_PATTERN_CANDIDATES = (
    DUMMY_DATE_TIME, "2024-01-01T00:00:00.000Z", "2024-01-01T00:00:00", "2024-01-01 00:00:00", "2024-01-01T00:00:00+00:00",
    DUMMY_DATE, "2024-01", "2024", "01/01/2024", DUMMY_HOST, f"https://{DUMMY_HOST}", f"https://{DUMMY_HOST}/",
    f"dummy@{DUMMY_HOST}", "dummy", "Dummy", "DUMMY", "dummy/dummy", "dummy-1", "dummy_1", "d", "1", "0", "a1",
    "us-east-1", "123456", "abcdef", "x" * 32, "1" * 32, "a" * 40,
)


# ---------------------------------------------------------------- spec helpers


def connection_spec(spec: dict) -> dict:
    """The JSON schema of a connector's config, whether given the whole spec message or only the schema."""
    if not isinstance(spec, dict):
        return {}
    for key in ("connectionSpecification", "connection_specification"):
        if isinstance(spec.get(key), dict):
            return spec[key]
    return spec


def _types(schema: dict) -> list[str]:
    t = schema.get("type")
    kinds = t if isinstance(t, list) else ([t] if t else [])
    kinds = [k for k in kinds if k != "null"]
    if not kinds:
        if "properties" in schema or "oneOf" in schema or "anyOf" in schema:
            return ["object"]
        if "items" in schema:
            return ["array"]
        if "enum" in schema and schema["enum"]:
            first = schema["enum"][0]
            return ["integer" if isinstance(first, int) and not isinstance(first, bool) else "string"]
    return kinds or ["string"]


def _ordered_properties(schema: dict) -> list[tuple[str, dict]]:
    props = [(k, v) for k, v in (schema.get("properties") or {}).items() if isinstance(v, dict)]
    position = {k: i for i, (k, _) in enumerate(props)}
    return sorted(props, key=lambda kv: (kv[1].get("order") if isinstance(kv[1].get("order"), (int, float)) else 1e9, position[kv[0]]))


def _options(schema: dict) -> list[dict]:
    return [o for o in (schema.get("oneOf") or schema.get("anyOf") or []) if isinstance(o, dict)]


def _with_option(schema: dict, option: dict) -> dict:
    """An object schema with one oneOf/anyOf option merged in (properties and required of both)."""
    merged = {k: v for k, v in schema.items() if k not in ("oneOf", "anyOf")}
    merged["properties"] = {**(schema.get("properties") or {}), **(option.get("properties") or {})}
    merged["required"] = list(dict.fromkeys((schema.get("required") or []) + (option.get("required") or [])))
    return merged


def _all_of(schema: dict) -> dict:
    if not schema.get("allOf"):
        return schema
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        if isinstance(part, dict):
            part = _all_of(part)
            merged["properties"] = {**(merged.get("properties") or {}), **(part.get("properties") or {})}
            merged["required"] = list(dict.fromkeys((merged.get("required") or []) + (part.get("required") or [])))
    return merged


def _discriminator(option: dict) -> tuple[str, Any] | None:
    """The property that names a oneOf option (`auth_type: token`, `option_title: PAT Credentials`)."""
    for key, prop in (option.get("properties") or {}).items():
        if isinstance(prop, dict):
            if "const" in prop:
                return key, prop["const"]
            if isinstance(prop.get("enum"), list) and len(prop["enum"]) == 1:
                return key, prop["enum"][0]
            if isinstance(prop.get("default"), str) and key in ("auth_type", "option_title", "credentials", "type", "method"):
                return key, prop["default"]
    return None


def _is_secret(prop: dict) -> bool:
    return bool(prop.get("airbyte_secret"))


def _is_auth(key: str, prop: dict) -> bool:
    return key.lower() in _AUTH_NAMES and bool(_options(prop) or "object" in _types(prop))


def _is_date_like(key: str, prop: dict) -> bool:
    return prop.get("format") in ("date", "date-time") or key.endswith(("start_date", "start_time", "replication_start_date"))


def _is_host_like(key: str) -> bool:
    k = key.lower()
    # Not `shop`: shopify wants a store name (it builds <name>.myshopify.com itself) and rejects a host.
    return any(word in k for word in _HOST_WORDS) or k in ("subdomain", "site", "instance")


def _matches(value: Any, prop: dict) -> bool:
    """Does a string candidate satisfy the property's pattern and lengths (JSON schema patterns are unanchored)?"""
    if not isinstance(value, str):
        return False
    pattern = prop.get("pattern")
    if pattern:
        try:
            if not re.search(pattern, value):
                return False
        except re.error:
            pass  # an ECMA-only construct: cannot tell, accept
    if isinstance(prop.get("minLength"), int) and len(value) < prop["minLength"]:
        return False
    if isinstance(prop.get("maxLength"), int) and len(value) > prop["maxLength"]:
        return False
    return True


# ---------------------------------------------------------------- values


def _string(key: str, prop: dict, prefer_examples: bool) -> str:
    fmt = prop.get("format")
    examples = [e for e in (prop.get("examples") or []) if isinstance(e, str)]
    default = prop.get("default") if isinstance(prop.get("default"), str) else None
    if fmt == "date-time" or (not fmt and _is_date_like(key, prop)):
        by_format = [DUMMY_DATE_TIME, "2024-01-01T00:00:00.000Z", DUMMY_DATE]
    elif fmt == "date":
        by_format = [DUMMY_DATE]
    elif fmt == "email" or "email" in key.lower():
        by_format = [f"dummy@{DUMMY_HOST}"]
    elif fmt in ("uri", "url") or key.lower().endswith(("url", "uri", "endpoint")):
        by_format = [f"https://{DUMMY_HOST}/", f"https://{DUMMY_HOST}", DUMMY_HOST]
    elif _is_host_like(key):
        by_format = [DUMMY_HOST, f"https://{DUMMY_HOST}/", "ingest-dummy"]
    else:
        by_format = []
    if _is_secret(prop):
        by_format = [DUMMY_SECRET] + by_format
    if prefer_examples and not _is_secret(prop):
        ordered = [default] + examples + by_format
    else:
        # Hosts first (a check must end at DNS), then what the connector documents.
        ordered = by_format + [default] + examples
    ordered += ["dummy"] + list(_PATTERN_CANDIDATES)
    for candidate in ordered:
        if candidate is not None and _matches(candidate, prop):
            return candidate
    n = prop.get("minLength") if isinstance(prop.get("minLength"), int) else 1
    return "x" * max(n, 1)


def _number(prop: dict, integer: bool) -> int | float:
    if isinstance(prop.get("default"), (int, float)) and not isinstance(prop.get("default"), bool):
        return prop["default"]
    low = prop.get("minimum")
    if low is None and isinstance(prop.get("exclusiveMinimum"), (int, float)):
        low = prop["exclusiveMinimum"] + 1
    examples = [e for e in (prop.get("examples") or []) if isinstance(e, (int, float)) and not isinstance(e, bool)]
    value = low if low is not None else (examples[0] if examples else 1)
    high = prop.get("maximum")
    if high is not None and value > high:
        value = high
    return int(value) if integer else value


def _value(key: str, prop: dict, *, prefer_examples: bool = False, required_only: bool = True,
           wanted: set | None = None, path: tuple = ()) -> Any:
    prop = _all_of(prop)
    if "const" in prop:
        return prop["const"]
    if isinstance(prop.get("enum"), list) and prop["enum"]:
        return prop["default"] if prop.get("default") in prop["enum"] else prop["enum"][0]
    kind = _types(prop)[0]
    if kind == "object":
        return _object(prop, prefer_examples=prefer_examples, required_only=required_only, wanted=wanted, path=path)
    if kind == "array":
        items = prop.get("items") if isinstance(prop.get("items"), dict) else {}
        n = prop.get("minItems") if isinstance(prop.get("minItems"), int) else 0
        if n == 0 and "object" in _types(_all_of(items)):
            n = 1  # a list of objects a spec asks for (a file-based source's `streams`) is never meant empty
        if n == 0:
            return []
        if items.get("enum"):
            return list(items["enum"][:n]) if len(items["enum"]) >= n else [items["enum"][0]] * n
        examples = [e for e in (prop.get("examples") or []) if not isinstance(e, list)]
        item_schema = dict(items)
        if examples and "examples" not in item_schema:
            item_schema["examples"] = examples
        first = _value(key, item_schema, prefer_examples=prefer_examples, required_only=required_only, wanted=wanted, path=path)
        out = [first]
        while len(out) < n:
            nxt = copy.deepcopy(first)
            out.append(f"{nxt}{len(out)}" if isinstance(nxt, str) and prop.get("uniqueItems") else nxt)
        return out
    if kind == "boolean":
        return prop["default"] if isinstance(prop.get("default"), bool) else False
    if kind in ("integer", "number"):
        return _number(prop, kind == "integer")
    return _string(key, prop, prefer_examples)


def _object(schema: dict, *, prefer_examples: bool, required_only: bool, wanted: set | None, path: tuple) -> dict:
    schema = _all_of(schema)
    options = _options(schema)
    if options:
        schema = _with_option(schema, _all_of(options[0]))
    out: dict = {}
    required = set(schema.get("required") or [])
    tag = _discriminator(options[0]) if options else None
    for key, prop in _ordered_properties(schema):
        take = key in required or (tag is not None and key == tag[0]) or (wanted is not None and path + (key,) in wanted)
        if not take and not required_only and not prop.get("airbyte_hidden") and "default" not in prop:
            # A start date (not an end date: salesforce refuses end == start) and the authentication.
            take = _is_auth(key, prop) or ("start" in key.lower() and _is_date_like(key, prop))
        if take:
            out[key] = _value(key, prop, prefer_examples=prefer_examples, required_only=required_only, wanted=wanted,
                              path=path + (key,))
    return out


def _needed_optional(spec: dict, manifest: dict | None) -> set[tuple]:
    """Keys a connector needs though its spec marks them optional (sources/requirements.py), as config paths."""
    try:
        from .requirements import missing_requirements
    except ImportError:  # pragma: no cover - requirements.py is optional here
        return set()
    errors, maybe = missing_requirements(spec, manifest, {})
    return {path for path, _ in errors + maybe}


def dummy_config(spec: dict, *, manifest: dict | None = None) -> dict:
    """A config that satisfies the connector's connectionSpecification and reaches nothing real: hosts end in
    `.invalid` (never resolves), secrets are placeholders, dates are 2024-01-01. Besides the required keys it sets
    what connectors need though their specs say optional — the first authentication option (`credentials`), start
    dates, and what `requirements.missing_requirements` finds in the manifest."""
    schema = connection_spec(spec)
    return _object(schema, prefer_examples=False, required_only=False, wanted=_needed_optional(schema, manifest), path=())


# ---------------------------------------------------------------- the block's text


def _scalar(value: Any) -> str:
    """A value as YAML in a block context, on one line (quoted where YAML would read it as something else)."""
    text = yaml.safe_dump([value], default_flow_style=True, width=1 << 30, allow_unicode=True).strip()
    return text[1:-1].strip()


def _describe(prop: dict, limit: int = 110) -> str:
    title = str(prop.get("title") or "").strip()
    desc = re.sub(r"<[^>]+>", "", str(prop.get("description") or ""))
    desc = re.sub(r"\s+", " ", desc).strip()
    text = f"{title}: {desc}" if title and desc and not desc.lower().startswith(title.lower()) else (desc or title)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def secret_reference(block: str, path: tuple, taken: set[str], prefix: str | None = None) -> str:
    """`${STRIPE_CLIENT_SECRET}`: the block's name and the field's, upper-case (the full path when two fields of
    one block share a name)."""
    base = (prefix or block).upper()
    name = re.sub(r"[^A-Z0-9_]", "_", f"{base}_{path[-1]}".upper())
    if name in taken:
        name = re.sub(r"[^A-Z0-9_]", "_", f"{base}_{'_'.join(path)}".upper())
    taken.add(name)
    return "${" + name + "}"


class _Writer:
    def __init__(self, block: str, values: dict | None, secret_prefix: str | None, wanted: set[tuple]):
        self.block, self.values, self.prefix, self.wanted = block, values, secret_prefix, wanted
        self.lines: list[str] = []
        self.taken: set[str] = set()
        self.secrets: list[str] = []

    def line(self, indent: int, text: str, comment: str = "") -> None:
        self.lines.append(" " * indent + text + (f"  # {comment}" if comment else ""))

    def given(self, path: tuple) -> tuple[bool, Any]:
        node = self.values
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return False, None
            node = node[part]
        return True, node

    def fields(self, schema: dict, indent: int, path: tuple, *, top: bool, tag: str | None = None) -> None:
        schema = _all_of(schema)
        required = set(schema.get("required") or []) | ({tag} if tag else set())
        commented: list[tuple[str, dict]] = []
        for key, prop in _ordered_properties(schema):
            prop = _all_of(prop)
            here = path + (key,)
            has, value = self.given(here)
            needed = here in self.wanted or (top and _is_auth(key, prop) and not prop.get("airbyte_hidden"))
            if key in required or needed or (has and self.values is not None):
                self.field(key, prop, indent, here, required=key in required, has=has, value=value)
            elif top and not prop.get("airbyte_hidden") and not (prop.get("description") or "").startswith("(DEPRECATED)"):
                commented.append((key, prop))
        if commented:
            self.line(indent, "# optional:")
            for key, prop in commented:
                shown = _scalar(prop["default"]) if "default" in prop else _scalar(_value(key, prop, prefer_examples=True))
                note = ("default. " if "default" in prop else "example. ") + ("secret; " if _is_secret(prop) else "") + _describe(prop, 90)
                if _is_secret(prop):
                    shown = secret_reference(self.block, path + (key,), set(self.taken), self.prefix)
                self.line(indent, f"# {key}: {shown}", note)

    def field(self, key: str, prop: dict, indent: int, path: tuple, *, required: bool, has: bool, value: Any) -> None:
        kind = _types(prop)[0]
        why = "required" if required else "the connector reads it (its spec: optional)"
        options = _options(prop)
        if kind == "object" and (options or prop.get("properties")) and "const" not in prop:
            note = f"{why}. {_describe(prop, 60)}"
            chosen = options[0] if options else None
            if options:
                # With given values, write the option they select.
                if has and isinstance(value, dict):
                    for option in options:
                        tag = _discriminator(option)
                        if tag and value.get(tag[0]) == tag[1]:
                            chosen = option
                            break
                others = [o for o in options if o is not chosen]
                names = ", ".join(_option_label(o) for o in others)
                if names:
                    self.line(indent, f"# {key}: the first option is written; others: {names} (`ingest spec {self.block}`)")
            self.line(indent, f"{key}:", note)
            tag = _discriminator(chosen) if chosen else None
            self.fields(_with_option(prop, chosen) if chosen else prop, indent + 2, path, top=False, tag=tag[0] if tag else None)
            return
        if _is_secret(prop):
            ref = secret_reference(self.block, path, self.taken, self.prefix)
            self.secrets.append(ref)
            self.line(indent, f"{key}: {ref}", f"secret ({why}): {_describe(prop, 80)}")
            return
        if not has:
            value = _value(key, prop, prefer_examples=self.values is None)
        comment = "" if "const" in prop else f"{why}: {_describe(prop, 90)}"
        self.line(indent, f"{key}: {_scalar(value)}", comment)


def _option_label(option: dict) -> str:
    tag = _discriminator(option)
    title = option.get("title") or (tag[1] if tag else "?")
    return f"{title!s}" + (f" ({tag[0]}: {tag[1]})" if tag and str(tag[1]) != str(title) else "")


def block_text(name: str, team: str, package: str, version: str, spec: dict, streams: list[str], *,
               discovered: bool, values: dict | None = None, secret_prefix: str | None = None,
               manifest: dict | None = None, active_streams: list[str] | None = None, dynamic_streams: bool = False,
               indent: int = 2) -> str:
    """The YAML text of a new block for the `connectors:` mapping (indented `indent` spaces), ending in a newline.

    `values`: config values to write (e.g. a dummy_config) instead of examples/placeholders; secrets are always
    references, named `${<BLOCK>_<FIELD>}` or `${<secret_prefix>_<FIELD>}`. `discovered`: the streams came from the
    connector's discover (else from its manifest, or none are known). `active_streams`: the streams to write
    uncommented (default: all, or only the first when there are more than MANY_STREAMS)."""
    if not _NAME.match(name):
        raise ConfigError(f"block name {name!r}: expected lowercase letters, digits and underscores, starting with a letter")
    schema = connection_spec(spec)
    w = _Writer(name, values, secret_prefix, _needed_optional(schema, manifest))
    w.line(indent, f"{name}:")
    i = indent + 2
    w.line(i, f"team: {_scalar(team)}")
    w.line(i, f"source: {package}=={version}", "exact release; `ingest install --upgrade` does not move a pin")
    if schema.get("properties"):
        w.line(i, "config:")
        w.fields(schema, i + 2, (), top=True)
    else:
        w.line(i, "config: {}")
    streams = list(dict.fromkeys(streams))
    if active_streams:
        active = list(dict.fromkeys(active_streams))
    else:
        active = streams if len(streams) <= MANY_STREAMS else streams[:1]
    rest = [s for s in streams if s not in active]
    if discovered:
        origin = f"{len(streams)} stream(s) the connector offers (`ingest discover {name}`)"
    elif streams:
        origin = f"{len(streams)} stream(s) named in the connector's manifest; `ingest discover {name}` lists all it offers"
    else:
        origin = f"the connector's streams are not known offline: list them with `ingest discover {name}` (it needs the config above)"
    if dynamic_streams:
        w.line(i, f"# the connector also generates streams at discover time (needs the API): `ingest discover {name}`")
    w.line(i, "streams:", origin)
    if not active:
        active = ["CHANGE_ME"]
        w.line(i + 2, "- name: CHANGE_ME", "replace with a stream `ingest discover` lists")
    else:
        for stream in active:
            w.line(i + 2, f"- name: {_scalar(stream)}")
    if rest:
        w.line(i + 2, f"# {len(rest)} more: uncomment the ones to sync")
        for stream in rest:
            w.line(i + 2, f"# - name: {_scalar(stream)}")
    w.line(i, '# schedule: "0 * * * *"', "cron for the production flow; without it the block runs when asked")
    return "\n".join(w.lines) + "\n"


# ---------------------------------------------------------------- appending to connectors.yaml


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
            insert_at = len(lines)  # `connectors:` is the last top-level key: the block goes at the end
        else:
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
    if indent != 2:
        text = _reindent(text, indent - 2)
    new_lines = text.splitlines(keepends=True)
    if newline != "\n":
        new_lines = [ln.rstrip("\n") + newline for ln in new_lines]
    result = "".join(lines[:insert_at] + new_lines + lines[insert_at:])
    _check_appended(result, name, block[name], path)
    _refuse_shared_tables(result, name, path)
    _write_atomically(path, result)


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
    from ..config import parse_project, table_problems

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


# ---------------------------------------------------------------- manifests


def _resolve(root: dict, node: Any, depth: int = 0) -> Any:
    if isinstance(node, str) and node.startswith("#/"):
        node = {"$ref": node}
    if isinstance(node, dict) and isinstance(node.get("$ref"), str) and depth < 30:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        base = _resolve(root, target, depth + 1)
        out = dict(base) if isinstance(base, dict) else {}
        out.update({k: v for k, v in node.items() if k != "$ref"})
        return out
    return node


def manifest_stream_names(manifest: dict | None) -> tuple[list[str], bool]:
    """(the static stream names of a declarative manifest, whether it also generates streams at discover time)."""
    if not isinstance(manifest, dict):
        return [], False
    names = []
    for stream in manifest.get("streams") or []:
        resolved = _resolve(manifest, stream)
        if isinstance(resolved, dict):
            name = resolved.get("name") or (resolved.get("$parameters") or {}).get("name")
            if isinstance(name, str) and name and "{{" not in name:
                names.append(name)
    return list(dict.fromkeys(names)), bool(manifest.get("dynamic_streams"))


def package_manifest(files_dir: Path, module: str) -> dict | None:
    path = Path(files_dir) / module / "manifest.yaml"
    if not path.is_file():
        return None
    return yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


# ---------------------------------------------------------------- ingest add


def parse_connector(connector: str) -> tuple[str, str | None]:
    """`stripe`, `source-stripe`, `airbyte-source-stripe` or `airbyte-source-stripe==5.14.1` → (package, version)."""
    raw = connector.strip().lower()
    name, _, version = raw.partition("==")
    name = name.removeprefix("airbyte-").removeprefix("source-")
    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name):
        raise ConfigError(f"connector {connector!r}: expected a name like 'stripe' or 'airbyte-source-stripe[==5.14.1]'")
    return f"airbyte-source-{name}", version or None


def default_block_name(package: str) -> str:
    name = package.removeprefix("airbyte-source-").replace("-", "_")
    return name if _NAME.match(name) else f"source_{name}"


def _existing_names(path: Path) -> tuple[set[str], Path | None]:
    """Block names already in the file, and its defaults.connectors_dir (resolved), read without validating."""
    if not path.exists():
        return set(), None
    try:
        data = yamlfile.load_file(path) or {}
    except yamlfile.YAMLFileError as exc:
        raise ConfigError(f"{exc}; fix it before adding a block") from None
    connectors = data.get("connectors") if isinstance(data, dict) else None
    defaults = data.get("defaults") if isinstance(data, dict) else None
    raw = defaults.get("connectors_dir") if isinstance(defaults, dict) else None
    cache_dir = None
    if raw:
        p = Path(str(raw)).expanduser()
        cache_dir = p if p.is_absolute() else path.parent / p
    return set(connectors) if isinstance(connectors, dict) else set(), cache_dir


def connector_facts(package: str, version: str, cache, *, runtime: str = "auto") -> tuple[dict, dict | None, Path]:
    """(spec, raw manifest or None, files dir) of a release, through `Connector` on a throwaway block (so a spec
    built in code is asked of the connector in its own environment, as `ingest spec` would)."""
    from ..config import load_project
    from .connector import Connector, package_module
    from .lockfile import LockFile

    with tempfile.TemporaryDirectory(prefix="ingest-add-") as tmp:
        probe = Path(tmp) / "connectors.yaml"
        probe.write_text(yaml.safe_dump({
            "defaults": {"connectors_dir": str(Path(cache.root).resolve())},
            "connectors": {"probe": {"team": "probe", "source": f"{package}=={version}", "runtime": runtime,
                                     "streams": [{"name": "probe"}]}},
        }))
        block = load_project(probe).block("probe")
        connector = Connector(block, lock=LockFile(Path(tmp) / "connectors.lock"), cache=cache, persist=False)
        spec = connector.spec()
        files = connector.files_dir()
    return spec, package_manifest(files, package_module(package)), files


def add_block(project_path: str | Path, connector: str, team: str, *, name: str | None = None,
              streams: list[str] | None = None, notify: Callable[[str], None] | None = None,
              cache=None) -> tuple[str, str]:
    """`ingest add <connector> --team T [--name N] [--stream S ...]`: write a new block for the connector's newest
    release (or the `==version` given) at the end of `connectors:` in `project_path` (created if missing), and
    return (block name, the text written). Streams: the ones given are written active, the others the manifest
    names are listed as comments; a Python connector's streams are only known to `ingest discover`, which needs a
    real config, so then the block says so. The release is pinned in the block (`source: pkg==version`)."""
    from .environments import ConnectorCache

    path = Path(project_path)
    package, version = parse_connector(connector)
    name = name or default_block_name(package)
    if not _NAME.match(name):
        raise ConfigError(f"--name {name!r}: block names are lowercase letters, digits and underscores, starting with a letter")
    if not team or not str(team).strip():
        raise ConfigError("--team: every block has an owning team")
    existing, cache_dir = _existing_names(path)
    if name in existing:
        raise ConfigError(f"{path}: connectors.{name}: a block of that name exists; choose another with --name")
    cache = cache or ConnectorCache(cache_dir, notify=notify)
    version = version or cache.newest(package)
    spec, manifest, _ = connector_facts(package, version, cache)
    known, dynamic = manifest_stream_names(manifest)
    given = list(dict.fromkeys(streams or []))
    if given and known and not dynamic:
        unknown = [s for s in given if s not in known]
        if unknown:
            raise ConfigError(f"--stream: {package}=={version} has no stream {', '.join(map(repr, unknown))} "
                              f"(its manifest names {len(known)}: {', '.join(known[:8])}{' ...' if len(known) > 8 else ''})")
    listed = given + [s for s in known if s not in given]
    text = block_text(name, team, package, version, spec, listed, discovered=False, manifest=manifest,
                      active_streams=given or None, dynamic_streams=dynamic)
    append_block(path, text)
    return name, text


def package_module_name(package: str) -> str:
    """airbyte-source-zendesk-support → source_zendesk_support (as `connector.package_module`, without its imports)."""
    return package.split("==")[0].removeprefix("airbyte-").replace("-", "_")
