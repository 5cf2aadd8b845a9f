"""Warehouse tables a puller reads (`{from: warehouse, query: ...}` in its config) are input datasets of its sync,
named like our outputs (ingest/lineage/warehouse.py).

In process: finding the queries in a config, the tables a query reads (sqlglot: joins, CTEs, qualified names,
subqueries, table functions, garbage), their dataset names on DuckDB and Snowflake, and an unparsable query that
leaves the events whole. End to end: the truck-pricing block reading its lanes from a `shipments` table in its
DuckDB file, replayed from the Greenscreens cassette, reports shipments → Greenscreens → truck_prices_lane_rates
to a loopback OpenLineage receiver.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import subprocess
import sys

import duckdb
import pytest
import yaml

from ingest.config import load_project
from ingest.destinations.base import DestinationIdentity, RunRecord, StreamTarget
from ingest.lineage import Lineage, query_tables, warehouse_inputs, warehouse_queries
from ingest.sync.results import StreamResult

from .fakes import fake_greenscreens as gsf
from .fakes.lineage_receiver import LineageReceiver
from .support import cassettes
from .support.blocks import dump, prepared
from .support.cli import CliResult
from .support.openlineage_spec import check_event
from .support.pullers import PRICES_TABLE, write_pricing_block

DUCKDB = DestinationIdentity(kind="duckdb", namespace="duckdb:///data/warehouse.duckdb", database="warehouse",
                             schema="main")
SNOWFLAKE = DestinationIdentity(kind="snowflake", namespace="snowflake://acme-prod", database="ANALYTICS", schema="RAW")


# ---------------------------------------------------------------- the tables of a query


def test_joins_give_every_table():
    sql = ("SELECT s.id, c.name FROM shipments s JOIN customers c ON s.customer_id = c.id "
           "LEFT JOIN lanes USING (lane_id)")
    assert query_tables(sql, "duckdb") == [("", "", "customers"), ("", "", "lanes"), ("", "", "shipments")]


def test_cte_names_are_not_tables():
    sql = ("WITH recent AS (SELECT * FROM shipments WHERE pickup_date > current_date - 30), "
           "late AS (SELECT * FROM recent WHERE late) SELECT * FROM late JOIN carriers USING (dot_number)")
    assert query_tables(sql, "duckdb") == [("", "", "carriers"), ("", "", "shipments")]
    # a CTE is only a name inside its WITH: the same name outside it is a table
    assert query_tables("SELECT * FROM (WITH x AS (SELECT 1 AS n) SELECT n FROM x) q JOIN x ON true", "duckdb") == [
        ("", "", "x")]


def test_schema_qualified_names_keep_their_parts():
    sql = "SELECT * FROM ops.shipments JOIN analytics.raw.carriers USING (dot_number) JOIN \"Ops\".\"Lanes\" USING (id)"
    assert query_tables(sql, "duckdb") == [
        ("", "Ops", "Lanes"), ("", "ops", "shipments"), ("analytics", "raw", "carriers")]


def test_subqueries_are_walked():
    sql = ("SELECT * FROM (SELECT * FROM shipments WHERE active) s "
           "WHERE s.dot_number IN (SELECT dot_number FROM carriers) "
           "AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.id = s.id)")
    assert query_tables(sql, "duckdb") == [("", "", "carriers"), ("", "", "holds"), ("", "", "shipments")]


def test_snowflake_syntax_parses_in_the_snowflake_dialect():
    sql = "SELECT c.dot_number, f.value FROM carriers c, LATERAL FLATTEN(input => c.tags) f WHERE c.active QUALIFY true"
    assert query_tables(sql, "snowflake") == [("", "", "carriers")]


@pytest.mark.parametrize("sql", [
    "this is not sql ((", "SELECT * FROM", "SELECT 'unterminated FROM shipments", "", "SELECT 1",
    "SELECT * FROM read_csv('lanes.csv')",  # a table function reads a file, not a warehouse table
    "DROP TABLE shipments",  # not a query: it reads nothing
])
def test_what_is_not_a_table_read_gives_nothing_and_never_raises(sql, caplog):
    with caplog.at_level(logging.DEBUG, logger="ingest.lineage"):
        assert query_tables(sql, "duckdb") == []
    if sql == "this is not sql ((":
        assert "does not parse" in caplog.text


# ---------------------------------------------------------------- the queries of a config, their dataset names


def test_warehouse_queries_are_found_anywhere_in_a_config():
    config = {
        "lanes": {"from": "warehouse", "query": "SELECT * FROM shipments"},
        "carriers": {"from": "list", "dot_numbers": [1]},
        "nested": [{"inputs": {"from": "warehouse", "query": "SELECT dot_number FROM carriers"}}],
        "no_query": {"from": "warehouse"}, "not_text": {"from": "warehouse", "query": 42},
        "csv": {"from": "csv", "path": "lanes.csv", "query": "SELECT 1 FROM csv_is_not_a_warehouse"},
    }
    assert warehouse_queries(config) == ["SELECT * FROM shipments", "SELECT dot_number FROM carriers"]


def test_tables_are_named_like_our_outputs_in_the_destination():
    query = ("WITH s AS (SELECT * FROM shipments) "
             "SELECT * FROM s JOIN ops.lanes USING (id) JOIN other.ref.zips USING (zip)")
    config = {"lanes": {"from": "warehouse", "query": query}}
    assert warehouse_inputs(config, DUCKDB) == [
        ("duckdb:///data/warehouse.duckdb", "warehouse.main.shipments"),
        ("duckdb:///data/warehouse.duckdb", "warehouse.ops.lanes"),
        ("duckdb:///data/warehouse.duckdb", "other.ref.zips"),
    ]
    assert warehouse_inputs(config, DUCKDB)[0][1] == DUCKDB.dataset("shipments")  # the name our output would have
    assert warehouse_inputs(config, SNOWFLAKE) == [
        ("snowflake://acme-prod", "ANALYTICS.RAW.SHIPMENTS"), ("snowflake://acme-prod", "ANALYTICS.OPS.LANES"),
        ("snowflake://acme-prod", "OTHER.REF.ZIPS")]
    assert warehouse_inputs(config, None) == []  # nothing says where the query runs
    assert warehouse_inputs({"lanes": {"from": "warehouse", "query": "SELEC nonsense (("}}, DUCKDB) == []


def test_sqlglot_is_imported_only_for_a_block_with_a_warehouse_query():
    """Runner start-up: importing lineage, and a block without such a query, never import sqlglot (~0.3 s)."""
    code = """if True:
        import sys
        import ingest.sync.runner  # what `ingest run` imports
        from ingest.lineage import warehouse_inputs
        from ingest.destinations.base import DestinationIdentity
        d = DestinationIdentity(kind='duckdb', namespace='duckdb:///w.duckdb', database='w', schema='main')
        assert warehouse_inputs({'lanes': {'from': 'csv', 'path': 'l.csv'}}, d) == []
        assert 'sqlglot' not in sys.modules
        assert warehouse_inputs({'lanes': {'from': 'warehouse', 'query': 'SELECT * FROM t'}}, d) != []
        assert 'sqlglot' in sys.modules
    """
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


PRICING = """
defaults:
  duckdb: {path: warehouse.duckdb}
