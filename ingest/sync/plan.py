"""Planning a sync: the block's streams checked against what the connector offers, before anything is opened.

The result is the connector's `ConfiguredAirbyteCatalog` (sync mode, cursor, primary key, destination sync mode) and
our settings per stream, then one `StreamTarget` (where and how a stream lands) and one `StreamResult` per stream.
A stream the connector doesn't offer, an impossible mode, a key or cursor that is not a field: a config error (exit 2)
at the line that sets it, raised before the destination is opened, so it leaves no file behind.
"""
from __future__ import annotations

from ..config import Block, ConfigError, Project
from ..destinations.base import RunRecord, StreamTarget
from ..errors import SyncError
from .results import StreamResult
from .state import stream_state_blob


def discover_and_plan(project: Project, block: Block, source, only: list[str] | None, full_refresh: bool):
    """(configured catalog, settings, None), or (None, None, the error) when discovering failed: a failed discover
    is a failed run (recorded once the destination is open), not a config error."""
    try:
        catalog = source.discover(for_sync=True)
    except SyncError as exc:
        return None, None, exc
    configured, settings = configured_catalog(project, block, catalog, only, full_refresh)
    return configured, settings, None


def configured_catalog(project: Project, block: Block, catalog, only: list[str] | None, full_refresh: bool):
    """The block's streams → a ConfiguredAirbyteCatalog plus our per-stream write settings."""
    from ..sources.protocol import ConfiguredAirbyteCatalog

    available = {s.name: s for s in catalog.streams}
    problems, configured, settings = [], [], {}
    index = {s.name: i for i, s in enumerate(block.streams)}
    for s in _wanted(block, only):
        stream_problems, setting = _stream_settings(project, block, index[s.name], s, available)
        problems += stream_problems
        if setting is not None:
            configured.append(_configured_stream(available[s.name], *setting[1:]))
            settings[s.name] = setting
    if problems:
        raise ConfigError(problems)
    return ConfiguredAirbyteCatalog(streams=configured), settings


def _wanted(block: Block, only: list[str] | None) -> list:
    """The block's streams, or the ones --stream names (each must be one of the block's)."""
    wanted = block.streams
    if only:
        names = {s.name for s in wanted}
        unknown = [s for s in only if s not in names]
        if unknown:
            raise ConfigError(f"--stream: block {block.name!r} has no stream(s) {', '.join(unknown)} (streams: {', '.join(sorted(names))})")
        wanted = [s for s in wanted if s.name in only]
    return wanted


def _stream_settings(project: Project, block: Block, i: int, s, available: dict) -> tuple[list[str], tuple | None]:
    """One of the block's streams checked against the connector's: (problems, None) or
    ([], (stream config, sync, write, primary key or None, cursor))."""
    stream = available.get(s.name)
    line = project.lines.get(("connectors", block.name, "streams", i, "name"))
    where = f"{project.path}{f':{line}' if line else ''}: connectors.{block.name}.streams[{i}]"
    if stream is None:
        return [f"{where}: the connector has no stream {s.name!r} (it offers: {', '.join(sorted(available))})"], None
    modes = [getattr(m, "value", m) for m in stream.supported_sync_modes or []]
    sync = s.sync or ("incremental" if "incremental" in modes else "full_refresh")
    if sync not in modes:
        return [f"{where}.sync: the stream supports {', '.join(modes)}, not {sync}"], None
    if problems := _not_a_field(project, block, i, s, stream, line):
        return problems, None
    pk = s.primary_key or [p[0] for p in (stream.source_defined_primary_key or []) if p]
    cursor = s.cursor or ((stream.default_cursor_field or [None])[0] if sync == "incremental" else None)
    if problems := _named_like_ours(where, pk, cursor):
        return problems, None
    write = s.write or ("dedup" if sync == "incremental" and pk else "append" if sync == "incremental" else "replace")
    if write == "dedup" and not pk:
        return [f"{where}.write: dedup needs a primary key; the connector declares none, so set primary_key"], None
    return [], (s, sync, write, pk or None, cursor)


