"""The connectors cache: each pinned connector release gets its files, and when it needs one, its own environment.

No single Python environment can hold the newest connectors (they need CDK majors 0-7 and conflicting libraries;
shared/reference/connector-compat.md), so the runner's environment holds none of them. Instead, per release:

    <cache>/files/airbyte-source-jira-4.0.0/source_jira/...      the wheel's files only (`--no-deps`): enough to
                                                                run a declarative manifest on the runner's own CDK
    <cache>/venvs/airbyte-source-faker-7.2.1/bin/python          a virtualenv with the connector and its own deps,
                                                                for connectors that run isolated (a child process)
    <cache>/venvs/airbyte-source-freshdesk-3.1.3-py3.10/...      the same on another Python, for a release that does
                                                                not start on the runner's (old CDKs on 3.11)

Both are built with uv (fast, and one download cache for all environments), into a temporary directory that is
renamed into place when complete — so a build killed half-way leaves nothing that looks usable — under a file lock,
so two runs building the same release wait for each other instead of racing.

The cache directory: `defaults.connectors_dir` in connectors.yaml, else $INGEST_CONNECTORS_DIR, else
$XDG_CACHE_HOME/ingest/connectors (~/.cache/ingest/connectors). Import-light: stdlib only.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ..errors import ConfigError, SyncError

log = logging.getLogger("ingest.install")

_DIST_INFO = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+)\.dist-info$")


def default_cache_dir() -> Path:
    env = os.environ.get("INGEST_CONNECTORS_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "ingest" / "connectors"


def uv_binary() -> str:
    """The uv that ships with the runner (a dependency), else one on the PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
    raise SyncError("uv is not installed: `pip install uv` (the runner builds connector environments with it)")


def runner_python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


_PYTHONS: dict[str, str] | None = None


def available_pythons() -> dict[str, str]:
    """The CPython interpreters on this machine, minor version → executable: the runner's own first, then
    `python3.X` on the PATH, pyenv's versions and uv-managed ones (each asked for its version: a pyenv shim for a
    version that is not active fails and is skipped). Found once per process."""
    global _PYTHONS
    if _PYTHONS is not None:
        return _PYTHONS
    found = {runner_python_version(): getattr(sys, "_base_executable", None) or sys.executable}
    candidates = [shutil.which(f"python3.{minor}") for minor in range(8, 16)]
    pyenv = Path(os.environ.get("PYENV_ROOT") or "~/.pyenv").expanduser() / "versions"
    candidates += sorted(str(p) for p in pyenv.glob("3.*/bin/python3"))
    candidates += sorted(str(p) for p in Path(os.environ.get("UV_PYTHON_INSTALL_DIR") or "~/.local/share/uv/python")
                         .expanduser().glob("cpython-3.*/bin/python3"))
    for exe in filter(None, candidates):
        try:
            out = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True,
                                 text=True, timeout=10, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            continue
        minor = out.stdout.strip()
        if out.returncode == 0 and re.fullmatch(r"3\.\d+", minor):
            found.setdefault(minor, exe)
    _PYTHONS = found
    return found


def requires_python(files: Path, package: str) -> str | None:
    """The release's Requires-Python (from its .dist-info METADATA in its files dir), if it says."""
    version = installed_version(files, package)
    if version is None:
        return None
    for entry in files.iterdir():
        m = _DIST_INFO.match(entry.name)
        if m and m.group("name").lower() == _dist_name(package):
            meta = entry / "METADATA"
            if meta.is_file():
                for line in meta.read_text(encoding="utf-8", errors="replace").splitlines():
                    if line.startswith("Requires-Python:"):
                        return line.partition(":")[2].strip() or None
                    if not line.strip():
                        break  # the headers end at the first blank line
    return None


def _dist_name(package: str) -> str:
    return package.replace("-", "_").lower()


def installed_version(site: Path, package: str) -> str | None:
    """The version of `package` whose .dist-info is in `site` (a --target dir or a site-packages), if any."""
    want = _dist_name(package)
    if not site.is_dir():
        return None
    for entry in site.iterdir():
        m = _DIST_INFO.match(entry.name)
        if m and m.group("name").lower() == want:
            return m.group("version")
    return None


