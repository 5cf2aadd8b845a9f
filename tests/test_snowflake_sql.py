"""The Snowflake destination's SQL, in process: `fakesnow.patch()` runs it (DuckDB underneath), and where fakesnow
cannot show a behaviour (SWAP WITH, QUERY_TAG, privileges, quotas, what commits implicitly) the generated SQL and
the connect arguments are asserted instead. The end-to-end path (real connector over HTTP, the CLI) is in
test_snowflake_cli.py; docs/snowflake.md says which behaviour is verified where.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from ingest.config import SnowflakeSettings, load_project
from ingest.destinations.base import RunRecord, StreamTarget, meta_columns
from ingest.destinations.duckdb import DuckDBDestination
from ingest.destinations.typing import records_to_arrow
from ingest.errors import ConfigError, SyncError
from ingest.secrets import MASK, REDACTOR

fakesnow = pytest.importorskip("fakesnow")
pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")
snowflake_connector = pytest.importorskip("snowflake.connector")

from ingest.destinations import snowflake as S  # noqa: E402 - after the importorskip

# Test values, not secrets: fakesnow never checks passwords; the literal one must be refused by validation.
UNUSED_PASSWORD = "pw-not-used-" + secrets.token_hex(6)
LITERAL_PASSWORD = "literal-" + secrets.token_hex(6)

CFG = S.SnowflakeConfig(account="acme", user="loader", database="ANALYTICS", schema="RAW", role="LOADER",
                        warehouse="LOAD_WH", password=UNUSED_PASSWORD)
USERS = {"id": "integer", "name": "string", "score": "number", "active": "boolean", "updated_at": "timestamp",
         "born": "date", "address": "json"}


@pytest.fixture
def patched():
    with fakesnow.patch():
        yield


class Recorder:
    """Wraps a destination's cursor: records every statement sent (and can fail one, like Snowflake would)."""

    def __init__(self, dest):
        self.dest, self.sql, self.kwargs = dest, [], []
        self.fail: tuple[str, Exception] | None = None
        inner = dest.cur.execute

        def execute(sql, params=None, **kwargs):
            self.sql.append(sql)
            self.kwargs.append(kwargs)
            if self.fail and re.search(self.fail[0], sql):
                raise self.fail[1]
            return inner(sql, params, **kwargs)

        dest.cur.execute = execute

    def since(self, mark: int) -> list[str]:
        return self.sql[mark:]


def make(block="demo", run_id="run1", team="platform") -> S.SnowflakeDestination:
    # fakesnow (patched in process) cannot parse SWAP WITH: these tests say so, the destination does not guess
    return S.SnowflakeDestination(CFG, team=team, block=block, run_id=run_id, swap_with=False)


def target(write="dedup", table="demo_users", columns=None, pk=("id",), cursor="updated_at", full_refresh=False, run_id="run1", **kw):
    return StreamTarget(block="demo", team="platform", source="airbyte-source-faker==7.2.1", stream="users", table=table,
                        write=write, primary_key=list(pk) if pk else None, cursor=cursor,
                        columns=dict(columns if columns is not None else USERS), run_id=run_id, load_id=f"{run_id}-users",
                        full_refresh=full_refresh, **kw)


def land(dest, t: StreamTarget, records: list[dict], state: dict | None = None) -> None:
    """What the manager's writer thread does for one checkpoint."""
    batch, new = records_to_arrow(records, [1_700_000_000_000] * len(records), dest.table_columns(t), t.run_id, t.load_id)
    dest.write(t, batch, new, state)


