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
never lead it. fakesnow cannot parse SWAP WITH: when the connection is a fakesnow one (patched in-process, or a
server reached over plain http, which Snowflake never serves) `finish_stream` uses DROP + RENAME instead, the only
statements that differ between the two. See docs/snowflake.md for what is verified where.

Identifiers: every table and column name is upper-cased and always quoted. Upper case makes the usual names usable
unquoted (`select id from demo_users`); quoting makes any third-party field name safe. The source field name of
each column is kept in `_INGEST_TABLES.COLUMN_MAP`, so names that differ only by case (`id`, `ID`) get distinct
columns (`ID`, `ID_2`) and map back to the right field on the next run.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets as _random
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError, SyncError
from ..secrets import REDACTOR, SNOWFLAKE_SECRET_KEYS, literal_secret, load_provider, resolve_references
from .base import (DestinationIdentity, EVENTS_TABLE, LOCKS_TABLE, RUNS_TABLE, STATE_TABLE, TABLES_TABLE, Destination, RunRecord, StreamTarget,
                   lock_is_stale, rows_without_key)
from .typing import BOOLEAN, DATE, DEDUP_SEQ, INTEGER, JSON, META_COLUMNS, NUMBER, STRING, TIMESTAMP, column_name

log = logging.getLogger("ingest.snowflake")
if logging.getLogger().getEffectiveLevel() > logging.INFO:
    # Without -v the connector's own retry warnings are noise: its errors reach the user as one SyncError.
    logging.getLogger("snowflake.connector").setLevel(logging.ERROR)

SQL_TYPES = {
    STRING: "VARCHAR",
    INTEGER: "NUMBER(38,0)",
    NUMBER: "FLOAT",
    BOOLEAN: "BOOLEAN",
    TIMESTAMP: "TIMESTAMP_TZ",
    DATE: "DATE",
    JSON: "VARIANT",
}
# The load table receives Parquet; JSON arrives as text and becomes VARIANT (PARSE_JSON) in the move step.
LOAD_TYPES = {**SQL_TYPES, JSON: "VARCHAR"}
SEQ = DEDUP_SEQ.upper()  # arrival order inside a batch, for dedup ties; only in the load table
STAGE = "_INGEST_STAGE"  # a temporary stage: dies with the session, so a killed run leaves no files behind
STATE = STATE_TABLE.upper()
RUNS = RUNS_TABLE.upper()
TABLES = TABLES_TABLE.upper()
EVENTS = EVENTS_TABLE.upper()
LOCKS = LOCKS_TABLE.upper()
SESSION_PARAMETERS = {
    "TIMEZONE": "UTC",
    # A killed run's open transaction keeps its locks until Snowflake aborts it: fail after 10 minutes with a clear
    # message instead of waiting the default 12 hours.
    "LOCK_TIMEOUT": 600,
    "ABORT_DETACHED_QUERY": True,
}

META_DDL = {
    STATE: '("BLOCK" VARCHAR NOT NULL, "STATE_KEY" VARCHAR NOT NULL, "STATE" VARIANT NOT NULL, "RUN_ID" VARCHAR, '
    '"UPDATED_AT" TIMESTAMP_TZ NOT NULL)',
    RUNS: '("RUN_ID" VARCHAR NOT NULL, "BLOCK" VARCHAR NOT NULL, "TEAM" VARCHAR, "STREAMS" VARIANT, "DESTINATION" VARCHAR, '
    '"STARTED_AT" TIMESTAMP_TZ NOT NULL, "ENDED_AT" TIMESTAMP_TZ, "STATUS" VARCHAR NOT NULL, "ROWS" NUMBER(38,0), '
    '"ERROR" VARCHAR)',
    TABLES: '("TABLE_NAME" VARCHAR NOT NULL, "BLOCK" VARCHAR NOT NULL, "TEAM" VARCHAR NOT NULL, "SOURCE" VARCHAR, '
    '"STREAM" VARCHAR NOT NULL, "WRITE_MODE" VARCHAR, "PRIMARY_KEY" VARIANT, "CURSOR_FIELD" VARCHAR, '
    '"COLUMN_MAP" VARIANT, "UPDATED_AT" TIMESTAMP_TZ NOT NULL)',
    EVENTS: '("EVENT_ID" VARCHAR NOT NULL, "NAME" VARCHAR NOT NULL, "IDEMPOTENCY_KEY" VARCHAR NOT NULL, "BLOCK" VARCHAR NOT NULL, '
    '"STREAM" VARCHAR, "TEAM" VARCHAR, "RUN_ID" VARCHAR, "PAYLOAD" VARIANT NOT NULL, "STATUS" VARCHAR NOT NULL, '
    '"ATTEMPTS" NUMBER(38,0) NOT NULL, "LAST_ERROR" VARCHAR, "CREATED_AT" TIMESTAMP_TZ NOT NULL, "PUBLISHED_AT" TIMESTAMP_TZ)',
    LOCKS: '("BLOCK" VARCHAR NOT NULL, "STREAM" VARCHAR NOT NULL, "RUN_ID" VARCHAR NOT NULL, "HOST" VARCHAR, "PID" NUMBER(38,0), '
    '"STARTED_AT" TIMESTAMP_TZ NOT NULL, "EXPIRES_AT" TIMESTAMP_TZ NOT NULL)',
}
RUN_COLUMNS = ["run_id", "block", "team", "streams", "destination", "started_at", "ended_at", "status", "rows", "error"]
LOCK_COLUMNS = ["block", "stream", "run_id", "host", "pid", "started_at", "expires_at"]
EVENT_COLUMNS = ["event_id", "name", "idempotency_key", "block", "stream", "team", "run_id", "payload", "status", "attempts",
                 "last_error", "created_at", "published_at"]
_META_COMMENTS = {
    STATE: "ingest: last committed Airbyte state per block and stream",
    RUNS: "ingest: one row per sync run",
    TABLES: "ingest: landed tables, their owning team, source and stream",
    EVENTS: "ingest: data landed and data failed events, and their delivery",
    LOCKS: "ingest: one sync per block stream at a time (run locks with a heartbeat)",
}


def q(identifier: str) -> str:
    """Quote an identifier (names come from third-party schemas)."""
    return '"' + identifier.replace('"', '""') + '"'


def sf_name(name: str) -> str:
    """The Snowflake spelling of a table or column name: upper case (what unquoted identifiers resolve to)."""
    return name.upper()


def literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def comment_text(text: str) -> str:
    """Comments never contain quotes or backslashes (fakesnow breaks on them even escaped; nobody needs them)."""
    return re.sub(r"['\"\\]", "", text)[:1000]


def load_name(table: str) -> str:
    return f"_INGEST_LOAD_{table}"


def staging_name(table: str) -> str:
    return f"_INGEST_STAGING_{table}"


def _ingest_type(data_type: str, scale: Any) -> str:
    t = (data_type or "").upper()
    if t in ("NUMBER", "DECIMAL", "NUMERIC", "INT", "INTEGER", "BIGINT"):
        return INTEGER if not scale else NUMBER
    if t in ("FLOAT", "DOUBLE", "REAL", "FLOAT4", "FLOAT8", "DOUBLE PRECISION"):
        return NUMBER
    if t == "BOOLEAN":
        return BOOLEAN
    if t.startswith("TIMESTAMP"):
        return TIMESTAMP
    if t == "DATE":
        return DATE
    if t in ("VARIANT", "OBJECT", "ARRAY"):
        return JSON
    return STRING


# ---------------------------------------------------------------- settings


@dataclass
class SnowflakeConfig:
    """defaults.snowflake with references resolved and the private key loaded (never printed)."""

    account: str
    user: str
    database: str
    schema: str
    role: str | None = None
    warehouse: str | None = None
    password: str | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)  # DER, PKCS#8, unencrypted
    host: str | None = None
    port: int | None = None
    protocol: str | None = None
    login_timeout: int | None = None
    network_timeout: int | None = None

    @property
    def auth(self) -> str:
        return "key pair" if self.private_key else "password"


def _where(project, key: str | None = None) -> str:
    path = ("defaults", "snowflake") + ((key,) if key else ())
    lines = getattr(project, "lines", {}) or {}
    probe, line = path, None
    while probe and line is None:
        line = lines.get(probe)
        probe = probe[:-1]
    return f"{project.path}:{line or 1}: {'.'.join(path)}"


def resolve_config(project) -> SnowflakeConfig:
    """defaults.snowflake → a SnowflakeConfig. Every problem is a ConfigError (exit 2) naming the key, never a value."""
    raw = project.defaults.snowflake
    if raw is None:
        raise ConfigError(
            f"{_where(project)}: required to write to Snowflake: account, user, database, schema, and a password "
            "or private key given as a reference like ${SNOWFLAKE_PASSWORD}"
        )
    data: dict[str, Any] = raw.model_dump(by_alias=True, exclude_none=True)
    problems: list[str] = []
    for key in SNOWFLAKE_SECRET_KEYS:
        if literal := literal_secret(data.get(key), f"SNOWFLAKE_{key.upper()}"):
            problems.append(f"{_where(project, key)}: {literal}")
    if problems:
        raise ConfigError(problems)
    try:
        provider = load_provider(project.defaults.secrets)
    except Exception as exc:  # noqa: BLE001 - an import problem is a config problem
        raise ConfigError(f"{project.path}: defaults.secrets: cannot load secret provider: {type(exc).__name__}: {exc}") from None

    def resolve(key: str, value: Any) -> Any:
        if not isinstance(value, str) or "${" not in value:
            return value
        return resolve_references(value, provider, lambda message: problems.append(f"{_where(project, key)}: {message}"))

    values = {key: resolve(key, value) for key, value in data.items()}
    for key in ("account", "user", "database", "schema"):
        if not values.get(key):
            problems.append(f"{_where(project, key)}: required key is missing")
    has_key = bool(values.get("private_key") or values.get("private_key_file"))
    if values.get("password") and has_key:
        problems.append(f"{_where(project, 'password')}: give either a password or a private key (key-pair auth), not both")
    elif not values.get("password") and not has_key:
        problems.append(
            f"{_where(project)}: no credentials: set private_key_file (or private_key) for key-pair auth, or password, "
            "as references like ${SNOWFLAKE_PRIVATE_KEY}"
        )
    if problems:
        raise ConfigError(problems)
    private_key = _load_private_key(project, values) if has_key else None
    return SnowflakeConfig(
        account=values["account"], user=values["user"], database=values["database"], schema=values["schema"],
        role=values.get("role"), warehouse=values.get("warehouse"), password=values.get("password") or None,
        private_key=private_key, host=values.get("host"), port=values.get("port"), protocol=values.get("protocol"),
        login_timeout=values.get("login_timeout"), network_timeout=values.get("network_timeout"),
    )


def _load_private_key(project, values: dict) -> bytes:
    """A PEM private key (file or text, optionally encrypted) → unencrypted PKCS#8 DER, what the connector takes."""
    from cryptography.hazmat.primitives import serialization

    if values.get("private_key"):
        key, where = values["private_key"], _where(project, "private_key")
        # Keys passed through environment variables often arrive with literal \n
        pem = key.replace("\\n", "\n").encode()
    else:
        path = Path(values["private_key_file"]).expanduser()
        if not path.is_absolute():
            path = Path(project.path).parent / path
        where = _where(project, "private_key_file")
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read the private key file {path}: {exc.strerror or type(exc).__name__}") from None
    passphrase = values.get("private_key_passphrase")
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase.encode() if passphrase else None)
    except TypeError:
        hint = "the key is encrypted: set private_key_passphrase" if not passphrase else "the key is not encrypted: remove private_key_passphrase"
        raise ConfigError(f"{where}: {hint}") from None
    except ValueError:
        raise ConfigError(f"{where}: not a PEM private key, or the passphrase is wrong") from None
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


# ---------------------------------------------------------------- error messages


