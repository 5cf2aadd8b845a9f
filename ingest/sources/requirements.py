"""What a connector needs that its spec does not say it needs.

Many connectors mark `credentials` (or `start_date`) optional in their spec and then fail at run time with messages
nobody can act on: "The path from `authenticator_selection_path` is not found in the config" (slack, zendesk-support
without credentials), "'NoneType' object has no attribute 'get'" (shopify), "time data '' does not match format"
(notion without start_date). These checks find such keys before anything runs, so `ingest validate` says what is
missing in the block's own terms. Import-light (stdlib only); works on the raw manifest dict.
"""
from __future__ import annotations

import re
from typing import Any, Iterator

# `config['start_date']`, `config["start_date"]`, `config.start_date` inside a Jinja interpolation — a direct read
# that fails (or yields '') when the key is absent. `config.get('x', ...)` and `'x' in config` are not direct reads.
_DIRECT_READ = re.compile(r"config(?:\[\s*['\"](?P<a>[A-Za-z_][A-Za-z0-9_]*)['\"]\s*\]|\.(?P<b>(?!get\b|items\b|keys\b)[A-Za-z_][A-Za-z0-9_]*))")
# A spec property that holds the connector's authentication, whatever the connector calls it.
AUTH_NAMES = {"credentials", "authorization", "auth", "authentication", "auth_method", "credentials_json"}


def missing_requirements(spec: dict, manifest: dict | None, config: dict) -> tuple[list[tuple[tuple, str]], list[tuple[tuple, str]]]:
    """(errors, warnings): (config path, message) for each key the connector will need but the config lacks.
    Errors are certain (the connector cannot start without the key); warnings are direct reads in the manifest that
    may sit in a branch the config never takes."""
    found: dict[tuple, str] = {}
    maybe: dict[tuple, str] = {}
    if manifest:
        for path in _selection_paths(manifest):
            if _lookup(config, path) is None:
                top = path[:1]
                found.setdefault(top, f"required by the connector to choose how to authenticate (it reads "
                                      f"{'.'.join(path)}), though its spec marks it optional{_options(spec, top[0])}")
        for key in sorted(_direct_reads(manifest)):
            if key not in config and key in (spec.get("properties") or {}) and (key,) not in found:
                maybe.setdefault((key,), "probably needed: the connector's manifest reads it without a default, "
                                         "though its spec marks it optional")
    for key, prop in (spec.get("properties") or {}).items():
        if key in config or key in (spec.get("required") or []) or not isinstance(prop, dict):
            continue
        if key.lower() in AUTH_NAMES and (prop.get("oneOf") or prop.get("anyOf")):
            found.setdefault((key,), f"the connector cannot authenticate without it, though its spec marks it "
                                     f"optional{_options(spec, key)}")
    return sorted(found.items()), sorted(maybe.items())


def _options(spec: dict, key: str) -> str:
    prop = (spec.get("properties") or {}).get(key) or {}
    titles = [str(o.get("title")) for o in (prop.get("oneOf") or prop.get("anyOf") or []) if isinstance(o, dict) and o.get("title")]
    return f"; set one of: {', '.join(titles)}" if titles else ""


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _selection_paths(manifest: dict) -> list[tuple[str, ...]]:
    """Every SelectiveAuthenticator's `authenticator_selection_path` (e.g. ('credentials', 'option_title'))."""
    paths = []
    for node in _walk(manifest):
        if isinstance(node, dict) and node.get("type") == "SelectiveAuthenticator":
            path = node.get("authenticator_selection_path")
            if isinstance(path, list) and path and all(isinstance(p, str) for p in path):
                paths.append(tuple(path))
    return list(dict.fromkeys(paths))


def _direct_reads(manifest: dict) -> set[str]:
    keys: set[str] = set()
    for node in _walk(manifest):
        if isinstance(node, str) and "config" in node and "{{" in node:
            for m in _DIRECT_READ.finditer(node):
                key = m.group("a") or m.group("b")
                guarded = re.search(rf"""['"]{key}['"]\s+(not\s+)?in\s+config|config\.get\(\s*['"]{key}['"]""", node)
                if not guarded:
                    keys.add(key)
    return keys


def _lookup(config: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(config, dict):
            return None
        config = config.get(part)
    return config