def state(n: int) -> dict:
    return {"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {"offset": n}}}


def user(i: int, updated: str | None = "2024-01-01T00:00:00Z", **extra) -> dict:
    return {"id": i, "name": f"user {i}", "score": i / 2, "active": i % 2 == 0, "updated_at": updated,
            "born": "1990-05-17", "address": {"city": f"c{i}", "zip": [i]}, **extra}


def rows(dest, sql: str, params=None) -> list[tuple]:
    dest.cur.execute(sql, params)
    return dest.cur.fetchall()


# ------------------------------------------------------------------------------------------- settings and connection


def project_with(tmp_path: Path, snowflake_yaml: str):
    path = tmp_path / "connectors.yaml"
    path.write_text("defaults:\n  snowflake:\n" + textwrap.indent(textwrap.dedent(snowflake_yaml), "    ") + textwrap.dedent("""
        connectors:
          demo:
            team: platform
            source: airbyte-source-faker==7.2.1
            streams: [{name: users}]
            destination: snowflake
        """))
    return load_project(path)


def test_connect_resolves_references_registers_secrets_and_tags_queries(patched, tmp_path, monkeypatch):
    monkeypatch.setenv("INGEST_T_SF_ACCOUNT", "acme-xy12345")
    monkeypatch.setenv("INGEST_T_SF_PASSWORD", "sf-PASSWORD-9876")
    project = project_with(tmp_path, """\
        account: ${INGEST_T_SF_ACCOUNT}
        user: INGEST_LOADER
        password: ${INGEST_T_SF_PASSWORD}
        role: LOADER
        warehouse: LOAD_WH
        database: ANALYTICS
        schema: RAW
        login_timeout: 20
        network_timeout: 60
        """)
    dest = S.SnowflakeDestination.from_project(project, project.block("demo"), run_id="20260101T000000Z-abc123")
    kwargs = snowflake_connector.connect.call_args.kwargs
    assert kwargs["account"] == "acme-xy12345" and kwargs["password"] == "sf-PASSWORD-9876"
    assert (kwargs["user"], kwargs["role"], kwargs["warehouse"], kwargs["database"], kwargs["schema"]) == (
        "INGEST_LOADER", "LOADER", "LOAD_WH", "ANALYTICS", "RAW")
    assert (kwargs["login_timeout"], kwargs["network_timeout"], kwargs["paramstyle"], kwargs["autocommit"]) == (20, 60, "qmark", True)
    # QUERY_TAG is a session parameter at connect (fakesnow cannot ALTER SESSION SET QUERY_TAG)
    params = kwargs["session_parameters"]
    assert json.loads(params["QUERY_TAG"]) == {"app": "ingest", "team": "platform", "block": "demo", "run_id": "20260101T000000Z-abc123"}
    assert params["TIMEZONE"] == "UTC" and params["LOCK_TIMEOUT"] == 600
    # every resolved value is a secret for the redactor; describe() shows no credentials
    assert REDACTOR.redact("pw sf-PASSWORD-9876") == f"pw {MASK}"
    assert "PASSWORD" not in dest.describe() and dest.describe().endswith("/ANALYTICS.RAW")
    assert dest.swap_with  # an https account: SWAP WITH (only a plain-http endpoint, or a test, says otherwise)
    dest.close()


def test_run_id_learnt_late_tags_every_later_statement(patched):
    dest = make(run_id=None)
    rec = Recorder(dest)
    assert json.loads(snowflake_connector.connect.call_args.kwargs["session_parameters"]["QUERY_TAG"])["run_id"] is None
    dest.record_run(RunRecord(run_id="run-late", block="demo", team="platform", streams=["users"], started_at=dt.datetime.now(dt.timezone.utc)))
    dest.read_state("demo")
    assert all(json.loads(k["_statement_params"]["QUERY_TAG"])["run_id"] == "run-late" for k in rec.kwargs)
    dest.close()


def _pem(passphrase: str | None) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    enc = serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def test_key_pair_from_a_file_or_a_secret_with_passphrase(patched, tmp_path, monkeypatch):
    from cryptography.hazmat.primitives import serialization

    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "loader.p8").write_bytes(_pem("PASS-phrase-1"))
    monkeypatch.setenv("INGEST_T_SF_PASSPHRASE", "PASS-phrase-1")
    base = "account: acme\nuser: loader\ndatabase: ANALYTICS\nschema: RAW\n"
    project = project_with(tmp_path, base + "private_key_file: keys/loader.p8\nprivate_key_passphrase: ${INGEST_T_SF_PASSPHRASE}\n")
    S.SnowflakeDestination.from_project(project, project.block("demo")).close()
    kwargs = snowflake_connector.connect.call_args.kwargs
    assert kwargs["authenticator"] == "SNOWFLAKE_JWT" and "password" not in kwargs
    assert serialization.load_der_private_key(kwargs["private_key"], password=None).key_size == 2048

    # key text from a secret store, newlines escaped as they often are in environment variables
    monkeypatch.setenv("INGEST_T_SF_KEY", _pem(None).decode().replace("\n", "\\n"))
    project = project_with(tmp_path, base + "private_key: ${INGEST_T_SF_KEY}\n")
    assert S.resolve_config(project).private_key

    monkeypatch.setenv("INGEST_T_SF_PASSPHRASE", "WRONG-phrase")
    project = project_with(tmp_path, base + "private_key_file: keys/loader.p8\nprivate_key_passphrase: ${INGEST_T_SF_PASSPHRASE}\n")
    with pytest.raises(ConfigError) as err:
        S.resolve_config(project)
    assert "defaults.snowflake.private_key_file: not a PEM private key, or the passphrase is wrong" in str(err.value)
    assert "WRONG-phrase" not in str(err.value)


