"""`ingest status`: who owns each table, when it last landed, whether it is late or failing.

Everything comes from what the runner already records in the destination, with the data: the events ledger
(`_ingest_events`: every data_landed / data_failed with rows, cursor and error) — so the answer is the same on
DuckDB and Snowflake, and a team lead's `ingest status --team fraud` needs no other system.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import orjson

from .config import Project, parse_duration
from .destinations.base import KILLED
from .events import DATA_FAILED, DATA_LANDED, event_kind

# NEVER: no load of the stream has ever landed (a new block, or one whose first run is still going) — not "late",
# which says a stream that used to land stopped. It is still a problem (exit 1) when the block declares freshness:
# a downstream job gated on `ingest status` must not start on a table that was never filled.
FRESH, LATE, FAILING, OK, NEVER = "fresh", "late", "failing", "ok", "never loaded"
BARS = "▁▂▃▄▅▆▇█"


@dataclass
class StreamStatus:
    block: str
    stream: str
    team: str
    table: str
    destination: str
    status: str
    freshness: str | None = None
    last_load_at: str | None = None
    last_load_rows: int | None = None
    last_load_rows_without_key: int | None = None  # dedup records appended unmerged (no key value), of last_load_rows
    cursor: str | None = None
    last_failure_at: str | None = None
    failure_class: str | None = None
    failure_message: str | None = None
    pending_events: int = 0
    rows_history: list[int] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # ledger rows status could not use, and why

    @property
    def problem(self) -> bool:
        return self.status in (LATE, FAILING) or (self.status == NEVER and bool(self.freshness))

    @property
    def problem_text(self) -> str:
        """How `ingest status` names the problem in its attention line."""
        if self.status == NEVER:
            return f"{self.block}.{self.stream} has never loaded (freshness {self.freshness})"
        return f"{self.block}.{self.stream} is {self.status}"

    def as_dict(self) -> dict:
        return asdict(self)


def sparkline(values: list[int]) -> str:
    if not values:
        return ""
    top = max(values) or 1
    return "".join(BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1)))] if v else " " for v in values)


def _parse_time(text) -> dt.datetime | None:
    """A ledger timestamp (ISO text, or a datetime from the warehouse), always timezone-aware (UTC if naive)."""
    if text is None or text == "":
        return None
    when = text if isinstance(text, dt.datetime) else dt.datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


class Unreadable(ValueError):
    """A ledger row status cannot use (not JSON, a missing key, a time that is not a time)."""


def readable_payload(row: dict, kind: str) -> dict:
    """The row's payload, checked for what status uses; Unreadable says what is wrong with it."""
    payload = row.get("payload")
    if isinstance(payload, (str, bytes)):
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise Unreadable("payload is not JSON") from None
    if not isinstance(payload, dict):
        raise Unreadable(f"payload is a JSON {type(payload).__name__}, not an object")
    at_key = "landed_at" if kind == DATA_LANDED else "failed_at"
    if not payload.get(at_key):
        raise Unreadable(f"payload has no {at_key}")
    try:
        when = _parse_time(payload[at_key])
    except (TypeError, ValueError):
        raise Unreadable(f"{at_key} {str(payload[at_key])[:40]!r} is not a timestamp") from None
    rows = payload.get("rows")
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int)):
        raise Unreadable(f"rows {str(rows)[:20]!r} is not a whole number")
    cursor = payload.get("cursor_after")
    return {**payload, at_key: when.isoformat(), "cursor_after": cursor if cursor is None or isinstance(cursor, str)
            else json.dumps(cursor, default=str)}


def _row_label(row: dict) -> str:
    return f"event {row.get('event_id') or '?'} ({row.get('name') or 'no name'}, created {str(row.get('created_at'))[:19]})"


def _open_for_reading(project: Project, block, wait: float):
    """The block's destination, read-only: creates and writes nothing (a DuckDB file nobody wrote yet has no
    status); waits up to `wait` s for its turn while a run writes the file (see DuckDBDestination)."""
    from .destinations import destination_choice, open_for_reading

    dest = open_for_reading(project, block, wait=wait)
    if dest is None:
        return None, f"duckdb:{Path(destination_choice(project, block)[1]).resolve()}"
    return dest, dest.describe()


@dataclass
class _Ledger:
    """What one destination holds for status: recent events per stream, runs still recorded as running, locks."""

    where: str
    events: list[dict] = field(default_factory=list)
    running: list[dict] = field(default_factory=list)
    locks: list[dict] = field(default_factory=list)


def _read_ledger(project: Project, block, history: int, wait: float) -> _Ledger:
    dest, where = _open_for_reading(project, block, wait)
    ledger = _Ledger(where)
    if dest is None:
        return ledger
    with dest:
        ledger.events = dest.latest_events(history)
        try:
            ledger.running = dest.list_runs(status="running")
            ledger.locks = dest.list_locks() if ledger.running else []
        except NotImplementedError:
            pass
    return ledger


def _ledgers(project: Project, blocks, history: int, wait: float) -> dict[tuple[str, str], _Ledger]:
    """One read per destination, whatever the number of blocks writing to it (1,000 blocks → one DuckDB open)."""
    from .destinations import destination_choice

    out: dict[tuple[str, str], _Ledger] = {}
    for block in blocks:
        key = destination_choice(project, block)
        if key not in out:
            out[key] = _read_ledger(project, block, history, wait)
    return out


