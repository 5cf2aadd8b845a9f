"""One home for "the connector" of a block: which release, where its code lives, which runtime runs it, its spec.

    block (connectors.yaml) ─► release: the block's pin, else connectors.lock, else the newest (then locked)
                            ─► files:   the release's wheel, no dependencies (connectors cache)
                            ─► runtime: in_process when its declarative manifest runs on the runner's CDK,
                                        isolated (own virtualenv, child process) otherwise — or as the block says
                            ─► spec:    spec.json / spec.yaml / the manifest's, else asked of the connector itself
                            ─► Source:  InProcessSource | IsolatedSource | a puller — one protocol for the sync loop

`config` knows nothing of packages; everything about them is here. Building a release's files or environment on
first use is announced through the cache's `notify` (stderr in the CLI), so a slow first run says why it is slow.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import yaml

from ..config import Block, problems_for, resolve_block
from ..errors import ConfigError, IngestError
from ..yamlfile import YAMLFileError
from .environments import ConnectorCache, available_pythons, requires_python, runner_python_version
from .manifest.package import package_module
from .manifest.versions import runner_cdk_version
from .lockfile import LockEntry, LockFile, staleness

log = logging.getLogger("ingest.install")

IN_PROCESS, ISOLATED = "in_process", "isolated"
_SPEC_CACHE = ".ingest-spec.json"  # a connector's own answer to `spec`, kept next to its files


class Connector:
    """The Airbyte connector of a `source:` block. Cheap to build; nothing is fetched until asked."""

    def __init__(self, block: Block, *, lock: LockFile | None = None, cache: ConnectorCache | None = None,
                 notify: Callable[[str], None] | None = None, persist: bool = True):
        if not block.spec.source:
            raise ValueError(f"block {block.name!r} has no 'source:' connector")
        self.block = block
        self.package: str = block.package
        self.module = package_module(self.package)
        self.lock = lock or LockFile.load(block.project.lock_path)
        self.cache = cache or ConnectorCache(block.project.connectors_dir, notify=notify)
        self.persist = persist  # False: resolve and fetch, but leave connectors.lock as it is (`ingest validate`)
        self.overrides: list[str] = list(block.spec.dependency_overrides)
        self._unlocked_version: str | None = None

    # ------------------------------------------------------------ release and runtime

    def stale(self) -> str | None:
        return staleness(self.lock.get(self.block.name), self.package, self.block.pinned_version, self.block.spec.runtime)

    def locked(self) -> LockEntry:
        """The block's lock entry; resolved, fetched and written to connectors.lock on first use."""
        entry = self.lock.get(self.block.name)
        problem = self.stale()
        if problem:
            raise ConfigError(f"{self.lock.path}: block {self.block.name!r}: {problem}; run `ingest install {self.block.name}`")
        return entry or self.install()

    def install(self, *, upgrade: bool = False) -> LockEntry:
        """Resolve the release (pin > lock > newest), fetch its files, choose the runtime, build an environment if
        it runs isolated, and record all of it in connectors.lock."""
        current = self.lock.get(self.block.name)
        version = self.block.pinned_version
        if version is None and current is not None and current.source == self.package and not upgrade:
            version = current.version
        if version is None:
            version = self._newest()
        files = self._fetch(version)
        runtime, reason, cdk = self._choose_runtime(files, version)
        python = self._isolated_python(version, files) if runtime == ISOLATED else None
        if python == runner_python_version():
            python = None  # the runner's own, whichever that is where it runs: the lock names only an exception
        if python:
            reason += f"; on Python {python} (it does not start on the runner's {runner_python_version()})"
        entry = LockEntry(source=self.package, version=version, runtime=runtime, reason=reason, cdk=cdk, python=python)
        if self.lock.set(self.block.name, entry) and self.persist:
            self.lock.save()
            self.cache.notify(f"{self.block.name}: locked {self.package}=={version} ({runtime}) in {self.lock.path.name}")
        return entry

    def _choose_runtime(self, files: Path, version: str) -> tuple[str, str, str | None]:
        from . import manifest as mf

        wanted = self.block.spec.runtime
        release = f"{self.package}=={version}"
        manifest = mf.load_package_manifest(self.module, files)
        if manifest is None:
            if wanted == IN_PROCESS:
                _raise(self.block, ("runtime",), f"{release} is a Python connector (no manifest.yaml); only 'isolated' can run it")
            if self.block.spec.overrides:
                _raise(self.block, ("overrides",), f"{release} is not a declarative connector (it has no manifest.yaml), "
                                                   "so an override file cannot patch it")
            return ISOLATED, "a Python connector: runs in its own environment", None
        cdk = mf.manifest_cdk_version(manifest)
        if wanted == ISOLATED:
            if self.block.spec.overrides:
                _raise(self.block, ("overrides",), "manifest overrides are applied in-process; remove 'runtime: isolated' or the override")
            return ISOLATED, "runtime: isolated (as the block asks)", cdk
        if self.block.spec.overrides:
            manifest = mf.apply_override(manifest, mf.load_yaml_file(self.block.path(self.block.spec.overrides)))
        blocker = mf.in_process_blocker(files, self.module, manifest)
        if blocker is None:
            return IN_PROCESS, f"declarative manifest (CDK {cdk or '?'}) on the runner's CDK {runner_cdk_version()}", cdk
        if wanted == IN_PROCESS or self.block.spec.overrides:
            _raise(self.block, ("runtime" if wanted == IN_PROCESS else "overrides",), f"{release} cannot run in-process: {blocker}")
        return ISOLATED, f"runs in its own environment: {blocker}", cdk

    def _isolated_python(self, version: str, files: Path) -> str:
        """The Python an isolated release runs on: the runner's own when the connector starts there (its `spec`
        answers), else the newest other interpreter on this machine that its Requires-Python allows and that it
        starts on. Old CDKs (before ~0.60) do not import on 3.11 (dataclass defaults), so they need 3.10 or older."""
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        from .isolated import IsolatedSource

        release = f"{self.package}=={version}"
        runner = runner_python_version()
        try:
            allowed = SpecifierSet(requires_python(files, self.package) or "")
        except InvalidSpecifier:
            allowed = SpecifierSet()
        # Older first (a release that fails on the runner's Python is usually too old for it), then newer.
        key = lambda v: tuple(map(int, v.split(".")))  # noqa: E731
        others = sorted((v for v in available_pythons() if key(v) < key(runner)), key=key, reverse=True)
        others += sorted((v for v in available_pythons() if key(v) > key(runner)), key=key)
        candidates = [v for v in [runner, *others] if allowed.contains(f"{v}.0", prereleases=True)]
        if not candidates:
            _raise(self.block, ("source",), f"{release} needs Python {allowed}; this machine has "
                                            f"{', '.join([runner, *others])}")
        tried = []
        for minor in candidates:
            try:
                python = self.cache.ensure_venv(self.package, version, python=minor, overrides=self.overrides)
            except ConfigError as exc:
                if "python" not in str(exc).lower():  # unsatisfiable whatever the Python: say so at the block
                    _raise(self.block, ("source",), str(exc))
                tried.append(f"Python {minor}: {str(exc).splitlines()[0][:300]}")
                continue
            try:
                IsolatedSource(python, self.package, {}, label=self.block.name).spec()
                return minor
            except IngestError as exc:
                why = str(exc).splitlines()[0][:300]
                tried.append(f"Python {minor}: {why}")
                self.cache.remove_venv(self.package, version, python=minor, overrides=self.overrides)
                if minor != candidates[-1]:
                    self.cache.notify(f"{release} does not start on Python {minor} ({why}); trying the next Python")
        _raise(self.block, ("source",), f"{release} does not start on any Python here: " + "; ".join(tried))

    # ------------------------------------------------------------ code

    def version(self) -> str:
        """The release this block runs — without choosing a runtime (which imports the CDK) when nothing is locked
        and the lock is not to be written (`ingest validate` must stay light)."""
        entry = self.lock.get(self.block.name)
        if entry is not None or self.persist or self.stale():
            return self.locked().version
        if self._unlocked_version is None:
            self._unlocked_version = self.block.pinned_version or self._newest()
        return self._unlocked_version

    def files_dir(self) -> Path:
        return self._fetch(self.version())

    def _newest(self) -> str:
        try:
            return self.cache.newest(self.package)
        except ConfigError as exc:  # a name PyPI does not know is a mistake in the block: say where
            _raise(self.block, ("source",), str(exc))

    def _fetch(self, version: str) -> Path:
        try:
            return self.cache.ensure_files(self.package, version)
        except ConfigError as exc:  # a release that does not exist
            _raise(self.block, ("source",), str(exc))

    def python(self) -> Path:
        entry = self.lock.get(self.block.name)
        minor = entry.python if entry is not None and not self.stale() else None
        return self.cache.ensure_venv(self.package, self.version(), python=minor, overrides=self.overrides)

    def spec(self) -> dict:
        """connectionSpecification: from the package's files (with the block's override), else from the connector
        itself (run once in its environment, then kept next to its files)."""
        from . import manifest as mf

        files = self.files_dir()
        manifest = mf.load_package_manifest(self.module, files)
        if manifest is None and self.block.spec.runtime == IN_PROCESS:
            _raise(self.block, ("runtime",), f"{self.package}=={self.version()} is a Python connector (no manifest.yaml); "
                                             "only 'isolated' can run it")
        if manifest is None and self.block.spec.overrides:
            _raise(self.block, ("overrides",), f"{self.package}=={self.version()} is not a declarative connector (it has no "
                                               "manifest.yaml), so an override file cannot patch it")
        if manifest is not None and self.block.spec.overrides:
            manifest = mf.apply_override(manifest, mf.load_yaml_file(self.block.path(self.block.spec.overrides)))
        try:
            return mf.connector_spec(self.module, manifest, files)
        except ValueError:
            pass  # no spec file: the connector builds its spec in code (airbyte-source-s3)
        cached = files / _SPEC_CACHE
        if cached.is_file():
            return json.loads(cached.read_text())
        from .isolated import IsolatedSource

        spec = IsolatedSource(self.python(), self.package, {}, label=self.block.name).spec()
        cached.write_text(json.dumps(spec))
        return spec

    def source(self, check_timeout: float):
        entry = self.locked()
        if entry.runtime == ISOLATED:
            from .isolated import IsolatedSource

            return IsolatedSource(self.python(), self.package, self.block.config, label=self.block.name,
                                  check_timeout=check_timeout)
        from .airbyte import InProcessSource

        return InProcessSource(self.block, self.files_dir(), check_timeout=check_timeout)