def _fake_project(tmp_path, **settings):
    """A project whose defaults.snowflake was not checked by load_project (e.g. built in code)."""
    snowflake = SnowflakeSettings.model_validate(settings) if settings else None
    return SimpleNamespace(path=tmp_path / "connectors.yaml", lines={("defaults", "snowflake", "password"): 9},
                           defaults=SimpleNamespace(snowflake=snowflake, secrets="env"))


def test_config_problems_are_config_errors_naming_the_key_never_the_value(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"defaults\.snowflake: required to write to Snowflake"):
        S.resolve_config(_fake_project(tmp_path))
    base = dict(account="acme", user="loader", database="DB", schema="S")
    with pytest.raises(ConfigError) as err:
        S.resolve_config(_fake_project(tmp_path, **base, password=LITERAL_PASSWORD))
    assert "connectors.yaml:9: defaults.snowflake.password: is a secret" in str(err.value) and LITERAL_PASSWORD not in str(err.value)
    assert REDACTOR.redact(LITERAL_PASSWORD) == MASK  # a literal secret is never echoed, even later
    monkeypatch.delenv("INGEST_T_UNSET", raising=False)
    with pytest.raises(ConfigError, match=r"secret reference \$\{INGEST_T_UNSET\} is not set"):
        S.resolve_config(_fake_project(tmp_path, **base, password="${INGEST_T_UNSET}"))
    with pytest.raises(ConfigError, match="no credentials"):
        S.resolve_config(_fake_project(tmp_path, **base))
    with pytest.raises(ConfigError, match=r"defaults\.snowflake\.schema: required key is missing"):
        S.resolve_config(_fake_project(tmp_path, account="acme", user="u", database="DB", password="${HOME}"))


# ------------------------------------------------------------------------------------------- loading


def test_batches_are_bulk_loaded_in_a_constant_number_of_statements_and_one_dml_transaction(patched):
    dest = make()
    t = target(write="append", pk=None, cursor=None)
    dest.start_stream(t)
    land(dest, t, [user(0)], state(1))  # first batch: creates the temporary stage
    rec = Recorder(dest)
    counts = []
    for size in (10, 2_000):
        mark = len(rec.sql)
        land(dest, t, [user(i) for i in range(size)], state(size))
        counts.append(len(rec.sql) - mark)
        sent = rec.since(mark)
        kinds = [s.split()[0].upper() for s in sent]
        assert kinds == ["CREATE", "PUT", "COPY", "BEGIN", "INSERT", "DELETE", "INSERT", "COMMIT"], sent
        assert sent[3] == "BEGIN TRANSACTION"
        assert sent[0].startswith('CREATE OR REPLACE TRANSIENT TABLE "_INGEST_LOAD_DEMO_USERS"')
        assert re.search(r"MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE PURGE = TRUE", sent[2])
        assert "TYPE = PARQUET" in sent[2] and "AUTO_COMPRESS = FALSE" in sent[1]
        # between BEGIN and COMMIT only DML: nothing there commits implicitly on Snowflake
        inside = sent[sent.index("BEGIN TRANSACTION") + 1:sent.index("COMMIT")]
        assert all(s.split()[0].upper() in ("INSERT", "DELETE", "UPDATE") for s in inside), inside
        assert not any("VALUES" in s.upper() for s in inside)  # rows move by INSERT … SELECT, never row by row
    assert counts == [8, 8]
    assert rows(dest, 'SELECT COUNT(*) FROM "DEMO_USERS"') == [(2_011,)]
    assert rows(dest, 'SELECT COUNT(*) FROM "_INGEST_LOAD_DEMO_USERS"') == [(2_000,)]  # only the last batch, until finish
    dest.finish_stream(t, None)
    assert not [t for (t,) in rows(dest, "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES") if t.startswith("_INGEST_LOAD_")]
    dest.close()