def _dead_runs(ledger: _Ledger, now: dt.datetime) -> tuple[dict, dict]:
    """(block, stream) → the newest run still recorded as running whose process is gone, as a failure, plus block →
    notes about run rows that cannot be read. Status only shows them; the block's next run records them as killed."""
    from .destinations.base import why_run_is_dead

    dead, notes = {}, {}
    for run in ledger.running:
        try:
            streams, started = run.get("streams"), _parse_time(run.get("started_at"))
            if isinstance(streams, str):
                streams = orjson.loads(streams)
            if not isinstance(streams, list) or started is None:
                raise Unreadable("streams or started_at missing")
            why = why_run_is_dead(run, [lk for lk in ledger.locks if lk.get("block") == run.get("block")], now)
        except (Unreadable, TypeError, ValueError, orjson.JSONDecodeError) as exc:
            notes.setdefault(run.get("block"), []).append(f"run {run.get('run_id')}: unreadable run row ({exc})")
            continue
        if why is None:
            continue
        for stream in streams:
            dead[(run.get("block"), stream)] = {
                "failed_at": started.isoformat(), "error_class": KILLED,
                "error_message": f"run {run.get('run_id')} (started {started:%Y-%m-%d %H:%M:%S %Z}) stopped without "
                                 f"recording its end: {why}; the block's next run records it as killed",
            }
    return dead, notes


def project_status(project: Project, team: str | None = None, now: dt.datetime | None = None,
                   history: int = 12, wait: float = 30.0) -> list[StreamStatus]:
    """Every stream's status. `wait`: seconds to wait for a DuckDB file a run is writing (it lets readers in
    between commits)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    blocks = [b for b in project.blocks.values() if not team or b.team == team]
    ledgers = _ledgers(project, blocks, history, wait)
    from .destinations import destination_choice

    by_stream: dict[tuple[str, str, str], list[dict]] = {}
    dead: dict = {}
    notes: dict = {}
    for key, ledger in ledgers.items():
        for row in ledger.events:
            kind = event_kind(row.get("name"))
            by_stream.setdefault((key, row.get("block"), row.get("stream")), []).append({**row, "kind": kind})
        d, n = _dead_runs(ledger, now)
        dead.update({(key, *k): v for k, v in d.items()})
        notes.update({(key, b): v for b, v in n.items()})
    out: list[StreamStatus] = []
    for block in blocks:
        key = destination_choice(project, block)
        for stream in block.streams:
            stream_key = (key, block.name, stream.name)
            known = StreamStatus(block=block.name, stream=stream.name, team=block.team, table=stream.table,
                                 destination=ledgers[key].where, status=NEVER, freshness=block.spec.freshness)
            out.append(_stream_status(known, by_stream.get(stream_key, []), dead.get(stream_key),
                                      notes.get((key, block.name), []), now, history))
    return out


def stream_status_from_ledger(known: StreamStatus, rows: list[dict], now: dt.datetime, history: int) -> StreamStatus:
    """One stream's status from its ledger rows (Destination.latest_events), without the dead-run check status makes
    across a destination: what `ingest describe` shows. `known`: the stream's identity (block, stream, team, table,
    destination, freshness); the rest is filled in."""
    rows = [{**row, "kind": event_kind(row.get("name"))} for row in rows]
    return _stream_status(known, rows, None, [], now, history)


def _stream_status(known: StreamStatus, rows: list[dict], dead_run: dict | None, notes: list[str], now: dt.datetime,
                   history: int) -> StreamStatus:
    """`known` (a stream's identity) with its status, last load and last failure from its ledger rows."""
    expect = parse_duration(known.freshness) if known.freshness else None
    landed, failed, unreadable = [], [], list(notes)
    for row in rows:
        if row["kind"] not in (DATA_LANDED, DATA_FAILED):
            continue  # an event kind this version does not know
        try:
            (landed if row["kind"] == DATA_LANDED else failed).append(readable_payload(row, row["kind"]))
        except Unreadable as exc:
            unreadable.append(f"{_row_label(row)}: {exc}")
    last, fail = (landed[-1] if landed else None), (failed[-1] if failed else None)
    landed_at, failed_at = _parse_time(last and last["landed_at"]), _parse_time(fail and fail["failed_at"])
    if dead_run and (failed_at is None or _parse_time(dead_run["failed_at"]) > failed_at):
        fail, failed_at = dead_run, _parse_time(dead_run["failed_at"])
    if failed_at and (not landed_at or failed_at > landed_at):
        status = FAILING
    elif not landed_at:
        status = NEVER
    elif expect is not None and (now - landed_at).total_seconds() > expect:
        status = LATE
    else:
        status = FRESH if expect is not None else OK
    return replace(
        known, status=status,
        last_load_at=last and last["landed_at"], last_load_rows=last and last.get("rows"),
        last_load_rows_without_key=last and _whole_number(last.get("rows_without_key")),
        cursor=last and last.get("cursor_after"),
        last_failure_at=fail and fail["failed_at"], failure_class=fail and fail.get("error_class"),
        failure_message=fail and fail.get("error_message"),
        pending_events=max([r.get("pending") or 0 for r in rows] or [0]),
        rows_history=[p.get("rows") or 0 for p in landed[-history:]],
        unreadable=unreadable,
    )


def age(text: str | None, now: dt.datetime | None = None) -> str:
    when = _parse_time(text)
    if when is None:
        return "-"
    seconds = int(((now or dt.datetime.now(dt.timezone.utc)) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _whole_number(value) -> int | None:
    """An optional count from a payload (older events do not carry it); anything but a whole number reads as None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
