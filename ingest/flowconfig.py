"""connectors.yaml for Metaflow: parsed once at deploy time, self-contained when it runs in a pod.

Metaflow resolves a `Config` when the flow is deployed and ships the value with the code package; pods never read
connectors.yaml again. Blocks refer to other files (manifest overrides, manifests, components), so the parser embeds
their contents under `_files`, and `materialize()` writes the exact same project back to a temp dir at run time —
where the normal `load_project` validates it (line numbers and all). One config format, one validator.
"""
from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml

FILES_KEY = "_files"
FILE_KEYS = ("manifest", "components", "overrides")


def parse_for_flow(text: str, base_dir: str | Path = ".") -> dict:
    """Metaflow Config parser (`parser="ingest.flowconfig.parse_for_flow"`): YAML + the files blocks refer to.
    Relative paths are read from `base_dir` (deploy from the directory that holds connectors.yaml)."""
    data = yaml.safe_load(text) or {}
    files: dict[str, str] = {}
    for name, block in (data.get("connectors") or {}).items():
        if not isinstance(block, dict):
            continue
        for key in FILE_KEYS:
            rel = block.get(key)
            if isinstance(rel, str) and not Path(rel).is_absolute():
                path = Path(base_dir) / rel
                if not path.is_file():
                    # Fail the deploy, not every scheduled run: pods never see the repository.
                    raise FileNotFoundError(
                        f"connectors.{name}.{key}: {rel} not found under {Path(base_dir).resolve()} "
                        "(run from the directory that holds connectors.yaml)"
                    )
                files[rel] = path.read_text()
    data[FILES_KEY] = files
    return data


def materialize(data: dict, where: str | Path | None = None, data_dir: str | Path = ".") -> Path:
    """Write the config (and its embedded files) to a directory; returns the connectors.yaml path to load.
    DuckDB paths stay relative to `data_dir` (the task's working directory), not to the temp dir."""
    root = Path(where or tempfile.mkdtemp(prefix="ingest-flow-config-"))
    for rel, content in (data.get(FILES_KEY) or {}).items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    clean = _plain({k: v for k, v in data.items() if k != FILES_KEY})
    data_dir = Path(data_dir).resolve()
    duck = (clean.setdefault("defaults", {}) or {}).setdefault("duckdb", {})
    duck["path"] = str(data_dir / duck.get("path", "warehouse.duckdb"))
    for block in (clean.get("connectors") or {}).values():
        dest = block.get("destination") if isinstance(block, dict) else None
        if isinstance(dest, dict) and dest.get("path"):
            dest["path"] = str(data_dir / dest["path"])
    path = root / "connectors.yaml"
    path.write_text(yaml.safe_dump(clean, sort_keys=False))
    return path


def _plain(value):
    """Metaflow hands configs over as immutable ConfigValue mappings: copy into plain dicts/lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def pick(connectors, connector) -> dict:
    """The selected block (used by the flow's decorators through config_expr)."""
    return connectors["connectors"][connector["name"]]


def project_name(connector) -> str:
    """Each block deploys as its own Metaflow project: ingest_<block>."""
    return f"ingest_{connector['name']}"


def schedule_of(connectors, connector) -> str:
    return pick(connectors, connector).get("schedule") or "0 0 * * *"
