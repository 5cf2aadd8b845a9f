"""A block's `resources:`: what each `sync` pod of its scheduled flow asks Kubernetes for (CPU and memory).

The scheduled flow (flows/ingest_flow.py) reads these values at deploy time through `ingest.flowconfig.resources_of`
into the sync step's `@resources`; `ingest validate` checks them with every other key. Memory is Metaflow's unit (MB,
written into the pod spec as `<n>M`); a Kubernetes-style `Mi`/`Gi` string is accepted and converted.
"""
from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from .problems import yaml_type

# What a sync pod asks for when its block says nothing. Where the memory figure comes from (bench/README.md, `ingest
# run` into DuckDB, "Issue 12"): the largest measured peak is 507 MB tree RSS for faker at 1.5M records (the connector
# child ~154 MB + faker's worker ~105 MB + the runner ~249 MB; flat in stream size since DuckDB's memory_limit),
# ~280 MB for the in-process Jira manifest. 1024 MB leaves headroom over the largest peak (and over Metaflow's own
# task process, which the bench does not include).
# One CPU is what the flow asked for before blocks could say; `ingest run` can use up to ~1.5 cores (bench/README.md),
# so a block that needs full speed asks for more. Keep this the ONE place the default lives.
DEFAULT_RESOURCES = {"cpu": 1, "memory": 1024}

# Bounds that catch unit mistakes (`memory: 4` meaning GB, `memory: 4096000`) at validate time, instead of a pod that is
# killed at start or pends forever waiting for a node that big. The smallest sync measured peaks at ~350 MB.
MIN_MEMORY_MB = 256
MAX_MEMORY_MB = 256 * 1024  # 256 GiB
MAX_CPU = 64

_QUANTITY = re.compile(r"^(?P<number>\d+(\.\d+)?)(?P<unit>Mi|Gi)$")
_MB_PER_UNIT = {"Mi": 1, "Gi": 1024}
_MEMORY_FORMS = "an integer number of MB (e.g. 1024) or a string with a unit Mi or Gi (e.g. '512Mi', '2Gi')"


def memory_mb(value: Any) -> int:
    """1024 → 1024; '512Mi' → 512; '2Gi' → 2048; '1.5Gi' → 1536 (rounded up to a whole MB). Anything else, or a
    value outside MIN_MEMORY_MB..MAX_MEMORY_MB, raises ValueError with a message for connectors.yaml's author."""
    # YAML's `true` is a Python bool, which is an int: without this check `memory: true` would be 1 MB.
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected {_MEMORY_FORMS}; got {yaml_type(value)}")
    if isinstance(value, str):
        m = _QUANTITY.match(value.strip())
        if not m:
            raise ValueError(f"expected {_MEMORY_FORMS}; got {value!r}")
        mb = math.ceil(float(m.group("number")) * _MB_PER_UNIT[m.group("unit")])
    else:
        mb = value
    if not MIN_MEMORY_MB <= mb <= MAX_MEMORY_MB:
        written = f"{value!r} ({mb} MB)" if isinstance(value, str) else f"{mb}"
        raise ValueError(f"expected between {MIN_MEMORY_MB} and {MAX_MEMORY_MB} MB (256Mi to 256Gi); got {written}")
    return mb


class ResourceSettings(BaseModel):
    """`resources: {cpu: 1, memory: 1024}` in a block; each key defaults on its own (DEFAULT_RESOURCES)."""

    model_config = ConfigDict(extra="forbid")

    cpu: float = DEFAULT_RESOURCES["cpu"]  # fractions allowed: 0.5 is half a core
    memory: int = DEFAULT_RESOURCES["memory"]

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu_is_a_number(cls, v: Any) -> Any:
        # pydantic alone would take `cpu: true` as 1 (a bool is an int) and `cpu: "2"` as 2; Kubernetes' own spelling
        # (`500m`) is not Metaflow's. Only a plain YAML number is a CPU count.
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            got = repr(v) if isinstance(v, str) else yaml_type(v)
            raise ValueError(f"expected a number of CPUs (e.g. 1, or 0.5 for half a core); got {got}")
        if not 0 < v <= MAX_CPU:  # also refuses .nan and .inf
            raise ValueError(f"expected a number of CPUs above 0 and at most {MAX_CPU}; got {v}")
        return v

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> int:
        return memory_mb(v)
