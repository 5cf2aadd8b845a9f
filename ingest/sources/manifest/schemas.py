"""Pinning every stream of a packaged manifest to its schema file by ABSOLUTE path (`pin_package_schemas`, through
the `SchemaFile` loader), so no schema depends on which ``source_*`` module happens to be in ``sys.modules``.
Import-light: the CDK is imported only when a schema is read (`SchemaFile.get_json_schema`).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from .package import package_dir
from .tree import effective_key, is_ref, ref_target


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


def _needs_pin(manifest: dict, stream: dict) -> bool:
    """No schema loader, or a path-less ``JsonFileSchemaLoader`` (the CDK would guess the package)."""
    loader = effective_key(manifest, stream, "schema_loader")
    if loader is None:
        return True
    return (effective_key(manifest, loader, "type") == "JsonFileSchemaLoader"
            and not effective_key(manifest, loader, "file_path"))


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

    def pin(node: Any) -> None:
        stream = ref_target(manifest, node) if is_ref(node) else node
        if not isinstance(stream, dict) or id(stream) in seen:
            return
        seen.add(id(stream))
        name = effective_key(manifest, stream, "name")
        if not _needs_pin(manifest, stream) or not isinstance(name, str) or not name or "{{" in name:
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