connectors:
  truck_prices:
    team: pricing
    puller: truck_pricing
    config:
      client_id: ingest
      client_secret: ${TEST_LINEAGE_GS_SECRET}
      lanes: {from: warehouse, query: "SELEC shipment_id FROM (((shipments"}
    streams:
      - name: lane_rates
"""


def test_an_unparsable_query_leaves_the_events_whole(tmp_path, monkeypatch):
    """The puller's own run reports a bad query; lineage just names no warehouse input, and sends its events."""
    monkeypatch.setenv("TEST_LINEAGE_GS_SECRET", secrets.token_urlsafe(12))  # never sent: the query fails first
    (tmp_path / "connectors.yaml").write_text(PRICING)
    block = prepared(load_project(tmp_path / "connectors.yaml").block("truck_prices"))
    run = RunRecord(run_id="20250102T030405Z-abc123", block=block.name, team=block.team, streams=["lane_rates"],
                    started_at=dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
    target = StreamTarget(block=block.name, team=block.team, source=block.source_label, stream="lane_rates",
                          table=PRICES_TABLE, write="dedup", primary_key=["lane_id"], cursor="pickup_date",
                          columns={"lane_id": "string"}, run_id=run.run_id, load_id=f"{run.run_id}-lane_rates")
    lineage = Lineage.from_settings({"transport": "file", "path": "ol.jsonl"}, base_dir=tmp_path, destination=DUCKDB)
    lineage.start(block=block, run=run, targets={"lane_rates": target})
    run.ended_at, run.status = run.started_at, "succeeded"
    lineage.complete(block=block, run=run, targets={"lane_rates": target},
                     results={"lane_rates": StreamResult(stream="lane_rates", table=PRICES_TABLE, write="dedup",
                                                         sync="incremental")})
    events = [json.loads(line) for line in (tmp_path / "ol.jsonl").read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"] and lineage.errors == []
    assert all(check_event(e) == [] for e in events)
    assert [i["name"] for i in events[1]["inputs"]] == ["truck_prices.lane_rates"]


# ---------------------------------------------------------------- end to end: shipments → Greenscreens → prices


def shipments_table(db) -> None:
    """fixtures/pullers/lanes.csv as a `shipments` table with its own column names (as
    test_truck_pricing.test_cassette_replay_with_lanes_from_a_warehouse_shipments_table builds it)."""
    from ingest.sources.pullers import read_csv_rows
    from ingest.sources.pullers.values import parse_datetime

    con = duckdb.connect(str(db))
    con.execute("""CREATE TABLE shipments (id VARCHAR, pickup_at TIMESTAMP, equipment VARCHAR, o_city VARCHAR,
                   o_state VARCHAR, o_zip VARCHAR, d_city VARCHAR, d_state VARCHAR, d_zip VARCHAR, commodity VARCHAR)""")
    for r in read_csv_rows(gsf.LANES_CSV):
        con.execute("INSERT INTO shipments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            r["shipment_id"], parse_datetime(r["pickup_date"]).replace(tzinfo=None) if r["pickup_date"] else None,
            r["equipment_type"], r["origin_city"], r["origin_state"], (r["origin_zip"] or "").zfill(5),
            r["destination_city"], r["destination_state"], r["destination_zip"], r["commodity"]])
    con.close()


LANES_QUERY = ("WITH s AS (SELECT * FROM shipments) "
               "SELECT id AS shipment_id, pickup_at AS pickup_date, equipment AS equipment_type, o_city AS origin_city, "
               "o_state AS origin_state, o_zip AS origin_zip, d_city AS destination_city, d_state AS destination_state, "
               "d_zip AS destination_zip, commodity FROM s")


def replay_beside_loopback(record: bool):
    """The Greenscreens cassettes' VCR, letting loopback requests through: the lineage receiver is real, on
    127.0.0.1, while the API is replayed (its requests go to testapi.greenscreens.ai)."""
    vcr = gsf.make_vcr(record)
    vcr.ignore_localhost = True
    return vcr


def test_a_puller_reading_a_warehouse_table_reports_it_as_an_input(project):
    shipments_table(project.db)
    write_pricing_block(project, lanes=json.dumps({"from": "warehouse", "query": LANES_QUERY}), csv=None)
    with LineageReceiver() as receiver:
        doc = yaml.safe_load((project.root / "connectors.yaml").read_text())
        doc["defaults"]["lineage"] = {"transport": "http", "url": receiver.url}
        project.write_config(dump(doc))
        command = cassettes.cassette_command(gsf.INITIAL, "run", "truck_prices", allow_unplayed=True,
                                             vcr=f"{__name__}:replay_beside_loopback")
        proc = subprocess.run(command, cwd=project.root, env=gsf.cassette_env("replay-secret-0000"),
                              capture_output=True, text=True, timeout=240)
        result = CliResult(proc.returncode, proc.stdout, proc.stderr)
        assert result.code == 0, result.output
        events = receiver.wait_for(2)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert all(check_event(e) == [] for e in events)
    complete = events[1]
    warehouse = f"duckdb://{project.db.resolve()}"
    # shipments → Greenscreens → truck_prices_lane_rates, the shipments table named as dbt (and our outputs) name it
    assert [(i["namespace"], i["name"]) for i in complete["inputs"]] == [
        (warehouse, "warehouse.main.shipments"), (gsf.SITE, "truck_prices.lane_rates")]
    assert [(o["namespace"], o["name"]) for o in complete["outputs"]] == [(warehouse, f"warehouse.main.{PRICES_TABLE}")]
    assert complete["inputs"][0]["facets"]["dataSource"]["name"] == "duckdb"
    assert complete["job"]["name"] == "truck_prices"
    from ingest.sources.pullers.truck_pricing import SCHEMA

    lane_id = SCHEMA["properties"]["lane_id"]["description"]  # the puller's schema says what it is
    assert lane_id.startswith("Primary key: '<pickup date>|")
    fields = complete["outputs"][0]["facets"]["schema"]["fields"]
    assert {f["name"]: f.get("description") for f in fields}["lane_id"] == lane_id