def _hint(errno: int | None, message: str, cfg: SnowflakeConfig) -> str:
    role = cfg.role or "(the user's default role)"
    low = message.lower()
    if errno in (390100, 390101, 390102, 390103, 390144, 390190, 390195, 390318, 394304) or "jwt" in low or "incorrect username" in low:
        return (f"authentication failed for user {cfg.user} on account {cfg.account} ({cfg.auth}): check the user, "
                "the secret the reference points to, and for key-pair auth that the public key is set on the user")
    if errno in (250001, 250003, 251005, 251006, 251011, 251012) or "could not connect" in low:
        return f"cannot reach Snowflake account {cfg.account}: check defaults.snowflake.account (the account identifier) and the network"
    if "resource monitor" in low or "quota" in low:
        return "the warehouse's resource monitor quota is used up: ask the platform team to raise it, then rerun (nothing after the last checkpoint was committed)"
    if errno == 606 or "no active warehouse" in low:
        return (f"no usable warehouse: {cfg.warehouse or 'none is configured (defaults.snowflake.warehouse)'}; check it exists "
                f"and role {role} has USAGE on it")
    if errno in (90105, 90106) or "does not have a current" in low:
        return f"database {cfg.database} / schema {cfg.schema} is missing or role {role} has no USAGE on it"
    if errno == 3001 or "insufficient privileges" in low:
        return f"role {role} lacks a privilege here; docs/snowflake.md lists the grants the loader role needs"
    if errno in (2003, 2043) or "does not exist or not authorized" in low:
        return (f"the object does not exist or role {role} cannot see it: check USAGE on database {cfg.database} and "
                f"schema {cfg.schema}, and CREATE TABLE / CREATE STAGE on the schema")
    if errno == 625 or ("lock" in low and ("transaction" in low or "timeout" in low)):
        return ("another transaction holds a lock on it (a concurrent run, or a killed run's detached transaction: "
                "SELECT SYSTEM$ABORT_TRANSACTION(<id>) from SHOW TRANSACTIONS, or wait for Snowflake to abort it)")
    if errno == 630 or "timeout" in low:
        return "the statement timed out (STATEMENT_TIMEOUT_IN_SECONDS of the warehouse, user or account)"
    return "see the Snowflake error above; data and state committed before it are kept"


def explain(exc: BaseException, action: str, obj: str, block: str | None, cfg: SnowflakeConfig) -> str:
    errno = getattr(exc, "errno", None)
    sqlstate = getattr(exc, "sqlstate", None)
    sfqid = getattr(exc, "sfqid", None)
    message = getattr(exc, "raw_msg", None) or getattr(exc, "msg", None) or str(exc)
    message = " ".join(str(message).split())[:400]
    code = []
    if isinstance(errno, int) and errno > 0:
        code.append(f"error {errno:06d}")
    if sqlstate and sqlstate != "n/a":
        code.append(f"SQL state {sqlstate}")
    if sfqid:
        code.append(f"query id {sfqid}")
    where = f" for block {block}" if block else ""
    text = f"Snowflake: cannot {action} {obj}{where}: {message}"
    if code:
        text += f" ({', '.join(code)})"
    return REDACTOR.redact(f"{text}. Hint: {_hint(errno if isinstance(errno, int) else None, message, cfg)}")


# ---------------------------------------------------------------- tables


@dataclass
class _Table:
    """One physical table: source column name → ingest type, and → Snowflake column name."""

    name: str
    types: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    def assign(self, source: str) -> str:
        """The Snowflake column for a source name; a name that collides (`id` vs `ID`) gets a suffix, the empty name is
        `_` (the scheme of typing.column_name, upper-cased)."""
        if source in self.names:
            return self.names[source]
        taken = set(self.names.values()) | {SEQ}
        name = column_name(sf_name(source), lambda n: n in taken)
        self.names[source] = name
        return name

    def add(self, source: str, ctype: str) -> str:
        name = self.assign(source)
        self.types[source] = ctype
        return name

    def column_map(self) -> dict[str, str]:
        return {sf: src for src, sf in self.names.items()}


