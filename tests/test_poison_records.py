"""Issue 10, classes 2 and 3, end to end: the real CLI runs a declarative manifest against a loopback API and lands
into DuckDB and into Snowflake (a fakesnow server, the real connector over HTTP).

- The poison-record corpus (tests/fixtures/poison_records.py): every record lands — a value that does not fit is
  NULL with the original in `_ingest_rejected`, a name that collides gets a numbered column — identically in both
  destinations, and a rerun succeeds (the stream is never stuck on a record).
- Dedup records without a primary key value are appended, not merged, counted as rows_without_key in the run
  summary and the DataLanded event, the same on every rerun and in both destinations.
- A configured primary_key / cursor that is not a field of the stream is refused at run start (exit 2, naming it).
"""
from __future__ import annotations

import json

import pytest

from .support.cli import run_cli
from .fixtures.poison_records import CORPUS, SCHEMA, nested
from .support.snowflake import env_for
from .support.widgets import manifest

pytest.importorskip("fakesnow")

BLOCK = """
connectors:
  poison:
    team: qa
    manifest: poison.yaml
    config: {{base_url: "{base_url}"}}
    streams:
      - name: poison
        write: dedup
{extra}"""
TABLE = "poison_poison"

# The sync loop measures every 256th record's size: a poison record in that spot must not fail the sync either.
SAMPLED_ID = 10_000
SAMPLED = {"id": SAMPLED_ID, "payload": {"big": 2**70, "deep": nested(300)}}


def served_records() -> list[dict]:
    fillers = [{"id": 1000 + i, "name": f"filler {i}"} for i in range(255 - len(CORPUS))]
    return [record for _, record, _ in CORPUS] + fillers + [SAMPLED]


def write_project(project, api, schema: dict = SCHEMA, extra: str = "", destination: str = "duckdb", sf=None) -> dict:
    (project.root / "poison.yaml").write_text(manifest("poison", "/records", schema))
    head = sf.defaults() if sf is not None else "defaults:\n  duckdb: {path: warehouse.duckdb}\n"
    project.write_config(head + BLOCK.format(base_url=api.base_url, extra=extra))
    return env_for(project) if sf is not None else {}


class Landed:
    """The rows of one table in either destination, by id, with each column under its DuckDB name (Snowflake's
    upper-cased names are matched case-insensitively) and JSON values parsed."""

    def __init__(self, project, sf, table: str = TABLE):
        if sf is None:
            con_rows = project.query(f"SELECT * FROM {table}")
            names = [r[0] for r in project.query(f"DESCRIBE {table}")]
        else:
            # Through the fakesnow server a NULL TIMESTAMP_TZ reads back as 1970-01-01 (its result serialisation; the
            # stored value is NULL): timestamps are read as text, where NULL stays NULL.
            types = sf.query("SELECT COLUMN_NAME, DATA_TYPE FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = ? "
                             "ORDER BY ORDINAL_POSITION", [table.upper()])
            quoted = [(t, '"' + n.replace('"', '""') + '"') for n, t in types]
            select = ", ".join(f"CAST({n} AS VARCHAR) AS {n}" if t.startswith("TIMESTAMP") else n for t, n in quoted)
            cur = sf._con.cursor()
            cur.execute(f'SELECT {select} FROM "{table.upper()}"')
            con_rows, names = cur.fetchall(), [d[0] for d in cur.description]
        self.names = names
        self.rows = [dict(zip(names, r)) for r in con_rows]

    def column(self, name: str) -> str:
        matches = [n for n in self.names if n == name or n == name.upper()]
        assert matches, f"no column {name!r} (columns: {self.names})"
        return matches[0]

    def value(self, row: dict, name: str):
        v = row[self.column(name)]
        if isinstance(v, str) and v[:1] in "{[" and name not in ("name",):
            try:
                return json.loads(v)
            except ValueError:
                return v
        return v

    def by_id(self) -> dict:
        return {r[self.column("id")]: r for r in self.rows}


def assert_corpus_landed(landed: Landed) -> None:
    rows = landed.by_id()
    for label, record, expected in CORPUS:
        row = rows[record["id"]]
        rejected = landed.value(row, "_ingest_rejected")
        assert rejected == expected["rejected"], f"{label}: _ingest_rejected is {rejected!r}"
        for column, want in expected["columns"].items():
            got = landed.value(row, column)
            assert got == want, f"{label}: column {column!r} is {str(got)[:200]!r}, expected {str(want)[:200]!r}"
    sampled = landed.value(rows[SAMPLED_ID], "payload")
    assert sampled["big"] == 2**70 and sampled["deep"] == nested(300)


@pytest.mark.parametrize("destination", ["duckdb", "snowflake"])
def test_every_poison_record_lands_and_a_rerun_is_not_stuck(project, api, request, destination):
    server = request.getfixturevalue("sf") if destination == "snowflake" else None
    env = write_project(project, api, sf=server)
    api.records = served_records()
    assert len(CORPUS) >= 30 and len(api.records) == 256
    for attempt in (1, 2):
        result = run_cli(["run", "poison", "--destination", destination], project.root, env=env)
        assert result.code == 0, f"run {attempt}: {result.output}"
        landed = Landed(project, server)
        # dedup on id: nothing dropped, nothing duplicated by the rerun
        assert len(landed.rows) == 256, f"run {attempt}: {len(landed.rows)} rows"
        assert_corpus_landed(landed)


