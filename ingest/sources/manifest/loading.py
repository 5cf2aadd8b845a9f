"""Reading a connector's manifest and spec from its files dir or from a file (import-light: stdlib, PyYAML).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from ... import yamlfile
from .package import package_dir
from .schemas import pin_package_schemas
from .tree import apply_override


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
