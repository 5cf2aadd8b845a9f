"""Built-in pullers for APIs without an open-source connector (issue 4: truck pricing, carrier safety).

A puller is a `Puller` (pullers/base.py: a `Source` whose `read()` skeleton is shared, the puller fills in small
hooks) registered here by name; a block selects it with `puller: <name>`.
It speaks the same protocol messages (sources/protocol.py) as an Airbyte connector (RECORD, per-stream STATE at
every checkpoint, LOG), declares its streams (JSON schema, primary key, cursor) in `discover()`, and fails with a
`SyncError` carrying a failure type, so state, destinations, write modes and the CLI treat both the same way.

Nothing here imports the Airbyte CDK (a puller's run needs only the protocol's dataclasses), and nothing at a
puller module's top level imports even those: `ingest validate` reads `puller_spec()` without them. See docs/pullers.md.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any, Callable, Iterable

PULLERS: dict[str, str] = {  # name -> "module:Class"
    "truck_pricing": "ingest.sources.pullers.truck_pricing:TruckPricingPuller",
    "carrier_safety": "ingest.sources.pullers.carrier_safety:CarrierSafetyPuller",
}


def _module_and_class(name: str) -> tuple[str, str]:
    module_name, _, class_name = PULLERS[name].partition(":")
    return module_name, class_name


def puller_spec(name: str) -> dict | None:
    """The puller's connectionSpecification (JSON schema of the block's `config`); None for an unknown name.
    Secret fields are marked `airbyte_secret: true`, so config validation refuses literal values for them."""
    import copy
    import importlib

    if name not in PULLERS:
        return None
    module_name, class_name = _module_and_class(name)
    return copy.deepcopy(getattr(importlib.import_module(module_name), class_name).SPEC)


def load_puller(name: str, block, *, warehouse=None):
    """The puller `name` for a block. `warehouse`: the block destination's read-only `query(sql, params)` (or a
    callable that reaches it once it is open), for pullers that read their inputs from the warehouse."""
    import importlib

    module_name, class_name = _module_and_class(name)
    return getattr(importlib.import_module(module_name), class_name)(block, warehouse=warehouse)


# ---------------------------------------------------------------------------------------------- protocol helpers


def models():
    """The protocol's message classes (sources/protocol.py), imported when a puller first speaks."""
    from .. import protocol

    return protocol


def now_ms() -> int:
    return int(time.time() * 1000)


def record_message(stream: str, data: dict, emitted_at: int | None = None):
    m = models()
    return m.AirbyteMessage(type=m.Type.RECORD, record=m.AirbyteRecordMessage(stream=stream, data=data, emitted_at=emitted_at or now_ms()))


def state_message(stream: str, blob: dict):
    m = models()
    return m.AirbyteMessage(
        type=m.Type.STATE,
        state=m.AirbyteStateMessage(
            type=m.AirbyteStateType.STREAM,
            stream=m.AirbyteStreamState(stream_descriptor=m.StreamDescriptor(name=stream), stream_state=dict(blob)),
        ),
    )


def log_message(message: str, level: str = "INFO"):
    from ...secrets import REDACTOR

    m = models()
    return m.AirbyteMessage(type=m.Type.LOG, log=m.AirbyteLogMessage(level=m.Level(level), message=REDACTOR.redact(message)))


def stream_state(state: Iterable[Any], stream: str) -> dict:
    """The puller's own state blob for `stream` from the stored state messages (JSON dicts) the runner hands to
    read(). Anything else in there (a global state, a malformed entry) is not this stream's."""
    for message in state or []:
        s = message.get("stream") if isinstance(message, dict) else None
        if not isinstance(s, dict) or (s.get("stream_descriptor") or {}).get("name") != stream:
            continue
        blob = s.get("stream_state")
        return dict(blob) if isinstance(blob, dict) else {}
    return {}


def airbyte_stream(name: str, schema: dict, primary_key: list[str], cursor: str | None):
    m = models()
    modes = [m.SyncMode.full_refresh] + ([m.SyncMode.incremental] if cursor else [])
    return m.AirbyteStream(
        name=name, json_schema=schema, supported_sync_modes=modes, source_defined_cursor=bool(cursor),
        default_cursor_field=[cursor] if cursor else None, source_defined_primary_key=[[k] for k in primary_key],
    )


def is_incremental(configured_stream) -> bool:
    mode = configured_stream.sync_mode
    return getattr(mode, "value", mode) == "incremental"


# ---------------------------------------------------------------------------------------------- inputs


def normalize_key(key: Any) -> str:
    return str(key).strip().lower().replace(" ", "_").replace("-", "_")


def read_csv_rows(path: Path) -> list[dict]:
    """A CSV file's rows as dicts with normalized (lowercase, snake_case) column names; '' → None."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        sample = f.read(4096)
        f.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|") if sample else csv.excel
        except csv.Error:
            dialect = csv.excel
        return [{normalize_key(k): (v.strip() or None) if isinstance(v, str) else v for k, v in row.items() if k is not None}
                for row in csv.DictReader(f, dialect=dialect)]


def query_rows(query: Callable[[str, list | None], list[dict]] | None, sql: str, what: str) -> list[dict]:
    """Rows of the block's warehouse query, with normalized column names. A failing query is a config error."""
    from ...errors import SyncError
    from ...secrets import REDACTOR

    if query is None:
        raise SyncError(f"{what}: reading inputs from the warehouse needs the block's destination "
                        "(run it with `ingest run`, which connects it)", failure_type="config_error")
    try:
        rows = query(sql, None)
    except Exception as exc:  # noqa: BLE001 - the user's SQL: report it, do not crash
        raise SyncError(REDACTOR.redact(f"{what}: the warehouse query failed: {type(exc).__name__}: {exc}"),
                        failure_type="config_error") from None
    return [{normalize_key(k): v for k, v in row.items()} for row in rows]