class SnowflakeDestination(Destination):
    name = "snowflake"

    def __init__(self, config: SnowflakeConfig, team: str | None = None, block: str | None = None,
                 run_id: str | None = None, connection=None, read_only: bool = False):
        """`read_only`: for status and listing commands — creates nothing; missing metadata tables read as empty."""
        self.config = config
        self.read_only = read_only
        self._meta_present: set[str] = set()
        self.team, self.block, self.run_id = team, block, run_id
        self.statements = 0  # every statement sent, for tests and bench/snowflake_cpu.py
        self._tables: dict[str, _Table] = {}
        self._loads: set[str] = set()  # load tables created by this session (dropped at finish_stream)
        self._stage_ready = False
        self._batches = 0
        self._token = _random.token_hex(4)
        self._tmp: Path | None = None
        self._statement_params: dict | None = None
        self._reader = None  # a second session for query() and lock heartbeats, opened on first use
        self._reader_lock = threading.Lock()  # they come from other threads: one statement at a time on it
        self.con = connection if connection is not None else self._connect()
        module = type(self.con).__module__
        # Snowflake only serves https; a plain-http endpoint or an in-process patch is fakesnow.
        self.fakesnow = config.protocol == "http" or module.startswith("fakesnow")
        try:
            self.cur = self.con.cursor()
            self._ensure_meta_tables()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ construction

    @classmethod
    def from_project(cls, project, block=None, run_id: str | None = None, read_only: bool = False,
                     lock_wait: float = 0.0) -> "SnowflakeDestination":
        """`lock_wait` is accepted for symmetry with DuckDB and unused: Snowflake takes concurrent sessions."""
        config = resolve_config(project)
        return cls(config, team=block.team if block else None, block=block.name if block else None, run_id=run_id,
                   read_only=read_only)

    def query_tag(self) -> str:
        return json.dumps({"app": "ingest", "team": self.team, "block": self.block, "run_id": self.run_id}, separators=(",", ":"))

    def connect_kwargs(self) -> dict:
        c = self.config
        kwargs: dict[str, Any] = dict(
            account=c.account, user=c.user, database=c.database, schema=c.schema, role=c.role, warehouse=c.warehouse,
            host=c.host, port=c.port, protocol=c.protocol, login_timeout=c.login_timeout, network_timeout=c.network_timeout,
            application="ingest", paramstyle="qmark", autocommit=True, client_session_keep_alive=False,
            session_parameters={"QUERY_TAG": self.query_tag(), **SESSION_PARAMETERS},
        )
        if c.private_key:
            kwargs.update(authenticator="SNOWFLAKE_JWT", private_key=c.private_key)
        else:
            kwargs["password"] = c.password
        return {k: v for k, v in kwargs.items() if v is not None}

    def _connect(self):
        try:
            import snowflake.connector
        except ImportError:
            raise ConfigError("destination 'snowflake' needs the connector: pip install 'ingest[snowflake]'") from None
        try:
            return snowflake.connector.connect(**self.connect_kwargs())
        except snowflake.connector.errors.Error as exc:
            raise SyncError(explain(exc, "connect to", f"account {self.config.account}", self.block, self.config)) from None

    def describe(self) -> str:
        c = self.config
        via = f" via {c.protocol or 'https'}://{c.host}:{c.port or 443}" if c.host else ""
        return f"snowflake:{c.account}/{c.database}.{c.schema}{via}"

    @property
    def identity(self) -> DestinationIdentity:
        c = self.config
        return DestinationIdentity(kind="snowflake", namespace=f"snowflake://{c.account.lower()}",
                                   database=c.database, schema=c.schema)

    def close(self) -> None:
        for con in (self._reader, self.con):
            try:
                if con is not None:
                    con.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._reader = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def query(self, sql: str, params: list | None = None) -> list[dict]:
        """A read-only query on its own session (opened on first use): it never runs inside the writer's open
        transaction, and sees committed data only — like the DuckDB destination's separate cursor."""
        return self._side(sql, params, action="query", obj=self._where())

    def _side(self, sql: str, params=None, *, action: str, obj: str) -> list[dict]:
        """One statement on the side session (autocommit), from any thread."""
        import snowflake.connector

        with self._reader_lock:
            if self._reader is None:
                self._reader = self._connect()
            try:
                cur = self._reader.cursor()
                try:
                    cur.execute(sql, params)
                    names = [d[0] for d in cur.description or []]
                    return [dict(zip(names, row)) for row in cur.fetchall()]
                finally:
                    cur.close()
            except snowflake.connector.errors.Error as exc:
                raise SyncError(explain(exc, action, obj, self.block, self.config)) from None

    # ------------------------------------------------------------ statements

    def _exec(self, sql: str, params=None, *, action: str, obj: str, block: str | None = None) -> list[tuple]:
        """Run one statement; a Snowflake error becomes a SyncError naming the object and the block."""
        import snowflake.connector

        self.statements += 1
        log.debug("snowflake: %s", sql)
        try:
            kwargs = {"_statement_params": self._statement_params} if self._statement_params else {}
            self.cur.execute(sql, params, **kwargs)
            return self.cur.fetchall() if self.cur.description else []
        except snowflake.connector.errors.Error as exc:
            raise SyncError(explain(exc, action, obj, block or self.block, self.config)) from None

    def _transaction(self, statements: list[tuple[str, Any, str, str]], block: str | None) -> None:
        """BEGIN; DML only; COMMIT. On any failure: ROLLBACK (nothing of it is kept) and re-raise."""
        # BEGIN TRANSACTION, not a bare BEGIN: unambiguous next to Snowflake Scripting's BEGIN … END blocks
        self._exec("BEGIN TRANSACTION", action="begin a transaction in", obj=self._where(), block=block)
        try:
            for sql, params, action, obj in statements:
                self._exec(sql, params, action=action, obj=obj, block=block)
            self._exec("COMMIT", action="commit to", obj=self._where(), block=block)
        except BaseException:
            try:
                self.cur.execute("ROLLBACK")
            except Exception:  # noqa: BLE001 - the session may be gone; Snowflake then aborts the transaction itself
                log.debug("rollback failed", exc_info=True)
            raise

    def _where(self, table: str | None = None) -> str:
        c = self.config
        return f"{c.database}.{c.schema}" + (f".{table}" if table else "")

    # ------------------------------------------------------------ metadata tables

    def _ensure_meta_tables(self) -> None:
        rows = self._exec(
            "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = CURRENT_SCHEMA() "
            f"AND TABLE_NAME IN ({', '.join('?' for _ in META_DDL)})",
            list(META_DDL), action="list the tables of", obj=self._where(),
        )
        self._meta_present = {r[0] for r in rows}
        if self.read_only:
            return
        for table, ddl in META_DDL.items():
            if table not in self._meta_present:
                self._exec(f"CREATE TABLE IF NOT EXISTS {q(table)} {ddl} COMMENT = {literal(_META_COMMENTS[table])}",
                           action="create", obj=self._where(table))
                self._meta_present.add(table)

    def read_state(self, block: str) -> dict[str, dict]:
        if STATE not in self._meta_present:
            return {}
        rows = self._exec(f'SELECT "STATE_KEY", "STATE" FROM {q(STATE)} WHERE "BLOCK" = ?', [block],
                          action="read the state from", obj=self._where(STATE), block=block)
        return {key: (state if isinstance(state, dict) else orjson.loads(state)) for key, state in rows}

    def reset_state(self, block: str, streams: list[str] | None = None) -> int:
        sql, params = f'DELETE FROM {q(STATE)} WHERE "BLOCK" = ?', [block]
        if streams:
            sql += f' AND "STATE_KEY" IN ({", ".join("?" for _ in streams)})'
            params += list(streams)
        rows = self._exec(sql, params, action="reset the state in", obj=self._where(STATE), block=block)
        return int(rows[0][0]) if rows and rows[0] and rows[0][0] is not None else max(self.cur.rowcount or 0, 0)

    def _state_statements(self, target: StreamTarget, state: dict | None) -> list[tuple]:
        where = self._where(STATE)
        out = [(f'DELETE FROM {q(STATE)} WHERE "BLOCK" = ? AND "STATE_KEY" = ?', [target.block, target.state_key],
                "store the state in", where)]
        if state is not None:
            out.append((
                f'INSERT INTO {q(STATE)} ("BLOCK", "STATE_KEY", "STATE", "RUN_ID", "UPDATED_AT") '
                "SELECT ?, ?, PARSE_JSON(?), ?, CURRENT_TIMESTAMP()",
                [target.block, target.state_key, orjson.dumps(state).decode(), target.run_id],
                "store the state in", where,
            ))
        return out

    def _table_statements(self, target: StreamTarget, table: _Table) -> list[tuple]:
        where = self._where(TABLES)
        return [
            (f'DELETE FROM {q(TABLES)} WHERE "TABLE_NAME" = ?', [sf_name(target.table)], "record the table in", where),
            (
                f'INSERT INTO {q(TABLES)} ("TABLE_NAME", "BLOCK", "TEAM", "SOURCE", "STREAM", "WRITE_MODE", "PRIMARY_KEY", '
                '"CURSOR_FIELD", "COLUMN_MAP", "UPDATED_AT") SELECT ?, ?, ?, ?, ?, ?, PARSE_JSON(?), ?, PARSE_JSON(?), CURRENT_TIMESTAMP()',
                [sf_name(target.table), target.block, target.team, target.source, target.stream, target.write,
                 json.dumps(target.primary_key), target.cursor, json.dumps(table.column_map())],
                "record the table in", where,
            ),
        ]

    def record_run(self, run: RunRecord) -> None:
        if self.run_id is None:
            # The run id was not known at connect time: tag every statement from now on (statement-level QUERY_TAG).
            self.run_id = run.run_id
            self._statement_params = {"QUERY_TAG": self.query_tag()}
        cols = ["RUN_ID", "BLOCK", "TEAM", "STREAMS", "DESTINATION", "STARTED_AT", "ENDED_AT", "STATUS", "ROWS", "ERROR"]
        exprs = ["?", "?", "?", "PARSE_JSON(?)", "?", "CAST(? AS TIMESTAMP_TZ)", "CAST(? AS TIMESTAMP_TZ)", "?", "?", "?"]
        source = ", ".join(f"{e} AS {q(c)}" for e, c in zip(exprs, cols))
        sql = (
            f"MERGE INTO {q(RUNS)} t USING (SELECT {source}) s ON t.\"RUN_ID\" = s.\"RUN_ID\" "
            f"WHEN MATCHED THEN UPDATE SET {', '.join(f'{q(c)} = s.{q(c)}' for c in cols[1:])} "
            f"WHEN NOT MATCHED THEN INSERT ({', '.join(q(c) for c in cols)}) VALUES ({', '.join(f's.{q(c)}' for c in cols)})"
        )
        params = [run.run_id, run.block, run.team, json.dumps(run.streams), run.destination,
                  run.started_at.isoformat(), run.ended_at.isoformat() if run.ended_at else None, run.status, run.rows,
                  REDACTOR.redact(run.error) if run.error else None]
        self._exec(sql, params, action="record the run in", obj=self._where(RUNS), block=run.block)

    # ------------------------------------------------------------ run locks (one sync per block stream)

    def acquire_locks(self, holder: dict, streams: list[str], ttl: float) -> list[dict]:
        """One transaction. Its first statement is a DELETE on _INGEST_LOCKS: Snowflake lets only one transaction at
        a time run DELETE/UPDATE/MERGE on a table, so concurrent acquirers queue there and each reads the locks the
        previous one committed (READ COMMITTED) before deciding. Live locks of others: take nothing, return them."""
        if not streams:
            return []
        now = dt.datetime.now(dt.timezone.utc)
        block, where = holder["block"], self._where(LOCKS)
        among = f'"BLOCK" = ? AND "STREAM" IN ({", ".join("?" for _ in streams)})'
        keys = [block, *streams]
        self._exec("BEGIN TRANSACTION", action="begin a transaction in", obj=self._where(), block=block)
        try:
            self._exec(f"DELETE FROM {q(LOCKS)} WHERE {among} AND \"EXPIRES_AT\" < CAST(? AS TIMESTAMP_TZ)", keys + [now.isoformat()],
                       action="take the run locks in", obj=where, block=block)
            rows = self._exec(f"SELECT {', '.join(q(c.upper()) for c in LOCK_COLUMNS)} FROM {q(LOCKS)} WHERE {among}", keys,
                              action="read the run locks in", obj=where, block=block)
            held = [dict(zip(LOCK_COLUMNS, r)) for r in rows]
            live = [r for r in held if not lock_is_stale(r, now)]
            if live:
                self._exec("ROLLBACK", action="roll back in", obj=self._where(), block=block)
                return live
            if held:  # held by processes that died on this host
                self._exec(f"DELETE FROM {q(LOCKS)} WHERE {among}", keys, action="take the run locks in", obj=where, block=block)
            expires = (now + dt.timedelta(seconds=ttl)).isoformat()
            values = " UNION ALL ".join("SELECT ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP_TZ), CAST(? AS TIMESTAMP_TZ)" for _ in streams)
            params = [v for stream in streams for v in (block, stream, holder["run_id"], holder.get("host"), holder.get("pid"),
                                                        now.isoformat(), expires)]
            self._exec(f"INSERT INTO {q(LOCKS)} ({', '.join(q(c.upper()) for c in LOCK_COLUMNS)}) {values}", params,
                       action="take the run locks in", obj=where, block=block)
            self._exec("COMMIT", action="commit to", obj=self._where(), block=block)
        except BaseException:
            try:
                self.cur.execute("ROLLBACK")
            except Exception:  # noqa: BLE001
                log.debug("rollback failed", exc_info=True)
            raise
        return []

    def refresh_locks(self, run_id: str, ttl: float) -> None:
        # The heartbeat thread runs beside the writer: its own session, never inside the writer's transaction.
        expires = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=ttl)).isoformat()
        self._side(f'UPDATE {q(LOCKS)} SET "EXPIRES_AT" = CAST(? AS TIMESTAMP_TZ) WHERE "RUN_ID" = ?', [expires, run_id],
                   action="extend the run locks in", obj=self._where(LOCKS))

    def release_locks(self, run_id: str) -> None:
        self._exec(f'DELETE FROM {q(LOCKS)} WHERE "RUN_ID" = ?', [run_id], action="release the run locks in", obj=self._where(LOCKS))

    def list_locks(self, block: str | None = None) -> list[dict]:
        return self._select_meta(LOCKS, LOCK_COLUMNS, block)

    def mark_run_killed(self, run_id: str, ended_at: dt.datetime, error: str) -> bool:
        self._exec(f'UPDATE {q(RUNS)} SET "STATUS" = \'killed\', "ENDED_AT" = CAST(? AS TIMESTAMP_TZ), "ERROR" = ? '
                   'WHERE "RUN_ID" = ? AND "STATUS" = \'running\'', [ended_at.isoformat(), REDACTOR.redact(error), run_id],
                   action="record a killed run in", obj=self._where(RUNS))
        return (self.cur.rowcount or 0) > 0

    def list_runs(self, block: str | None = None, status: str | None = None) -> list[dict]:
        rows = self._select_meta(RUNS, RUN_COLUMNS, block, status, order='"STARTED_AT", "RUN_ID"')
        for row in rows:
            if isinstance(row.get("streams"), str):  # VARIANT arrives as JSON text
                row["streams"] = orjson.loads(row["streams"])
        return rows

    def _select_meta(self, table: str, columns: list[str], block: str | None, status: str | None = None,
                     order: str | None = None) -> list[dict]:
        if table not in self._meta_present:
            return []
        where = [(c, v) for c, v in (("BLOCK", block), ("STATUS", status)) if v is not None]
        sql = (f"SELECT {', '.join(q(c.upper()) for c in columns)} FROM {q(table)}"
               + (" WHERE " + " AND ".join(f"{q(c)} = ?" for c, _ in where) if where else "")
               + (f" ORDER BY {order}" if order else ""))
        rows = self._exec(sql, [v for _, v in where], action="read", obj=self._where(table), block=block)
        return [dict(zip(columns, r)) for r in rows]

    # ------------------------------------------------------------ the events ledger

    def _event_statement(self, event) -> tuple:
        """Insert the event unless its (idempotency key, name) is already there: DML, so it can join a transaction."""
        cols = ["EVENT_ID", "NAME", "IDEMPOTENCY_KEY", "BLOCK", "STREAM", "TEAM", "RUN_ID", "PAYLOAD", "STATUS", "ATTEMPTS", "CREATED_AT"]
        return (
            f"INSERT INTO {q(EVENTS)} ({', '.join(q(c) for c in cols)}) "
            "SELECT ?, ?, ?, ?, ?, ?, ?, PARSE_JSON(?), ?, 0, CURRENT_TIMESTAMP() "
            f'WHERE NOT EXISTS (SELECT 1 FROM {q(EVENTS)} WHERE "IDEMPOTENCY_KEY" = ? AND "NAME" = ?)',
            [event.event_id, event.name, event.idempotency_key, event.block, event.stream, event.team, event.run_id,
             orjson.dumps(event.payload()).decode(), event.status, event.idempotency_key, event.name],
            "record the event in", self._where(EVENTS),
        )

    def record_event(self, event) -> None:
        sql, params, action, obj = self._event_statement(event)
        self._exec(sql, params, action=action, obj=obj, block=event.block)

    def list_events(self, block: str | None = None, status: str | None = None, run_id: str | None = None,
                    limit: int | None = None) -> list[dict]:
        where, params = [], []
        for column, value in (("BLOCK", block), ("STATUS", status), ("RUN_ID", run_id)):
            if value is not None:
                where.append(f"{q(column)} = ?")
                params.append(value)
        sql = (f"SELECT {', '.join(q(c.upper()) for c in EVENT_COLUMNS)} FROM {q(EVENTS)}"
               + (f" WHERE {' AND '.join(where)}" if where else "") + ' ORDER BY "CREATED_AT", "EVENT_ID"'
               + (f" LIMIT {int(limit)}" if limit else ""))
        out: list[dict] = []
        if EVENTS not in self._meta_present:
            return out
        for row in self._exec(sql, params, action="read the events from", obj=self._where(EVENTS), block=block):
            event = dict(zip(EVENT_COLUMNS, row))
            payload = event["payload"]
            event["payload"] = payload if isinstance(payload, dict) else orjson.loads(payload)
            out.append(event)
        return out

    def latest_events(self, per_kind: int) -> list[dict]:
        """One windowed query (see Destination.latest_events); the payload as JSON text."""
        if EVENTS not in self._meta_present:
            return []
        sql = (
            'SELECT "EVENT_ID", "NAME", "BLOCK", "STREAM", TO_JSON("PAYLOAD"), "STATUS", "CREATED_AT", '
            'SUM(IFF("STATUS" = \'pending\', 1, 0)) OVER (PARTITION BY "BLOCK", "STREAM") '
            f'FROM {q(EVENTS)} QUALIFY ROW_NUMBER() OVER (PARTITION BY "BLOCK", "STREAM", SPLIT_PART("NAME", \'.\', 1) '
            f'ORDER BY "CREATED_AT" DESC, "EVENT_ID" DESC) <= {int(per_kind)} ORDER BY "CREATED_AT", "EVENT_ID"'
        )
        names = ["event_id", "name", "block", "stream", "payload", "status", "created_at", "pending"]
        rows = self._exec(sql, action="read the events from", obj=self._where(EVENTS))
        return [dict(zip(names, row)) for row in rows]

    def mark_event(self, event_id: str, status: str, error: str | None) -> None:
        self._exec(
            f'UPDATE {q(EVENTS)} SET "STATUS" = ?, "ATTEMPTS" = "ATTEMPTS" + 1, "LAST_ERROR" = ?, '
            "\"PUBLISHED_AT\" = CASE WHEN ? = 'published' THEN CURRENT_TIMESTAMP() ELSE \"PUBLISHED_AT\" END "
            'WHERE "EVENT_ID" = ?',
            [status, REDACTOR.redact(error) if error else None, status, event_id],
            action="record the delivery of an event in", obj=self._where(EVENTS),
        )

    # ------------------------------------------------------------ tables

    def _write_name(self, target: StreamTarget) -> str:
        final = sf_name(target.table)
        return staging_name(final) if target.staged else final

    def _comment(self, target: StreamTarget) -> str:
        return comment_text(
            f"ingest: team={target.team}; block={target.block}; source={target.source}; stream={target.stream}; "
            f"write={target.write}"
        )

    def _describe_table(self, table: str) -> tuple[dict[str, str], str | None] | None:
        """Existing columns (Snowflake name → ingest type) and the table comment, or None if there is no table."""
        rows = self._exec(
            "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.NUMERIC_SCALE, t.COMMENT FROM INFORMATION_SCHEMA.COLUMNS c "
            "JOIN INFORMATION_SCHEMA.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME "
            "WHERE c.TABLE_SCHEMA = CURRENT_SCHEMA() AND c.TABLE_NAME = ? ORDER BY c.ORDINAL_POSITION",
            [table], action="describe", obj=self._where(table),
        )
        if not rows:
            return None
        return {name: _ingest_type(dtype, scale) for name, dtype, scale, _ in rows}, rows[0][3]

    def _stored_map(self, table: str) -> dict[str, str]:
        rows = self._exec(f'SELECT "COLUMN_MAP" FROM {q(TABLES)} WHERE "TABLE_NAME" = ?', [table],
                          action="read the column names of", obj=self._where(TABLES))
        if not rows or rows[0][0] is None:
            return {}
        value = rows[0][0]
        return value if isinstance(value, dict) else orjson.loads(value)

    def _create(self, table: _Table, comment: str, replace: bool) -> None:
        cols = ", ".join(f"{q(table.names[c])} {SQL_TYPES[t]}" for c, t in table.types.items())
        head = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE IF NOT EXISTS"
        self._exec(f"{head} {q(table.name)} ({cols}) COMMENT = {literal(comment)}", action="create", obj=self._where(table.name))

    def start_stream(self, target: StreamTarget) -> None:
        name = self._write_name(target)
        wanted = {**target.columns, **META_COLUMNS}
        if target.staged:
            # A leftover staging table is from a run that died before its swap: CREATE OR REPLACE discards it.
            table = _Table(name)
            for c, t in wanted.items():
                table.add(c, t)
            self._create(table, self._comment(target), replace=True)
            self._tables[name] = table
            return
        existing = self._describe_table(name)
        if existing is None:
            table = _Table(name)
            for c, t in wanted.items():
                table.add(c, t)
            self._create(table, self._comment(target), replace=False)
        else:
            columns, comment = existing
            stored = self._stored_map(name)
            by_name: dict[str, str] = {}
            for c in wanted:
                by_name.setdefault(sf_name(c), c)
            table = _Table(name)
            for col, ctype in columns.items():
                # `in`, not `or`: the empty field name (column `_`) is a stored name too
                source = stored[col] if col in stored else by_name.get(col) or col.lower()
                if source in table.names:  # two columns claim one field: keep the second under its own name
                    source = col
                table.names[source], table.types[source] = col, ctype
            if comment != self._comment(target):
                self._exec(f"COMMENT ON TABLE {q(name)} IS {literal(self._comment(target))}", action="comment on", obj=self._where(name))
        self._tables[name] = table
        self._transaction(self._table_statements(target, table), target.block)

    def table_columns(self, target: StreamTarget) -> dict[str, str]:
        cols = self._tables[self._write_name(target)].types
        # New schema fields become columns at the next write; existing columns keep their type.
        return {**{c: t for c, t in target.columns.items() if c not in cols}, **{c: t for c, t in cols.items() if c not in META_COLUMNS}}

    # ------------------------------------------------------------ one checkpoint

    def write(self, target: StreamTarget, batch: pa.Table | None, new_columns: dict[str, str], state: dict | None) -> None:
        if batch is None or batch.num_rows == 0:
            if state is not None and not target.staged:
                self._transaction(self._state_statements(target, state), target.block)
            return
        name = self._write_name(target)
        table = self._tables[name]
        self._add_columns(target, table, batch, new_columns)
        load = self._load(target, table, batch)
        without_key = rows_without_key(batch, target.primary_key) if self._dedup(target) else 0
        statements = self._move_statements(target, table, load, batch, without_key)
        if state is not None and not target.staged:
            statements += self._state_statements(target, state)
        self._transaction(statements, target.block)
        target.rows_written += batch.num_rows
        target.rows_without_key += without_key

    def _add_columns(self, target: StreamTarget, table: _Table, batch: pa.Table, new_columns: dict[str, str]) -> None:
        added = [(c, new_columns.get(c) or target.columns.get(c) or STRING) for c in batch.column_names if c not in table.types]
        if not added:
            return
        for c, _ in added:
            table.assign(c)
        if not target.staged:
            # The field name is recorded before the column exists, so a column never exists without its source name.
            self._exec(f'UPDATE {q(TABLES)} SET "COLUMN_MAP" = PARSE_JSON(?) WHERE "TABLE_NAME" = ?',
                       [json.dumps(table.column_map()), table.name], action="record the columns of", obj=self._where(TABLES),
                       block=target.block)
        cols = ", ".join(f"{q(table.names[c])} {SQL_TYPES[t]}" for c, t in added)
        self._exec(f"ALTER TABLE {q(table.name)} ADD COLUMN {cols}", action="add columns to", obj=self._where(table.name),
                   block=target.block)
        for c, t in added:
            table.types[c] = t
            target.schema_changes.append(f"added column {c} {SQL_TYPES[t]}")

    def _dedup(self, target: StreamTarget) -> bool:
        return target.write == "dedup" and bool(target.primary_key)

    def _load(self, target: StreamTarget, table: _Table, batch: pa.Table) -> str:
        """The batch → one Parquet file → PUT → COPY INTO the load table. Returns the load table's name."""
        final = sf_name(target.table)
        load = load_name(final)
        names = [table.names[c] for c in batch.column_names]
        data = batch.rename_columns(names)
        load_cols = [f"{q(n)} {LOAD_TYPES[table.types[c]]}" for c, n in zip(batch.column_names, names)]
        if self._dedup(target):
            data = data.append_column(SEQ, pa.array(range(batch.num_rows), type=pa.int64()))
            load_cols.append(f"{q(SEQ)} NUMBER(38,0)")
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="ingest-snowflake-"))
        self._batches += 1
        path = self._tmp / f"{final.lower()}-{self._batches:06d}.parquet"
        pq.write_table(data, path, compression="snappy")
        block = target.block
        try:
            if not self._stage_ready:
                self._exec(f"CREATE TEMPORARY STAGE IF NOT EXISTS {STAGE}", action="create the stage", obj=self._where(STAGE), block=block)
                self._stage_ready = True
            self._exec(f"CREATE OR REPLACE TRANSIENT TABLE {q(load)} ({', '.join(load_cols)}) DATA_RETENTION_TIME_IN_DAYS = 0",
                       action="create", obj=self._where(load), block=block)
            self._loads.add(load)
            prefix = f"{self._token}/{final.lower()}/{self._batches}/"
            self._exec(f"PUT {literal('file://' + path.as_posix())} @{STAGE}/{prefix} AUTO_COMPRESS = FALSE OVERWRITE = TRUE",
                       action="upload a batch to", obj=f"stage {STAGE}", block=block)
            rows = self._exec(
                f"COPY INTO {q(load)} FROM @{STAGE}/{prefix} FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE) "
                "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE PURGE = TRUE",
                action="COPY INTO", obj=self._where(load), block=block,
            )
        finally:
            path.unlink(missing_ok=True)
        loaded = sum(int(r[3] or 0) for r in rows if len(r) > 3 and str(r[1]).upper() in ("LOADED", "PARTIALLY_LOADED"))
        if loaded != batch.num_rows:
            statuses = ", ".join(str(r[1]) for r in rows) or "no file"
            raise SyncError(f"Snowflake: COPY INTO {self._where(load)} for block {block} loaded {loaded} of "
                            f"{batch.num_rows} rows ({statuses}); nothing of this batch was committed")
        return load

    def _move_statements(self, target: StreamTarget, table: _Table, load: str, batch: pa.Table, without_key: int = 0) -> list[tuple]:
        """Load table → final (or staging) table: INSERT … SELECT, or for dedup DELETE … USING + INSERT … SELECT
        (plus one INSERT … SELECT of the rows without a key value, when the batch has some)."""
        dest, where = q(table.name), self._where(table.name)
        sources = batch.column_names
        names = [table.names[c] for c in sources]

        def value(source: str, alias: str = "b") -> str:
            col = f"{alias}.{q(table.names[source])}"
            return f"PARSE_JSON({col})" if table.types[source] == JSON else col

        cols = ", ".join(q(n) for n in names)
        exprs = ", ".join(value(c) for c in sources)
        append = (f"INSERT INTO {dest} ({cols}) SELECT {exprs} FROM {q(load)} b", None, "insert into", where)
        if not self._dedup(target) or any(k not in sources for k in target.primary_key):
            # Without its key field, no record of this batch can be matched: all are appended (rows_without_key).
            return [append]
        pk = [table.names[k] for k in target.primary_key]
        # Records whose key is NULL match nothing: appended as they come, never merged (see base.rows_without_key).
        keyless = " OR ".join(f"b.{q(c)} IS NULL" for c in pk)
        cursor = target.cursor if target.cursor and target.cursor in sources else None
        order = (f"{q(table.names[cursor])} DESC NULLS LAST, " if cursor else "") + f"{q(SEQ)} DESC"
        keyed = f" b WHERE NOT ({keyless})" if without_key else ""
        latest = (f"SELECT * FROM {q(load)}{keyed} QUALIFY ROW_NUMBER() OVER (PARTITION BY {', '.join(q(c) for c in pk)} "
                  f"ORDER BY {order}) = 1")
        match = " AND ".join(f"t.{q(table.names[k])} = {value(k)}" for k in target.primary_key)
        # A stored row is replaced unless it is strictly newer than the incoming one (an out-of-order re-read must not
        # roll a row back). The re-delivered boundary record (same cursor) replaces its copy.
        newer = ""
        if cursor:
            t_cur, b_cur = f"t.{q(table.names[cursor])}", value(cursor)
            newer = f" AND ({b_cur} IS NULL OR {t_cur} IS NULL OR {t_cur} <= {b_cur})"
        appended = [(f"INSERT INTO {dest} ({cols}) SELECT {exprs} FROM {q(load)} b WHERE {keyless}", None, "insert into", where)]
        return (appended if without_key else []) + [
            (f"DELETE FROM {dest} AS t USING ({latest}) AS b WHERE {match}{newer}", None, "deduplicate into", where),
            (f"INSERT INTO {dest} ({cols}) SELECT {exprs} FROM ({latest}) AS b "
             f"WHERE NOT EXISTS (SELECT 1 FROM {dest} AS t WHERE {match})", None, "insert into", where),
        ]

    # ------------------------------------------------------------ end of a stream

    def _drop_load(self, target: StreamTarget) -> None:
        load = load_name(sf_name(target.table))
        if load in self._loads:
            self._exec(f"DROP TABLE IF EXISTS {q(load)}", action="drop", obj=self._where(load), block=target.block)
            self._loads.discard(load)

    def abort_stream(self, target: StreamTarget) -> None:
        """The sync failed: discard a staged load (the previous table and state stay as they were)."""
        self._drop_load(target)
        if target.staged:
            staging = staging_name(sf_name(target.table))
            self._exec(f"DROP TABLE IF EXISTS {q(staging)}", action="drop", obj=self._where(staging), block=target.block)
            self._tables.pop(staging, None)

    def finish_stream(self, target: StreamTarget, state: dict | None, event=None) -> None:
        """End of a stream. The final state and the stream's DataLanded `event` commit in one DML transaction; for a
        staged load it follows the swap (see swap_statements)."""
        self._drop_load(target)
        extra = [self._event_statement(event)] if event is not None else []
        if not target.staged:
            statements = (self._state_statements(target, state) if state is not None else []) + extra
            if statements:
                self._transaction(statements, target.block)
            return
        final, staging = sf_name(target.table), staging_name(sf_name(target.table))
        table = self._tables[staging]
        block = target.block
        final_exists = self._exists(final)
        for sql, action, obj in self.swap_statements(final, staging, final_exists, self._comment(target)):
            self._exec(sql, action=action, obj=obj, block=block)
        # The swap committed on its own (DDL); the state follows it, so it can lag the data but never lead it.
        # A full refresh without state deletes the stored one: incremental syncs start over from this snapshot.
        table.name = final
        self._tables[final] = self._tables.pop(staging)
        self._transaction(self._state_statements(target, state) + self._table_statements(target, table) + extra, block)
        if final_exists and not self.fakesnow:
            # After SWAP WITH the staging name holds the replaced data.
            self._exec(f"DROP TABLE IF EXISTS {q(staging)}", action="drop the replaced data in", obj=self._where(staging), block=block)

    def swap_statements(self, final: str, staging: str, final_exists: bool, comment: str) -> list[tuple[str, str, str]]:
        """The statements that put the staged table in place (the only SQL that differs on fakesnow)."""
        where = self._where(final)
        if self.fakesnow:
            # fakesnow cannot parse SWAP WITH. DROP + RENAME: readers briefly see no table (fakesnow only); RENAME also
            # drops the comment there, so it is set again.
            return [
                (f"DROP TABLE IF EXISTS {q(final)}", "drop", where),
                (f"ALTER TABLE {q(staging)} RENAME TO {q(final)}", "rename the staged table to", where),
                (f"COMMENT ON TABLE {q(final)} IS {literal(comment)}", "comment on", where),
            ]
        if final_exists:
            # Atomic for readers: they see the old table until this statement, the new one after it.
            return [(f"ALTER TABLE {q(staging)} SWAP WITH {q(final)}", "swap the staged table with", where)]
        return [(f"ALTER TABLE {q(staging)} RENAME TO {q(final)}", "rename the staged table to", where)]

    def _exists(self, table: str) -> bool:
        rows = self._exec("SELECT COUNT(*) FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = CURRENT_SCHEMA() AND TABLE_NAME = ?",
                          [table], action="look up", obj=self._where(table))
        return bool(rows and rows[0][0])