# ---------------------------------------------------------------- any block


def block_spec(block: Block, *, connector: Connector | None = None) -> dict | None:
    """The connectionSpecification of any block (None for a puller without one). File problems are reported at the
    key that names them (`file:line: connectors.x.manifest: ...`)."""
    s = block.spec
    if s.puller:
        from .pullers import PULLERS, puller_spec

        if s.puller not in PULLERS:
            known = f"expected one of {', '.join(sorted(PULLERS))}" if PULLERS else "no pullers are available in this version"
            _raise(block, ("puller",), f"unknown puller {s.puller!r}; {known}")
        return puller_spec(s.puller)
    _check_files(block)
    if s.source:
        try:
            return (connector or Connector(block)).spec()
        except IngestError:
            raise
        except Exception as exc:  # noqa: BLE001 - unreadable package files are the block's problem, not a crash
            _raise(block, ("source",), f"cannot read the spec of {s.source}: {_describe(exc)}")
    from . import manifest as mf

    key = "manifest"
    try:
        manifest = mf.load_yaml_file(block.path(s.manifest))
        if s.overrides:
            key = "overrides"
            manifest = mf.apply_override(manifest, mf.load_yaml_file(block.path(s.overrides)))
        key = "manifest"
        spec = mf.connector_spec(None, manifest, None)
    except Exception as exc:  # noqa: BLE001
        path = block.path(getattr(s, key))
        _raise(block, (key,), f"{getattr(s, key)}: {_describe(exc).replace(f'{path}: ', '')}")
    if not isinstance(spec, dict):
        _raise(block, ("manifest",), "the connector's spec is not a mapping")
    return spec


