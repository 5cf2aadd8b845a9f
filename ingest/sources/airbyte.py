"""Airbyte connectors in-process: a PyPI package (`source: airbyte-source-jira`) or a declarative manifest file.

A fresh source instance is built per operation (the CDK's concurrent queue and thread pool are per instance), with
the state passed to the constructor (declarative sources ignore state given only to `read()`), inside
`contained()` so connector side effects stay inside the sync.
"""
from __future__ import annotations

import copy
import importlib
import inspect
import logging
from typing import Any, Iterator

from ..config import Block, connector_spec_for, package_module
from ..errors import SyncError
from ..secrets import REDACTOR
from . import manifest as mf
from .base import Source
from .containment import contained

log = logging.getLogger("ingest.source")


def _failure(exc: BaseException, trace_error: Any | None, stream: str | None = None) -> SyncError:
    """Turn whatever the connector raised into one clear, redacted message with its failure type."""
    from airbyte_cdk.utils.traced_exception import AirbyteTracedException

    failure_type = None
    message = None
    if trace_error is not None:
        failure_type = getattr(trace_error.failure_type, "value", trace_error.failure_type)
        message = trace_error.message or trace_error.internal_message
        if trace_error.internal_message and (message or "").startswith("Something went wrong in the connector"):
            message = trace_error.internal_message  # the generic text hides the cause (e.g. "Service unavailable")
    if isinstance(exc, AirbyteTracedException):
        failure_type = failure_type or getattr(exc.failure_type, "value", exc.failure_type)
        # "Concurrent read failure" is a wrapper; the trace message says what actually went wrong.
        message = message or exc.message or exc.internal_message
    if not message:
        message = f"{type(exc).__name__}: {exc}"
    return SyncError(REDACTOR.redact(message), failure_type=failure_type, stream=stream)


class AirbyteSource(Source):
    def __init__(self, block: Block):
        self.block = block
        self._manifest: dict | None = None

    # ------------------------------------------------------------ building

    def _declarative_manifest(self) -> dict | None:
        """The (overridden) manifest when we must build the source from a manifest, else None."""
        s = self.block.spec
        if self._manifest is None:
            # Declarative packages are always built from their manifest (even without overrides): the stock loader
            # finds stream schemas by guessing the package from sys.modules, which fails in a busy process.
            manifest = mf.load_yaml_file(self.block.path(s.manifest)) if s.manifest else mf.load_package_manifest(package_module(s.source))
            if manifest is None:
                if s.overrides:
                    raise SyncError(f"{s.source}: 'overrides' needs a declarative connector, and this package has no manifest.yaml")
                return None
            if s.overrides:
                manifest = mf.apply_override(manifest, mf.load_yaml_file(self.block.path(s.overrides)))
            self._manifest = manifest
        return self._manifest

    def _source_class(self):
        from airbyte_cdk.sources.source import BaseSource

        module_name = package_module(self.block.spec.source)
        module = importlib.import_module(module_name)
        candidates = [
            obj
            for name, obj in vars(module).items()
            if inspect.isclass(obj) and name.startswith("Source") and issubclass(obj, BaseSource)
            and obj.__module__.startswith(module_name)
        ]
        if len(candidates) != 1:
            raise SyncError(f"{self.block.spec.source}: expected one Source class in {module_name}, found {len(candidates)}")
        return candidates[0]

    def _build(self, catalog=None, state=None):
        config = copy.deepcopy(self.block.config)  # some connectors mutate their config
        manifest = self._declarative_manifest()
        if manifest is not None:
            return mf.build_declarative_source(
                copy.deepcopy(manifest), catalog=catalog, config=config, state=state or [],
                components_path=str(self.block.path(self.block.spec.components)) if self.block.spec.components else None,
            ), config
        cls = self._source_class()
        params = inspect.signature(cls.__init__).parameters
        if {"catalog", "config", "state"} <= set(params):
            return cls(catalog=catalog, config=config, state=state or []), config
        return cls(), config

    # ------------------------------------------------------------ protocol

    def spec(self) -> dict:
        return connector_spec_for(self.block) or {}

    def check(self) -> tuple[bool, str | None]:
        with contained():
            try:
                source, config = self._build()
                status = source.check(logging.getLogger("airbyte"), config)
            except Exception as exc:  # noqa: BLE001 - reported as a failed check, not a stack trace
                return False, str(_failure(exc, None))
        ok = getattr(status.status, "value", status.status) == "SUCCEEDED"
        return ok, None if ok else REDACTOR.redact(status.message or "check failed")

    def discover(self):
        with contained():
            try:
                source, config = self._build()
                return source.discover(logging.getLogger("airbyte"), config)
            except Exception as exc:  # noqa: BLE001
                raise _failure(exc, None) from None

    def read(self, catalog, state: list) -> Iterator[Any]:
        from airbyte_cdk.models import TraceType, Type

        first_error = None
        with contained():
            try:
                source, config = self._build(catalog, state)
                for message in source.read(logging.getLogger("airbyte"), config, catalog, state):
                    if message.type == Type.TRACE and message.trace.type == TraceType.ERROR and first_error is None:
                        first_error = message.trace.error
                    yield message
            except SyncError:
                raise
            except Exception as exc:  # noqa: BLE001
                stream = None
                if first_error is not None and first_error.stream_descriptor is not None:
                    stream = first_error.stream_descriptor.name
                raise _failure(exc, first_error, stream) from None
        if first_error is not None:
            raise _failure(RuntimeError("the connector reported an error"), first_error)
