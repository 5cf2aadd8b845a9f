"""Declarative-manifest plumbing for Airbyte low-code connectors run in-process on the runner's own CDK.

Connector packages are not installed in the runner's environment: the connectors cache holds, per release, the
wheel's files only (`ConnectorCache.ensure_files`, a "files dir" containing e.g. ``source_jira/`` and its
dist-info). Every function that reads package files therefore takes that files dir explicitly.

Everything here except `in_process_blocker`, `build_declarative_source`, `bounded_requests` and
`SchemaFile.get_json_schema` is import-light (stdlib, PyYAML, packaging): `ingest validate` reads manifests and
specs and must stay fast, so nothing here imports `airbyte_cdk` or the connector package at module level.

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

Packages and schemas
--------------------
`register_package` makes a files dir's package importable without running its ``__init__.py`` (which imports the
package's Python source and, often, CDK modules that no longer exist), so the manifest's ``source_x.components...``
classes import. `load_package_manifest` pins every stream's schema to an absolute file (`pin_package_schemas`), so
no schema depends on which ``source_*`` module happens to be in ``sys.modules``.
"""
from __future__ import annotations

import ast
import collections.abc
import copy
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import re
import sys
import textwrap
import threading
import typing
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from packaging.version import InvalidVersion, Version

from .. import yamlfile

__all__ = [
    "package_module",
    "package_dir",
    "register_package",
    "load_yaml_file",
    "load_package_manifest",
    "pin_package_schemas",
    "apply_override",
    "connector_spec",
    "runner_cdk_version",
    "manifest_cdk_version",
    "in_process_blocker",
    "components_written_for",
    "build_declarative_source",
    "bounded_requests",
    "repaired_check",
    "static_stream_names",
    "network_needs",
    "SchemaFile",
]

# Class names a standalone manifest uses for classes of its `components.py` (the CDK's conventions).
_COMPONENT_PREFIXES = ("source_declarative_manifest.components.", "components.")


def package_module(package: str) -> str:
    """The import name of a connector distribution: ``airbyte-source-zendesk-support`` -> ``source_zendesk_support``
    (a ``==version`` pin is ignored)."""
    return package.split("==")[0].strip().removeprefix("airbyte-").replace("-", "_")


def package_dir(module_name: str, files_dir: str | Path) -> Path:
    """Directory of ``module_name`` (``source_jira``, or a sub-package ``source_jira.components``) in a files dir.

    Nothing is imported: the files dir is not on ``sys.path`` for `ingest validate`, and a connector's
    ``__init__`` may not even import on the runner's CDK.
    """
    path = Path(files_dir).joinpath(*module_name.split("."))
    if not path.is_dir():
        raise FileNotFoundError(f"{files_dir} holds no package {module_name!r} (no directory {path})")
    return path


# --------------------------------------------------------------------------------------------------------------
# Registering a package from a files dir

_registry_lock = threading.Lock()
_FILES_DIR_ATTR = "__ingest_files_dir__"


def register_package(module_name: str, files_dir: str | Path):
    """Make the top-level package ``module_name`` of ``files_dir`` importable, WITHOUT running its ``__init__.py``;
    return the package module.

    Why not a plain import: the packages' ``__init__`` imports ``source.py``, which imports CDK modules that CDK 7
    removed (and the CDK's own schema loader would import the whole package), while the manifest only needs
    ``source_x.components...`` and the package's data files. So an empty package module is put in ``sys.modules``
    whose ``__path__`` is the package directory: submodules (components, ``source_x.utils``) import normally from
    there. The files dir is also appended to ``sys.path`` (last, so it shadows nothing) for code that looks the
    package's distribution up, e.g. ``importlib.metadata.version``.

    Registering the same dir again is a no-op. Registering another dir (another release of the same connector)
    purges the old package and all its submodules from ``sys.modules`` and its dir from ``sys.path`` first, so a
    block pinned to one release never imports the other's code. Sources already built keep the classes they
    imported; two releases of one connector cannot RUN at the same time in one process (that is what the
    isolated runtime is for).
    """
    if "." in module_name:
        raise ValueError(f"register_package expects a top-level package name, got {module_name!r}")
    files_dir = Path(files_dir).resolve()
    directory = package_dir(module_name, files_dir)
    with _registry_lock:
        current = sys.modules.get(module_name)
        if current is not None and getattr(current, _FILES_DIR_ATTR, None) == str(files_dir):
            return current
        _unregister(module_name, current)
        spec = importlib.util.spec_from_file_location(
            module_name, directory / "__init__.py", submodule_search_locations=[str(directory)])
        module = importlib.util.module_from_spec(spec)
        setattr(module, _FILES_DIR_ATTR, str(files_dir))
        sys.modules[module_name] = module
        sys.path.append(str(files_dir))
        importlib.invalidate_caches()
        return module


def _unregister(module_name: str, current) -> None:
    """Forget a previously registered (or normally imported) package and every submodule of it."""
    for name in [n for n in sys.modules if n == module_name or n.startswith(module_name + ".")]:
        del sys.modules[name]
    old_dir = getattr(current, _FILES_DIR_ATTR, None)
    if old_dir is not None:
        sys.path[:] = [p for p in sys.path if p != old_dir]


