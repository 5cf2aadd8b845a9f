"""What the sync loop needs from any source: an Airbyte connector run in-process or one of our pullers.

Both speak the Airbyte protocol with `airbyte_cdk.models` objects (no JSON round trip), so everything downstream —
state, destinations, events, CLI — is shared and a user cannot tell them apart except by the `source:` line.
"""
from __future__ import annotations

import abc
from typing import Any, Iterator


class Source(abc.ABC):
    @abc.abstractmethod
    def spec(self) -> dict:
        """The connector's connectionSpecification (JSON schema of `config`)."""

    @abc.abstractmethod
    def check(self) -> tuple[bool, str | None]:
        """Can we connect with this config? (ok, message)"""

    @abc.abstractmethod
    def discover(self) -> Any:
        """An `airbyte_cdk.models.AirbyteCatalog`."""

    @abc.abstractmethod
    def read(self, catalog: Any, state: list[Any]) -> Iterator[Any]:
        """Yield `AirbyteMessage`s for the configured catalog, resuming from `state` (AirbyteStateMessages).
        Raises `SyncError` on failure, after yielding everything that was read."""