def _not_a_field(project: Project, block: Block, i: int, s, stream, line) -> list[str]:
    # A configured key or cursor that the stream does not have would silently merge nothing (or everything):
    # refuse it before anything is written, at the line that sets it.
    fields = sorted((stream.json_schema or {}).get("properties") or {})
    wrong = [("primary_key", f) for f in _not_fields(stream.json_schema, s.primary_key or [])]
    wrong += [("cursor", f) for f in _not_fields(stream.json_schema, [s.cursor] if s.cursor else [])]
    problems = []
    for key, field in wrong:
        key_line = project.lines.get(("connectors", block.name, "streams", i, key)) or line
        problems.append(f"{project.path}{f':{key_line}' if key_line else ''}: connectors.{block.name}."
                        f"streams[{i}].{key}: {field!r} is not a field of stream {s.name!r} "
                        f"(its fields: {', '.join(fields)})")
    return problems


def _not_fields(json_schema: dict | None, names: list[str]) -> list[str]:
    """The names that are not declared fields of a stream. A schema that declares no properties at all is open
    (anything may come): nothing can be checked up front, and records lacking the key count as rows_without_key."""
    props = (json_schema or {}).get("properties") or {}
    return [n for n in names if props and n not in props]


def _named_like_ours(where: str, pk: list[str], cursor: str | None) -> list[str]:
    from ..destinations.typing import RESERVED, field_key

    # A field named like one of our columns lands renamed (`_ingest_load_id` → `_ingest_load_id_2`); keying
    # or ordering on it would merge on OUR column (one value per load) and collapse the stream to one row.
    ours = [(k, f) for k, f in [("primary_key", f) for f in pk] + [("cursor", cursor)] if f and f.lower() in RESERVED]
    return [f"{where}.{key}: {field!r} is named like one of ingest's own columns (it lands as "
            f"{field_key(field)!r}); a {key.replace('_', ' ')} on it is not supported: choose "
            "another field, or land the stream with write: append" for key, field in ours]


def _configured_stream(stream, sync: str, write: str, pk: list[str] | None, cursor: str | None):
    from ..sources.protocol import ConfiguredAirbyteStream, DestinationSyncMode, SyncMode

    dsm = {"append": DestinationSyncMode.append, "dedup": DestinationSyncMode.append_dedup, "replace": DestinationSyncMode.overwrite}[write]
    return ConfiguredAirbyteStream(
        stream=stream,
        sync_mode=SyncMode(sync),
        destination_sync_mode=dsm,
        cursor_field=[cursor] if cursor else None,
        primary_key=[[k] for k in pk] if pk else None,
    )


def stream_targets(block: Block, run: RunRecord, configured, settings: dict, stored: dict[str, dict],
                   full_refresh: bool) -> tuple[dict[str, StreamTarget], dict[str, StreamResult]]:
    """Where and how each configured stream lands (its target), and its result so far (the state it starts from).
    A target carries what the stream's schema says its fields mean (column comments) and the release that reads it."""
    from ..destinations.descriptions import META_DESCRIPTIONS, description_text, descriptions_from_schema
    from ..destinations.typing import columns_from_schema
    from ..sources.connector import release_label

    targets: dict[str, StreamTarget] = {}
    results: dict[str, StreamResult] = {}
    connector = release_label(block)
    for cs in configured.streams:
        s, sync, write, pk, cursor = settings[cs.stream.name]
        schema = cs.stream.json_schema
        targets[s.name] = StreamTarget(
            block=block.name, team=block.team, source=block.source_label, stream=s.name, table=s.table,
            write=write, primary_key=pk, cursor=cursor, columns=columns_from_schema(schema),
            run_id=run.run_id, load_id=f"{run.run_id}-{s.name}", full_refresh=full_refresh,
            sync=sync, connector=connector, description=description_text(schema) or block.spec.description,
            descriptions={**descriptions_from_schema(schema), **META_DESCRIPTIONS},
        )
        results[s.name] = StreamResult(
            stream=s.name, table=s.table, write=("replace" if full_refresh else write), sync=sync,
            state_before=stream_state_blob(stored.get(s.name)), load_id=targets[s.name].load_id,
        )
    return targets, results
