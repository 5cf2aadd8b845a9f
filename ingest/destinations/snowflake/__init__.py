"""Snowflake destination: the production warehouse. Same protocol and guarantees as the DuckDB destination.

One checkpoint (a batch and the state that follows it) is, in this order:
1. autocommit, before anything else: `ALTER TABLE … ADD COLUMN` for new fields (one statement for all of them),
   `CREATE OR REPLACE TRANSIENT TABLE _INGEST_LOAD_<T>`, the batch written locally as ONE Parquet file,
   `PUT` to a temporary stage and `COPY INTO` the load table (`MATCH_BY_COLUMN_NAME`, `PURGE`);
2. ONE transaction of DML only — nothing in it commits implicitly:
   `BEGIN; INSERT … SELECT` (append) or `DELETE … USING` + `INSERT … SELECT` over a `QUALIFY ROW_NUMBER()` source
   (dedup); `DELETE` + `INSERT` of the state row; `COMMIT`.
So the data and the state that describes it commit together, and the number of statements per batch does not depend
on its size (6 for append, 7 for dedup — 8 when the batch has records without a primary key value, which are
appended, not merged — +2 with a state row). A kill anywhere leaves the last committed data and state
intact. A stream's DataLanded event joins its final state's transaction; run locks live in `_INGEST_LOCKS`.

Replace / --full-refresh builds `_INGEST_STAGING_<T>` and, at the end, `ALTER TABLE … SWAP WITH <T>` (readers see
the old table until then), then commits the state, then drops the old data. SWAP WITH is DDL, so on Snowflake the
swap and the state are two commits; the order means state can lag the data (harmless: re-read, deduplicated) but
never lead it. fakesnow cannot parse SWAP WITH: against a server reached over plain http (which Snowflake never
serves), or when a test running fakesnow in process says so (`swap_with=False`), `finish_stream` uses DROP + RENAME
instead, the only statements that differ between the two. See docs/snowflake.md for what is verified where.

Identifiers: every table and column name is upper-cased and always quoted. Upper case makes the usual names usable
unquoted (`select id from demo_users`); quoting makes any third-party field name safe. The source field name of
each column is kept in `_INGEST_TABLES.COLUMN_MAP`, so names that differ only by case (`id`, `ID`) get distinct
columns (`ID`, `ID_2`) and map back to the right field on the next run. A column the stream's schema describes gets
that description as its comment (`COMMENT ON COLUMN`, after CREATE and ADD COLUMN); the table comment says what the
table is, who owns it and where it comes from (base.table_comment, the same text as DuckDB's).

The package: `settings` (defaults.snowflake → SnowflakeConfig, errors worded for the user), `session` (connections
and statement execution), `sql` (the SQL text, pure functions), `ledger` (state, runs, locks and events), `destination` (the landed tables,
and the Destination protocol on all of them).
"""
from __future__ import annotations

from .destination import SnowflakeDestination
from .settings import SnowflakeConfig, resolve_config

__all__ = ["SnowflakeConfig", "SnowflakeDestination", "resolve_config"]
