"""Lineage as real runs send it (the CLI, and `ingest.run` the way a Metaflow task calls it) to a loopback OpenLineage
receiver: one job per block whatever the run covers; two blocks on one API host read two datasets; the stream
schema's field descriptions reach the schema facets. Every event is checked against the OpenLineage schemas.
"""
from __future__ import annotations

import yaml

import ingest

from .fakes.lineage_receiver import LineageReceiver
from .support.blocks import demo_block, dump
from .support.openlineage_spec import check_event
from .support.widgets import manifest

WIDGETS_MANIFEST = manifest("widgets", "/widgets", {
    "id": {"type": "integer", "description": "The shop's widget number"},
    "name": {"type": ["string", "null"]},
})


def with_lineage(config: str, receiver: LineageReceiver) -> str:
    """`config` (a connectors.yaml) sending lineage to `receiver`."""
    doc = yaml.safe_load(config)
    doc.setdefault("defaults", {})["lineage"] = {"transport": "http", "url": receiver.url}
    return dump(doc)


def tags(event: dict) -> dict:
    return {t["key"]: t["value"] for t in event["run"]["facets"]["tags"]["tags"]}


def field_descriptions(dataset: dict) -> dict:
    return {f["name"]: f.get("description") for f in dataset["facets"]["schema"]["fields"]}


def test_a_block_is_one_job_whether_a_run_covers_all_its_streams_one_or_is_a_metaflow_task(project):
    """Before, `ingest run demo` reported job `demo` and `--stream users` (what each Metaflow task runs) `demo.users`:
    one block's history split over jobs. Now all three runs are job `demo`; the tags say which streams each synced."""
    with LineageReceiver() as receiver:
        project.write_config(with_lineage(dump({"defaults": {"duckdb": {"path": "warehouse.duckdb"}},
                                                "connectors": {"demo": demo_block(count=20, slice_=20)}}), receiver))
        whole = project.cli("run", "demo")
        assert whole.code == 0, whole.output
        one = project.cli("run", "demo", "--stream", "users")
        assert one.code == 0, one.output
        result = ingest.run("demo", streams=["users"], config=project.root / "connectors.yaml", lock_wait=5,
                            run_pathspec="IngestFlow/12/sync/3")
        assert result.ok
        events = receiver.wait_for(6)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"] * 3
    assert all(check_event(e) == [] for e in events)
    assert {(e["job"]["namespace"], e["job"]["name"]) for e in events} == {("ingest", "demo")}
    assert len({e["run"]["runId"] for e in events}) == 3  # three runs of the one job
    assert [tags(e)["ingest.streams"] for e in events[1::2]] == ["products,purchases,users", "users", "users"]
    task = events[5]
    assert tags(task)["metaflow.pathspec"] == "IngestFlow/12/sync/3"
    parent = task["run"]["facets"]["parent"]["job"]
    assert (parent["namespace"], parent["name"]) == ("metaflow", "IngestFlow")
    assert "parent" not in events[3]["run"]["facets"]
    assert [i["name"] for i in events[1]["inputs"]] == ["demo.users", "demo.products", "demo.purchases"]


def test_two_blocks_on_one_api_host_read_two_datasets_with_their_descriptions(project, api):
    """Two blocks of one manifest against one loopback API, a stream `widgets` each: before, both read dataset
    `widgets` on that host (one node for two shops' data); now `shop_a.widgets` and `shop_b.widgets`. The manifest's
    field description reaches the input's and the output's schema facets."""
    (project.root / "widgets.yaml").write_text(WIDGETS_MANIFEST)
    shop = {"team": "ops", "manifest": "widgets.yaml", "config": {"base_url": api.base_url},
            "streams": [{"name": "widgets"}]}
    api.records = [{"id": 1, "name": "bolt"}]
    with LineageReceiver() as receiver:
        project.write_config(with_lineage(dump({"defaults": {"duckdb": {"path": "warehouse.duckdb"}},
                                                "connectors": {"shop_a": shop, "shop_b": shop}}), receiver))
        for block in ("shop_a", "shop_b"):
            r = project.cli("run", block)
            assert r.code == 0, r.output
        events = receiver.wait_for(4)
    assert all(check_event(e) == [] for e in events)
    a, b = events[1], events[3]
    assert [(i["namespace"], i["name"]) for i in a["inputs"] + b["inputs"]] == [
        (api.base_url, "shop_a.widgets"), (api.base_url, "shop_b.widgets")]
    warehouse = f"duckdb://{project.db.resolve()}"
    assert [(o["namespace"], o["name"]) for o in a["outputs"] + b["outputs"]] == [
        (warehouse, "warehouse.main.shop_a_widgets"), (warehouse, "warehouse.main.shop_b_widgets")]
    assert field_descriptions(a["inputs"][0])["id"] == "The shop's widget number"
    described = field_descriptions(a["outputs"][0])
    assert described["id"] == "The shop's widget number" and described["name"] is None
    assert described["_ingest_load_id"].startswith("ingest: the load of this stream")
