"""Which CDK: the runner's, the one a manifest was written for, and the one a connector's components were written for.
Read from metadata and files, nothing imported.
"""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

from packaging.version import InvalidVersion, Version


def runner_cdk_version() -> str:
    """The installed airbyte-cdk's version (from its metadata: no import)."""
    return importlib.metadata.version("airbyte-cdk")


def manifest_cdk_version(manifest: dict) -> str | None:
    """The CDK version a manifest was written for (its top-level ``version``), or None when it names none."""
    value = manifest.get("version")
    return str(value).strip() if value not in (None, "") else None


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