def test_poison_columns_are_named_the_same_in_duckdb_and_snowflake(project, api, sf):
    env = write_project(project, api, sf=sf)
    api.records = served_records()
    for destination in ("duckdb", "snowflake"):
        result = run_cli(["run", "poison", "--destination", destination], project.root, env=env)
        assert result.code == 0, result.output
    duck, snow = Landed(project, None), Landed(project, sf)
    assert [n.upper() for n in duck.names] == snow.names


# ---------------------------------------------------------------------------------------- class 3: keys


KEYED_SCHEMA = {"id": {"type": ["integer", "null"]}, "name": {"type": ["string", "null"]},
                "updated": {"type": ["string", "null"], "format": "date-time"}}
KEYLESS = [
    {"id": 1, "name": "one"},
    {"id": 2, "name": "two"},
    {"id": None, "name": "null key a"},
    {"id": None, "name": "null key b"},
    {"name": "missing key"},
    {"id": "not a number", "name": "rejected key"},  # the key value does not fit: NULL, kept in _ingest_rejected
]


def landed_events(project, sf) -> list[dict]:
    if sf is None:
        rows = project.query("SELECT payload FROM _ingest_events WHERE name LIKE 'data_landed%' ORDER BY created_at")
    else:
        rows = sf.query('SELECT "PAYLOAD" FROM "_INGEST_EVENTS" WHERE "NAME" LIKE \'data_landed%\' ORDER BY "CREATED_AT"')
    return [json.loads(p) if isinstance(p, str) else p for (p,) in rows]


@pytest.mark.parametrize("destination", ["duckdb", "snowflake"])
def test_records_without_a_key_are_appended_counted_and_never_merged(project, api, request, destination):
    server = request.getfixturevalue("sf") if destination == "snowflake" else None
    env = write_project(project, api, schema=KEYED_SCHEMA, sf=server)
    api.records = KEYLESS
    for attempt in (1, 2, 3):
        result = run_cli(["run", "poison", "--destination", destination], project.root, env=env)
        assert result.code == 0, result.output
        assert "rows_without_key=4" in result.output, result.output
        landed = Landed(project, server)
        names = sorted(landed.value(r, "name") for r in landed.rows)
        # keyed records merge (one row each); the 4 without a key are appended again on every run
        assert names == sorted(["one", "two"] + [r["name"] for r in KEYLESS[2:]] * attempt), names
        event = landed_events(project, server)[-1]
        assert event["rows_without_key"] == 4 and event["rows"] == 6
    if destination == "duckdb":  # status reads the block's own destination
        status = run_cli(["status", "--json"], project.root, env=env)
        (stream,) = [s for s in map(json.loads, status.stdout.splitlines()) if s["block"] == "poison"]
        assert stream["last_load_rows"] == 6 and stream["last_load_rows_without_key"] == 4, status.output
        assert "6 (4 without key)" in run_cli(["status"], project.root, env=env).stdout


@pytest.mark.parametrize("key,value", [("primary_key", "[ident]"), ("cursor", "updatedd")])
def test_a_configured_key_or_cursor_that_is_not_a_field_is_refused_at_start(project, api, key, value):
    write_project(project, api, schema=KEYED_SCHEMA, extra=f"        {key}: {value}\n")
    api.records = KEYLESS
    result = run_cli(["run", "poison"], project.root)
    assert result.code == 2, result.output
    name = value.strip("[]")
    assert f"connectors.poison.streams[0].{key}: {name!r} is not a field of stream 'poison'" in result.output
    assert "connectors.yaml:" in result.output and "id, name, updated" in result.output
    assert not project.db.exists(), "a refused run must not create the warehouse"


@pytest.mark.parametrize("key,value", [("primary_key", "[_ingest_load_id]"), ("cursor", "_INGEST_EXTRACTED_AT")])
def test_a_key_or_cursor_named_like_our_own_columns_is_refused_at_start(project, api, key, value):
    """Such a field lands renamed (`_ingest_load_id_2`); a merge keyed on the name would use OUR column (one value per
    load) and collapse every batch to one row: refused, before anything is written."""
    schema = {**KEYED_SCHEMA, "_ingest_load_id": {"type": ["integer", "null"]},
              "_INGEST_EXTRACTED_AT": {"type": ["string", "null"], "format": "date-time"}}
    write_project(project, api, schema=schema, extra=f"        {key}: {value}\n")
    api.records = KEYLESS
    result = run_cli(["run", "poison"], project.root)
    assert result.code == 2, result.output
    name = value.strip("[]")
    assert f"streams[0].{key}: {name!r} is named like one of ingest's own columns (it lands as '{name}_2')" in result.output
    assert not project.db.exists()


def test_an_open_schema_cannot_be_checked_up_front_so_records_without_the_key_are_appended(project, api):
    """A stream whose schema declares no fields may carry any: a configured key is accepted, and records that lack
    it land as rows without a key (today: the dedup failed, and its cleanup hid why as "transaction is aborted")."""
    write_project(project, api, schema={}, extra="        primary_key: [ident]\n")
    api.records = KEYLESS
    for attempt in (1, 2):
        result = run_cli(["run", "poison"], project.root)
        assert result.code == 0, result.output
        assert "rows_without_key=6" in result.output
        assert project.scalar(f"SELECT count(*) FROM {TABLE}") == 6 * attempt