class ConnectorCache:
    """Builds and finds connector files and environments. `notify` hears one line per slow step (first use)."""

    def __init__(self, root: Path | str | None = None, *, notify: Callable[[str], None] | None = None,
                 python: str | None = None):
        self.root = Path(root).expanduser() if root else default_cache_dir()
        self.notify = notify or (lambda line: log.info("%s", line))
        # Connector environments use the runner's Python version (3.11): the packages are built for it.
        self.python = python or getattr(sys, "_base_executable", None) or sys.executable

    # ------------------------------------------------------------ paths

    def files_dir(self, package: str, version: str) -> Path:
        return self.root / "files" / f"{package}-{version}"

    def venv_dir(self, package: str, version: str, python: str | None = None, overrides: Sequence[str] = ()) -> Path:
        """`python`: the minor version ("3.10") when not the runner's own; `overrides`: the block's
        dependency_overrides (another set of requirements is another environment)."""
        suffix = f"-py{python}" if python and python != runner_python_version() else ""
        if overrides:
            suffix += "-o" + hashlib.sha256("\n".join(sorted(overrides)).encode()).hexdigest()[:10]
        return self.root / "venvs" / f"{package}-{version}{suffix}"

    def venv_python(self, package: str, version: str, python: str | None = None, overrides: Sequence[str] = ()) -> Path:
        return self.venv_dir(package, version, python, overrides) / "bin" / "python"

    def has_files(self, package: str, version: str) -> bool:
        return installed_version(self.files_dir(package, version), package) == version

    def has_venv(self, package: str, version: str, python: str | None = None, overrides: Sequence[str] = ()) -> bool:
        return (self.venv_dir(package, version, python, overrides) / ".complete").is_file()

    # ------------------------------------------------------------ building

    def newest(self, package: str) -> str:
        """Resolve the newest release of `package` installable on this Python, and keep its files (that download
        is the resolution: the wheel uv picks *is* the newest compatible release)."""
        self.root.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self.notify(f"resolving the newest release of {package} ...")
        with tempfile.TemporaryDirectory(prefix=".resolve-", dir=self.root) as tmp:
            target = Path(tmp) / "files"
            self._uv(["pip", "install", "--no-deps", "--no-compile", "--target", str(target), package],
                     what=f"resolve the newest release of {package}", config_error=True)
            version = installed_version(target, package)
            if version is None:
                raise SyncError(f"{package}: uv installed no {package} distribution (is it an Airbyte connector?)")
            final = self.files_dir(package, version)
            with self._locked(final):
                if not self.has_files(package, version):
                    shutil.rmtree(final, ignore_errors=True)
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(target, final)
        self.notify(f"{package}: newest release is {version} ({time.monotonic() - started:.1f} s)")
        return version

    def ensure_files(self, package: str, version: str) -> Path:
        """The release's own files, without its dependencies (a declarative manifest runs on the runner's CDK)."""
        final = self.files_dir(package, version)
        if self.has_files(package, version):
            return final
        with self._locked(final):
            if self.has_files(package, version):
                return final
            started = time.monotonic()
            self.notify(f"fetching {package}=={version} (first use) ...")
            with self._building(final) as tmp:
                self._uv(["pip", "install", "--no-deps", "--no-compile", "--target", str(tmp), f"{package}=={version}"],
                         what=f"fetch {package}=={version}", config_error=True)
                self._check_version(tmp, package, version)
            self.notify(f"fetched {package}=={version} in {time.monotonic() - started:.1f} s")
        return final

    def ensure_venv(self, package: str, version: str, python: str | None = None, overrides: Sequence[str] = ()) -> Path:
        """A virtualenv holding exactly `package==version` and its own dependencies, on Python `python` (a minor
        version like "3.10"; default: the runner's own, which the packages are mostly built for), with `overrides`
        replacing the release's own requirements of those packages; returns its python."""
        final = self.venv_dir(package, version, python, overrides)
        exe = self.venv_python(package, version, python, overrides)
        if self.has_venv(package, version, python, overrides):
            return exe
        interpreter = self.python
        if python and python != runner_python_version():
            interpreter = available_pythons().get(python)
            if interpreter is None:
                have = ", ".join(sorted(available_pythons(), key=lambda v: tuple(map(int, v.split(".")))))
                raise SyncError(f"{package}=={version} runs on Python {python} (connectors.lock), which this machine "
                                f"lacks (found: {have}); install it (pyenv, uv python install, or the OS packages)")
        with self._locked(final):
            if self.has_venv(package, version, python, overrides):
                return exe
            started = time.monotonic()
            on = f" on Python {python}" if python and python != runner_python_version() else ""
            self.notify(f"building an environment for {package}=={version}{on} (first use; its own dependencies) ...")
            shutil.rmtree(final, ignore_errors=True)
            final.parent.mkdir(parents=True, exist_ok=True)
            # A venv records its own path in bin/ scripts, so it is built in place and marked complete at the end
            # (a build killed half-way is rebuilt from scratch next time).
            try:
                self._uv(["venv", "--quiet", "--python", interpreter, str(final)], what=f"create a virtualenv for {package}")
                extra = []
                if overrides:
                    (final / ".ingest-overrides.txt").write_text("".join(f"{r}\n" for r in overrides))
                    extra = ["--override", str(final / ".ingest-overrides.txt")]
                self._uv(["pip", "install", "--python", str(final / "bin" / "python"), *extra, f"{package}=={version}"],
                         what=f"install {package}=={version} into its own environment{on}", config_error=True)
                site = next(iter((final / "lib").glob("python*/site-packages")), None)
                if site is None:
                    raise SyncError(f"{package}=={version}: the new environment has no site-packages")
                self._check_version(site, package, version)
                (final / ".complete").write_text(f"{package}=={version}\n")
            except BaseException:
                shutil.rmtree(final, ignore_errors=True)
                raise
            self.notify(f"built the environment for {package}=={version}{on} in {time.monotonic() - started:.1f} s")
        return exe

    def remove_venv(self, package: str, version: str, python: str | None = None, overrides: Sequence[str] = ()) -> None:
        """Drop an environment (one whose connector does not start on that Python: not worth keeping)."""
        final = self.venv_dir(package, version, python, overrides)
        with self._locked(final):
            shutil.rmtree(final, ignore_errors=True)

    # ------------------------------------------------------------ plumbing

    @staticmethod
    def _check_version(site: Path, package: str, version: str) -> None:
        got = installed_version(site, package)
        if got != version:
            raise SyncError(f"asked uv for {package}=={version} but it installed {got or 'nothing'}; refusing to run a different release")

    @contextlib.contextmanager
    def _locked(self, final: Path) -> Iterator[None]:
        lock_path = final.parent / f".{final.name}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes, also when the process dies
            yield

    @contextlib.contextmanager
    def _building(self, final: Path) -> Iterator[Path]:
        """A temporary directory next to `final`, renamed to it when the block succeeds, removed otherwise."""
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        try:
            yield tmp
            shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _uv(self, args: list[str], *, what: str, config_error: bool = False) -> None:
        env = dict(os.environ)
        env.pop("VIRTUAL_ENV", None)  # uv pip would otherwise target the runner's own environment
        env.setdefault("UV_PYTHON_DOWNLOADS", "never")
        proc = subprocess.run([uv_binary(), *args], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            detail = _uv_reason(proc.stderr)
            # uv wraps its explanation to the terminal's width (COLUMNS): match on one line of single spaces.
            stderr = " ".join(proc.stderr.split())
            missing = re.search(r"there is no version of (\S+?)(==\S+?)? and (\S+?) depends on \1", stderr)
            if missing and "--override" not in args:
                detail = (f"{missing.group(3)} requires {missing.group(1)}{missing.group(2) or ''}, which is not on the package "
                          f"index (a packaging mistake in the release?); the block can replace that requirement with "
                          f"dependency_overrides: [\"{missing.group(1)}<a version that exists>\"]")
            elif "not found in the package registry" in stderr:
                detail = "no such package on the package index (connector packages are named like airbyte-source-jira)"
            elif "no version of" in stderr.lower():
                detail = f"no such release on the package index ({detail})"
            message = f"cannot {what}: {detail}"
            raise (ConfigError(message) if config_error and _is_resolution_failure(stderr) else SyncError(message))


def _is_resolution_failure(stderr: str) -> bool:
    text = stderr.lower()
    return any(s in text for s in ("no solution found", "not found in the package registry", "was not found",
                                   "unsatisfiable", "no matching distribution", "because there is no version"))


def _uv_reason(stderr: str) -> str:
    """uv's explanation in a few lines (it prints a resolution tree; the first lines say what conflicts)."""
    lines = [ln.strip(" ╰─▶×") for ln in stderr.splitlines() if ln.strip() and not ln.lstrip().startswith(("Using ", "Resolved", "Prepared", "Installed", "Audited"))]
    text = " ".join(lines[:4]) or "uv failed without saying why"
    return text[:600]
