"""connectors.yaml from dicts: build a project as data (`project`, `demo_block`), change a block as data
(`edit_block`), and write it as a user would (`dump`: block style, lists indented under their key). Tests state
what differs (a count, a stream, a freshness) instead of editing YAML text."""
from __future__ import annotations

from typing import Any, Callable

import yaml

FAKER = "airbyte-source-faker==7.2.1"
DEMO_STREAMS = ("users", "products", "purchases")


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)  # "streams:\n  - name: users", as the docs write it


def dump(doc: dict) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=10_000)


def project(connectors: dict, *, duckdb: str | None = "warehouse.duckdb", batch: int | None = None, **defaults: Any) -> str:
    """A whole connectors.yaml: `defaults` (DuckDB path, batch size, anything else given) and the blocks."""
    head: dict = {}
    if duckdb:
        head["duckdb"] = {"path": duckdb}
    if batch is not None:
        head["batch"] = {"max_records": batch}
    head.update(defaults)
    return dump({"defaults": head, "connectors": connectors} if head else {"connectors": connectors})


def demo_block(count: int = 1000, slice_: int = 250, streams=DEMO_STREAMS, *, seed: int = 7, always_updated: bool = False,
               team: str = "platform", **settings: Any) -> dict:
    """The faker demo block; `settings` are further block keys (freshness, destination, ...)."""
    return {"team": team, "source": FAKER,
            "config": {"count": count, "seed": seed, "records_per_slice": slice_, "parallelism": 1,
                       "always_updated": always_updated},
            **settings,
            "streams": [{"name": s} for s in streams]}


def demo_config(count: int = 1000, slice_: int = 250, batch: int = 10_000, **block: Any) -> str:
    """A project with one block, `demo` (see `demo_block`), into warehouse.duckdb."""
    return project({"demo": demo_block(count, slice_, **block)}, batch=batch)


def edit_block(text: str, name: str, change: Callable[[dict], None] | None = None, *, defaults: dict | None = None,
               **settings: Any) -> str:
    """`text` (a connectors.yaml) with block `name` changed: `settings` set as block keys, then `change(block)`;
    `defaults` merged into the project's defaults."""
    doc = yaml.safe_load(text)
    if defaults:
        doc.setdefault("defaults", {}).update(defaults)
    block = doc["connectors"][name]
    streams = block.pop("streams", None)
    block.update(settings)
    if streams is not None:
        block["streams"] = streams  # keep streams last, where people look for them
    if change is not None:
        change(block)
    return dump(doc)


def prepared(block):
    """`block` as `run`/`check` see it: release fetched, secrets resolved, config checked against the spec."""
    from ingest.sources.connector import prepare

    prepare(block)
    return block


def jira_block(base_url: str, source: str = "airbyte-source-jira==4.0.0", window: str | None = "P100Y",
               **settings: Any) -> dict:
    """The Jira block against a loopback fake (tests/fakes/fake_jira.py), with the repo's override copied next to it.
    `window` is the block's `issues_window`: one window by default (a test about something else should not walk the
    override's ~monthly windows since the connector's default start date); None keeps the override's default."""
    config = {"domain": "acme.atlassian.net", "base_url": base_url, "email": "${JIRA_EMAIL}",
              "api_token": "${JIRA_API_TOKEN}", "max_retries": 1}
    if window:
        config["issues_window"] = window
    return {"team": "fraud", "source": source, "overrides": "overrides/source-jira.yaml",
            "config": config,
            "streams": [{"name": "issues"}], **settings}
