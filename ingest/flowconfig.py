"""connectors.yaml for Metaflow: parsed once at deploy time, self-contained when it runs in a pod.

Metaflow resolves a `Config` when the flow is deployed and ships the value with the code package; pods never read
connectors.yaml again. Blocks refer to other files (manifest overrides, manifests, components), so the parser embeds
their contents under `_files`, and `materialize()` writes the exact same project back to a temp dir at run time —
where the normal `load_project` validates it (line numbers and all). One config format, one validator.

Connector releases are frozen at deploy time too: every `source:` is rewritten to the exact release connectors.lock
names (`airbyte-source-jira==4.0.0`, with its runtime), so a pod runs the code that was tested, whatever PyPI holds
by then. A pod finds that release in its connectors cache (baked into the image by `ingest install`, see
docs/deploy.md) or builds it there at task start.

The flow's decorators read the chosen block through the helpers at the end (`config_expr`): its cron (`@schedule`),
its project name (`@project`) and the CPU and memory of its sync pods (`@resources`).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from . import yamlfile
from .config.problems import format_path, structure_messages
from .config.resources import ResourceSettings
from .errors import ConfigError
from .secrets import REDACTOR

FILES_KEY = "_files"
FILE_KEYS = ("manifest", "components", "overrides")
LOCK_ENV = "INGEST_LOCK_FILE"  # which lock file pins the deployed blocks (default: connectors.lock in base_dir)


def parse_for_flow(text: str, base_dir: str | Path = ".") -> dict:
    """Metaflow Config parser (`parser="ingest.flowconfig.parse_for_flow"`): YAML + the files blocks refer to.
    Relative paths are read from `base_dir` (deploy from the directory that holds connectors.yaml)."""
    data = yamlfile.load(text, Path(base_dir) / "connectors.yaml") or {}  # bounded: alias bombs, deep nesting
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
    _pin_from_lock(data, Path(os.environ.get(LOCK_ENV) or Path(base_dir) / "connectors.lock"))
    return data


def _pin_from_lock(data: dict, lock_path: Path) -> None:
    """Rewrite each `source:` to the release (and runtime) the lock names; refuse to deploy a block whose release
    nothing fixes (neither a pin in the block nor an entry in the lock)."""
    from .sources.lockfile import LockFile

    lock = LockFile.load(lock_path)
    for name, block in (data.get("connectors") or {}).items():
        source = block.get("source") if isinstance(block, dict) else None
        if not isinstance(source, str):
            continue
        package, _, pinned = source.partition("==")
        entry = lock.get(name)
        if entry is None and pinned:
            continue  # the pin fixes the release; the runtime follows from its files, the same on every pod
        if entry is None or entry.source != package or (pinned and entry.version != pinned):
            raise ValueError(
                f"connectors.{name}: {source} is not pinned in {lock_path} (or the lock disagrees): run "
                f"`ingest install {name}` and commit the lock before deploying, so pods run the release you tested"
            )
        block["source"] = f"{package}=={entry.version}"
        block.setdefault("runtime", entry.runtime)


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


def resources_of(connectors, connector) -> dict:
    """The sync step's `@resources(cpu=..., memory=...)` (memory in MB): the chosen block's `resources:`, each key it
    leaves out from DEFAULT_RESOURCES (ingest/config/resources.py).

    Checked by the same model `ingest validate` uses, here too: this runs at deploy time, and a value Metaflow cannot
    use (or one far off, like `memory: 4` meaning GB) must fail the deploy, not every scheduled run."""
    name = connector["name"]
    raw = _plain(pick(connectors, connector).get("resources", {}))
    try:
        return ResourceSettings.model_validate(raw).model_dump()
    except ValidationError as exc:
        where = ("connectors", name, "resources")
        errors = [{**err, "loc": where + tuple(err["loc"])} for err in exc.errors()]
        messages = structure_messages({"connectors": {name: {"resources": raw}}}, errors)
        raise ConfigError([f"{format_path(path)}: {REDACTOR.redact(message)}" for path, message in messages]) from None
