"""The Airbyte protocol as the runner speaks it: the protocol's own dataclasses, without importing the CDK.

`airbyte_protocol_dataclasses` (the package `airbyte_cdk.models` re-exports) takes ~20 ms and ~3 MB to import;
`airbyte_cdk.models` runs the whole CDK's `__init__` and builds a serializer for every message type up front (~1.2 s
of CPU and ~70 MB of RSS in the runner, measured with `python -X importtime` and ru_maxrss). Only a declarative
manifest run in-process needs the CDK itself; a Python connector in its own environment (the isolated runtime) and
our pullers need nothing but these classes, so an `ingest run` of either never imports it (tests/test_isolated.py).

The enums and the catalog classes are the very objects the CDK uses (`airbyte_cdk.models.Type is Type`), so the sync
loop compares in-process and isolated messages alike. The CDK redeclares the state classes (its `AirbyteStateBlob`
holds the cursor as attributes); here a state blob stays the plain dict it is on the wire, and `state_to_dict`
dumps either kind.

Serializers (serpyco-rs, a CDK dependency) are built per message type on first use (~20-100 ms each; the one for
the whole `AirbyteMessage` union costs ~0.4 s, which is why there is none).
"""
from __future__ import annotations

import functools
from typing import Any

from airbyte_protocol_dataclasses.models import (  # noqa: F401  (re-exported: the runner's one vocabulary)
    AirbyteCatalog,
    AirbyteConnectionStatus,
    AirbyteControlMessage,
    AirbyteLogMessage,
    AirbyteMessage,
    AirbyteRecordMessage,
    AirbyteStateBlob,
    AirbyteStateMessage,
    AirbyteStateType,
    AirbyteStream,
    AirbyteStreamState,
    AirbyteTraceMessage,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteStream,
    ConnectorSpecification,
    DestinationSyncMode,
    Level,
    StreamDescriptor,
    SyncMode,
    TraceType,
    Type,
)

# A message's type → the field that holds its body, and the body's class.
_BODIES = {
    "RECORD": ("record", AirbyteRecordMessage),
    "STATE": ("state", AirbyteStateMessage),
    "LOG": ("log", AirbyteLogMessage),
    "TRACE": ("trace", AirbyteTraceMessage),
    "SPEC": ("spec", ConnectorSpecification),
    "CATALOG": ("catalog", AirbyteCatalog),
    "CONNECTION_STATUS": ("connectionStatus", AirbyteConnectionStatus),
    "CONTROL": ("control", AirbyteControlMessage),
}


@functools.cache
def serializer(cls: type):
    """The serpyco-rs serializer of one protocol class (omitting None on dump, as the CDK's do). A state blob is
    kept as the dict it is: the protocol's own `AirbyteStateBlob` declares no fields and would drop the cursor."""
    from serpyco_rs import CustomType, Serializer

    class _Blob(CustomType):
        def serialize(self, value):
            return dict(value) if isinstance(value, dict) else {k: v for k, v in vars(value).items()}

        def deserialize(self, value):
            return value

        def get_json_schema(self):
            return {"type": "object"}

    return Serializer(cls, omit_none=True, custom_type_resolver=lambda t: _Blob() if t is AirbyteStateBlob else None)


def load_message(data: Any) -> AirbyteMessage:
    """One message from its JSON form (a frame from an isolated connector). Raises ValueError for a message that is
    not a protocol message (no known `type`, or a body that does not fit its class)."""
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in _BODIES:
        raise ValueError(f"not an Airbyte message (type {kind!r})")
    field, cls = _BODIES[kind]
    try:
        body = serializer(cls).load(data.get(field))
    except Exception as exc:  # noqa: BLE001 - serpyco's validation errors: one kind of answer for the caller
        raise ValueError(f"a {kind} message that does not follow the Airbyte protocol: {exc}") from None
    return AirbyteMessage(type=Type(kind), **{field: body})


def state_to_dict(message) -> dict:
    """A STATE message's body as stored (JSON-ready dict), from this module's classes or the CDK's own."""
    if isinstance(message, AirbyteStateMessage):
        return serializer(AirbyteStateMessage).dump(message)
    from airbyte_cdk.models import AirbyteStateMessageSerializer  # an in-process connector's message: the CDK is loaded

    return AirbyteStateMessageSerializer.dump(message)


def catalog_to_dict(catalog) -> dict:
    """A discovered catalog as JSON (`ingest discover --json`)."""
    return serializer(AirbyteCatalog).dump(catalog)


def configured_catalog_to_dict(catalog) -> dict:
    return serializer(ConfiguredAirbyteCatalog).dump(catalog)
