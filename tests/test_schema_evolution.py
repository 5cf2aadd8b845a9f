"""A declarative manifest block against a loopback API whose records change shape between runs:
new fields become columns, values that don't fit their column are kept in `_ingest_rejected`, nothing fails."""
from __future__ import annotations


import pytest

from .support import blocks
from .support.widgets import MANIFEST, assert_misfits_kept


@pytest.mark.parametrize("write", ["dedup", "append"])
def test_new_fields_add_columns_and_misfits_are_kept_not_lost(project, destination, api, write):
    """Into DuckDB and into Snowflake (fakesnow), from one body (two blocks side by side into Snowflake, with a
    camelCase field: test_snowflake_cli.py)."""
    d = destination
    (project.root / "widgets.yaml").write_text(MANIFEST)
    widgets = {"team": "ops", "manifest": "widgets.yaml", "config": {"base_url": api.base_url},
               "streams": [{"name": "widgets", "write": write}]}
    project.write_config(blocks.dump({"defaults": d.defaults(), "connectors": {"widgets": widgets}}))

    api.records = [
        {"id": 1, "name": "bolt", "qty": 3, "price": 1.5, "seen_at": "2024-01-01T10:00:00.000+0000", "tags": ["a"]},
        {"id": 2, "name": "nut", "qty": 7, "price": 2, "seen_at": "2024-01-02T10:00:00Z", "tags": []},
    ]
    first = d.cli("run", "widgets")
    assert first.code == 0, first.output

    # Upstream changes: a field the schema doesn't know, a qty that is no longer an integer, a bad timestamp.
    api.records = [
        {"id": 1, "name": "bolt", "qty": "n/a", "price": 1.5, "seen_at": "yesterday", "tags": ["a"], "color": "red"},
        {"id": 3, "name": "washer", "qty": 2.5, "price": "cheap", "seen_at": None, "tags": None, "color": "blue"},
    ]
    second = d.cli("run", "widgets")
    assert second.code == 0, second.output

    columns = d.columns("widgets_widgets")
    assert (columns["color"], columns["qty"], columns["tags"]) == (d.types["text"], d.types["integer"], d.types["json"])
    latest = "" if write == "dedup" else " AND _ingest_run_id = (SELECT run_id FROM _ingest_runs ORDER BY started_at DESC LIMIT 1)"
    rows = {r[0]: r[1:] for r in d.query(
        f"SELECT id, qty, price, seen_at IS NULL, color, _ingest_rejected FROM widgets_widgets WHERE id IN (1, 3){latest}")}
    assert_misfits_kept(rows)
    if write == "dedup":
        assert d.scalar("SELECT count(*) FROM widgets_widgets") == 3  # 1 replaced, 2 kept, 3 added
        assert d.scalar("SELECT qty FROM widgets_widgets WHERE id = 2") == 7
    else:
        assert d.scalar("SELECT count(*) FROM widgets_widgets") == 4
