"""What the `ingest` command line prints: its tables (rich) and one-line summaries.

Kept apart from ingest/cli.py so a command reads as flags → one library call → one render call, and so the wording
of the output (what users and their scripts see) has one home. Everything here only formats what the library
returned; nothing opens a destination or runs a connector. Rich is imported inside the functions: `ingest validate`
and `ingest run`'s error paths never pay for it.
"""
from __future__ import annotations

import json

import click

from .secrets import REDACTOR


def _console(width: int):
    from rich.console import Console

    return Console(width=width)


def _table(*columns: str):
    from rich.table import Table

    return Table(*columns, box=None)


# ---------------------------------------------------------------------------------------------------- blocks, connectors

def source_text(block, lock) -> str:
    entry = lock.get(block.name) if block.package else None
    if entry and entry.source == block.package:
        return f"{entry.source}=={entry.version}"
    return block.source_label


def runtime_text(block, lock) -> str:
    """The runtime and why, from connectors.lock: listing never loads connector code."""
    if block.spec.puller:
        return "in_process (our puller)"
    if not block.package:
        return "in_process (a manifest file)"
    from .sources.lockfile import staleness

    entry = lock.get(block.name)
    problem = staleness(entry, block.package, block.pinned_version, block.spec.runtime)
    if problem:
        return f"? lock is stale: {problem}"
    if entry is None:
        return f"{block.spec.runtime} (not locked yet)"
    return f"{entry.runtime} ({entry.reason})"


def print_blocks(project, lock) -> None:
    """`ingest list`: one row per block."""
    table = _table("block", "team", "source", "runtime", "streams", "destination", "schedule")
    for name, block in project.blocks.items():
        table.add_row(name, block.team, source_text(block, lock), runtime_text(block, lock),
                      ", ".join(s.name for s in block.streams), block.destination_type, block.spec.schedule or "-")
    _console(220).print(table)


def print_catalog(catalog) -> None:
    """`ingest discover`: the streams a connector offers."""
    table = _table("stream", "sync modes", "primary key", "cursor")
    for s in catalog.streams:
        modes = ", ".join(getattr(m, "value", str(m)) for m in s.supported_sync_modes or [])
        pk = ", ".join(".".join(p) for p in s.source_defined_primary_key or [])
        table.add_row(s.name, modes, pk or "-", ".".join(s.default_cursor_field or []) or "-")
    _console(200).print(table)


# ---------------------------------------------------------------------------------------------------- a sync

def progress_printer():
    def show(p):
        click.echo(f"  … {p['stream']}: {p['records']:,} records ({p['rate']:,.0f}/s)", err=True)

    return show


def print_summary(result) -> None:
    table = _table("stream", "table", "sync", "write", "records", "cursor")
    for r in result.streams.values():
        cursor = json.dumps(r.state_after, default=str) if r.state_after is not None else "-"
        table.add_row(r.stream, r.table, r.sync, r.write, f"{r.records:,}", REDACTOR.redact(cursor)[:80])
    console = _console(200)
    console.print(table)
    for r in result.streams.values():
        if r.rows_without_key:
            console.print(f"{r.stream}: rows_without_key={r.rows_without_key:,} (records with no primary key value: "
                          "appended as they came, not merged)")
    if result.events_sent or result.event_errors:
        console.print(f"events: {result.events_sent} published"
                      + (f", {len(result.event_errors)} kept as pending (ingest events replay)" if result.event_errors else ""))
    status = "succeeded" if result.ok else "FAILED"
    total = sum(r.records for r in result.streams.values())
    rate = total / result.seconds if result.seconds else 0
    console.print(f"run {result.run.run_id} {status}: {total:,} records in {result.seconds:.1f}s ({rate:,.0f}/s) → {result.destination}")


# ---------------------------------------------------------------------------------------------------- status, events

def rows_cell(r) -> str:
    """Rows of the last load; dedup records that had no key value (appended, not merged) are called out."""
    if r.last_load_rows is None:
        return "-"
    keyless = f" ({r.last_load_rows_without_key:,} without key)" if r.last_load_rows_without_key else ""
    return f"{r.last_load_rows:,}{keyless}"


def print_status(rows) -> None:
    """`ingest status`: one row per stream, the status coloured."""
    from .status import age, sparkline

    table = _table("block", "stream", "team", "table", "status", "freshness", "last load", "rows", "rows/run",
                   "last failure", "pending")
    colour = {"fresh": "green", "ok": "green", "late": "yellow", "failing": "red", "never loaded": "cyan"}
    for r in rows:
        failure = f"{age(r.last_failure_at)} {r.failure_class}: {(r.failure_message or '')[:50]}" if r.last_failure_at else "-"
        table.add_row(r.block, r.stream, r.team, r.table, f"[{colour.get(r.status, 'white')}]{r.status}[/]",
                      r.freshness or "-", age(r.last_load_at), rows_cell(r),
                      sparkline(r.rows_history), failure, str(r.pending_events or "-"))
    _console(220).print(table)


def print_events(rows) -> None:
    """`ingest events list`: the ledger, oldest first."""
    table = _table("created", "event", "block", "stream", "rows", "status", "attempts", "last error")
    for row in rows:
        table.add_row(str(row["created_at"])[:19], row["name"], row["block"], row["stream"] or "-",
                      str(row["payload"].get("rows", "")), row["status"], str(row["attempts"]), (row["last_error"] or "")[:60])
    _console(200).print(table)


# ---------------------------------------------------------------------------------------------------- describe


def print_description(d) -> None:
    """`ingest describe`: the facts about a table, then its columns with their meaning, then its recent loads."""
    from rich.markup import escape

    from .status import age

    console = _console(200)
    key = ", ".join(d.primary_key or []) or "-"
    facts = [
        ("table", f"{d.table}  ({d.rows:,} rows)"),
        ("means", d.description or "-"),
        ("owner", f"team {d.team or '?'}"),
        ("block", f"{d.block or '?'} · stream {d.stream or '?'}" + ("" if d.in_config else "  (no longer in connectors.yaml)")),
        ("connector", d.connector or d.source or "-"),
        ("modes", f"sync {d.sync_mode or '?'} · write {d.write_mode or '?'} · key {key} · cursor {d.cursor_field or '-'}"),
        ("last load", f"{d.last_load_at or 'never'}" + (f" ({age(d.last_load_at)})" if d.last_load_at else "")),
        ("cursor", REDACTOR.redact(d.last_cursor or "-")[:150]),
        ("status", f"{d.status or '-'}" + (f" (freshness {d.freshness})" if d.freshness else " (no freshness declared)")),
        ("failure", REDACTOR.redact(d.last_failure)[:150] if d.last_failure else "-"),
        ("where", f"{d.destination} · lineage {d.lineage_dataset}"),
    ]
    loads = "  ".join(f"{str(load['landed_at'])[:16]} {load['rows'] or 0:,}" for load in d.recent_loads[:6])
    from rich.table import Table

    grid = Table.grid(padding=(0, 1))  # a fact that wraps stays in its column
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for name, value in facts + [("loads", loads or "-")]:
        grid.add_row(name, escape(str(value)))
    console.print(grid)
    table = _table("column", "type", "rejected", "meaning")
    for c in d.columns:
        column = c.column if c.field == c.column or c.field.upper() == c.column else f"{c.column} ← {c.field}"
        table.add_row(escape(column), c.type, f"{c.rejected:,}" if c.rejected else "-", escape(c.description or "-"))
    console.print(table)
