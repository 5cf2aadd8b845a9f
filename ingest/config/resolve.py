"""Per-block resolution: a block's secret references resolved and its `config` checked against the connector's spec.

The spec (the connector's connectionSpecification, read from its package files by `ingest.sources`, without importing
the Airbyte CDK) is handed in: this package imports nothing from `ingest.sources` or `ingest.destinations`.
JSON-schema errors become `file:line: key: message` problems like the structural ones, never echoing a value.
"""
from __future__ import annotations

from typing import Any

from ..secrets import literal_secret, load_provider, resolve_references
from .problems import Problems, problems_for, yaml_type
from .project import Block


def _resolve_refs(value: Any, path: tuple, provider, problems: Problems, unset: Problems):
    """Substitute ${NAME} references everywhere in a config (secrets.resolve_references on every string). Malformed
    or unreadable ones go to `problems`, unset ones to `unset` (the same list when secrets are required)."""
    if isinstance(value, dict):
        return {k: _resolve_refs(v, path + (k,), provider, problems, unset) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(v, path + (i,), provider, problems, unset) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        return resolve_references(value, provider, lambda message: problems.add(path, message),
                                  lambda message: unset.add(path, message))
    return value


def _secret_keys(spec: dict, prefix: tuple = ()) -> list[tuple]:
    """Config paths the connector marks as secret (`airbyte_secret: true`), also inside oneOf/anyOf/allOf options."""
    out: list[tuple] = []
    if not isinstance(spec, dict):
        return out
    for key, prop in (spec.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        if prop.get("airbyte_secret"):
            out.append(prefix + (key,))
        out.extend(_secret_keys(prop, prefix + (key,)))
    for combinator in ("oneOf", "anyOf", "allOf"):
        for option in spec.get(combinator) or []:
            out.extend(_secret_keys(option, prefix))
    return list(dict.fromkeys(out))


def _json_types(expected: Any) -> str:
    names = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
             "object": "a mapping", "array": "a list", "null": "null"}
    kinds = expected if isinstance(expected, list) else [expected]
    return " or ".join(names.get(k, str(k)) for k in kinds)


def _spec_error_message(err) -> str:
    # Never echo the instance: it may be a secret.
    v, value = err.validator, err.validator_value
    if v == "required":
        missing = [m for m in value if isinstance(err.instance, dict) and m not in err.instance]
        return f"required key {', '.join(repr(m) for m in missing)} is missing"
    if v == "type":
        return f"expected {_json_types(value)}; got {yaml_type(err.instance)}"
    if v == "enum":
        return f"expected one of {', '.join(repr(x) for x in value)}"
    if v == "const":
        return f"expected {value!r}"
    if v == "pattern":
        return f"does not match the pattern {value}"
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if v in bounds:
        return f"expected a number {bounds[v]} {value} ({v})"
    sizes = {"minLength": ("at least", "characters"), "maxLength": ("at most", "characters"),
             "minItems": ("at least", "items"), "maxItems": ("at most", "items"),
             "minProperties": ("at least", "keys"), "maxProperties": ("at most", "keys")}
    if v in sizes:
        how, what = sizes[v]
        return f"expected {how} {value} {what} ({v})"
    if v == "uniqueItems":
        return "expected unique items"
    if v == "format":
        return f"expected format {value}"
    if v == "additionalProperties" and isinstance(err.instance, dict):
        known = set((err.schema or {}).get("properties") or {})
        extra = [k for k in err.instance if k not in known]
        return f"unknown key{'s' if len(extra) != 1 else ''} {', '.join(repr(k) for k in extra)} (the connector allows no others)"
    return f"does not satisfy the connector spec's {v!r} rule"


def _option_selected(option: Any, instance: Any) -> bool:
    """Does `instance` pick this oneOf/anyOf option by a discriminator (a property with a `const` or one-value enum)?"""
    if not isinstance(option, dict) or not isinstance(instance, dict):
        return False
    tags = {}
    for key, prop in (option.get("properties") or {}).items():
        if isinstance(prop, dict):
            if "const" in prop:
                tags[key] = prop["const"]
            elif isinstance(prop.get("enum"), list) and len(prop["enum"]) == 1:
                tags[key] = prop["enum"][0]
    present = {k: c for k, c in tags.items() if k in instance}
    return bool(present) and all(instance[k] == c for k, c in present.items())


def _spec_problems(err) -> list[tuple[tuple, str]]:
    """A jsonschema error → (config path, message) pairs. For a oneOf/anyOf the option the config selects
    (e.g. by `auth_type`) is explained key by key; otherwise the options are listed."""
    if err.validator in ("oneOf", "anyOf") and isinstance(err.validator_value, list):
        options = err.validator_value
        chosen = [i for i, option in enumerate(options) if _option_selected(option, err.instance)]
        if len(chosen) == 1 and err.context:
            inner = [e for e in err.context if e.relative_schema_path and e.relative_schema_path[0] == chosen[0]]
            if inner:
                return [p for e in inner for p in _spec_problems(e)]
        names = []
        for i, option in enumerate(options):
            name = option.get("title") if isinstance(option, dict) else None
            names.append(str(name or f"option {i + 1}"))
        return [(tuple(err.absolute_path), f"matches none of the allowed options: {', '.join(names)}")]
    if err.validator == "additionalProperties" and isinstance(err.instance, dict) and isinstance(err.schema, dict):
        known = set(err.schema.get("properties") or {})
        extra = [k for k in err.instance if k not in known]
        if extra:
            return [(tuple(err.absolute_path) + (k,), "unknown key (the connector's spec allows no others)") for k in extra]
    return [(tuple(err.absolute_path), _spec_error_message(err))]


def resolve_block(block: Block, spec: dict | None, *, require_secrets: bool = True) -> list[str]:
    """Resolve the block's secret references and check its config against the connector's `spec` (its
    connectionSpecification, found by `ingest.sources`; None for a puller without one).

    Raises ConfigError listing every problem. Unset references are problems when `require_secrets` (run, check);
    otherwise (`ingest validate` as a pull-request check, where production secrets are absent) they are returned
    as warnings, the config is checked everywhere else, and the block stays unresolved.
    """
    if block.resolved:
        return []
    project = block.project
    problems, unset = problems_for(project), problems_for(project)
    base = ("connectors", block.name)
    _missing_files(block, base, problems)
    problems.raise_if_any()

    try:
        provider = load_provider(project.defaults.secrets)
    except Exception as exc:  # noqa: BLE001 - any import problem is a config problem
        problems.add(("defaults", "secrets"), f"cannot load secret provider: {type(exc).__name__}: {exc}")
        problems.raise_if_any()
    config = _resolve_refs(block.spec.config, base + ("config",), provider, problems,
                           unset if not require_secrets else problems)
    # Destination credentials (defaults.snowflake) are resolved by the Snowflake destination
    # (ingest/destinations/snowflake.py: resolve_config); load_project already rejects literal ones.
    if spec:
        _literal_secrets(block.spec.config, spec, base + ("config",), problems)
    # Unset references, literal secrets and unreadable files first: spec errors on half-resolved values would mislead.
    problems.raise_if_any()
    if spec:
        _check_against_spec(block, spec, config, problems, unresolved={path for path, _ in unset.paths})
    problems.raise_if_any()
    if unset.items:
        return unset.items
    block.config = config
    block.resolved = True
    return []


def _missing_files(block: Block, base: tuple, problems: Problems) -> None:
    for key in ("manifest", "components", "overrides"):
        rel = getattr(block.spec, key)
        if rel and not block.path(rel).is_file():
            problems.add(base + (key,), f"file not found: {block.path(rel)}")


def _literal_secrets(raw_config: dict, spec: dict, base: tuple, problems: Problems) -> None:
    """Values of the keys the connector marks secret that are written as they are, not as `${REF}`s."""
    for secret_path in _secret_keys(spec):
        raw = config_value(raw_config, secret_path)
        if isinstance(raw, str) and "${" in raw:
            continue  # a reference (a malformed one is reported by _resolve_refs)
        if literal := literal_secret(raw, "MY_TOKEN"):
            problems.add(base + secret_path, literal)


def _check_against_spec(block: Block, spec: dict, config: dict, problems: Problems, unresolved: set[tuple]) -> None:
    """The resolved config against the connector's JSON schema, each error at its key, in file order."""
    import jsonschema

    s, base = block.spec, ("connectors", block.name)
    try:
        validator_cls = jsonschema.validators.validator_for(spec, default=jsonschema.Draft7Validator)
        validator = validator_cls(spec, format_checker=validator_cls.FORMAT_CHECKER)
        found = [p for err in validator.iter_errors(config) for p in _spec_problems(err)]
    except Exception as exc:  # noqa: BLE001 - a broken spec (SchemaError, unknown type ...) is not the user's crash
        key = "manifest" if s.manifest else ("overrides" if s.overrides else ("source" if s.source else "puller"))
        problems.add(base + (key,), f"the connector's spec is not a valid JSON schema: {type(exc).__name__}")
        found = []
    for path, message in found:  # Problems lists them in file order
        full = base + ("config",) + path
        if any(full[: len(u)] == u for u in unresolved):
            continue  # a value we could not resolve (only in warning mode): its reference is what to fix
        problems.add(full, message)


def config_value(config: dict, path: tuple):
    """The value at `path` in a nested config, or None."""
    for part in path:
        if not isinstance(config, dict):
            return None
        config = config.get(part)
    return config
