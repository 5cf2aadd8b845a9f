"""`ingest status`: who owns each table, when it last landed, whether it is late or failing.

Everything comes from what the runner already records in the destination, with the data: the events ledger
(`_ingest_events`: every data_landed / data_failed with rows, cursor and error) — so the answer is the same on
DuckDB and Snowflake, and a team lead's `ingest status --team fraud` needs no other system.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .config import Project, parse_duration
from .events import DATA_FAILED, DATA_LANDED, PENDING

FRESH, LATE, FAILING, OK, NEVER = "fresh", "late", "failing", "ok", "never run"
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
    cursor: str | None = None
    last_failure_at: str | None = None
    failure_class: str | None = None
    failure_message: str | None = None
    pending_events: int = 0
    rows_history: list[int] = field(default_factory=list)

    @property
    def problem(self) -> bool:
        return self.status in (LATE, FAILING)

    def as_dict(self) -> dict:
        return asdict(self)


def sparkline(values: list[int]) -> str:
    if not values:
        return ""
    top = max(values) or 1
    return "".join(BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1)))] if v else " " for v in values)


def _parse_time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def _open_for_reading(project: Project, block):
    """The block's destination, without creating anything (a DuckDB file nobody wrote yet has no status)."""
    from .manager import destination_choice, make_destination

    kind, path = destination_choice(project, block)
    if kind == "duckdb" and not Path(path).exists():
        return None, f"duckdb:{Path(path).resolve()}"
    dest = make_destination(project, block, read_only=True)
    return dest, dest.describe()


def project_status(project: Project, team: str | None = None, now: dt.datetime | None = None,
                   history: int = 12) -> list[StreamStatus]:
    now = now or dt.datetime.now(dt.timezone.utc)
    out: list[StreamStatus] = []
    for block in project.blocks.values():
        if team and block.team != team:
            continue
        dest, where = _open_for_reading(project, block)
        try:
            events = dest.list_events(block=block.name) if dest else []
        finally:
            if dest:
                dest.close()
        expect = parse_duration(block.spec.freshness) if block.spec.freshness else None
        for stream in block.streams:
            mine = [e for e in events if e["stream"] == stream.name]
            landed = [e["payload"] for e in mine if e["payload"].get("event") == DATA_LANDED]
            failed = [e["payload"] for e in mine if e["payload"].get("event") == DATA_FAILED]
            last, fail = (landed[-1] if landed else None), (failed[-1] if failed else None)
            landed_at, failed_at = _parse_time(last and last.get("landed_at")), _parse_time(fail and fail.get("failed_at"))
            if failed_at and (not landed_at or failed_at > landed_at):
                status = FAILING
            elif expect is not None and (not landed_at or (now - landed_at).total_seconds() > expect):
                status = LATE
            elif landed_at:
                status = FRESH if expect is not None else OK
            else:
                status = NEVER
            out.append(StreamStatus(
                block=block.name, stream=stream.name, team=block.team, table=stream.table, destination=where,
                status=status, freshness=block.spec.freshness,
                last_load_at=last and last.get("landed_at"), last_load_rows=last and last.get("rows"),
                cursor=last and last.get("cursor_after"),
                last_failure_at=fail and fail.get("failed_at"), failure_class=fail and fail.get("error_class"),
                failure_message=fail and fail.get("error_message"),
                pending_events=sum(1 for e in mine if e["status"] == PENDING),
                rows_history=[p.get("rows") or 0 for p in landed[-history:]],
            ))
    return out


def age(text: str | None, now: dt.datetime | None = None) -> str:
    when = _parse_time(text)
    if when is None:
        return "-"
    seconds = int(((now or dt.datetime.now(dt.timezone.utc)) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"
