"""Downstream flows start because data landed: `@after_landed` declares it, Argo Events or the ledger starts them.

In production, Argo Events starts a deployed flow when its `@trigger` events arrive and maps payload fields to
Parameters. `@after_landed("jira.issues", ...)` writes that `@trigger` for a flow: our event names
(`data_landed.<block>.<stream>`, see ingest/events.py) and the payload → Parameter mapping, checked where a mistake
would otherwise pass silently — a payload field no event carries or a Parameter the flow lacks fails when the flow
is imported, a block or stream connectors.yaml does not have fails the deploy (`argo-workflows create`; pods never
read connectors.yaml, so the check runs only there).

Locally there is no event bus, so `ingest events trigger <flow.py>` does the same mapping from the ledger: it reads
the flow's triggers (the `@after_landed` ones, or a hand-written `TRIGGER` (one event) / `TRIGGERS` (wait for all)
dict next to a plain `@trigger`), takes the latest ledger event of each name, maps payload → Parameters with the very
dicts the decorator uses, and runs the flow with Metaflow's Runner. Nothing is scheduled or queued: it runs once,
now, and only when every awaited event exists.
"""
from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import ConfigError, IngestError
from .events import DATA_LANDED, Event, event_name

_TABLE = re.compile(r"^[a-z][a-z0-9_]*\.[A-Za-z0-9_-]+$")  # block.stream: a block name, then a stream name

FLOW_ATTRIBUTE = "_ingest_triggers"  # where @after_landed leaves the flow's triggers for `ingest events trigger`


def after_landed(*tables: str, parameters: Mapping | Sequence | None = None, config: str | Path | None = None):
    """Start the decorated Metaflow flow when every one of `tables` ("block.stream") has landed.

        @after_landed("demo.users", parameters=["table", "rows", "load_id"])      # Parameter = payload field
        @after_landed("jira.issues", "carrier_safety.snapshots", parameters={
            "jira.issues": {"issues_load_id": "load_id"},                        # Parameter: payload field
            "carrier_safety.snapshots": {"safety_load_id": "load_id"},
        })

    `parameters`: for one table, a {Parameter: payload field} dict or a list of names that are both; for several,
    that per table ({table: mapping}). `config`: the connectors.yaml the tables must exist in, checked at deploy
    time (default: $INGEST_CONFIG or ./connectors.yaml, the file the deploy of IngestFlow reads too)."""
    events = _events(tables, parameters)

    def decorate(flow_class):
        from metaflow import trigger

        _check_parameters(flow_class, events)
        setattr(flow_class, FLOW_ATTRIBUTE, events)

        def at_deploy(context=None, deploy_time=True):  # a Metaflow deploy-time field: `argo-workflows create` only
            check_tables(tables, config, flow_class.__name__)
            return [{"name": e["name"], "parameters": dict(e["parameters"])} for e in events]

        return trigger(events=at_deploy)(flow_class)

    return decorate


def _events(tables: Sequence[str], parameters) -> list[dict]:
    if not tables:
        raise ConfigError("@after_landed: name at least one table, e.g. @after_landed(\"jira.issues\")")
    malformed = [t for t in tables if not isinstance(t, str) or not _TABLE.match(t)]
    if malformed:
        raise ConfigError(f"@after_landed: {', '.join(map(repr, malformed))}: expected \"block.stream\", e.g. \"jira.issues\"")
    if len(set(tables)) != len(tables):
        raise ConfigError(f"@after_landed: a table is named twice in {', '.join(tables)}")
    if len(tables) == 1 and not (isinstance(parameters, Mapping) and set(parameters) == set(tables)):
        parameters = {tables[0]: parameters}
    parameters = parameters or {}
    if not isinstance(parameters, Mapping) or set(parameters) - set(tables):
        raise ConfigError(f"@after_landed: with several tables, `parameters` maps each table ({', '.join(tables)}) "
                          f"to its {{Parameter: payload field}} dict; got {parameters!r}")
    fields = _payload_fields()
    events = []
    for table in tables:
        mapping = parameters.get(table) or {}
        mapping = dict(mapping) if isinstance(mapping, Mapping) else {name: name for name in mapping}
        unknown = sorted(f for f in mapping.values() if f not in fields)
        if unknown:
            raise ConfigError(f"@after_landed: {table}: no payload field {', '.join(map(repr, unknown))} "
                              f"(a data_landed event carries: {', '.join(sorted(fields))})")
        block, stream = table.split(".", 1)
        events.append({"name": event_name(DATA_LANDED, block, stream), "parameters": mapping})
    return events


def _payload_fields() -> set[str]:
    """The fields of a data_landed payload (what a Parameter can be mapped from)."""
    sample = Event(kind=DATA_LANDED, team="", block="", stream="", table="", destination="", run_id="", load_id="",
                   run_pathspec="")
    return set(sample.payload())


def _check_parameters(flow_class, events: list[dict]) -> None:
    from metaflow import Parameter

    declared = {v.name for klass in flow_class.__mro__ for v in vars(klass).values()
                if isinstance(v, Parameter) and not getattr(v, "IS_CONFIG_PARAMETER", False)}
    missing = sorted({p for e in events for p in e["parameters"] if p not in declared})
    if missing:
        raise ConfigError(f"@after_landed on {flow_class.__name__}: it maps the payload to Parameter(s) the flow does "
                          f"not declare: {', '.join(missing)} (declared: {', '.join(sorted(declared)) or 'none'})")


def check_tables(tables: Sequence[str], config: str | Path | None = None, flow: str = "the flow") -> None:
    """Refuse tables connectors.yaml does not have: a trigger on them would wait forever."""
    from . import load_project

    project = load_project(config)
    problems = []
    for table in tables:
        block, stream = table.split(".", 1)
        if block not in project.blocks:
            problems.append(f"{table}: no connector block named {block!r} (blocks: {', '.join(sorted(project.blocks))})")
            continue
        streams = sorted(s.name for s in project.blocks[block].streams)
        if stream not in streams:
            problems.append(f"{table}: block {block!r} has no stream {stream!r} (streams: {', '.join(streams)})")
    if problems:
        raise ConfigError(f"@after_landed on {flow} waits for tables {project.path} does not have:\n  "
                          + "\n  ".join(problems))


def flow_triggers(flow_file: str | Path) -> list[dict]:
    path = Path(flow_file)
    if not path.exists():
        raise ConfigError(f"{path}: flow file not found")
    spec = importlib.util.spec_from_file_location(f"_ingest_flow_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    decorated = [vars(v)[FLOW_ATTRIBUTE] for v in vars(module).values()
                 if isinstance(v, type) and FLOW_ATTRIBUTE in vars(v)]
    triggers = (decorated[0] if decorated else None) or getattr(module, "TRIGGERS", None) \
        or ([module.TRIGGER] if hasattr(module, "TRIGGER") else None)
    if not triggers:
        raise ConfigError(f"{path}: no @after_landed flow, and no TRIGGER/TRIGGERS dict (the one its @trigger "
                          "decorator uses)")
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
