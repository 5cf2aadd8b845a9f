"""A declarative manifest block against a loopback API whose records change shape between runs:
new fields become columns, values that don't fit their column are kept in `_ingest_rejected`, nothing fails."""
from __future__ import annotations

import json

import pytest

from .support.widgets import CONFIG, MANIFEST


@pytest.mark.parametrize("write", ["dedup", "append"])
def test_new_fields_add_columns_and_misfits_are_kept_not_lost(project, api, write):
    (project.root / "widgets.yaml").write_text(MANIFEST)
    project.write_config(CONFIG.format(base_url=api.base_url, write=write))

    api.records = [
        {"id": 1, "name": "bolt", "qty": 3, "price": 1.5, "seen_at": "2024-01-01T10:00:00.000+0000", "tags": ["a"]},
        {"id": 2, "name": "nut", "qty": 7, "price": 2, "seen_at": "2024-01-02T10:00:00Z", "tags": []},
    ]
    first = project.cli("run", "widgets")
    assert first.code == 0, first.output

    # Upstream changes: a field the schema doesn't know, a qty that is no longer an integer, a bad timestamp.
    api.records = [
        {"id": 1, "name": "bolt", "qty": "n/a", "price": 1.5, "seen_at": "yesterday", "tags": ["a"], "color": "red"},
        {"id": 3, "name": "washer", "qty": 2.5, "price": "cheap", "seen_at": None, "tags": None, "color": "blue"},
    ]
    second = project.cli("run", "widgets")
    assert second.code == 0, second.output

    columns = dict(project.query("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'widgets_widgets'"))
    assert columns["color"] == "VARCHAR" and columns["qty"] == "BIGINT" and columns["tags"] == "JSON"
    latest = "" if write == "dedup" else " AND _ingest_run_id = (SELECT max(_ingest_run_id) FROM widgets_widgets)"
    rows = {
        r[0]: r[1:]
        for r in project.query(f"SELECT id, qty, price, seen_at, color, _ingest_rejected FROM widgets_widgets WHERE id IN (1, 3){latest}")
    }
    qty, price, seen_at, color, rejected = rows[1]
    assert qty is None and price == 1.5 and seen_at is None and color == "red"
    assert json.loads(rejected) == {"qty": "n/a", "seen_at": "yesterday"}
    qty, price, seen_at, color, rejected = rows[3]
    assert qty is None and price is None and color == "blue"
    assert json.loads(rejected) == {"qty": 2.5, "price": "cheap"}
    if write == "dedup":
        assert project.scalar("SELECT count(*) FROM widgets_widgets") == 3  # 1 replaced, 2 kept, 3 added
        assert project.scalar("SELECT qty FROM widgets_widgets WHERE id = 2") == 7
    else:
        assert project.scalar("SELECT count(*) FROM widgets_widgets") == 4