def test_types_variant_and_metadata_columns(patched):
    dest = make()
    t = target()
    dest.start_stream(t)
    land(dest, t, [user(1), user(2, updated=None, address=None)], state(2))
    types = dict(rows(dest, "SELECT COLUMN_NAME, DATA_TYPE FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = 'DEMO_USERS'"))
    assert types == {"ID": "NUMBER", "NAME": "TEXT", "SCORE": "FLOAT", "ACTIVE": "BOOLEAN", "UPDATED_AT": "TIMESTAMP_TZ",
                     "BORN": "DATE", "ADDRESS": "VARIANT", "_INGEST_EXTRACTED_AT": "TIMESTAMP_TZ", "_INGEST_RUN_ID": "TEXT",
                     "_INGEST_LOAD_ID": "TEXT", "_INGEST_REJECTED": "VARIANT"}
    got = rows(dest, 'SELECT "ID", "NAME", "SCORE", "ACTIVE", "UPDATED_AT", "BORN", "ADDRESS":city::string, "ADDRESS", '
                     '"_INGEST_RUN_ID", "_INGEST_EXTRACTED_AT" FROM "DEMO_USERS" ORDER BY 1')
    assert got[0][:7] == (1, "user 1", 0.5, False, dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), dt.date(1990, 5, 17), "c1")
    assert json.loads(got[0][7]) == {"city": "c1", "zip": [1]} and got[0][8] == "run1"
    assert got[0][9] == dt.datetime.fromtimestamp(1_700_000_000, dt.timezone.utc)
    assert got[1][4] is None and got[1][7] is None
    dest.close()


def test_dedup_sql_and_behaviour_match_the_duckdb_destination(patched, tmp_path):
    """The same checkpoints into DuckDB and into Snowflake end in the same rows: duplicates inside a batch, a re-read
    of older versions (must not roll rows back), the boundary record re-delivered with the same cursor, NULL cursors."""
    duck, snow = DuckDBDestination(tmp_path / "d.duckdb"), make()
    rec = Recorder(snow)
    batches = [
        [user(1, "2024-01-01T00:00:00Z"), user(2, "2024-01-01T00:00:00Z"), user(1, "2024-01-03T00:00:00Z", name="one v3"),
         user(1, "2024-01-02T00:00:00Z", name="one v2")],
        [user(1, "2024-01-02T00:00:00Z", name="stale re-read"), user(2, "2024-01-01T00:00:00Z", name="two boundary"),
         user(3, None, name="three no cursor"), user(3, None, name="three later in batch")],
        [user(3, "2024-02-01T00:00:00Z", name="three dated"), user(4, "2024-01-05T00:00:00Z", nickname="new field")],
    ]
    t_duck, t_snow = target(), target()
    for dest, t in ((duck, t_duck), (snow, t_snow)):
        dest.start_stream(t)
        for i, batch in enumerate(batches):
            land(dest, t, batch, state(i))
    got_duck = duck.con.execute("SELECT id, name, epoch_us(updated_at), nickname FROM demo_users ORDER BY id").fetchall()
    got_snow = rows(snow, 'SELECT "ID", "NAME", DATE_PART(epoch_microsecond, "UPDATED_AT"), "NICKNAME" FROM "DEMO_USERS" ORDER BY 1')
    assert got_snow == got_duck
    assert [r[1] for r in got_snow] == ["one v3", "two boundary", "three dated", "user 4"]
    assert t_snow.schema_changes == t_duck.schema_changes == ["added column nickname VARCHAR"]
    # What fakesnow would not catch if it were missing: the dedup source and the "not strictly newer" guard.
    latest = ('SELECT * FROM "_INGEST_LOAD_DEMO_USERS" QUALIFY ROW_NUMBER() OVER (PARTITION BY "ID" ORDER BY '
              '"UPDATED_AT" DESC NULLS LAST, "__INGEST_SEQ" DESC) = 1')
    delete = [s for s in rec.sql if s.startswith('DELETE FROM "DEMO_USERS"')]
    insert = [s for s in rec.sql if s.startswith('INSERT INTO "DEMO_USERS"')]
    assert len(delete) == len(insert) == 3
    assert delete[0] == (f'DELETE FROM "DEMO_USERS" AS t USING ({latest}) AS b WHERE t."ID" = b."ID" AND '
                         '(b."UPDATED_AT" IS NULL OR t."UPDATED_AT" IS NULL OR t."UPDATED_AT" <= b."UPDATED_AT")')
    assert f"FROM ({latest}) AS b WHERE NOT EXISTS (SELECT 1 FROM \"DEMO_USERS\" AS t WHERE t.\"ID\" = b.\"ID\")" in insert[0]
    assert 'PARSE_JSON(b."ADDRESS")' in insert[0] and not any("MERGE" in s for s in rec.sql)
    duck.close()
    snow.close()