# --------------------------------------------------------------------------------------------------------------
# Reading manifests and specs (import-light)


def load_yaml_file(path: str | Path) -> dict:
    """Parse a YAML file that must hold a mapping (an empty file gives ``{}``)."""
    path = Path(path)
    data = yamlfile.load_file(path)  # bounded: an override is user input (alias bombs, deep nesting, encodings)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a YAML mapping at the top level, got {type(data).__name__}")
    return data


def load_package_manifest(module_name: str, files_dir: str | Path, pin_schemas: bool = True) -> dict | None:
    """The packaged ``manifest.yaml`` of a connector as a raw dict (``$ref``s unresolved), or None for a Python
    connector (no manifest). With ``pin_schemas`` every stream's schema is pinned (`pin_package_schemas`)."""
    path = package_dir(module_name, files_dir) / "manifest.yaml"
    if not path.is_file():
        return None
    manifest = load_yaml_file(path)
    if pin_schemas:
        pin_package_schemas(manifest, module_name, files_dir)
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


class SchemaFile:
    """A stream's JSON schema read from an ABSOLUTE file path: the schema loader `pin_package_schemas` puts in
    manifests (as a ``CustomSchemaLoader``).

    Why not the CDK's ``JsonFileSchemaLoader``: it reads ``./source_x/schemas/...`` through whatever module is
    registered as ``source_x`` at the moment a schema is read (lazily, during discover/read), and without a
    ``file_path`` it guesses the package from the first ``*source_*`` module in ``sys.modules`` - in a busy process
    another connector's, or ``multiprocessing.resource_tracker``'s. An absolute path is what the manifest meant,
    whatever else the process has loaded. ``$ref``s to other files resolve against ``<package>/schemas/shared/``
    exactly as in the CDK. Import-light on purpose: the CDK instantiates it by name from this module.

    ``file_path`` may interpolate ``parameters`` and ``config`` (stripe: ``.../{{ parameters['name'] }}.json``).
    """

    file_path: str
    package_path: str
    config: dict
    parameters: dict

    def __init__(self, file_path: str, package_path: str, config: dict | None = None, parameters: dict | None = None):
        self.file_path = file_path
        self.package_path = package_path
        self.config = config or {}
        self.parameters = parameters or {}

    def get_json_schema(self) -> dict:
        import jsonref
        from airbyte_cdk.sources.declarative.interpolation.interpolated_string import InterpolatedString
        from airbyte_cdk.sources.utils.schema_helpers import JsonFileLoader, resolve_ref_links

        path = InterpolatedString.create(self.file_path, parameters=self.parameters).eval(self.config)
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise OSError(f"cannot read the schema file {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise RuntimeError(f"the schema file {path} is not valid JSON: {exc}") from None
        base = self.package_path.rstrip("/") + "/"
        resolved = jsonref.JsonRef.replace_refs(raw, loader=JsonFileLoader(base, "schemas/shared"), base_uri=base)
        return resolve_ref_links(resolved)


def _schema_file_loader(file_path: str, package: Path) -> dict:
    return {"type": "CustomSchemaLoader", "class_name": f"{__name__}.{SchemaFile.__name__}",
            "file_path": file_path, "package_path": str(package)}


_EMPTY_SCHEMA = {"type": "InlineSchemaLoader", "schema": {}}


def pin_package_schemas(manifest: dict, module_name: str, files_dir: str | Path) -> list[str]:
    """Give every stream a schema loader that reads an absolute path (`SchemaFile`); mutates ``manifest`` and
    returns the names of the streams pinned by name to ``<package>/schemas/<name>.json``.

    * A stream without a schema loader, or with a path-less ``JsonFileSchemaLoader`` (zendesk's base stream),
      gets ``schemas/<its name>.json`` when that file exists, else an explicit empty schema - what the CDK's
      default loader gives for a missing file, minus the guess that can pick another connector's
      ``schemas/users.json``.
    * A ``JsonFileSchemaLoader`` naming a path in this package (``./source_x/schemas/...``, maybe templated) is
      rewritten to the same path made absolute.

    Streams are the top-level ``streams`` entries and every ``parent_stream_configs[].stream``; a stream given as a
    ``#/definitions/...`` string is pinned on its definition, a dict stream on the dict itself (a key next to
    ``$ref`` wins over the referenced one, as in the CDK). Streams whose name is templated are left alone.
    """
    package = package_dir(module_name, files_dir).resolve()
    top = module_name.split(".")[0]
    pinned: list[str] = []
    seen: set[int] = set()

    def needs_pin(stream: dict) -> bool:
        loader = _effective_key(manifest, stream, "schema_loader")
        if loader is None:
            return True
        return (_effective_key(manifest, loader, "type") == "JsonFileSchemaLoader"
                and not _effective_key(manifest, loader, "file_path"))

    def pin(node: Any) -> None:
        stream = _ref_target(manifest, node) if _is_ref(node) else node
        if not isinstance(stream, dict) or id(stream) in seen:
            return
        seen.add(id(stream))
        name = _effective_key(manifest, stream, "name")
        if not needs_pin(stream) or not isinstance(name, str) or not name or "{{" in name:
            return
        path = package / "schemas" / f"{name}.json"
        if path.is_file():
            stream["schema_loader"] = _schema_file_loader(str(path), package)
            pinned.append(name)
        else:
            stream["schema_loader"] = copy.deepcopy(_EMPTY_SCHEMA)

    def absolute(node: dict) -> None:
        relative = str(node.get("file_path") or "").removeprefix("./")
        if node.get("type") == "JsonFileSchemaLoader" and relative.startswith(f"{top}/"):
            node.clear()
            node.update(_schema_file_loader(str(Path(files_dir).resolve() / relative), package))

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for config in node.get("parent_stream_configs") or []:
                if isinstance(config, dict):
                    pin(config.get("stream"))
            absolute(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

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


def _load_package_spec_file(module_name: str, files_dir: str | Path) -> dict | None:
    base = package_dir(module_name, files_dir)
    for name in ("spec.json", "spec.yaml", "spec.yml"):
        path = base / name
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8")) if name.endswith(".json") else load_yaml_file(path)
            spec = data.get("connectionSpecification") or data.get("connection_specification")
            if not isinstance(spec, dict):
                raise ValueError(f"{path}: no connectionSpecification mapping")
            return spec
    return None


def connector_spec(module_name: str | None, manifest: dict | None, files_dir: str | Path | None = None) -> dict:
    """The connector's connectionSpecification (JSON schema of its config), without importing anything.

    = the package's ``spec.json``/``spec.yaml`` (if ``module_name`` and ``files_dir`` are given and the file
    exists), with the (overridden) manifest's ``spec.connection_specification`` deep-merged on top by
    `apply_override` rules. So an override that adds ``spec.connection_specification.properties.base_url``
    extends the package's spec; a manifest that carries a complete spec (stripe, standalone manifests) works on
    its own. The CDK's own ``spec()`` cannot do this: without a manifest ``spec`` it looks inside ``airbyte_cdk``,
    and with an override's partial spec it returns only that part.
    """
    base = _load_package_spec_file(module_name, files_dir) if module_name and files_dir else None
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
# Can this manifest run on the runner's CDK?


def runner_cdk_version() -> str:
    """The installed airbyte-cdk's version (from its metadata: no import)."""
    return importlib.metadata.version("airbyte-cdk")


def manifest_cdk_version(manifest: dict) -> str | None:
    """The CDK version a manifest was written for (its top-level ``version``), or None when it names none."""
    value = manifest.get("version")
    return str(value).strip() if value not in (None, "") else None


def _written_for(manifest: dict) -> str:
    """' (it was written for CDK 0.72)', or '' when the manifest does not say."""
    try:
        version = Version(manifest_cdk_version(manifest) or "")
    except InvalidVersion:
        return ""
    return f" (it was written for CDK {version.major}.{version.minor})"


def in_process_blocker(files_dir: str | Path, module_name: str, manifest: dict) -> str | None:
    """None when ``manifest`` (raw, overridden, as it will be built) can run on the runner's CDK; else one line
    saying why not, for the user (the runner then runs the connector isolated, on the CDK it was made for).

    Offline and config-free, so it can run at install time: the manifest's ``version`` must not be newer than the
    runner's CDK, the manifest must pass the CDK's own construction (``$ref`` resolution and validation against
    the CDK's component schema), every ``class_name`` the manifest uses must import from ``files_dir`` (so the
    package is registered, `register_package`), and no used component may call a method the runner's CDK provably
    lacks (`_removed_api_problem`: gitlab 4.3.7's routers call ``stream_slices()`` on a parent stream, which CDK 7
    types as an ``AbstractStream``). That last test is narrow on purpose: it judges only calls whose receiver the
    CDK's own annotations type, so it does not guess, and it cannot prove that a component works (code it cannot
    type passes). ``manifest`` is not modified.
    """
    runner = runner_cdk_version()
    written = manifest_cdk_version(manifest)
    try:
        if written and Version(written) > Version(runner):
            return f"manifest targets CDK {written}, newer than the runner's {runner}"
    except InvalidVersion:
        return f"manifest version {written!r} is not a version number"
    try:
        source = build_declarative_source(manifest, catalog=None, config={}, state=[],
                                          package=(module_name, files_dir), render_fallback=0)
    except Exception as exc:  # noqa: BLE001 - every failure here is a reason to run isolated
        return _construction_problem(exc, manifest, runner)
    return (_component_import_problem(source.resolved_manifest, runner)
            or _removed_api_problem(source.resolved_manifest, module_name, files_dir, manifest, runner))


def _construction_problem(exc: Exception, manifest: dict, runner: str) -> str:
    from jsonschema.exceptions import ValidationError

    prefix = f"the manifest does not validate against CDK {runner}: "
    if not isinstance(exc, ValidationError):
        return prefix + _one_line(f"{type(exc).__name__}: {exc}")
    from airbyte_cdk.sources.declarative.concurrent_declarative_source import get_declarative_component_schema

    known = set(get_declarative_component_schema().get("definitions", {}))
    unknown = sorted(_component_types({k: v for k, v in manifest.items() if k != "type"}) - known)
    if unknown:
        names = ", ".join(unknown)
        verb = "is not a known component" if len(unknown) == 1 else "are not known components"
        return prefix + f"{names} {verb}{_written_for(manifest)}"
    cause = exc.__cause__ if isinstance(exc.__cause__, ValidationError) else exc
    return prefix + _validation_detail(cause) + _written_for(manifest)


def _component_types(node: Any) -> set[str]:
    """Every component ``type`` in a manifest. Component types are CamelCase; JSON-schema types (``object``,
    ``string`` ...) in inline schemas are lower case, so they are not mistaken for components."""
    found: set[str] = set()
    if isinstance(node, dict):
        value = node.get("type")
        if isinstance(value, str) and value[:1].isupper():
            found.add(value)
        for child in node.values():
            found |= _component_types(child)
    elif isinstance(node, list):
        for child in node:
            found |= _component_types(child)
    return found


def _validation_detail(error) -> str:
    """The most specific failure inside a jsonschema error, as 'where: what' (no multi-kilobyte instance reprs)."""
    while error.context:
        error = max(error.context, key=lambda e: len(e.absolute_path))
    where = ".".join(str(p) for p in error.absolute_path) or "the top level"
    what = error.message if len(error.message) <= 160 else f"fails the {error.validator!r} rule"
    return f"{where}: {_one_line(what)}"


def _component_import_problem(resolved: dict, runner: str) -> str | None:
    """Why a ``class_name`` used by the (resolved) manifest does not import, or None. Unused ``definitions`` do
    not count: a broken component nothing uses does not stop the connector."""
    used = {k: v for k, v in resolved.items() if k != "definitions"}
    names = sorted(_class_names(used))
    problems = [p for p in (_import_problem(name, runner) for name in names) if p]
    if not problems:
        return None
    more = f" ({len(problems)} of {len(names)} components fail)" if len(problems) > 1 else ""
    return problems[0] + more


def _class_names(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        value = node.get("class_name")
        if isinstance(value, str):
            found.add(value)
        for child in node.values():
            found |= _class_names(child)
    elif isinstance(node, list):
        for child in node:
            found |= _class_names(child)
    return found


def _import_problem(class_name: str, runner: str) -> str | None:
    module_name, _, attr = class_name.rpartition(".")
    major = Version(runner).major
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name or ""
        if missing.startswith("airbyte_cdk"):
            symbol = _cannot_import_name(exc)
            what = f"{missing}.{symbol}" if symbol else missing
            return f"component {class_name} imports {what} which CDK {major} no longer has"
        if missing and not missing.startswith(module_name.split(".")[0]):
            package = missing.split(".")[0]
            return f"component {class_name} needs the Python package {package!r}, which the runner does not have"
        return f"component {class_name} does not import: {_one_line(str(exc))}"
    except Exception as exc:  # noqa: BLE001 - any error while importing connector code
        return f"component {class_name} fails while importing: {type(exc).__name__}: {_one_line(str(exc))}"
    if not hasattr(module, attr):
        return f"component {class_name}: {module_name} has no {attr}"
    return None


def components_written_for(files_dir: str | Path | None, manifest: dict | None = None) -> str | None:
    """The CDK a connector's Python code (its components) was written for: '4.x' from the package's
    ``Requires-Dist: airbyte-cdk (>=4,<5)``, the specifier itself when it spans several majors, else the manifest's
    ``version`` as 'major.minor', else None. (The manifest's ``version`` says which schema the YAML was written to;
    gitlab 4.3.7's is 0.78.1 while its components need CDK 4.)"""
    from packaging.requirements import InvalidRequirement, Requirement

    for metadata in sorted(Path(files_dir).glob("*.dist-info/METADATA")) if files_dir else []:
        for line in metadata.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            try:
                requirement = Requirement(line.split(":", 1)[1].strip())
            except InvalidRequirement:
                continue
            if requirement.name.lower().replace("_", "-") != "airbyte-cdk" or requirement.marker is not None:
                continue
            return _one_major(requirement.specifier) or str(requirement.specifier) or None
    try:
        version = Version(manifest_cdk_version(manifest or {}) or "")
    except InvalidVersion:
        return None
    return f"{version.major}.{version.minor}"


def _one_major(specifier) -> str | None:
    """'4.x' for '>=4,<5' / '==4.2.0' / '>=4.5.4,<5.0.0'; None when the specifier allows several majors."""
    lows = [Version(s.version) for s in specifier if s.operator in (">=", "==", "~=", ">") and "*" not in s.version]
    highs = [Version(s.version) for s in specifier if s.operator == "<"]
    if not lows:
        return None
    low = max(lows)
    if any(s.operator == "==" for s in specifier) or any(h <= Version(f"{low.major + 1}") for h in highs):
        return f"{low.major}.x"
    return None


# ---- calls to CDK methods that do not exist (a conservative static check of the components' code)


def _removed_api_problem(resolved: dict, module_name: str, files_dir: str | Path, manifest: dict,
                         runner: str) -> str | None:
    """Why a used custom component cannot work on the runner's CDK although it imports, or None: its code calls a
    method on an object whose type the CDK's own annotations give (``self.parent_stream_configs[0].stream`` is an
    ``AbstractStream`` on CDK 7, a ``DeclarativeStream`` with ``stream_slices``/``read_records`` on CDK 4), and
    neither that class nor any CDK subclass of it has the method.

    Sound rather than complete: only expressions typed through ``self``'s annotations (dataclass fields of the CDK
    base classes, attribute and item access, ``for`` loops, comprehensions, conditional expressions, names bound
    once) are judged; anything else (call results, parameters, names bound twice, attributes the component assigns
    itself, classes with ``__getattr__``) is unknown and passes. Slack's components call ``read_records()`` on an
    ``HttpStream`` they build themselves, which is fine on CDK 7 and is not flagged.
    """
    used = {k: v for k, v in resolved.items() if k != "definitions"}
    top = module_name.split(".")[0]
    problems: list[str] = []
    names = sorted(n for n in _class_names(used) if n.split(".")[0] == top)
    for class_name in names:
        owner, _, attr = class_name.rpartition(".")
        cls = getattr(sys.modules.get(owner), attr, None)
        if isinstance(cls, type):
            call = next(iter(_RemovedCalls(cls, top).found()), None)
            if call:
                problems.append(f"component {class_name} calls {call}, which CDK {Version(runner).major} does not have")
    if not problems:
        return None
    written = components_written_for(files_dir, manifest)
    more = f"; {len(problems)} of {len(names)} components do so" if len(problems) > 1 else ""
    return problems[0] + (f" (its components were written for CDK {written}{more})" if written else
                          f" ({more[2:]})" if more else "")


_ANNOTATIONS: dict[type, dict[str, Any]] = {}
_TYPE_CHECKING_NAMES: dict[str, dict[str, Any]] = {}


def _type_checking_names(module) -> dict[str, Any]:
    """Names a module imports only under ``if TYPE_CHECKING:`` (the CDK annotates ``ParentStreamConfig.stream`` as
    the string ``"AbstractStream"`` imported that way), imported for real so annotations can be resolved."""
    name = getattr(module, "__name__", "")
    if name in _TYPE_CHECKING_NAMES:
        return _TYPE_CHECKING_NAMES[name]
    found: dict[str, Any] = {}
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        tree = ast.Module(body=[], type_ignores=[])
    for node in tree.body:
        test = getattr(node, "test", None)
        if not isinstance(node, ast.If) or not (
                (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
                or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")):
            continue
        for statement in node.body:
            if isinstance(statement, ast.ImportFrom) and statement.module and not statement.level:
                for alias in statement.names:
                    try:
                        found[alias.asname or alias.name] = getattr(importlib.import_module(statement.module),
                                                                    alias.name)
                    except Exception:  # noqa: BLE001 - an annotation we cannot resolve is simply unknown
                        pass
    _TYPE_CHECKING_NAMES[name] = found
    return found


def _annotations(cls: type) -> dict[str, Any]:
    """Every annotated attribute of ``cls`` and its bases, resolved (unresolvable ones left out)."""
    if cls in _ANNOTATIONS:
        return _ANNOTATIONS[cls]
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        module = sys.modules.get(klass.__module__)
        namespace = {**_type_checking_names(module), **vars(module)} if module else {}
        for attr, value in vars(klass).get("__annotations__", {}).items():
            if isinstance(value, str):
                try:
                    value = eval(value, namespace)  # noqa: S307 - an annotation string of an imported module
                except Exception:  # noqa: BLE001
                    hints.pop(attr, None)
                    continue
            hints[attr] = value
    _ANNOTATIONS[cls] = hints
    return hints


def _strip_optional(t: Any) -> Any:
    if typing.get_origin(t) is typing.Union:
        args = [a for a in typing.get_args(t) if a is not type(None)]
        return args[0] if len(args) == 1 else None
    return t


def _item_type(t: Any, *, mapping_value: bool) -> Any:
    """The element type of a sequence annotation (``List[X]`` -> X), or the value type of a mapping one."""
    t = _strip_optional(t)
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping) and len(args) == 2:
        return args[1] if mapping_value else args[0]
    if origin in (list, set, frozenset, collections.abc.Sequence, collections.abc.MutableSequence,
                  collections.abc.Iterable, collections.abc.Iterator, collections.abc.Collection) and len(args) == 1:
        return args[0]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return None


def _cdk_class(t: Any) -> type | None:
    t = _strip_optional(t)
    return t if isinstance(t, type) and t.__module__.split(".")[0] == "airbyte_cdk" else None


def _cdk_subclasses(cls: type):
    for sub in cls.__subclasses__():
        if sub.__module__.split(".")[0] == "airbyte_cdk":
            yield sub
            yield from _cdk_subclasses(sub)


def _lacks(cls: type, attr: str) -> bool:
    """True when neither ``cls`` nor a CDK subclass of it has ``attr`` (as a class attribute or a field)."""
    for klass in (cls, *_cdk_subclasses(cls)):
        if hasattr(klass, attr) or attr in _annotations(klass) or hasattr(klass, "__getattr__"):
            return False
    return True


class _RemovedCalls:
    """Walks the methods a component class defines in its own package (not the CDK's) and yields
    'AbstractStream.stream_slices()' for each call `_removed_api_problem` can prove impossible."""

    def __init__(self, cls: type, top: str):
        self.cls = cls
        self.top = top
        self.own = [klass for klass in cls.__mro__ if klass.__module__.split(".")[0] == top]
        # attributes the component defines (methods, properties) or assigns itself: their annotation does not count
        self.overridden: set[str] = {name for klass in self.own for name in vars(klass)}

    def found(self):
        functions = []
        for klass in self.own:
            for value in vars(klass).values():
                function = getattr(value, "__func__", value)
                if not inspect.isfunction(function):
                    continue
                try:
                    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
                except (OSError, TypeError, SyntaxError):
                    continue
                if tree.body and isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
                    functions.append(tree.body[0])
        for function in functions:
            for node in ast.walk(function):
                if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                        and isinstance(node.value, ast.Name) and node.value.id == "self":
                    self.overridden.add(node.attr)
        for function in functions:
            yield from self._function(function)

    def _function(self, function):
        first = function.args.posonlyargs + function.args.args
        if not first or first[0].arg != "self":
            return
        stores: dict[str, int] = {}
        for node in ast.walk(function):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                stores[node.id] = stores.get(node.id, 0) + 1
        self._stores = stores
        found: list[str] = []
        env = {"self": self.cls}
        for statement in function.body:
            self._visit(statement, env, found)
        yield from found

    def _bind(self, target, t, env) -> None:
        if isinstance(target, ast.Name):
            env[target.id] = t if self._stores.get(target.id) == 1 else None
        else:  # tuple targets and the like: every name in it is unknown from here on
            for node in ast.walk(target):
                if isinstance(node, ast.Name):
                    env[node.id] = None

    def _visit(self, node, env, found: list[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            return  # another scope, with its own parameters: not judged
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inner = dict(env)
            for generator in node.generators:
                self._visit(generator.iter, inner, found)
                self._bind(generator.target, _item_type(self._type(generator.iter, inner), mapping_value=False),
                           inner)
                for condition in generator.ifs:
                    self._visit(condition, inner, found)
            for part in ((node.key, node.value) if isinstance(node, ast.DictComp) else (node.elt,)):
                self._visit(part, inner, found)
            return
        if isinstance(node, ast.Assign):
            self._visit(node.value, env, found)
            t = self._type(node.value, env)
            for target in node.targets:
                self._bind(target, t if len(node.targets) == 1 else None, env)
            return
        if isinstance(node, (ast.For, ast.AsyncFor)):
            self._visit(node.iter, env, found)
            self._bind(node.target, _item_type(self._type(node.iter, env), mapping_value=False), env)
            for statement in node.body + node.orelse:
                self._visit(statement, env, found)
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            cls = _cdk_class(self._type(node.func.value, env))
            if cls is not None and _lacks(cls, node.func.attr):
                found.append(f"{cls.__name__}.{node.func.attr}()")
        for child in ast.iter_child_nodes(node):
            self._visit(child, env, found)

    def _type(self, node, env) -> Any:
        """The annotated type of an expression, or None when it cannot be known without running the code."""
        if isinstance(node, ast.Name):
            return env.get(node.id)
        if isinstance(node, ast.Attribute):
            base = _strip_optional(self._type(node.value, env))
            if not isinstance(base, type):
                return None
            if base is self.cls and node.attr in self.overridden:
                return None
            if base is not self.cls and _cdk_class(base) is None:
                return None
            return _annotations(base).get(node.attr)
        if isinstance(node, ast.Subscript):
            mapping = self._type(node.value, env)
            if isinstance(node.slice, ast.Slice):
                return mapping if _item_type(mapping, mapping_value=False) is not None else None
            return _item_type(mapping, mapping_value=True)
        if isinstance(node, ast.IfExp):
            body, orelse = self._type(node.body, env), self._type(node.orelse, env)
            return body if body is not None and body == orelse else None
        if isinstance(node, ast.DictComp):
            inner = dict(env)
            for generator in node.generators:
                self._bind(generator.target, _item_type(self._type(generator.iter, inner), mapping_value=False),
                           inner)
            value = self._type(node.value, inner)
            return typing.Dict[Any, value] if value is not None else None
        if isinstance(node, (ast.ListComp, ast.GeneratorExp)):
            inner = dict(env)
            for generator in node.generators:
                self._bind(generator.target, _item_type(self._type(generator.iter, inner), mapping_value=False),
                           inner)
            element = self._type(node.elt, inner)
            return typing.List[element] if element is not None else None
        return None


def _cannot_import_name(exc: ImportError) -> str | None:
    match = re.match(r"cannot import name '([^']+)'", str(exc))
    return match.group(1) if match else None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------------------------------------------
# Bounded operations (check, discover): no retries in the calling thread, a check that names real streams


_bounded = threading.local()
_switch_lock = threading.Lock()


class BoundedRequests:
    """What `bounded_requests` saw: the last OAuth token refresh that could not connect (the CDK keeps only a
    generic "OAuth access token refresh request failed due to a network error." in a check's answer)."""

    def __init__(self) -> None:
        self.oauth_error: BaseException | None = None


@contextmanager
def bounded_requests() -> Iterator[BoundedRequests]:
    """In the current thread, every HTTP request of the CDK is tried once: no retries, no backoff.

    The CDK's no-retry switch (`build_declarative_source`) reaches only the requesters its factory builds. Two
    other kinds of request retry on their own and made check and discover wait for minutes on an unreachable
    host: OAuth token refreshes (``AbstractOauth2Authenticator._make_handled_request``, ``backoff`` with
    ``max_time=300`` fixed at import: hubspot, google-sheets) and ``HttpClient``s that components and
    authenticators build themselves (github's ``RateLimitedMultipleTokenAuthenticator`` asks ``/rate_limit``
    through its own client, 5 retries with backoff). Both are replaced once, process-wide, by versions that
    behave exactly as before except in a thread inside ``with bounded_requests():``, where they make one attempt
    (and a refresh that cannot connect is noted). Declarative check and discover make their requests in the
    calling thread; a sync's reads (worker threads, no ``bounded_requests``) are never affected.
    """
    _install_retry_switches()
    previous = getattr(_bounded, "seen", None)
    seen = _bounded.seen = BoundedRequests()
    try:
        yield seen
    finally:
        _bounded.seen = previous


def _install_retry_switches() -> None:
    import requests
    from airbyte_cdk.sources.streams.http.http_client import HttpClient
    from airbyte_cdk.sources.streams.http.requests_native_auth.abstract_oauth import AbstractOauth2Authenticator

    with _switch_lock:
        retrying = AbstractOauth2Authenticator.__dict__.get("_make_handled_request")
        once = getattr(retrying, "__wrapped__", None)  # `backoff` keeps the plain function (functools.wraps)
        if retrying is not None and once is not None and not getattr(retrying, "_ingest_switch", False):
            def _make_handled_request(self):
                seen = getattr(_bounded, "seen", None)
                if seen is None:
                    return retrying(self)
                try:
                    return once(self)
                except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                    seen.oauth_error = exc
                    raise

            _make_handled_request._ingest_switch = True
            _make_handled_request.__wrapped__ = once
            AbstractOauth2Authenticator._make_handled_request = _make_handled_request

        max_retries = HttpClient.__dict__.get("_max_retries")
        if isinstance(max_retries, property) and not getattr(max_retries.fget, "_ingest_switch", False):
            configured = max_retries.fget

            def _max_retries(self) -> int:
                return 0 if getattr(_bounded, "seen", None) is not None else configured(self)

            _max_retries._ingest_switch = True
            HttpClient._max_retries = property(_max_retries, doc=max_retries.__doc__)


def static_stream_names(manifest: dict) -> list[str]:
    """The names of a raw manifest's top-level ``streams``, in order (templated names left out; dynamic streams
    have no name before they are resolved against the API)."""
    names = []
    for stream in manifest.get("streams") or []:
        name = _effective_key(manifest, stream, "name")
        if isinstance(name, str) and name and "{{" not in name:
            names.append(name)
    return names


def repaired_check(manifest: dict, prefer: list[str] | tuple[str, ...] = ()) -> tuple[dict, str | None]:
    """The manifest with its ``CheckStream`` made to check something, and a note on what was changed (or None).

    * A stream name that matches no stream exactly but exactly one case-insensitively is replaced by that stream
      (zendesk-support 4.9.1 checks ``Tags``; the stream is ``tags``). No CDK ever matched loosely: the package's
      own Python ``check_connection`` replaced the manifest's check, so the typo never ran.
    * A check naming no stream at all (github 2.7.1: ``stream_names: []``; its Python check resolved the
      repositories instead) would "succeed" without a single request. It checks the first of ``prefer`` (the
      block's streams) that the manifest defines statically, else the manifest's first stream.

    Other checks (``CheckDynamicStream``, dynamic stream configs, names that fit nothing) are left as they are.
    ``manifest`` is not modified.
    """
    check = manifest.get("check")
    resolved = _ref_target(manifest, check["$ref"]) if isinstance(check, dict) and _is_ref(check.get("$ref")) else None
    merged = {**(resolved if isinstance(resolved, dict) else {}), **(check if isinstance(check, dict) else {})}
    merged.pop("$ref", None)
    if merged.get("type", "CheckStream") != "CheckStream" or merged.get("dynamic_streams_check_configs"):
        return manifest, None
    wanted = merged.get("stream_names")
    if not isinstance(wanted, list):
        return manifest, None
    streams = static_stream_names(manifest)
    if not streams:
        return manifest, None
    if not wanted:
        chosen = next((name for name in prefer if name in streams), streams[0])
        names, note = [chosen], f"the manifest's check names no stream; checking stream {chosen!r}"
    else:
        names, changed = [], []
        for name in wanted:
            matches = [s for s in streams if isinstance(name, str) and s.lower() == name.lower()]
            if name not in streams and len(matches) == 1:
                changed.append(f"{name!r} as {matches[0]!r}")
                name = matches[0]
            names.append(name)
        if not changed:
            return manifest, None
        note = f"the manifest's check names stream {', '.join(changed)}"
    return {**manifest, "check": {**merged, "stream_names": names}}, note


def network_needs(manifest: dict) -> str | None:
    """What discover asks the API for: "dynamic streams" (a ``dynamic_streams`` section: hubspot's custom objects,
    google-sheets' sheets), "dynamic schemas" (a ``DynamicSchemaLoader`` on a static stream), or None when discover
    needs no network."""
    if manifest.get("dynamic_streams"):
        return "dynamic streams"
    if "DynamicSchemaLoader" in _component_types({k: v for k, v in manifest.items() if k != "type"}):
        return "dynamic schemas"
    return None


# --------------------------------------------------------------------------------------------------------------
# Building the CDK source (the only place that imports airbyte_cdk)


def _render_config_templates(manifest: dict, config: dict, fallback: int | None = None) -> dict:
    """Render templated ``max_retries`` values (which the CDK does not interpolate) against ``config``.
    With ``fallback``, a template that does not render to a number gets that value instead of an error
    (`in_process_blocker` has no config to render against)."""
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment()

    def render(value: str) -> int:
        rendered = env.from_string(value).render(config=config).strip()
        try:
            return int(float(rendered))
        except ValueError:
            if fallback is not None:
                return fallback
            raise ValueError(f"max_retries template {value!r} rendered to {rendered!r}, not a number") from None

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: render(value) if key == "max_retries" and isinstance(value, str) and "{{" in value
                    else walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(manifest)


def _custom_requesters_without_retries(node: Any, key: str | None = None) -> Any:
    """A copy of a raw manifest with ``disable_retries`` on every custom requester, for a check. The CDK's switch
    (see `build_declarative_source`) reaches only the requesters its factory builds; a custom requester class (asana's
    ``AsanaHttpRequester``, an ``HttpRequester`` subclass) is built from its manifest keys alone and would retry an
    unreachable host 5 times (31 s)."""
    if isinstance(node, dict):
        out = {k: _custom_requesters_without_retries(v, k) for k, v in node.items()}
        if node.get("type") == "CustomRequester" or (key == "requester" and "class_name" in node):
            out["disable_retries"] = True
        return out
    if isinstance(node, list):
        return [_custom_requesters_without_retries(v) for v in node]
    return node


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


def _uncapped_limits():
    """Connector-builder limits with every cap 0, which the CDK's factory reads as "no cap" (it tests them for truth):
    they turn retries and the response cache off and nothing else."""
    from airbyte_cdk.sources.declarative.concurrent_declarative_source import TestLimits

    return TestLimits(max_records=0, max_pages_per_slice=0, max_slices=0, max_streams=0)


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
    components_path: str | Path | None = None,
    package: tuple[str, str | Path] | None = None,
    for_check: bool = False,
    for_discover: bool = False,
    render_fallback: int | None = None,
):
    """Build an airbyte_cdk ``ConcurrentDeclarativeSource`` from a (raw, already overridden) manifest dict, which
    is not modified (the CDK gets a copy).

    * ``state`` goes to the constructor (state passed only to ``read()`` is ignored by the CDK).
    * ``catalog`` is a ``ConfiguredAirbyteCatalog`` (or None for spec/check/discover).
    * ``package``: ``(module_name, files_dir)`` of a packaged manifest, registered first (`register_package`) so
      its ``source_x.components...`` classes import from that files dir.
    * ``components_path``: optional ``components.py`` for standalone manifests whose custom components are
      named ``source_declarative_manifest.components.X`` / ``components.X`` (see `_load_components_module`).
    * ``for_check``: no HTTP retries and no response cache. The CDK only offers that switch through its
      connector-builder ``limits`` (which also caps pages and slices - harmless for a check, which reads one
      page), and custom requesters need it in the manifest (`_custom_requesters_without_retries`): a check must
      answer in seconds, not after minutes of backoff on an unreachable host.
    * ``for_discover``: no HTTP retries and no response cache either, but no page or slice caps (a dynamic stream
      list or schema spread over pages must come back whole). Discover makes requests only for dynamic streams
      and dynamic schemas (hubspot, google-sheets); static streams are unaffected.
    * OAuth token refreshes retry on their own (5 minutes of backoff, out of reach of both switches); a bounded
      operation runs inside `bounded_requests` for that.
    * templated ``max_retries`` values are rendered against ``config`` first (see the module docstring).

    Build one source per sync. The CDK's HTTP cache for parent streams is process-wide unless
    ``REQUEST_CACHE_PATH`` points at a directory; the HTTP clients read it when streams are created (during
    check/discover/read, not here), so the caller must keep a fresh directory set for the whole sync.
    """
    ConcurrentDeclarativeSource = _import_cdk_keeping_root_logging()
    from airbyte_cdk.sources.declarative.concurrent_declarative_source import TestLimits

    if package is not None:
        register_package(*package)
    source_config = _render_config_templates(manifest, dict(config or {}), render_fallback)
    if for_check or for_discover:
        source_config = _custom_requesters_without_retries(source_config)
    if components_path:
        module_name = _load_components_module(components_path)
        source_config = _rewrite_component_class_names(source_config, module_name)
    return ConcurrentDeclarativeSource(
        catalog=catalog,
        config=config,
        state=state or [],
        source_config=source_config,
        # The CDK's no-retry switch comes only with its connector-builder limits (see `_uncapped_limits`).
        limits=TestLimits() if for_check else _uncapped_limits() if for_discover else None,
    )
