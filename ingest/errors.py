"""Error types the CLI maps to exit codes (2 = bad usage/config, 1 = sync failed)."""
from __future__ import annotations


class IngestError(Exception):
    """Base class: a message meant for a human, no stack trace needed."""

    exit_code = 1


class ConfigError(IngestError):
    """connectors.yaml (or a flag) is wrong. Raised before anything is written."""

    exit_code = 2

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class SyncError(IngestError):
    """A sync failed: the connector or the destination reported an error.

    `failure_type` carries the connector's classification (config_error, system_error, transient_error)
    when there is one, so a user knows whether to fix their config or wait for the source.
    """

    exit_code = 1

    def __init__(self, message: str, failure_type: str | None = None, stream: str | None = None):
        self.failure_type = failure_type
        self.stream = stream
        super().__init__(message)


class BusyError(IngestError):
    """Another run holds the stream(s): refused, nothing was written."""

    exit_code = 1