def test_identifiers_are_upper_case_quoted_and_map_back_to_their_fields(patched):
    cols = {"id": "integer", "ID": "string", "select": "string", "updated_at": "timestamp"}
    dest = make(team="o'brien \"ops\"")
    t = target(columns=cols)
    t.team = dest.team
    dest.start_stream(t)
    land(dest, t, [{"id": 1, "ID": "upper", "select": "kw", "updated_at": None, "sizeCm": 3}], state(1))
    names = [r[0] for r in rows(dest, "SELECT COLUMN_NAME FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = 'DEMO_USERS' ORDER BY ORDINAL_POSITION")]
    assert names[:3] == ["ID", "ID_2", "SELECT"] and names[-1] == "SIZECM"
    comment = rows(dest, "SELECT COMMENT FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_NAME = 'DEMO_USERS'")[0][0]
    assert comment == "ingest: team=obrien ops; block=demo; source=airbyte-source-faker==7.2.1; stream=users; write=dedup"
    dest.close()

    # a new session maps every column back to its field, including the undeclared camelCase one
    again = make(team=t.team)
    t2 = target(columns=cols)
    t2.team = t.team
    again.start_stream(t2)
    assert again.table_columns(t2) == {"id": "integer", "ID": "string", "select": "string", "updated_at": "timestamp", "sizeCm": "integer"}
    land(again, t2, [{"id": 2, "ID": "second", "select": "x", "updated_at": None, "sizeCm": 5}])
    assert rows(again, 'SELECT "ID", "ID_2", "SIZECM" FROM "DEMO_USERS" ORDER BY 1') == [(1, "upper", 3), (2, "second", 5)]
    assert t2.schema_changes == []  # nothing re-added
    again.close()


# ------------------------------------------------------------------------------------------- replace / full refresh


def test_replace_builds_a_staging_table_readers_see_the_old_one_until_the_swap(patched):
    dest = make()
    old = target(write="append", pk=None, cursor=None)
    dest.start_stream(old)
    land(dest, old, [user(i) for i in range(5)], state(5))

    # a failed replace leaves the old table and state untouched; abort_stream drops the half-built table
    failed = target(write="replace", pk=None, cursor=None, run_id="run2")
    dest.start_stream(failed)
    land(dest, failed, [user(100)], state(1))
    assert rows(dest, 'SELECT COUNT(*) FROM "DEMO_USERS"') == [(5,)]
    dest.abort_stream(failed)
    assert rows(dest, 'SELECT COUNT(*) FROM "DEMO_USERS"') == [(5,)]
    assert dest.read_state("demo")["users"] == state(5)
    assert not rows(dest, "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_NAME LIKE '%STAGING%' OR TABLE_NAME LIKE '%LOAD%'")

    # a run killed before its swap leaves the staging table: the next replace discards it
    killed = target(write="replace", pk=None, cursor=None, run_id="run2b")
    dest.start_stream(killed)
    land(dest, killed, [user(101)], state(1))
    new = target(write="replace", pk=None, cursor=None, run_id="run3")
    dest.start_stream(new)
    land(dest, new, [user(i, extra_col="x") for i in range(200, 203)], state(3))
    assert rows(dest, 'SELECT COUNT(*) FROM "DEMO_USERS"') == [(5,)]  # readers still see the old table
    assert rows(dest, 'SELECT COUNT(*) FROM "_INGEST_STAGING_DEMO_USERS"') == [(3,)]  # run2b's row was discarded
    dest.finish_stream(new, state(3))
    assert rows(dest, 'SELECT "ID", "EXTRA_COL", "_INGEST_RUN_ID" FROM "DEMO_USERS" ORDER BY 1') == [(i, "x", "run3") for i in range(200, 203)]
    assert dest.read_state("demo")["users"] == state(3)
    tables = {r[0]: r[1] for r in rows(dest, "SELECT TABLE_NAME, COMMENT FROM INFORMATION_SCHEMA.TABLES")}
    assert "_INGEST_STAGING_DEMO_USERS" not in tables and "write=replace" in tables["DEMO_USERS"]
    assert rows(dest, 'SELECT "WRITE_MODE" FROM "_INGEST_TABLES" WHERE "TABLE_NAME" = \'DEMO_USERS\'') == [("replace",)]

    # a full refresh without state forgets the stored state (the next incremental run starts from this snapshot)
    fr = target(write="dedup", full_refresh=True, run_id="run4")
    dest.start_stream(fr)
    land(dest, fr, [user(7), user(7, "2024-03-01T00:00:00Z", name="seven latest")])
    dest.finish_stream(fr, None)
    assert rows(dest, 'SELECT "ID", "NAME" FROM "DEMO_USERS"') == [(7, "seven latest")]
    assert "users" not in dest.read_state("demo")
    dest.close()


def landed_event(stream="users", load_id="run1-users"):
    from ingest.events import Event

    return Event(kind="data_landed", team="platform", block="demo", stream=stream, table=f"demo_{stream}",
                 destination="snowflake:acme/ANALYTICS.RAW", run_id="run1", load_id=load_id, run_pathspec="cli/run1", rows=2)


