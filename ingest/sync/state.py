"""Airbyte state messages as the destination stores them: one JSON blob per stream (or `__global__`), handed back to
the connector on the next run, and shown by `ingest state show` / the run summary."""
from __future__ import annotations

from ..sources.protocol import state_to_dict as state_message_to_dict  # noqa: F401  (the loop's name for it)


def state_messages(stored: dict[str, dict], streams: set[str]) -> list[dict]:
    """The stored state messages a read of `streams` resumes from, as stored (JSON dicts): each runtime turns them
    into what its connector takes (sources/base.py, `Source.read`)."""
    return [v for k, v in stored.items() if k in streams or k == "__global__"]


def stream_state_blob(state: dict | None):
    """The connector's own state (cursor) inside a stored state message, for display."""
    if not state:
        return None
    if state.get("stream"):
        return state["stream"].get("stream_state")
    return state.get("global") or state.get("data")
