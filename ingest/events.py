""""Data landed" / "data failed" events: built at load time, kept in a ledger, published to a webhook.

Why: downstream dbt and training flows should start because data landed, not because a cron fired. So every
landed stream announces itself, once, with enough payload (team, table, rows, cursor, schema hash, load id) for a
trigger to act on, and a failed sync tells the owners first.

How (invariant 7: every landed table is announced once, an undelivered event is kept and replayable):
1. the event row is written to `_ingest_events` in the SAME transaction as the stream's final checkpoint, with
   status `pending` (or `recorded` when no webhook is configured — local use);
2. after the commit it is published with Metaflow's `ArgoEvent` to the configured webhook (Argo Events in
   production); success → `published`; failure → stays `pending` with the error, and `ingest events replay` sends it
   later. The idempotency key (block:stream:load id) is in the payload, so a receiver can drop a re-send.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass, field

from .secrets import REDACTOR

log = logging.getLogger("ingest.events")

DATA_LANDED = "data_landed"
DATA_FAILED = "data_failed"
WEBHOOK_ENV = "INGEST_EVENTS_WEBHOOK"

PENDING, PUBLISHED, RECORDED = "pending", "published", "recorded"


def event_name(kind: str, block: str, stream: str) -> str:
    return f"{kind}.{block}.{stream}"


def event_kind(name) -> str:
    """`data_landed.jira.issues` → `data_landed` (anything unreadable → what precedes its first dot, or "")."""
    return str(name or "").split(".")[0]


def schema_hash(columns: dict[str, str]) -> str:
    """A short, stable fingerprint of a table's columns and types: downstream can tell a schema change."""
    text = json.dumps(sorted(columns.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Event:
    """One row of the ledger and the payload that goes on the wire (minus our bookkeeping fields)."""

    kind: str  # data_landed | data_failed
    team: str
    block: str
    stream: str
    table: str
    destination: str
    run_id: str
    load_id: str
    run_pathspec: str
    rows: int = 0
    rows_without_key: int = 0  # dedup: landed rows with no primary key value (appended, not merged)
    cursor_before: object = None
    cursor_after: object = None
    schema_hash: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat())
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: str = PENDING  # ledger bookkeeping, not part of the payload

    @property
    def name(self) -> str:
        """The published event name: one per table, e.g. `data_landed.jira.issues`, so a downstream flow can
        `@trigger(event="data_landed.jira.issues")` or wait for several tables at once (Argo Events sensors match
        on the name; Metaflow names sensor dependencies after it, so one generic name could not be waited on twice)."""
        return event_name(self.kind, self.block, self.stream)

    @property
    def idempotency_key(self) -> str:
        return f"{self.block}:{self.stream}:{self.load_id}"

    def payload(self) -> dict:
        """What subscribers receive. Flat keys with JSON types; cursors as JSON text so Parameters can take them."""
        data = asdict(self)
        data["event"] = data.pop("kind")  # ArgoEvent reserves `name` for the full event name
        data.pop("status")
        data["idempotency_key"] = self.idempotency_key
        data["landed_at" if self.kind == DATA_LANDED else "failed_at"] = data.pop("at")
        for key in ("cursor_before", "cursor_after"):
            # A cursor is the connector's text (a next-page URL may carry an api_key): redacted like any text.
            data[key] = None if data[key] is None else REDACTOR.redact(json.dumps(data[key], default=str, sort_keys=True))
        if self.kind == DATA_LANDED:
            data.pop("error_class")
            data.pop("error_message")
        else:
            data.pop("rows_without_key")
            if data["error_message"]:
                # Only free text is redacted. Names, ids, timestamps and counts are ours and stay exact: a secret that
                # happens to be "2026" or "safety" must not turn the ledger into "****-12-02" / "carrier_****_basics".
                data["error_message"] = REDACTOR.redact(data["error_message"])
        return data


def webhook_url(configured: str | None = None) -> str | None:
    """The environment wins (a Metaflow deployment sets it per cluster), then connectors.yaml."""
    return os.environ.get(WEBHOOK_ENV) or configured or None


class PublishError(Exception):
    pass


class WebhookPublisher:
    """Publishes through Metaflow's ArgoEvent: the same client the flows use, the same JSON shape Argo Events expects."""

    def __init__(self, url: str):
        self.url = url

    def publish(self, name: str, payload: dict) -> str:
        from metaflow.plugins.argo.argo_events import ArgoEvent

        try:
            # ignore_errors=False: a failed publish must be seen (and recorded as pending), not swallowed.
            ArgoEvent(name, url=self.url).publish(payload=payload, force=True, ignore_errors=False)
        except Exception as exc:  # noqa: BLE001 - urllib raises several types
            raise PublishError(REDACTOR.redact(f"{type(exc).__name__}: {exc}")) from None
        return payload.get("event_id", "")


def publish_pending(destination, publisher: WebhookPublisher | None, *, run_id: str | None = None,
                    block: str | None = None) -> tuple[int, list[str]]:
    """Send every pending event (of one run, or of a block, or all); returns (sent, errors)."""
    if publisher is None:
        return 0, []
    sent, errors = 0, []
    for row in destination.list_events(block=block, status=PENDING, run_id=run_id):
        try:
            publisher.publish(row["name"], row["payload"])
        except PublishError as exc:
            destination.mark_event(row["event_id"], PENDING, str(exc))
            errors.append(f"{row['name']} {row['idempotency_key']}: {exc}")
            log.warning("event %s for %s not delivered (kept as pending): %s", row["name"], row["idempotency_key"], exc)
        else:
            destination.mark_event(row["event_id"], PUBLISHED, None)
            sent += 1
    return sent, errors
