"""Airbyte state messages as the destination stores them: one JSON blob per stream (or `__global__`), handed back to
the connector on the next run, and shown by `ingest state show` / the run summary."""
from __future__ import annotations


def state_message_to_dict(message) -> dict:
    from airbyte_cdk.models import AirbyteStateMessageSerializer

    return AirbyteStateMessageSerializer.dump(message)


def state_messages(stored: dict[str, dict], streams: set[str]) -> list:
    from airbyte_cdk.models import AirbyteStateMessageSerializer

    return [AirbyteStateMessageSerializer.load(v) for k, v in stored.items() if k in streams or k == "__global__"]


def stream_state_blob(state: dict | None):
    """The connector's own state (cursor) inside a stored state message, for display."""
    if not state:
        return None
    if state.get("stream"):
        return state["stream"].get("stream_state")
    return state.get("global") or state.get("data")
