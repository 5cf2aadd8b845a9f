"""Secret references (`${NAME}`) and redaction.

A block's config never holds a secret literally: it says `${JIRA_API_TOKEN}` and a `SecretProvider` resolves it at
load time. The default provider reads the environment; a production secret store plugs in by implementing
`SecretProvider.get` and being selected with `defaults.secrets: module:Class` in connectors.yaml (Metaflow's
`@secrets` decorator fills the environment in production, so `env` is usually enough).

This module is the one home of secrets: `resolve_references` resolves references wherever they are allowed (a block's
config, defaults.snowflake, the lineage API key), `literal_secret` refuses a secret setting written as its value,
and `SNOWFLAKE_SECRET_KEYS` lists the destination settings that are secrets.

Every resolved value is registered with the process-wide `REDACTOR`, which scrubs it from log records, error
messages, events and anything else we render. Secrets never leave the process.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import re
import threading
from typing import Any, Callable, Protocol
from urllib.parse import quote, quote_plus

REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
MASK = "****"
# A value this short would match ordinary text everywhere (a "12" in every date), so it cannot be kept out of output
# reliably: a reference that resolves to one is refused where it is resolved (a config error), never silently shown.
MIN_SECRET_LENGTH = 4


def too_short(name: str, value: str) -> str | None:
    """The config error for a `${NAME}` whose value is too short to redact; None when it is long enough. Never shows
    the value."""
    if len(value) >= MIN_SECRET_LENGTH:
        return None
    return (f"secret reference ${{{name}}} resolves to a value of {len(value)} character(s): too short to keep out of "
            f"logs and errors (at least {MIN_SECRET_LENGTH}). If it is not a secret, write it in the file as it is")


# Destination settings that are secrets (defaults.snowflake): like a connector's `airbyte_secret` fields, they must be
# ${REF}s. The one list: config validation refuses literals with it, and so does the Snowflake destination.
SNOWFLAKE_SECRET_KEYS = ("password", "private_key", "private_key_passphrase")


def literal_secret(value: Any, example: str) -> str | None:
    """The config error for a secret setting written as its value instead of a `${NAME}` reference (the value is
    registered with the redactor first, so no later message shows it); None when `value` is empty or a reference.
    `example` names the reference to suggest (`SNOWFLAKE_PASSWORD`)."""
    if value is None or value == "" or (isinstance(value, str) and REFERENCE.search(value)):
        return None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        REDACTOR.add(str(value))
    return f"is a secret: give a reference like ${{{example}}}, never the value itself"


def resolve_references(value: str, provider: "SecretProvider", problem: Callable[[str], None],
                       unset: Callable[[str], None] | None = None) -> str:
    """Substitute the `${NAME}` references in `value` through `provider`, registering every value with the redactor.

    The one place references are resolved (connector configs, defaults.snowflake, the lineage API key). What is
    wrong is reported as a message through `problem` — a malformed reference (then `value` comes back unchanged),
    an unreadable or too short secret — and an unset one through `unset` (default: `problem`); a failed reference
    becomes "". A callback may raise to stop at the first problem. Messages never show a value."""
    unset = unset or problem
    if "${" in REFERENCE.sub("", value):
        # Never echo the value: a mistyped reference may well be a pasted secret.
        problem("malformed secret reference: expected ${NAME} (letters, digits and underscores, not starting with a digit)")
        return value

    def sub(m: re.Match) -> str:
        name = m.group(1)
        try:
            secret = provider.get(name)
        except Exception as exc:  # noqa: BLE001 - a failing secret store is a config problem, not a crash
            problem(f"secret reference ${{{name}}} could not be read: {type(exc).__name__}: {exc}")
            return ""
        if secret is None or secret == "":
            unset(f"secret reference ${{{name}}} is not set (export {name}=... or configure defaults.secrets)")
            return ""
        secret = str(secret)
        if short := too_short(name, secret):
            problem(short)
            return ""
        REDACTOR.add(secret)
        return secret

    return REFERENCE.sub(sub, value)


class SecretProvider(Protocol):
    def get(self, name: str) -> str | None:  # pragma: no cover - protocol
        ...


class EnvSecrets:
    """Secrets from environment variables (locally: your shell; in production: Metaflow @secrets)."""

    def get(self, name: str) -> str | None:
        return os.environ.get(name)


def load_provider(spec: str | None) -> SecretProvider:
    if not spec or spec == "env":
        return EnvSecrets()
    module_name, _, class_name = spec.partition(":")
    if not class_name:
        raise ValueError(f"expected 'env' or 'module:Class', got {spec!r}")
    return getattr(importlib.import_module(module_name), class_name)()


class Redactor:
    """Remembers secret values and replaces them with **** wherever text leaves the process."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        # Shorter values are refused where references are resolved (`too_short`); registering one would mask
        # ordinary text everywhere.
        if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            new = {v for v in _variants(value) if len(v) >= MIN_SECRET_LENGTH} - self._values
            if new:
                self._values |= new
                alternatives = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in alternatives))

    def redact(self, text: object) -> str:
        text = str(text)
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern else text

    def redact_obj(self, obj):
        """Redact every string inside a JSON-like structure (keys included); containers keep their type."""
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, dict):
            return {(self.redact(k) if isinstance(k, str) else k): self.redact_obj(v) for k, v in obj.items()}
        if isinstance(obj, tuple):
            return tuple(self.redact_obj(v) for v in obj)
        if isinstance(obj, list):
            return [self.redact_obj(v) for v in obj]
        if isinstance(obj, (set, frozenset)):
            return type(obj)(self.redact_obj(v) for v in obj)
        if isinstance(obj, (bytes, bytearray)):
            return self.redact(obj.decode("utf-8", "replace"))
        return obj


def _variants(value: str) -> set[str]:
    """The forms a secret takes when it is rendered: as is, JSON- or repr-escaped, URL-encoded."""
    out = {value, json.dumps(value)[1:-1], repr(value)[1:-1], quote(value, safe=""), quote_plus(value)}
    return {v for v in out if v}


REDACTOR = Redactor()


class RedactingFilter(logging.Filter):
    """A logging filter that renders the message and removes secrets from it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)
        record.msg = REDACTOR.redact(message)
        record.args = None
        # A Formatter renders exc_info into exc_text only AFTER the filters ran, so render it here, redacted, and
        # drop exc_info (Formatter.format uses an existing exc_text as is).
        if record.exc_info and record.exc_info != (None, None, None):
            if not record.exc_text:
                record.exc_text = _FORMATTER.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = REDACTOR.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = REDACTOR.redact(record.stack_info)
        return True


_FORMATTER = logging.Formatter()
