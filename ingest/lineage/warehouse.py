"""Warehouse tables a sync reads, as OpenLineage input datasets: a puller's `{from: warehouse, query: ...}` inputs.

A puller can take what it fetches from the block's own destination: truck_pricing its lanes
(`lanes: {from: warehouse, query: "SELECT ... FROM shipments ..."}`), carrier_safety its carriers. Those tables are
inputs of the sync as much as the API is, and without them a lineage graph stops at the API: with them it reads
shipments → Greenscreens → truck_prices_lane_rates.

The queries are found in the config, generically (any mapping with `from: warehouse` and a `query` string), not by
asking the pullers: a new puller that reads the warehouse the same way is covered without touching lineage. The
tables come from parsing the query with sqlglot in the destination's dialect (CTE names are not tables; subqueries
are walked), and are named exactly like our outputs (`DestinationIdentity.dataset`, dbt's convention), with a 1- or
2-part name qualified by the destination's database and schema, because that is where the puller's query runs.

Never in the way of a sync: a query that does not parse gives no input (logged at debug), and sqlglot (~0.3 s to
import) is imported only when a block has such a query.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from ..destinations.base import DestinationIdentity

log = logging.getLogger("ingest.lineage")

WAREHOUSE = "warehouse"  # the `from:` value of an input read from the block's destination
DIALECTS = ("duckdb", "snowflake")  # destination kinds that are also sqlglot dialects
_MAX_DEPTH = 20  # config nesting we look into (configs are a few levels deep; the YAML loader caps depth anyway)


def warehouse_queries(config: Any) -> list[str]:
    """The SQL of every `{from: warehouse, query: <sql>}` mapping anywhere in a block's config, in config order."""
    return [node["query"] for node in _mappings(config, 0)
            if node.get("from") == WAREHOUSE and isinstance(node.get("query"), str) and node["query"].strip()]


def _mappings(value: Any, depth: int) -> Iterator[dict]:
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, dict):
        yield value
        children = value.values()
    elif isinstance(value, (list, tuple)):
        children = value
    else:
        return
    for child in children:
        yield from _mappings(child, depth + 1)


@functools.lru_cache(maxsize=64)  # START and COMPLETE/FAIL of one sync name the same inputs: parse once
def query_tables(sql: str, dialect: str | None = None) -> list[tuple[str, str, str]]:
    """The tables a query reads, as (catalog, schema, table) with "" for a part it does not name, sorted and without
    repeats. CTEs are not tables (sqlglot's scopes tell a CTE reference from a table of the same name); table
    functions (`read_csv(...)`) are not either; only query statements count (a `DROP` writes, it does not read).
    [] when the query does not parse."""
    try:
        import sqlglot
        from sqlglot import exp
        from sqlglot.optimizer.scope import traverse_scope

        found: set[tuple[str, str, str]] = set()
        for statement in sqlglot.parse(sql, read=dialect):
            if not isinstance(statement, exp.Query):
                continue
            for scope in traverse_scope(statement):
                for source in scope.sources.values():
                    if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier) and source.name:
                        found.add((source.catalog, source.db, source.name))
        return sorted(found)
    except Exception as exc:  # noqa: BLE001 - sqlglot's ParseError, TokenError, OptimizeError: no input, no failure
        log.debug("lineage: no warehouse inputs from a query that does not parse (%s: %s)", type(exc).__name__, exc)
        return []


def table_dataset(destination: "DestinationIdentity", catalog: str, schema: str, table: str) -> str:
    """A table named in a query, as an OpenLineage dataset name in `destination`: the query's own database and schema
    where it names them, the destination's where it does not (that is where the query runs)."""
    where = dataclasses.replace(destination, database=catalog or destination.database,
                                schema=schema or destination.schema)
    return where.dataset(table)


def warehouse_inputs(config: Any, destination: "DestinationIdentity | None") -> list[tuple[str, str]]:
    """(namespace, name) of every warehouse table the block's config reads, in the destination's namespace, without
    repeats. [] without a destination (nothing says where the query runs) or without such a query. Never raises:
    these inputs are a bonus, and the event must go out without them rather than not at all."""
    seen: dict[tuple[str, str], None] = {}
    try:
        for sql in warehouse_queries(config) if destination is not None else []:
            for catalog, schema, table in query_tables(sql, destination.kind if destination.kind in DIALECTS else None):
                seen[(destination.namespace, table_dataset(destination, catalog, schema, table))] = None
    except Exception as exc:  # noqa: BLE001
        log.debug("lineage: no warehouse inputs (%s: %s)", type(exc).__name__, exc)
        return []
    return list(seen)
