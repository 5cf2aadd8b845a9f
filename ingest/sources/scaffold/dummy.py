"""Dummy configs that satisfy a connector's spec without reaching any real system (`dummy_config`; to measure
connectors offline: scripts/connector_compat.py), and the example values a new block shows.
"""
from __future__ import annotations

import copy
import re
from typing import Any

from ..requirements import missing_requirements
from .schema import (all_of, connection_spec, discriminator, is_auth, is_date_like, is_host_like, is_secret,
                     options_of, ordered_properties, types_of, with_option)

# Reserved by RFC 2606: never resolves, anywhere, so a check with a dummy config ends at DNS.
DUMMY_HOST = "ingest-dummy.invalid"
DUMMY_SECRET = "dummy-secret-not-real"
DUMMY_DATE_TIME = "2024-01-01T00:00:00Z"
DUMMY_DATE = "2024-01-01"

# Candidate strings tried against a `pattern` when neither examples nor defaults match.
_PATTERN_CANDIDATES = (
    DUMMY_DATE_TIME, "2024-01-01T00:00:00.000Z", "2024-01-01T00:00:00", "2024-01-01 00:00:00", "2024-01-01T00:00:00+00:00",
    DUMMY_DATE, "2024-01", "2024", "01/01/2024", DUMMY_HOST, f"https://{DUMMY_HOST}", f"https://{DUMMY_HOST}/",
    f"dummy@{DUMMY_HOST}", "dummy", "Dummy", "DUMMY", "dummy/dummy", "dummy-1", "dummy_1", "d", "1", "0", "a1",
    "us-east-1", "123456", "abcdef", "x" * 32, "1" * 32, "a" * 40,
)


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
    if fmt == "date-time" or (not fmt and is_date_like(key, prop)):
        by_format = [DUMMY_DATE_TIME, "2024-01-01T00:00:00.000Z", DUMMY_DATE]
    elif fmt == "date":
        by_format = [DUMMY_DATE]
    elif fmt == "email" or "email" in key.lower():
        by_format = [f"dummy@{DUMMY_HOST}"]
    elif fmt in ("uri", "url") or key.lower().endswith(("url", "uri", "endpoint")):
        by_format = [f"https://{DUMMY_HOST}/", f"https://{DUMMY_HOST}", DUMMY_HOST]
    elif is_host_like(key):
        by_format = [DUMMY_HOST, f"https://{DUMMY_HOST}/", "ingest-dummy"]
    else:
        by_format = []
    if is_secret(prop):
        by_format = [DUMMY_SECRET] + by_format
    if prefer_examples and not is_secret(prop):
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


def dummy_value(key: str, prop: dict, *, prefer_examples: bool = False, required_only: bool = True,
           wanted: set | None = None, path: tuple = ()) -> Any:
    prop = all_of(prop)
    if "const" in prop:
        return prop["const"]
    if isinstance(prop.get("enum"), list) and prop["enum"]:
        return prop["default"] if prop.get("default") in prop["enum"] else prop["enum"][0]
    kind = types_of(prop)[0]
    if kind == "object":
        return _object(prop, prefer_examples=prefer_examples, required_only=required_only, wanted=wanted, path=path)
    if kind == "array":
        items = prop.get("items") if isinstance(prop.get("items"), dict) else {}
        n = prop.get("minItems") if isinstance(prop.get("minItems"), int) else 0
        if n == 0 and "object" in types_of(all_of(items)):
            n = 1  # a list of objects a spec asks for (a file-based source's `streams`) is never meant empty
        if n == 0:
            return []
        if items.get("enum"):
            return list(items["enum"][:n]) if len(items["enum"]) >= n else [items["enum"][0]] * n
        examples = [e for e in (prop.get("examples") or []) if not isinstance(e, list)]
        item_schema = dict(items)
        if examples and "examples" not in item_schema:
            item_schema["examples"] = examples
        first = dummy_value(key, item_schema, prefer_examples=prefer_examples, required_only=required_only, wanted=wanted, path=path)
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
    schema = all_of(schema)
    options = options_of(schema)
    if options:
        schema = with_option(schema, all_of(options[0]))
    out: dict = {}
    required = set(schema.get("required") or [])
    tag = discriminator(options[0]) if options else None
    for key, prop in ordered_properties(schema):
        take = key in required or (tag is not None and key == tag[0]) or (wanted is not None and path + (key,) in wanted)
        if not take and not required_only and not prop.get("airbyte_hidden") and "default" not in prop:
            # A start date (not an end date: salesforce refuses end == start) and the authentication.
            take = is_auth(key, prop) or ("start" in key.lower() and is_date_like(key, prop))
        if take:
            out[key] = dummy_value(key, prop, prefer_examples=prefer_examples, required_only=required_only, wanted=wanted,
                              path=path + (key,))
    return out


def needed_optional(spec: dict, manifest: dict | None) -> set[tuple]:
    """Keys a connector needs though its spec marks them optional (sources/requirements.py), as config paths."""
    errors, maybe = missing_requirements(spec, manifest, {})
    return {path for path, _ in errors + maybe}


def dummy_config(spec: dict, *, manifest: dict | None = None) -> dict:
    """A config that satisfies the connector's connectionSpecification and reaches nothing real: hosts end in
    `.invalid` (never resolves), secrets are placeholders, dates are 2024-01-01. Besides the required keys it sets
    what connectors need though their specs say optional — the first authentication option (`credentials`), start
    dates, and what `requirements.missing_requirements` finds in the manifest."""
    schema = connection_spec(spec)
    return _object(schema, prefer_examples=False, required_only=False, wanted=needed_optional(schema, manifest), path=())