def test_the_landed_event_commits_with_the_final_state_and_the_ledger_is_idempotent(patched):
    dest = make()
    t = target()
    dest.start_stream(t)
    land(dest, t, [user(1), user(2)], state(2))
    rec = Recorder(dest)
    # a failure at the final commit keeps neither the new state nor the event
    rec.fail = ("^COMMIT", snowflake_connector.errors.OperationalError(msg="connection reset", errno=250003))
    with pytest.raises(SyncError):
        dest.finish_stream(t, state(3), landed_event())
    rec.fail = None
    assert dest.list_events() == [] and dest.read_state("demo")["users"] == state(2)
    mark = len(rec.sql)
    event = landed_event()
    dest.finish_stream(t, state(3), event)
    sent = rec.since(mark)
    assert sent[0] == "BEGIN TRANSACTION" and sent[-1] == "COMMIT" and sent[-2].startswith('INSERT INTO "_INGEST_EVENTS"')
    assert dest.read_state("demo")["users"] == state(3)
    (row,) = dest.list_events()
    assert (row["name"], row["idempotency_key"], row["status"], row["attempts"], row["payload"]["rows"]) == (
        "data_landed.demo.users", "demo:users:run1-users", "pending", 0, 2)
    dest.record_event(event)  # a re-send with the same idempotency key is not a second row
    dest.record_event(landed_event("products", "run1-products"))
    assert [r["stream"] for r in dest.list_events()] == ["users", "products"]
    dest.mark_event(row["event_id"], "pending", "webhook down")
    dest.mark_event(row["event_id"], "published", None)
    published = dest.list_events(status="published")
    assert [(r["stream"], r["attempts"], r["last_error"]) for r in published] == [("users", 2, None)]
    assert published[0]["published_at"] is not None
    assert [r["stream"] for r in dest.list_events(block="demo", status="pending", run_id="run1")] == ["products"]
    assert dest.list_events(block="other") == []
    dest.close()


def test_run_locks_one_sync_per_block_stream(patched):
    import os
    import socket
    import subprocess

    dest, other = make(), make()
    me = {"block": "demo", "run_id": "run1", "host": socket.gethostname(), "pid": os.getpid()}
    assert dest.acquire_locks(me, ["users", "products"], ttl=60) == []
    # another run of the same block is refused and told who holds the locks; nothing of it is taken
    held = other.acquire_locks({**me, "run_id": "run2"}, ["users", "orders"], ttl=60)
    assert [(r["stream"], r["run_id"], r["pid"]) for r in held] == [("users", "run1", os.getpid())]
    assert other.acquire_locks({**me, "block": "jira", "run_id": "run3"}, ["users"], ttl=60) == []  # another block
    assert rows(dest, 'SELECT COUNT(*) FROM "_INGEST_LOCKS" WHERE "RUN_ID" = \'run2\'') == [(0,)]
    # the heartbeat (its own session) extends; expired locks and locks of dead processes are taken over
    before = rows(dest, 'SELECT MAX("EXPIRES_AT") FROM "_INGEST_LOCKS" WHERE "RUN_ID" = \'run1\'')[0][0]
    dest.refresh_locks("run1", ttl=600)
    assert rows(dest, 'SELECT MIN("EXPIRES_AT") FROM "_INGEST_LOCKS" WHERE "RUN_ID" = \'run1\'')[0][0] > before
    dest.refresh_locks("run1", ttl=-1)
    assert other.acquire_locks({**me, "run_id": "run4"}, ["users"], ttl=60) == []
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert dest.acquire_locks({**me, "run_id": "run5", "pid": dead.pid}, ["orders"], ttl=60) == []
    assert other.acquire_locks({**me, "run_id": "run6"}, ["orders"], ttl=60) == []
    other.release_locks("run6")
    other.release_locks("run4")
    assert rows(dest, 'SELECT "STREAM", "RUN_ID" FROM "_INGEST_LOCKS" WHERE "BLOCK" = \'demo\' ORDER BY 1') == [("products", "run1")]
    dest.close()
    other.close()


def test_read_only_creates_nothing(patched):
    ro = S.SnowflakeDestination(CFG, block="demo", read_only=True)
    assert ro.read_state("demo") == {} and ro.list_events() == []
    assert not [t for (t,) in rows(ro, "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES") if t.startswith("_INGEST")]
    ro.close()


