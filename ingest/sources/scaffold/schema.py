"""Reading a connector's spec (its config's JSON schema) the way a block is written from it: types, ordered
properties, oneOf options and their discriminators, ``allOf`` merges, and which properties are secrets,
authentication, dates or hosts. Stdlib only (and requirements.py for the names authentication goes by).
"""
from __future__ import annotations

from typing import Any

from ..requirements import AUTH_NAMES  # a spec property that holds the connector's authentication

_HOST_WORDS = ("host", "domain", "url", "endpoint", "server", "hostname", "uri", "address")


def connection_spec(spec: dict) -> dict:
    """The JSON schema of a connector's config, whether given the whole spec message or only the schema."""
    if not isinstance(spec, dict):
        return {}
    for key in ("connectionSpecification", "connection_specification"):
        if isinstance(spec.get(key), dict):
            return spec[key]
    return spec


def types_of(schema: dict) -> list[str]:
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


def ordered_properties(schema: dict) -> list[tuple[str, dict]]:
    props = [(k, v) for k, v in (schema.get("properties") or {}).items() if isinstance(v, dict)]
    position = {k: i for i, (k, _) in enumerate(props)}
    return sorted(props, key=lambda kv: (kv[1].get("order") if isinstance(kv[1].get("order"), (int, float)) else 1e9, position[kv[0]]))


def options_of(schema: dict) -> list[dict]:
    return [o for o in (schema.get("oneOf") or schema.get("anyOf") or []) if isinstance(o, dict)]


def with_option(schema: dict, option: dict) -> dict:
    """An object schema with one oneOf/anyOf option merged in (properties and required of both)."""
    merged = {k: v for k, v in schema.items() if k not in ("oneOf", "anyOf")}
    merged["properties"] = {**(schema.get("properties") or {}), **(option.get("properties") or {})}
    merged["required"] = list(dict.fromkeys((schema.get("required") or []) + (option.get("required") or [])))
    return merged


def all_of(schema: dict) -> dict:
    if not schema.get("allOf"):
        return schema
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        if isinstance(part, dict):
            part = all_of(part)
            merged["properties"] = {**(merged.get("properties") or {}), **(part.get("properties") or {})}
            merged["required"] = list(dict.fromkeys((merged.get("required") or []) + (part.get("required") or [])))
    return merged


def discriminator(option: dict) -> tuple[str, Any] | None:
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


def is_secret(prop: dict) -> bool:
    return bool(prop.get("airbyte_secret"))


def is_auth(key: str, prop: dict) -> bool:
    return key.lower() in AUTH_NAMES and bool(options_of(prop) or "object" in types_of(prop))


def is_date_like(key: str, prop: dict) -> bool:
    return prop.get("format") in ("date", "date-time") or key.endswith(("start_date", "start_time", "replication_start_date"))


def is_host_like(key: str) -> bool:
    k = key.lower()
    # Not `shop`: shopify wants a store name (it builds <name>.myshopify.com itself) and rejects a host.
    return any(word in k for word in _HOST_WORDS) or k in ("subdomain", "site", "instance")
