"""What the sync loop needs from any source: an Airbyte connector run in-process or one of our pullers.

All speak the Airbyte protocol with its dataclasses (sources/protocol.py; no JSON round trip in-process), so everything downstream —
state, destinations, events, CLI — is shared and a user cannot tell them apart except by the `source:` line.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Iterator


class Source(abc.ABC):
    @abc.abstractmethod
    def spec(self) -> dict:
        """The connector's connectionSpecification (JSON schema of `config`)."""

    @abc.abstractmethod
    def check(self) -> tuple[bool, str | None]:
        """Can we connect with this config? (ok, message)"""

    @abc.abstractmethod
    def discover(self, *, for_sync: bool = False) -> Any:
        """An `airbyte_cdk.models.AirbyteCatalog`. `for_sync`: the discover a sync starts with (a source may bound
        an interactive discover more tightly than that one)."""

    @abc.abstractmethod
    def read(self, catalog: Any, state: list[Any]) -> Iterator[Any]:
        """Yield `AirbyteMessage`s for the configured catalog, resuming from `state` (the stored state messages, JSON
        dicts: each runtime turns them into what its connector takes).
        Raises `SyncError` on failure, after yielding everything that was read."""


@dataclass(slots=True)
class RecordBatch:
    """Records of one stream handed over in one piece (the isolated runtime's framing; see sources/isolated.py).

    The sync loop treats it exactly like `len(records)` RECORD messages of `stream`, in this order, arriving before
    the next message the source yields: a STATE message that follows a batch covers every record in it.
    `emitted_at` holds one epoch-milliseconds value per record (same length as `records`).
    """

    stream: str
    records: list[dict]
    emitted_at: list[int]
    type: str = "RECORD_BATCH"  # lets the sync loop dispatch on `.type` like an AirbyteMessage
