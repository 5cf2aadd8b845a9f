"""Checking OpenLineage events against the official schemas, as far as the installed client knows them.

openlineage-python ships no JSON schema files, so events are checked against the client's generated model instead
(`check_event`): those classes are generated from the official OpenLineage JSON schemas, so each facet's `_schemaURL`
must name one of them, every field the schema requires must be there, nested objects and enums must have the right
shape, and the schema's format checks (UUID runId, date-time eventTime) run on the wire values. Every lineage test
(tests/test_lineage*.py) runs its events through it.
"""
from __future__ import annotations

import enum
import importlib
import pkgutil
import types
import typing

import attr

# facet key -> the generated class its _schemaURL must name (our naming convention, checked on every event)
FACET_KEYS = {
    "schema": "SchemaDatasetFacet", "ownership": ("OwnershipDatasetFacet", "OwnershipJobFacet"),
    "dataSource": "DatasourceDatasetFacet", "outputStatistics": "OutputStatisticsOutputDatasetFacet",
    "inputStatistics": "InputStatisticsInputDatasetFacet", "lifecycleStateChange": "LifecycleStateChangeDatasetFacet",
    "parent": "ParentRunFacet", "errorMessage": "ErrorMessageRunFacet", "processing_engine": "ProcessingEngineRunFacet",
    "tags": "TagsRunFacet", "jobType": "JobTypeJobFacet", "documentation": "DocumentationJobFacet",
}


def _facet_classes() -> dict[str, type]:
    """_schemaURL → generated facet class, for every facet the installed client knows."""
    from openlineage.client import generated
    from openlineage.client.generated.base import BaseFacet

    out: dict[str, type] = {}
    for info in pkgutil.iter_modules(generated.__path__):
        module = importlib.import_module(f"openlineage.client.generated.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and attr.has(obj) and issubclass(obj, BaseFacet) and obj.__module__ == module.__name__:
                out[obj._get_schema()] = obj
    return out


FACET_CLASSES = _facet_classes()


def _check_value(value, hint, path: str, problems: list[str]) -> None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        options = [a for a in args if a is not type(None)]
        hint, origin, args = options[0], typing.get_origin(options[0]), typing.get_args(options[0])
    if hint is typing.Any:
        return
    if origin is list:
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list")
            return
        for i, item in enumerate(value):
            _check_value(item, args[0], f"{path}[{i}]", problems)
    elif origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object")
            return
        for key, item in value.items():
            _check_facet(item, f"{path}.{key}", key, problems) if _is_facet_type(args[1]) else _check_value(item, args[1], f"{path}.{key}", problems)
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        if value not in {m.value for m in hint}:
            problems.append(f"{path}: {value!r} is not one of {[m.value for m in hint]}")
    elif isinstance(hint, type) and attr.has(hint):
        _check_object(value, hint, path, problems)
    elif hint is str:
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string")
    elif hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path}: expected an integer")
    elif hint is bool:
        if not isinstance(value, bool):
            problems.append(f"{path}: expected a boolean")


def _is_facet_type(hint) -> bool:
    from openlineage.client.generated.base import BaseFacet

    return isinstance(hint, type) and issubclass(hint, BaseFacet)


def _check_object(value, cls, path: str, problems: list[str], required_extra: tuple[str, ...] = ()) -> None:
    if not isinstance(value, dict):
        problems.append(f"{path}: expected an object ({cls.__name__})")
        return
    attr.resolve_types(cls)
    fields = {f.name: f for f in attr.fields(cls)}
    for name in required_extra:
        if name not in value:
            problems.append(f"{path}.{name}: required by the spec, missing")
    for name, f in fields.items():
        if name not in value:
            if f.default is attr.NOTHING and f.init:
                problems.append(f"{path}.{name}: required by {cls.__name__}, missing")
            continue
        _check_value(value[name], f.type, f"{path}.{name}", problems)
        if f.validator is not None and value[name] is not None:
            try:
                f.validator(None, f, value[name])  # the schema's format checks (uuid, date-time, uri)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{path}.{name}: {exc}")
    unknown = [k for k in value if k not in fields]
    if unknown:
        problems.append(f"{path}: fields {unknown} are not in {cls.__name__}")


def _check_facet(value, path: str, key: str, problems: list[str]) -> None:
    if not isinstance(value, dict) or "_schemaURL" not in value or "_producer" not in value:
        problems.append(f"{path}: a facet needs _producer and _schemaURL")
        return
    cls = FACET_CLASSES.get(value["_schemaURL"])
    if cls is None:
        problems.append(f"{path}: _schemaURL {value['_schemaURL']} is not a facet schema the client knows")
        return
    expected = FACET_KEYS.get(key)
    if expected and cls.__name__ not in ((expected,) if isinstance(expected, str) else expected):
        problems.append(f"{path}: key {key!r} holds a {cls.__name__}")
    _check_object(value, cls, path, problems, required_extra=("_producer", "_schemaURL"))


def check_event(event: dict) -> list[str]:
    """Problems of one wire event against the OpenLineage RunEvent model (empty when it conforms)."""
    from openlineage.client.generated.base import RunEvent

    problems: list[str] = []
    _check_object(event, RunEvent, "event", problems, required_extra=("eventTime", "producer", "schemaURL", "eventType"))
    if event.get("schemaURL") != RunEvent._get_schema():
        problems.append(f"event.schemaURL: expected {RunEvent._get_schema()}, got {event.get('schemaURL')}")
    return problems
