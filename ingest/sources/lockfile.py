"""connectors.lock: the exact connector release (and runtime) each block runs, so every machine and pod runs the
same code.

`ingest install` (or the first command that needs a block's connector) writes it next to connectors.yaml; commit it.
A block that pins its release (`source: airbyte-source-stripe==5.14.1`) is locked to that pin; an unpinned block is
locked to the newest release at install time until `ingest install --upgrade`. Import-light: PyYAML only.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from ..errors import ConfigError

HEADER = (
    "# Written by `ingest install`: the exact connector release and runtime of each block in {config}.\n"
    "# Commit it: every machine and every pod runs these releases. Change a release with `ingest install --upgrade`\n"
    "# or a pin in {config} (source: airbyte-source-x==1.2.3).\n"
)
FORMAT = 1


@dataclass
class LockEntry:
    source: str  # the PyPI package, without a pin
    version: str  # the exact release
    runtime: str  # in_process | isolated
    reason: str  # why this runtime, in words a user understands
    cdk: str | None = None  # the manifest's CDK version (declarative connectors)
    python: str | None = None  # isolated: the Python (minor version) its environment runs on


class LockFile:
    """The lock entries of one connectors.yaml. Reading never fails on a missing file (nothing is locked yet)."""

    def __init__(self, path: Path, entries: dict[str, LockEntry] | None = None):
        self.path = Path(path)
        self.entries: dict[str, LockEntry] = entries or {}

    @classmethod
    def load(cls, path: Path) -> "LockFile":
        path = Path(path)
        if not path.is_file():
            return cls(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            blocks = data.get("blocks") or {}
            entries = {name: LockEntry(**{k: v for k, v in entry.items() if k in LockEntry.__dataclass_fields__})
                       for name, entry in blocks.items()}
        except Exception as exc:  # noqa: BLE001 - a hand-edited lock is a config problem
            raise ConfigError(f"{path}: not a valid lock file ({type(exc).__name__}: {exc}); delete it and run `ingest install`") from None
        return cls(path, entries)

    def get(self, block: str) -> LockEntry | None:
        return self.entries.get(block)

    def set(self, block: str, entry: LockEntry) -> bool:
        """Record `entry`; True when that changed the file's content."""
        if self.entries.get(block) == entry:
            return False
        self.entries[block] = entry
        return True

    def save(self) -> None:
        """Write atomically (a reader never sees half a file), blocks in name order for stable diffs."""
        body = {"format": FORMAT, "blocks": {name: _compact(asdict(self.entries[name])) for name in sorted(self.entries)}}
        text = HEADER.format(config=self.path.with_suffix(".yaml").name) + yaml.safe_dump(body, sort_keys=False, width=200)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _compact(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if v is not None}


def staleness(entry: LockEntry | None, package: str, pinned: str | None, runtime: str) -> str | None:
    """Why a lock entry no longer matches its block (None when it does). A missing entry is not stale: the
    block resolves and locks its release on first use."""
    if entry is None:
        return None
    if entry.source != package:
        return f"the lock names {entry.source}=={entry.version}, the block now names {package}"
    if pinned and entry.version != pinned:
        return f"the block pins {package}=={pinned}, the lock has {entry.version}"
    if runtime != "auto" and entry.runtime != runtime:
        return f"the block asks for runtime {runtime}, the lock has {entry.runtime}"
    return None
