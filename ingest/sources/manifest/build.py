"""Building the CDK source from a raw, overridden manifest (`build_declarative_source`): the only place here that
imports ``airbyte_cdk`` (inside the functions, so importing this module stays light).
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from .package import register_package

# Class names a standalone manifest uses for classes of its `components.py` (the CDK's conventions).
_COMPONENT_PREFIXES = ("source_declarative_manifest.components.", "components.")


def _render_config_templates(manifest: dict, config: dict, fallback: int | None = None) -> dict:
    """Render templated ``max_retries`` values (which the CDK does not interpolate) against ``config``.
    With ``fallback``, a template that does not render to a number gets that value instead of an error
    (`in_process_blocker` has no config to render against)."""
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment()

    def render(value: str) -> int:
        rendered = env.from_string(value).render(config=config).strip()
        try:
            return int(float(rendered))
        except ValueError:
            if fallback is not None:
                return fallback
            raise ValueError(f"max_retries template {value!r} rendered to {rendered!r}, not a number") from None

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: render(value) if key == "max_retries" and isinstance(value, str) and "{{" in value
                    else walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(manifest)


def _custom_requesters_without_retries(node: Any, key: str | None = None) -> Any:
    """A copy of a raw manifest with ``disable_retries`` on every custom requester, for a check. The CDK's switch
    (see `build_declarative_source`) reaches only the requesters its factory builds; a custom requester class (asana's
    ``AsanaHttpRequester``, an ``HttpRequester`` subclass) is built from its manifest keys alone and would retry an
    unreachable host 5 times (31 s)."""
    if isinstance(node, dict):
        out = {k: _custom_requesters_without_retries(v, k) for k, v in node.items()}
        if node.get("type") == "CustomRequester" or (key == "requester" and "class_name" in node):
            out["disable_retries"] = True
        return out
    if isinstance(node, list):
        return [_custom_requesters_without_retries(v) for v in node]
    return node


def _load_components_module(components_path: str | Path) -> str:
    """Import a standalone manifest's ``components.py`` under a unique module name; return that name.

    The CDK resolves ``class_name: source_declarative_manifest.components.X`` with ``importlib.import_module``
    (falling back to ``components.X``); its own loader registers the file process-wide as both
    ``components`` and ``source_declarative_manifest.components`` (or execs ``__injected_components_py`` from the
    config, which requires ``AIRBYTE_ENABLE_UNSAFE_CODE=true``). Instead we register the file under a name
    derived from its path and content and rewrite the manifest's class names to it: no env var, and two
    manifests with different components.py files in one process cannot collide.
    """
    path = Path(components_path).resolve()
    source = path.read_bytes()
    digest = hashlib.sha256(str(path).encode() + b"\0" + source).hexdigest()[:16]
    name = f"_ingest_components_{digest}"
    if name in sys.modules:
        return name
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load components module from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: dataclasses look their module up in sys.modules
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return name


def _rewrite_component_class_names(node: Any, module_name: str) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "class_name" and isinstance(value, str):
                for prefix in _COMPONENT_PREFIXES:
                    if value.startswith(prefix):
                        value = f"{module_name}.{value[len(prefix):]}"
                        break
                out[key] = value
            else:
                out[key] = _rewrite_component_class_names(value, module_name)
        return out
    if isinstance(node, list):
        return [_rewrite_component_class_names(v, module_name) for v in node]
    return node


def _uncapped_limits():
    """Connector-builder limits with every cap 0, which the CDK's factory reads as "no cap" (it tests them for truth):
    they turn retries and the response cache off and nothing else."""
    from airbyte_cdk.sources.declarative.concurrent_declarative_source import TestLimits

    return TestLimits(max_records=0, max_pages_per_slice=0, max_slices=0, max_streams=0)


def _import_cdk_keeping_root_logging():
    """ConcurrentDeclarativeSource, imported through containment.import_cdk so the CDK's root-logger takeover at
    import time is undone in exactly one place."""
    from ..containment import import_cdk

    import_cdk()
    from airbyte_cdk.sources.declarative.concurrent_declarative_source import ConcurrentDeclarativeSource

    return ConcurrentDeclarativeSource


def build_declarative_source(
    manifest: dict,
    *,
    catalog,
    config: dict,
    state: list,
    components_path: str | Path | None = None,
    package: tuple[str, str | Path] | None = None,
    for_check: bool = False,
    for_discover: bool = False,
    render_fallback: int | None = None,
):
    """Build an airbyte_cdk ``ConcurrentDeclarativeSource`` from a (raw, already overridden) manifest dict, which
    is not modified (the CDK gets a copy).

    * ``state`` goes to the constructor (state passed only to ``read()`` is ignored by the CDK).
    * ``catalog`` is a ``ConfiguredAirbyteCatalog`` (or None for spec/check/discover).
    * ``package``: ``(module_name, files_dir)`` of a packaged manifest, registered first (`register_package`) so
      its ``source_x.components...`` classes import from that files dir.
    * ``components_path``: optional ``components.py`` for standalone manifests whose custom components are
      named ``source_declarative_manifest.components.X`` / ``components.X`` (see `_load_components_module`).
    * ``for_check``: no HTTP retries and no response cache. The CDK only offers that switch through its
      connector-builder ``limits`` (which also caps pages and slices - harmless for a check, which reads one
      page), and custom requesters need it in the manifest (`_custom_requesters_without_retries`): a check must
      answer in seconds, not after minutes of backoff on an unreachable host.
    * ``for_discover``: no HTTP retries and no response cache either, but no page or slice caps (a dynamic stream
      list or schema spread over pages must come back whole). Discover makes requests only for dynamic streams
      and dynamic schemas (hubspot, google-sheets); static streams are unaffected.
    * OAuth token refreshes retry on their own (5 minutes of backoff, out of reach of both switches); a bounded
      operation runs inside `bounded_requests` for that.
    * templated ``max_retries`` values are rendered against ``config`` first (see the module docstring).

    Build one source per sync. The CDK's HTTP cache for parent streams is process-wide unless
    ``REQUEST_CACHE_PATH`` points at a directory; the HTTP clients read it when streams are created (during
    check/discover/read, not here), so the caller must keep a fresh directory set for the whole sync.
    """
    ConcurrentDeclarativeSource = _import_cdk_keeping_root_logging()
    from airbyte_cdk.sources.declarative.concurrent_declarative_source import TestLimits

    if package is not None:
        register_package(*package)
    source_config = _render_config_templates(manifest, dict(config or {}), render_fallback)
    if for_check or for_discover:
        source_config = _custom_requesters_without_retries(source_config)
    if components_path:
        module_name = _load_components_module(components_path)
        source_config = _rewrite_component_class_names(source_config, module_name)
    return ConcurrentDeclarativeSource(
        catalog=catalog,
        config=config,
        state=state or [],
        source_config=source_config,
        # The CDK's no-retry switch comes only with its connector-builder limits (see `_uncapped_limits`).
        limits=TestLimits() if for_check else _uncapped_limits() if for_discover else None,
    )
