"""connectors.yaml: models, validation and the loaded project.

Validation happens in two layers, both before anything runs or is written:
1. structure (`load_project`): unknown keys, wrong types, bad enums, bad cron — for every block, cheap;
2. per block (`resolve_block`): secret references resolved, and the block's `config` checked against the
   connector's own spec (read from the package files, without importing the Airbyte CDK).
Every problem is reported as `file:line: key.path: what was expected`, all at once, and exits 2.
This package must not import airbyte_cdk: `ingest list` and `ingest validate` stay fast; and it imports nothing from
`ingest.sources` or `ingest.destinations` (they depend on it, not the other way round).

One job per module: `models` (what each key may hold; `resources` for a block's pod size and its default),
`problems` (the line map and error messages, reusable by any settings file), `project` (the Project and Block objects,
table collisions), `resolve` (a block against its connector's spec, secrets resolved through `ingest.secrets`). The
names below are what the rest of ingest uses.
"""
from __future__ import annotations

from ..errors import ConfigError
from .models import (BlockSpec, Defaults, DestinationSpec, LineageSettings, ProjectSpec, SnowflakeSettings, StreamSpec,
                     check_cron, parse_duration)
from .problems import Problems, problems_for
from .project import (DEFAULT_CONFIG, Block, Project, Stream, config_path, load_project, parse_project,
                      redirected_table_problems, table_name, table_problems)
from .resolve import config_value, resolve_block
from .resources import DEFAULT_RESOURCES, ResourceSettings

__all__ = [
    "DEFAULT_CONFIG", "DEFAULT_RESOURCES", "Block", "BlockSpec", "ConfigError", "Defaults", "DestinationSpec",
    "LineageSettings", "Problems", "Project", "ProjectSpec", "ResourceSettings", "SnowflakeSettings", "Stream",
    "StreamSpec", "check_cron", "config_path", "config_value", "load_project", "parse_duration", "parse_project",
    "problems_for", "redirected_table_problems", "resolve_block", "table_name", "table_problems",
]