def prepare(block: Block, *, require_secrets: bool = True, connector: Connector | None = None) -> list[str]:
    """Everything `run`/`check` need before connector code runs: the release locked and fetched, secrets resolved,
    the config checked against the connector's spec. Returns warnings (unset secrets when not required)."""
    connector = connector or (Connector(block) if block.spec.source else None)
    spec = block_spec(block, connector=connector)
    warnings = resolve_block(block, spec, require_secrets=require_secrets)
    if spec and not block.spec.puller:
        from .requirements import missing_requirements

        config = block.config if block.resolved else block.spec.config
        errors, maybe = missing_requirements(spec, _block_manifest(block, connector), config)
        problems = problems_for(block.project)
        for path, message in errors:
            problems.add(("connectors", block.name, "config") + path, message)
        problems.raise_if_any()
        warnings += [f"connectors.{block.name}.config.{'.'.join(path)}: {message}" for path, message in maybe]
    return warnings


def _block_manifest(block: Block, connector: Connector | None) -> dict | None:
    """The block's (overridden) declarative manifest, or None for a Python connector."""
    from . import manifest as mf

    s = block.spec
    if connector is not None:
        manifest = mf.load_package_manifest(connector.module, connector.files_dir())
    else:
        manifest = mf.load_yaml_file(block.path(s.manifest))
    if manifest is not None and s.overrides:
        manifest = mf.apply_override(manifest, mf.load_yaml_file(block.path(s.overrides)))
    return manifest


