"""Start a downstream flow locally from events in the ledger — a development stand-in for the Argo Events sensor.

In production, Argo Events starts a deployed flow when its `@trigger` events arrive and maps payload fields to
Parameters. Locally there is no event bus, so `ingest events trigger <flow.py>` does the same mapping from the
ledger: it reads the flow module's `TRIGGER` (one event) or `TRIGGERS` (wait for all), takes the latest ledger event
of each name, maps payload → Parameters with the very dict the decorator uses, and runs the flow with Metaflow's
Runner. Nothing is scheduled or queued: it runs once, now, and only when every awaited event exists.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import ConfigError, IngestError


def flow_triggers(flow_file: str | Path) -> list[dict]:
    path = Path(flow_file)
    if not path.exists():
        raise ConfigError(f"{path}: flow file not found")
    spec = importlib.util.spec_from_file_location(f"_ingest_flow_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    triggers = getattr(module, "TRIGGERS", None) or ([module.TRIGGER] if hasattr(module, "TRIGGER") else None)
    if not triggers:
        raise ConfigError(f"{path}: declares no TRIGGER/TRIGGERS dict (the one its @trigger decorator uses)")
    return list(triggers)


def parameters_for(triggers: list[dict], events: dict[str, dict]) -> dict:
    """Payload → Parameters, exactly as the Argo sensor maps them. `events`: event name → payload."""
    missing = [t["name"] for t in triggers if t["name"] not in events]
    if missing:
        raise IngestError(f"waiting for event(s) not in the ledger yet: {', '.join(missing)}")
    params = {}
    for t in triggers:
        payload = events[t["name"]]
        for param, field in (t.get("parameters") or {}).items():
            if payload.get(field) is not None:
                params[param] = payload[field]
    return params


def latest_payloads(destination, names: list[str]) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for row in destination.list_events():
        if row["name"] in names:
            latest[row["name"]] = row["payload"]  # rows come oldest first: the last one wins
    return latest


def run_flow(flow_file: str | Path, params: dict, env: dict | None = None) -> tuple[str, str]:
    """Run the flow once with these Parameters; returns (status, run pathspec)."""
    from metaflow import Runner

    with Runner(str(flow_file), show_output=True, env=env or {}).run(**params) as running:
        return running.status, running.run.pathspec if running.run else ""