class StubConnection:
    """Stands in for a real Snowflake connection (no fakesnow): records statements, answers lookups."""

    def __init__(self, final_exists: bool):
        self.sql, self.final_exists = [], final_exists

    def cursor(self):
        stub = self

        class Cursor:
            description, rowcount, _rows = None, 0, []

            def execute(self, sql, params=None, **kwargs):
                stub.sql.append(sql)
                self.description = [("x",)] if sql.startswith("SELECT") else None
                if "TABLE_NAME IN" in sql:  # every metadata table exists, with every column of this release
                    self._rows = [(t, c.upper()) for t in S.sql.META_DDL for c in meta_columns(t.lower(), "snowflake")]
                elif sql.startswith("SELECT COUNT(*) FROM INFORMATION_SCHEMA.TABLES"):
                    self._rows = [(1 if stub.final_exists else 0,)]
                else:
                    self._rows = []
                return self

            def fetchall(self):
                return self._rows

        return Cursor()

    def close(self):
        pass


@pytest.mark.parametrize("final_exists", [True, False])
def test_on_snowflake_the_staged_table_is_swapped_in_then_state_committed_then_old_data_dropped(final_exists):
    con = StubConnection(final_exists)
    dest = S.SnowflakeDestination(CFG, team="platform", block="demo", run_id="run1", connection=con)
    assert dest.swap_with
    t = target(write="replace", pk=None, cursor=None)
    dest.start_stream(t)
    mark = len(con.sql)
    dest.finish_stream(t, state(9), landed_event())
    sent = [s for s in con.sql[mark:] if not s.startswith("SELECT COUNT(*)")]
    swap = ('ALTER TABLE "_INGEST_STAGING_DEMO_USERS" SWAP WITH "DEMO_USERS"' if final_exists
            else 'ALTER TABLE "_INGEST_STAGING_DEMO_USERS" RENAME TO "DEMO_USERS"')
    expected = [swap, "BEGIN TRANSACTION", 'DELETE FROM "_INGEST_STATE"', 'INSERT INTO "_INGEST_STATE"', 'DELETE FROM "_INGEST_TABLES"',
                'INSERT INTO "_INGEST_TABLES"', 'INSERT INTO "_INGEST_EVENTS"', "COMMIT"]
    expected += ['DROP TABLE IF EXISTS "_INGEST_STAGING_DEMO_USERS"'] if final_exists else []
    assert [s[:len(e)] for s, e in zip(sent, expected)] == expected and len(sent) == len(expected), sent
    # the staging table was created with the final table's comment, so it carries it through the swap
    create = next(s for s in con.sql if s.startswith('CREATE OR REPLACE TABLE "_INGEST_STAGING_DEMO_USERS"'))
    assert create.endswith("COMMENT = 'ingest: team=platform; block=demo; source=airbyte-source-faker==7.2.1; stream=users; write=replace'")


# ------------------------------------------------------------------------------------------- errors


ERRORS = [
    ("COMMIT", 3001, "42501", "Insufficient privileges to operate on table '_INGEST_STATE'", "role LOADER lacks a privilege"),
    ("INSERT INTO \"DEMO_USERS\"", 606, "57P03", "No active warehouse selected in the current session.", "no usable warehouse: LOAD_WH"),
    ("^COPY INTO", 2003, "42S02", "SQL compilation error: Object 'ANALYTICS.RAW._INGEST_LOAD_DEMO_USERS' does not exist or not authorized.",
     "does not exist or role LOADER cannot see it"),
    ("^PUT", 630, "57014", "Warehouse 'LOAD_WH' cannot be resumed because resource monitor 'RM' has exceeded its quota.",
     "resource monitor quota is used up"),
    ("DELETE FROM \"_INGEST_STATE\"", 625, "57014", "Statement reached its lock timeout.", "another transaction holds a lock"),
]


@pytest.mark.parametrize("where,errno,sqlstate,message,hint", ERRORS, ids=[str(e[1]) for e in ERRORS])
def test_snowflake_errors_become_clear_sync_errors_and_keep_committed_data(patched, where, errno, sqlstate, message, hint):
    dest = make()
    t = target()
    dest.start_stream(t)
    land(dest, t, [user(1), user(2)], state(2))
    rec = Recorder(dest)
    rec.fail = (where, snowflake_connector.errors.ProgrammingError(msg=message, errno=errno, sqlstate=sqlstate, sfqid="01b2-q"))
    with pytest.raises(SyncError) as err:
        land(dest, t, [user(1, "2024-06-01T00:00:00Z", name="changed"), user(3)], state(3))
    text = str(err.value)
    assert text.startswith("Snowflake: cannot ") and "for block demo" in text and hint in text, text
    assert f"error {errno:06d}" in text and "query id 01b2-q" in text and CFG.password not in text
    if where in ("COMMIT", 'INSERT INTO "DEMO_USERS"', 'DELETE FROM "_INGEST_STATE"'):
        assert rec.sql[-1] == "ROLLBACK"  # the failed transaction is rolled back, not left open
    rec.fail = None
    # the last committed data and state are intact
    assert rows(dest, 'SELECT "ID", "NAME" FROM "DEMO_USERS" ORDER BY 1') == [(1, "user 1"), (2, "user 2")]
    assert dest.read_state("demo")["users"] == state(2)
    dest.close()