def release_label(block: Block) -> str:
    """What produces a block's rows, as `ingest describe` and _ingest_tables show it: the locked release and its
    runtime (`airbyte-source-jira==4.0.0 (in_process)`), a local manifest (`manifest:widgets.yaml`), or one of our
    pullers with the ingest release it ships in (`puller:truck_pricing (ingest 0.9.0)`)."""
    s = block.spec
    if s.source:
        entry = Connector(block).locked()
        return f"{entry.source}=={entry.version} ({entry.runtime})"
    if s.manifest:
        return f"manifest:{s.manifest}"
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"puller:{s.puller} (ingest {version('ingest')})"
    except PackageNotFoundError:
        return f"puller:{s.puller}"


def make_source(block: Block, *, check_timeout: float = 15.0, warehouse=None):
    """The Source that runs a (prepared) block: a puller, an in-process manifest or an isolated connector.
    `warehouse`: the block destination's read-only `query(sql, params)`, for pullers that read their inputs there."""
    if block.spec.puller:
        from .pullers import load_puller

        return load_puller(block.spec.puller, block, warehouse=warehouse)
    if block.spec.source:
        return Connector(block).source(check_timeout)
    from .airbyte import InProcessSource

    return InProcessSource(block, None, check_timeout=check_timeout)


def _check_files(block: Block) -> None:
    """The files a block names exist and parse, each problem at its own key (before any connector code is read)."""
    from . import manifest as mf

    problems = problems_for(block.project)
    for key in ("manifest", "components", "overrides"):
        rel = getattr(block.spec, key)
        if not rel:
            continue
        path = block.path(rel)
        if not path.is_file():
            problems.add(("connectors", block.name, key), f"file not found: {path}")
        elif key != "components":
            try:
                mf.load_yaml_file(path)
            except Exception as exc:  # noqa: BLE001
                problems.add(("connectors", block.name, key), f"{rel}: {_describe(exc).replace(f'{path}: ', '')}")
    problems.raise_if_any()


def _raise(block: Block, key: tuple, message: str):
    problems = problems_for(block.project)
    problems.add(("connectors", block.name) + key, message)
    problems.raise_if_any()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, YAMLFileError):
        return exc.in_file()
    if isinstance(exc, yaml.YAMLError):
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        return f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}"
    if isinstance(exc, (OSError, UnicodeDecodeError)):
        return f"cannot read it: {type(exc).__name__}: {exc}"
    return str(exc)
