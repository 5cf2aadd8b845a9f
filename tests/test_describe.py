"""What a table means, who owns it, where it came from — in the warehouse itself and through `ingest describe`.

One body on DuckDB and on Snowflake (fakesnow): the stream schema's descriptions become column comments, the table
comment says what the table is and who owns it, both survive a column appearing later; `ingest describe` answers
from the warehouse alone (owner, block, connector, modes, key, cursor, last load, rows, each column's meaning and
rejected values), as a table and as JSON.
"""
from __future__ import annotations

import json

from .support import blocks
from .support.widgets import manifest

STREAM_DESCRIPTION = "Widgets in the parts catalog, one row per widget"
PROPERTIES = {
    "id": {"type": "integer", "description": "The catalog's widget id"},
    "name": {"type": ["string", "null"], "title": "Widget name"},  # a title stands in for a missing description
    "qty": {"type": ["integer", "null"], "description": "Units on hand at the warehouse's last count"},
    "price": {"type": ["number", "null"]},  # says nothing: no comment
}
COLOR = {"type": ["string", "null"], "description": "Paint colour; 'n/a' for bare metal"}


def _manifest(properties: dict) -> str:
    return manifest("widgets", "/widgets", properties, description=STREAM_DESCRIPTION)


def test_comments_land_on_both_destinations_and_describe_reads_them_back(project, destination, api):
    d = destination
    (project.root / "widgets.yaml").write_text(_manifest(PROPERTIES))
    assert STREAM_DESCRIPTION in (project.root / "widgets.yaml").read_text()
    widgets = {"team": "ops", "manifest": "widgets.yaml", "config": {"base_url": api.base_url},
               "streams": [{"name": "widgets"}]}
    project.write_config(blocks.dump({"defaults": d.defaults(), "connectors": {"widgets": widgets}}))
    api.records = [{"id": 1, "name": "bolt", "qty": 3, "price": 1.5}, {"id": 2, "name": "nut", "qty": 7, "price": 2}]
    first = d.cli("run", "widgets")
    assert first.code == 0, first.output

    table_comment, columns = d.comments("widgets_widgets")
    assert table_comment.startswith(STREAM_DESCRIPTION + " | ingest: team=ops; block=widgets; source=manifest:widgets.yaml")
    assert columns["id"] == "The catalog's widget id" and columns["name"] == "Widget name"
    assert columns["qty"] == "Units on hand at the warehouse's last count" and columns["price"] is None
    assert columns["_ingest_rejected"].startswith("ingest: the original values of fields that did not fit")

    # The connector's next release declares a described field; upstream also sends one nobody declared and a misfit.
    (project.root / "widgets.yaml").write_text(_manifest({**PROPERTIES, "color": COLOR}))
    api.records = [{"id": 1, "name": "bolt", "qty": "n/a", "price": 1.5, "color": "red", "weight": 4},
                   {"id": 3, "name": "washer", "qty": 2, "price": 0.1, "color": "blue", "weight": 1}]
    second = d.cli("run", "widgets")
    assert second.code == 0, second.output
    table_comment_after, after = d.comments("widgets_widgets")
    assert after["color"] == COLOR["description"] and after["weight"] is None  # new columns: described or not
    assert {c: after[c] for c in columns} == columns and table_comment_after == table_comment  # earlier ones kept

    r = d.cli("describe", "widgets_widgets", "--json")
    assert r.code == 0, r.output
    got = json.loads(r.stdout)
    assert (got["team"], got["block"], got["stream"], got["in_config"]) == ("ops", "widgets", "widgets", True)
    assert got["connector"] == "manifest:widgets.yaml" and got["description"] == STREAM_DESCRIPTION
    assert (got["sync_mode"], got["write_mode"], got["primary_key"]) == ("full_refresh", "replace", ["id"])
    assert got["rows"] == d.scalar("SELECT count(*) FROM widgets_widgets") == 2
    assert got["status"] == "ok" and [load["rows"] for load in got["recent_loads"]] == [2, 2]
    meaning = {c["field"]: (c["description"], c["rejected"]) for c in got["columns"]}
    assert meaning["qty"] == ("Units on hand at the warehouse's last count", 1)  # "n/a" kept in _ingest_rejected
    assert meaning["color"] == (COLOR["description"], 0) and meaning["weight"] == (None, 0)
    assert got["lineage_dataset"].endswith(("warehouse.main.widgets_widgets", "ANALYTICS.RAW.WIDGETS_WIDGETS"))

    text = d.cli("describe", "widgets.widgets")  # the block.stream spelling, as a table for people
    assert text.code == 0, text.output
    assert "team ops" in text.stdout and "manifest:widgets.yaml" in text.stdout and COLOR["description"] in text.stdout


def test_describe_names_what_exists_when_asked_for_what_does_not(project, api):
    (project.root / "widgets.yaml").write_text(_manifest(PROPERTIES))
    widgets = {"team": "ops", "manifest": "widgets.yaml", "config": {"base_url": api.base_url},
               "streams": [{"name": "widgets"}]}
    project.write_config(blocks.dump({"defaults": {"duckdb": {"path": "warehouse.duckdb"}},
                                      "connectors": {"widgets": widgets}}))
    before = project.cli("describe", "widgets_widgets")
    assert before.code == 2 and "nothing has landed yet" in before.stderr, before.output
    assert not project.db.exists()  # describing creates nothing
    api.records = [{"id": 1}]
    assert project.cli("run", "widgets").code == 0
    for name, words in [("nope", "landed tables: widgets_widgets"), ("widgets.nope", "has no stream 'nope'"),
                        ("x'; DROP TABLE widgets_widgets; --", "no landed table or block.stream")]:
        r = project.cli("describe", name)
        assert r.code == 2 and words in r.stderr and "Traceback" not in r.stderr, (name, r.output)
    assert project.scalar("SELECT count(*) FROM widgets_widgets") == 1  # names are parameters, never SQL
    # a table whose block left connectors.yaml is still described from the warehouse
    project.write_config(blocks.dump({"defaults": {"duckdb": {"path": "warehouse.duckdb"}}, "connectors": {}}))
    r = project.cli("describe", "widgets_widgets", "--json")
    assert r.code == 0, r.output
    got = json.loads(r.stdout)
    assert got["in_config"] is False and got["team"] == "ops" and got["block"] == "widgets" and got["rows"] == 1
