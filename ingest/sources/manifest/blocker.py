"""Can this manifest run on the runner's CDK? (`in_process_blocker`: None, or one line saying why not, and the runner
runs the connector isolated instead.)
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path

from packaging.version import InvalidVersion, Version

from .build import build_declarative_source
from .removed_api import removed_api_problem
from .tree import class_names, component_types
from .versions import manifest_cdk_version, runner_cdk_version


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
    lacks (`removed_api_problem`: gitlab 4.3.7's routers call ``stream_slices()`` on a parent stream, which CDK 7
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
            or removed_api_problem(source.resolved_manifest, module_name, files_dir, manifest, runner))


def _construction_problem(exc: Exception, manifest: dict, runner: str) -> str:
    from jsonschema.exceptions import ValidationError

    prefix = f"the manifest does not validate against CDK {runner}: "
    if not isinstance(exc, ValidationError):
        return prefix + _one_line(f"{type(exc).__name__}: {exc}")
    from airbyte_cdk.sources.declarative.concurrent_declarative_source import get_declarative_component_schema

    known = set(get_declarative_component_schema().get("definitions", {}))
    unknown = sorted(component_types({k: v for k, v in manifest.items() if k != "type"}) - known)
    if unknown:
        names = ", ".join(unknown)
        verb = "is not a known component" if len(unknown) == 1 else "are not known components"
        return prefix + f"{names} {verb}{_written_for(manifest)}"
    cause = exc.__cause__ if isinstance(exc.__cause__, ValidationError) else exc
    return prefix + _validation_detail(cause) + _written_for(manifest)


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
    names = sorted(class_names(used))
    problems = [p for p in (_import_problem(name, runner) for name in names) if p]
    if not problems:
        return None
    more = f" ({len(problems)} of {len(names)} components fail)" if len(problems) > 1 else ""
    return problems[0] + more


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


def _cannot_import_name(exc: ImportError) -> str | None:
    match = re.match(r"cannot import name '([^']+)'", str(exc))
    return match.group(1) if match else None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
