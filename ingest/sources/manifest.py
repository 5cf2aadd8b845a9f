"""Declarative-manifest plumbing for Airbyte low-code connectors run in-process.

Everything here except `build_declarative_source` is import-light (stdlib + PyYAML): `ingest validate` uses
`package_dir`, `load_package_manifest`, `apply_override` and `connector_spec` and must stay fast, so nothing
here imports `airbyte_cdk` or the connector package at module level.

Override files
--------------
An override is a YAML mapping deep-merged into the connector's RAW packaged manifest (before `$ref`
resolution; see `apply_override`). Two conventions on top of the plain merge:

* A top-level ``spec:`` section extends the connector's spec. Packaged connectors such as
  airbyte-source-jira 4.0.0 keep their spec in ``spec.json`` and have no ``spec`` in the manifest, so an
  override's ``spec: {type: Spec, connection_specification: {properties: {...}}}`` is partial on its own.
  `connector_spec` returns the package's spec file with the manifest's ``spec.connection_specification``
  deep-merged on top (manifest wins), so extra keys an override declares (``base_url`` ...) are part of the
  spec the runner validates configs against.
* A ``max_retries`` anywhere in the manifest may be a Jinja template over ``config`` (e.g.
  ``"{{ config.get('max_retries', 10) }}"``). The CDK types ``max_retries`` as a plain int and does not
  interpolate it, so `build_declarative_source` renders such values against the sync's config before it
  hands the manifest to the CDK. Nothing else is pre-rendered.

Schemas
-------
`load_package_manifest` pins every stream without a ``schema_loader`` to its package's ``schemas/<name>.json``
(`pin_package_schemas`): the CDK's default lookup picks the first ``*source_*`` module in ``sys.modules``, which
in-process is not the connector (``multiprocessing.resource_tracker``), so streams got empty schemas.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "package_dir",
    "load_package_manifest",
    "pin_package_schemas",
    "load_yaml_file",
    "apply_override",
    "connector_spec",
    "build_declarative_source",
]

# Class names a standalone manifest uses for classes of its `components.py` (the CDK's conventions).
_COMPONENT_PREFIXES = ("source_declarative_manifest.components.", "components.")


def package_dir(module_name: str) -> Path:
    """Directory of an installed connector package (e.g. ``source_jira``), found without importing it.

    `importlib.util.find_spec` on a top-level name only locates it; sub-packages (``a.b``) are resolved as
    directories below the top-level package so that no parent ``__init__`` runs either.
    """
    top, *rest = module_name.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None:
        raise ModuleNotFoundError(f"connector package {top!r} is not installed", name=top)
    if spec.submodule_search_locations:
        base = Path(next(iter(spec.submodule_search_locations)))
    elif spec.origin:
        base = Path(spec.origin).parent  # a plain module: its directory
    else:
        raise ModuleNotFoundError(f"cannot locate the files of package {top!r}", name=top)
    path = base.joinpath(*rest)
    if not path.is_dir():
        raise ModuleNotFoundError(f"package directory {path} for {module_name!r} does not exist", name=module_name)
    return path


def load_yaml_file(path: str | Path) -> dict:
    """Parse a YAML file that must hold a mapping (an empty file gives ``{}``)."""
    path = Path(path)
    with path.open("r", encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a YAML mapping at the top level, got {type(data).__name__}")
    return data


def load_package_manifest(module_name: str, *, pin_schemas: bool = True) -> dict | None:
    """The packaged ``manifest.yaml`` of a connector as a raw dict (``$ref``s unresolved), or None.

    With ``pin_schemas`` (the default) every stream that declares no ``schema_loader`` gets an explicit
    ``JsonFileSchemaLoader`` pointing at the package's ``schemas/<stream>.json`` (when that file exists); see
    `pin_package_schemas` for why.
    """
    path = package_dir(module_name) / "manifest.yaml"
    if not path.is_file():
        return None
    manifest = load_yaml_file(path)
    if pin_schemas:
        pin_package_schemas(manifest, module_name)
    return manifest


def _ref_target(root: dict, ref: str) -> Any:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _is_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("#/")


def _effective_key(root: dict, node: Any, key: str, depth: int = 0) -> Any:
    """`key` of a raw manifest node as the CDK will see it after (shallow) ``$ref`` resolution."""
    if depth > 20:
        return None
    if _is_ref(node):
        return _effective_key(root, _ref_target(root, node), key, depth + 1)
    if not isinstance(node, dict):
        return None
    if key in node:
        return node[key]
    if key == "name" and isinstance(node.get("$parameters"), dict) and "name" in node["$parameters"]:
        return node["$parameters"]["name"]
    if "$ref" in node:
        return _effective_key(root, node["$ref"], key, depth + 1)
    return None


def pin_package_schemas(manifest: dict, module_name: str) -> list[str]:
    """Give each stream without a ``schema_loader`` an explicit one reading ``<package>/schemas/<name>.json``.
    Mutates ``manifest``; returns the names of the streams it pinned.

    Why: without a ``schema_loader`` the CDK (6.61) builds a ``DefaultSchemaLoader`` whose file path comes from
    ``json_file_schema_loader._default_file_path()``: the FIRST module in ``sys.modules`` whose name contains
    ``source_``. In a connector's own process that is its package; in ours it is whatever was imported first -
    ``multiprocessing.resource_tracker`` in practice ("re-source_tracker"), so every stream silently got an empty
    schema (untyped columns), and with two connectors in one process one could read the other's
    ``schemas/users.json``. Pinning the path makes the schema independent of import order.

    Streams are the top-level ``streams`` entries and every ``parent_stream_configs[].stream``; a stream given as a
    ``#/definitions/...`` string is pinned on its definition, a dict stream on the dict itself (a key next to
    ``$ref`` wins over the referenced one, as in the CDK). Streams whose schema file does not exist are left alone
    (the CDK then logs "Could not find schema" and uses an empty schema, as before).
    """
    top = module_name.split(".")[0]
    schema_dir = package_dir(module_name) / "schemas"
    prefix = "/".join(module_name.split(".")[1:])
    pinned: list[str] = []
    seen: set[int] = set()

    def pin(node: Any) -> None:
        target = _ref_target(manifest, node) if _is_ref(node) else node
        if not isinstance(target, dict) or id(target) in seen:
            return
        seen.add(id(target))
        if _effective_key(manifest, target, "schema_loader") is not None:
            return
        name = _effective_key(manifest, target, "name")
        if not isinstance(name, str) or not name or "{{" in name or not (schema_dir / f"{name}.json").is_file():
            return
        rel = "/".join(p for p in (prefix, "schemas", f"{name}.json") if p)
        target["schema_loader"] = {"type": "JsonFileSchemaLoader", "file_path": f"./{top}/{rel}"}
        pinned.append(name)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for config in node.get("parent_stream_configs") or []:
                if isinstance(config, dict):
                    pin(config.get("stream"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    if not schema_dir.is_dir():
        return pinned
    for stream in manifest.get("streams") or []:
        pin(stream)
    walk(manifest)
    return pinned


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        out = {k: copy.deepcopy(v) for k, v in base.items()}
        for key, value in override.items():
            if value is None:
                out.pop(key, None)  # explicit null deletes
            elif key in out:
                out[key] = _merge(out[key], value)
            else:
                out[key] = _strip_nulls(value)
        return out
    return _strip_nulls(override)  # lists and scalars replace


def _strip_nulls(value: Any) -> Any:
    """A deep copy of a newly added sub-tree; its null-valued keys are dropped (nothing there to delete)."""
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    return copy.deepcopy(value)


def apply_override(manifest: dict, override: dict) -> dict:
    """Deep-merge ``override`` into the RAW ``manifest`` and return a new dict (inputs are not mutated).

    * dict into dict: merged key by key, recursively;
    * lists and scalars: the override's value replaces the manifest's (lists are never concatenated);
    * an explicit ``null`` value deletes the key (no-op if absent);
    * a key the manifest lacks is added (null-valued keys inside that new sub-tree are dropped).

    Apply it before ``$ref`` resolution: after resolution the ``definitions`` are dead copies. Remember that a
    ``$ref`` merge in the CDK is shallow: a key set next to a ``$ref`` replaces the referenced key wholesale.
    """
    if not isinstance(manifest, dict) or not isinstance(override, dict):
        raise TypeError("apply_override expects two dicts")
    return _merge(manifest, override)


def _load_package_spec_file(module_name: str) -> dict | None:
    base = package_dir(module_name)
    for name in ("spec.json", "spec.yaml", "spec.yml"):
        path = base / name
        if path.is_file():
            if name.endswith(".json"):
                data = json.loads(path.read_text(encoding="utf-8"))
            else:
                data = load_yaml_file(path)
            spec = data.get("connectionSpecification") or data.get("connection_specification")
            if not isinstance(spec, dict):
                raise ValueError(f"{path}: no connectionSpecification mapping")
            return spec
    return None


def connector_spec(module_name: str | None, manifest: dict | None) -> dict:
    """The connector's connectionSpecification (JSON schema of its config), without importing the CDK.

    = the package's ``spec.json``/``spec.yaml`` (if ``module_name`` is given and the file exists), with the
    (overridden) manifest's ``spec.connection_specification`` deep-merged on top by `apply_override` rules.
    So an override that adds ``spec.connection_specification.properties.base_url`` extends the package's spec;
    a manifest that carries a complete spec (manifest-only connectors) works on its own.
    """
    base = _load_package_spec_file(module_name) if module_name else None
    from_manifest = None
    if manifest:
        spec_section = manifest.get("spec")
        if isinstance(spec_section, dict):
            from_manifest = spec_section.get("connection_specification")
    if base is None and from_manifest is None:
        where = f"package {module_name!r}" if module_name else "the manifest"
        raise ValueError(f"no connector spec found in {where} (no spec.json/spec.yaml, no spec.connection_specification)")
    if base is None:
        return copy.deepcopy(from_manifest)
    if from_manifest is None:
        return copy.deepcopy(base)
    return apply_override(base, from_manifest)


# --------------------------------------------------------------------------------------------------------------
# Building the CDK source (the only place that imports airbyte_cdk)


def _render_config_templates(manifest: dict, config: dict) -> dict:
    """Render templated ``max_retries`` values (which the CDK does not interpolate) against ``config``."""
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment()

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "max_retries" and isinstance(value, str) and "{{" in value:
                    rendered = env.from_string(value).render(config=config).strip()
                    try:
                        out[key] = int(float(rendered))
                    except ValueError:
                        raise ValueError(f"max_retries template {value!r} rendered to {rendered!r}, not a number") from None
                else:
                    out[key] = walk(value)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(manifest)


def _load_components_module(components_path: str | Path) -> str:
    """Import a standalone manifest's ``components.py`` under a unique module name; return that name.

    The CDK resolves ``class_name: source_declarative_manifest.components.X`` with ``importlib.import_module``
    (falling back to ``components.X``); its own loader registers the file process-wide as both
    ``components`` and ``source_declarative_manifest.components`` (or execs ``__injected_components_py`` from the
    config, which requires ``AIRBYTE_ENABLE_UNSAFE_CODE=true``). Instead we register the file under a name
    derived from its path and content and rewrite the manifest's class names to it: no env var, and two
    manifests with different components.py files in one process cannot collide.
    """
    path = Path(components_path).resolve()
    source = path.read_bytes()
    digest = hashlib.sha256(str(path).encode() + b"\0" + source).hexdigest()[:16]
    name = f"_ingest_components_{digest}"
    if name in sys.modules:
        return name
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load components module from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: dataclasses look their module up in sys.modules
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return name


def _rewrite_component_class_names(node: Any, module_name: str) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "class_name" and isinstance(value, str):
                for prefix in _COMPONENT_PREFIXES:
                    if value.startswith(prefix):
                        value = f"{module_name}.{value[len(prefix):]}"
                        break
                out[key] = value
            else:
                out[key] = _rewrite_component_class_names(value, module_name)
        return out
    if isinstance(node, list):
        return [_rewrite_component_class_names(v, module_name) for v in node]
    return node


def _import_cdk_keeping_root_logging():
    """ConcurrentDeclarativeSource, imported through containment.import_cdk so the CDK's root-logger takeover at
    import time is undone in exactly one place."""
    from .containment import import_cdk

    import_cdk()
    from airbyte_cdk.sources.declarative.concurrent_declarative_source import ConcurrentDeclarativeSource

    return ConcurrentDeclarativeSource


def build_declarative_source(
    manifest: dict,
    *,
    catalog,
    config: dict,
    state: list,
    components_path: str | None = None,
):
    """Build an airbyte_cdk ``ConcurrentDeclarativeSource`` from a (raw, already overridden) manifest dict.

    * ``state`` goes to the constructor (state passed only to ``read()`` is ignored by the CDK).
    * ``catalog`` is a ``ConfiguredAirbyteCatalog`` (or None for spec/check/discover).
    * ``components_path``: optional ``components.py`` for standalone manifests whose custom components are
      named ``source_declarative_manifest.components.X`` / ``components.X`` (see `_load_components_module`).
      Packaged connectors (``source_jira.components...``) need nothing: their classes import normally.
    * templated ``max_retries`` values are rendered against ``config`` first (see the module docstring).

    Build one source per sync. The CDK's HTTP cache for parent streams is process-wide unless
    ``REQUEST_CACHE_PATH`` points at a directory; the HTTP clients read it when streams are created (during
    check/discover/read, not here), so the caller must keep a fresh directory set for the whole sync.
    """
    ConcurrentDeclarativeSource = _import_cdk_keeping_root_logging()

    source_config = _render_config_templates(manifest, dict(config or {}))
    if components_path:
        module_name = _load_components_module(components_path)
        source_config = _rewrite_component_class_names(source_config, module_name)
    return ConcurrentDeclarativeSource(
        catalog=catalog,
        config=config,
        state=state or [],
        source_config=source_config,
    )
