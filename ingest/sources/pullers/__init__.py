"""Built-in pullers for APIs without an open-source connector (issue 4: truck pricing, carrier safety).

A puller is a `Source` (see ingest/sources/base.py) registered here by name; a block selects it with `puller: <name>`.
"""
from __future__ import annotations

PULLERS: dict[str, str] = {}  # name -> "module:Class"; filled as pullers land


def puller_spec(name: str) -> dict | None:
    return None


def load_puller(name: str, block):
    import importlib

    module_name, _, class_name = PULLERS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)(block)
