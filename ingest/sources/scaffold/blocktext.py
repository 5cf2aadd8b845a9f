"""The YAML text of a new block (`block_text`): the spec's required keys (and the authentication a connector needs
though its spec marks it optional), secrets as `${BLOCK_FIELD}` references, the optional keys as comments with their
default and description, and the streams.
"""
from __future__ import annotations

import re
from typing import Any

import yaml

from ...errors import ConfigError
from .dummy import dummy_value, needed_optional
from .schema import (all_of, connection_spec, discriminator, is_auth, is_secret, options_of, ordered_properties,
                     types_of, with_option)

MANY_STREAMS = 5  # more streams than this: the first is written active, the others as comments

# A block name (and the default one derived from a package): lowercase letters, digits, underscores.
BLOCK_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


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
        schema = all_of(schema)
        required = set(schema.get("required") or []) | ({tag} if tag else set())
        commented: list[tuple[str, dict]] = []
        for key, prop in ordered_properties(schema):
            prop = all_of(prop)
            here = path + (key,)
            has, value = self.given(here)
            needed = here in self.wanted or (top and is_auth(key, prop) and not prop.get("airbyte_hidden"))
            if key in required or needed or (has and self.values is not None):
                self.field(key, prop, indent, here, required=key in required, has=has, value=value)
            elif top and not prop.get("airbyte_hidden") and not (prop.get("description") or "").startswith("(DEPRECATED)"):
                commented.append((key, prop))
        if commented:
            self.line(indent, "# optional:")
            for key, prop in commented:
                shown = _scalar(prop["default"]) if "default" in prop else _scalar(dummy_value(key, prop, prefer_examples=True))
                note = ("default. " if "default" in prop else "example. ") + ("secret; " if is_secret(prop) else "") + _describe(prop, 90)
                if is_secret(prop):
                    shown = secret_reference(self.block, path + (key,), set(self.taken), self.prefix)
                self.line(indent, f"# {key}: {shown}", note)

    def field(self, key: str, prop: dict, indent: int, path: tuple, *, required: bool, has: bool, value: Any) -> None:
        kind = types_of(prop)[0]
        why = "required" if required else "the connector reads it (its spec: optional)"
        options = options_of(prop)
        if kind == "object" and (options or prop.get("properties")) and "const" not in prop:
            note = f"{why}. {_describe(prop, 60)}"
            chosen = options[0] if options else None
            if options:
                # With given values, write the option they select.
                if has and isinstance(value, dict):
                    for option in options:
                        tag = discriminator(option)
                        if tag and value.get(tag[0]) == tag[1]:
                            chosen = option
                            break
                others = [o for o in options if o is not chosen]
                names = ", ".join(_option_label(o) for o in others)
                if names:
                    self.line(indent, f"# {key}: the first option is written; others: {names} (`ingest spec {self.block}`)")
            self.line(indent, f"{key}:", note)
            tag = discriminator(chosen) if chosen else None
            self.fields(with_option(prop, chosen) if chosen else prop, indent + 2, path, top=False, tag=tag[0] if tag else None)
            return
        if is_secret(prop):
            ref = secret_reference(self.block, path, self.taken, self.prefix)
            self.secrets.append(ref)
            self.line(indent, f"{key}: {ref}", f"secret ({why}): {_describe(prop, 80)}")
            return
        if not has:
            value = dummy_value(key, prop, prefer_examples=self.values is None)
        comment = "" if "const" in prop else f"{why}: {_describe(prop, 90)}"
        self.line(indent, f"{key}: {_scalar(value)}", comment)


def _option_label(option: dict) -> str:
    tag = discriminator(option)
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
    if not BLOCK_NAME.match(name):
        raise ConfigError(f"block name {name!r}: expected lowercase letters, digits and underscores, starting with a letter")
    schema = connection_spec(spec)
    w = _Writer(name, values, secret_prefix, needed_optional(schema, manifest))
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