def test_connect_errors_name_the_account_and_block(monkeypatch):
    def refuse(**kwargs):
        raise snowflake_connector.errors.DatabaseError(
            msg="Failed to connect to DB: acme.snowflakecomputing.com:443. Incorrect username or password was specified.",
            errno=250001, sqlstate="08001")

    monkeypatch.setattr(snowflake_connector, "connect", refuse)
    with pytest.raises(SyncError) as err:
        make()
    assert "cannot connect to account acme for block demo" in str(err.value)
    assert "authentication failed for user loader on account acme (password)" in str(err.value)


def test_copy_that_loads_fewer_rows_than_the_batch_fails_the_checkpoint(patched):
    dest = make()
    t = target(write="append", pk=None, cursor=None)
    dest.start_stream(t)
    rec = Recorder(dest)
    inner = dest.cur.fetchall
    dest.cur.fetchall = lambda: [("f.parquet", "LOAD_SKIPPED", 0, 0)] if rec.sql[-1].startswith("COPY") else inner()
    with pytest.raises(SyncError, match=r"loaded 0 of 2 rows \(LOAD_SKIPPED\)"):
        land(dest, t, [user(1), user(2)], state(2))
    dest.cur.fetchall = inner
    assert "users" not in dest.read_state("demo") and "BEGIN TRANSACTION" not in rec.sql
    dest.close()


# ------------------------------------------------------------------------------------------- bookkeeping


def test_state_runs_and_reset(patched):
    dest = make()
    started = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    run = RunRecord(run_id="run1", block="demo", team="platform", streams=["users", "products"], started_at=started, destination=dest.describe())
    dest.record_run(run)
    run.status, run.rows, run.ended_at, run.error = "failed", 7, started + dt.timedelta(seconds=5), "error: boom"
    dest.record_run(run)  # an upsert: still one row
    assert rows(dest, 'SELECT "RUN_ID", "STATUS", "ROWS", "STREAMS", "STARTED_AT", "ENDED_AT", "ERROR" FROM "_INGEST_RUNS"') == [
        ("run1", "failed", 7, '["users","products"]', started, started + dt.timedelta(seconds=5), "error: boom")]
    for key in ("users", "products"):
        t = target()
        t.stream = key
        dest.write(t, None, {}, state(1))
    assert set(dest.read_state("demo")) == {"users", "products"} and dest.read_state("other") == {}
    assert dest.reset_state("demo", ["users"]) == 1
    assert set(dest.read_state("demo")) == {"products"}
    assert dest.reset_state("demo") == 1 and dest.read_state("demo") == {}
    dest.close()


def test_query_runs_on_its_own_session(patched):
    dest = make()
    t = target(write="append", pk=None, cursor=None)
    dest.start_stream(t)
    land(dest, t, [user(1), user(2)])
    calls = snowflake_connector.connect.call_count
    assert dest.query('SELECT "ID", "NAME" FROM "DEMO_USERS" WHERE "ID" > ? ORDER BY 1', [1]) == [{"ID": 2, "NAME": "user 2"}]
    assert snowflake_connector.connect.call_count == calls + 1
    with pytest.raises(SyncError, match="cannot query ANALYTICS.RAW for block demo"):
        dest.query("SELECT * FROM NOPE")
    dest.close()


def test_column_comments_are_one_statement_per_described_column_with_quotes_escaped():
    t = target(descriptions={"id": "The user's id", "email": "Where we write \\ to them"})
    table = S.sql.Table("DEMO_USERS")
    for field in ("id", "email", "name"):
        table.add(field, "string")
    sent = S.sql.column_comment_statements(t, table, ["id", "email", "name", "not_a_column"], "ANALYTICS.RAW.DEMO_USERS")
    assert [s[0] for s in sent] == [
        'COMMENT ON COLUMN "DEMO_USERS"."ID" IS \'The user\'\'s id\'',
        'COMMENT ON COLUMN "DEMO_USERS"."EMAIL" IS \'Where we write \\\\ to them\'',
    ]  # `name` says nothing, `not_a_column` is not one: no statement
    assert {s[2] for s in sent} == {"comment on a column of"}
