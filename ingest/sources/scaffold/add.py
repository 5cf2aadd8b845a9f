"""`ingest add`: the connector's newest release (or the one given), its spec and stream names, and the block written
for it (`add_block`).
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

from ... import yamlfile
from ...errors import ConfigError
from ..manifest.package import package_module
from .appending import append_block
from .blocktext import BLOCK_NAME, block_text


def _resolve(root: dict, node: Any, depth: int = 0) -> Any:
    if isinstance(node, str) and node.startswith("#/"):
        node = {"$ref": node}
    if isinstance(node, dict) and isinstance(node.get("$ref"), str) and depth < 30:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        base = _resolve(root, target, depth + 1)
        out = dict(base) if isinstance(base, dict) else {}
        out.update({k: v for k, v in node.items() if k != "$ref"})
        return out
    return node


def manifest_stream_names(manifest: dict | None) -> tuple[list[str], bool]:
    """(the static stream names of a declarative manifest, whether it also generates streams at discover time)."""
    if not isinstance(manifest, dict):
        return [], False
    names = []
    for stream in manifest.get("streams") or []:
        resolved = _resolve(manifest, stream)
        if isinstance(resolved, dict):
            name = resolved.get("name") or (resolved.get("$parameters") or {}).get("name")
            if isinstance(name, str) and name and "{{" not in name:
                names.append(name)
    return list(dict.fromkeys(names)), bool(manifest.get("dynamic_streams"))


def package_manifest(files_dir: Path, module: str) -> dict | None:
    path = Path(files_dir) / module / "manifest.yaml"
    if not path.is_file():
        return None
    return yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


# ---------------------------------------------------------------- ingest add


def parse_connector(connector: str) -> tuple[str, str | None]:
    """`stripe`, `source-stripe`, `airbyte-source-stripe` or `airbyte-source-stripe==5.14.1` → (package, version)."""
    raw = connector.strip().lower()
    name, _, version = raw.partition("==")
    name = name.removeprefix("airbyte-").removeprefix("source-")
    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name):
        raise ConfigError(f"connector {connector!r}: expected a name like 'stripe' or 'airbyte-source-stripe[==5.14.1]'")
    return f"airbyte-source-{name}", version or None


def default_block_name(package: str) -> str:
    name = package.removeprefix("airbyte-source-").replace("-", "_")
    return name if BLOCK_NAME.match(name) else f"source_{name}"


def _existing_names(path: Path) -> tuple[set[str], Path | None]:
    """Block names already in the file, and its defaults.connectors_dir (resolved), read without validating."""
    if not path.exists():
        return set(), None
    try:
        data = yamlfile.load_file(path) or {}
    except yamlfile.YAMLFileError as exc:
        raise ConfigError(f"{exc}; fix it before adding a block") from None
    connectors = data.get("connectors") if isinstance(data, dict) else None
    defaults = data.get("defaults") if isinstance(data, dict) else None
    raw = defaults.get("connectors_dir") if isinstance(defaults, dict) else None
    cache_dir = None
    if raw:
        p = Path(str(raw)).expanduser()
        cache_dir = p if p.is_absolute() else path.parent / p
    return set(connectors) if isinstance(connectors, dict) else set(), cache_dir


def connector_facts(package: str, version: str, cache, *, runtime: str = "auto") -> tuple[dict, dict | None, Path]:
    """(spec, raw manifest or None, files dir) of a release, through `Connector` on a throwaway block (so a spec
    built in code is asked of the connector in its own environment, as `ingest spec` would)."""
    from ...config import load_project
    from ..connector import Connector
    from ..lockfile import LockFile

    with tempfile.TemporaryDirectory(prefix="ingest-add-") as tmp:
        probe = Path(tmp) / "connectors.yaml"
        probe.write_text(yaml.safe_dump({
            "defaults": {"connectors_dir": str(Path(cache.root).resolve())},
            "connectors": {"probe": {"team": "probe", "source": f"{package}=={version}", "runtime": runtime,
                                     "streams": [{"name": "probe"}]}},
        }))
        block = load_project(probe).block("probe")
        connector = Connector(block, lock=LockFile(Path(tmp) / "connectors.lock"), cache=cache, persist=False)
        spec = connector.spec()
        files = connector.files_dir()
    return spec, package_manifest(files, package_module(package)), files


def add_block(project_path: str | Path, connector: str, team: str, *, name: str | None = None,
              streams: list[str] | None = None, notify: Callable[[str], None] | None = None,
              cache=None) -> tuple[str, str]:
    """`ingest add <connector> --team T [--name N] [--stream S ...]`: write a new block for the connector's newest
    release (or the `==version` given) at the end of `connectors:` in `project_path` (created if missing), and
    return (block name, the text written). Streams: the ones given are written active, the others the manifest
    names are listed as comments; a Python connector's streams are only known to `ingest discover`, which needs a
    real config, so then the block says so. The release is pinned in the block (`source: pkg==version`)."""
    from ..environments import ConnectorCache

    path = Path(project_path)
    package, version = parse_connector(connector)
    name = name or default_block_name(package)
    if not BLOCK_NAME.match(name):
        raise ConfigError(f"--name {name!r}: block names are lowercase letters, digits and underscores, starting with a letter")
    if not team or not str(team).strip():
        raise ConfigError("--team: every block has an owning team")
    existing, cache_dir = _existing_names(path)
    if name in existing:
        raise ConfigError(f"{path}: connectors.{name}: a block of that name exists; choose another with --name")
    cache = cache or ConnectorCache(cache_dir, notify=notify)
    version = version or cache.newest(package)
    spec, manifest, _ = connector_facts(package, version, cache)
    known, dynamic = manifest_stream_names(manifest)
    given = list(dict.fromkeys(streams or []))
    if given and known and not dynamic:
        unknown = [s for s in given if s not in known]
        if unknown:
            raise ConfigError(f"--stream: {package}=={version} has no stream {', '.join(map(repr, unknown))} "
                              f"(its manifest names {len(known)}: {', '.join(known[:8])}{' ...' if len(known) > 8 else ''})")
    listed = given + [s for s in known if s not in given]
    text = block_text(name, team, package, version, spec, listed, discovered=False, manifest=manifest,
                      active_streams=given or None, dynamic_streams=dynamic)
    append_block(path, text)
    return name, text
