"""A connector package in a files dir (the connectors cache's unpacked wheel): its import name, its directory, and
registering it so the manifest's ``source_x.components...`` classes import. Nothing is imported here at module level
beyond the stdlib: `ingest validate` reads packages without importing them.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from pathlib import Path


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


# A package registered from a files dir remembers that dir (so registering it again is a no-op).
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
