"""Projects for the two pullers against their loopback fakes (tests/fakes/fake_fmcsa.py, fake_greenscreens.py): the
cassettes' block, pointed at a fake, with settings changed as data; plus what several suites check of them (a table
as dicts, no secret anywhere, a lanes CSV of any size)."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import yaml

from ..fakes import fake_fmcsa as ff
from ..fakes import fake_greenscreens as gsf
from .blocks import edit_block
from .cli import CliResult, Project

KEY_ENV = ff.KEY_ENV  # FMCSA's web key
SECRET_ENV = gsf.SECRET_ENV  # Greenscreens' client secret
CARRIER_STREAMS = ("snapshots", "basics", "out_of_service", "authority", "lookup_errors")
PRICES_TABLE = "truck_prices_lane_rates"


def write_carrier_block(project: Project, fake: ff.FakeFMCSA | None = None, *, carriers: str | None = None,
                        batch: int | None = None, streams: tuple[str, ...] = CARRIER_STREAMS, **config) -> None:
    """The FMCSA cassette's block; `carriers` (YAML) replaces its carrier list, `config` its settings (None: drop)."""
    settings = {"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.1, "timeout_seconds": 2} if fake else {}
    settings.update(config)

    def change(block: dict) -> None:
        if carriers is not None:
            block["config"]["carriers"] = yaml.safe_load(carriers)
        for key, value in settings.items():
            block["config"].pop(key, None)
            if value is not None:
                block["config"][key] = value
        block["streams"] = [{"name": s} for s in streams]

    text = ff.project_config(base_url=fake.base_url if fake else ff.SITE + ff.PREFIX)
    defaults = {"batch": {"max_records": batch}} if batch else None
    (project.root / "connectors.yaml").write_text(edit_block(text, "carrier_safety", change, defaults=defaults))


def carrier_table(project: Project, name: str, order: str = "dot_number") -> list[dict]:
    con = duckdb.connect(str(project.db), read_only=True)
    try:
        cur = con.execute(f"SELECT * FROM carrier_safety_{name} ORDER BY {order}")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        con.close()


def write_pricing_block(project: Project, fake: gsf.FakeGreenscreens | None = None, *,
                        lanes: str = "{from: csv, path: lanes.csv}", csv: Path | None = gsf.LANES_CSV,
                        batch: int | None = None, **config) -> None:
    """The cassettes' block (tests/fakes/fake_greenscreens.PROJECT_CONFIG), pointed at `fake`, with overrides."""
    settings = {"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05, "timeout_seconds": 2} if fake else {}
    settings.update(config)

    def change(block: dict) -> None:
        block["config"]["lanes"] = yaml.safe_load(lanes)
        for key, value in settings.items():
            block["config"].pop(key, None)
            block["config"][key] = value

    text = gsf.project_config(base_url=fake.base_url if fake else gsf.SITE)
    defaults = {"batch": {"max_records": batch}} if batch else None
    (project.root / "connectors.yaml").write_text(edit_block(text, "truck_prices", change, defaults=defaults))
    if csv is not None:
        shutil.copyfile(csv, project.root / "lanes.csv")


def gs_env(fake: gsf.FakeGreenscreens | None = None, secret: str | None = None) -> dict:
    return {SECRET_ENV: secret or (fake.client_secret if fake else "replay-secret-0000")}


def table_dump(project: Project) -> str:
    """Every row of every table in the DuckDB file, as text (for secret scans)."""
    if not project.db.exists():
        return ""
    out = []
    con = duckdb.connect(str(project.db), read_only=True)
    try:
        for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall():
            out.append(str(con.execute(f'SELECT * FROM "{name}"').fetchall()))
    finally:
        con.close()
    return "\n".join(out)


def assert_no_secrets(project: Project, result: CliResult | None, secrets) -> None:
    texts = {"stdout": result.stdout if result else "", "stderr": result.stderr if result else "", "tables": table_dump(project)}
    for secret in secrets:
        for where, text in texts.items():
            assert secret not in text, f"a secret leaked into {where}"



def puller_catalog(name: str) -> dict[str, tuple[dict, list[str], str | None]]:
    """A registered puller's streams: name -> (JSON schema, primary key, cursor), as its discover() declares them."""
    import importlib

    from ingest.sources.pullers import PULLERS

    module, _, cls = PULLERS[name].partition(":")
    return getattr(importlib.import_module(module), cls).CATALOG


def assert_comments_match_schema(project: Project, table: str, schema: dict) -> None:
    """After a run: each column of `table` that the stream's schema has carries that field's description as its
    DuckDB comment, and the table's comment starts with the schema's own description (issue 13)."""
    con = duckdb.connect(str(project.db), read_only=True)
    try:
        comments = dict(con.execute("SELECT column_name, comment FROM duckdb_columns() WHERE table_name = ?", [table]).fetchall())
        (table_comment,) = con.execute("SELECT comment FROM duckdb_tables() WHERE table_name = ?", [table]).fetchone()
    finally:
        con.close()
    wanted = {name: prop.get("description") for name, prop in schema["properties"].items()}
    assert {name: comments.get(name) for name in wanted} == wanted, f"{table}: column comments differ from the schema"
    assert table_comment.startswith(schema["description"] + " | ingest: "), f"{table}: {table_comment!r}"


def make_lanes_csv(path: Path, n: int, start: dt.date = dt.date(2024, 1, 1), bad_every: int = 0) -> None:
    """n distinct lanes over n/50 days; every `bad_every`-th lane has an unroutable zip (a per-item 424)."""
    cities = [("Chicago", "IL", "60611"), ("Dallas", "TX", "75204"), ("Atlanta", "GA", "30303"), ("Denver", "CO", "80202"),
              ("Fresno", "CA", "93721"), ("Seattle", "WA", "98101"), ("Omaha", "NE", "68102"), ("Memphis", "TN", "38103")]
    lines = ["shipment_id,pickup_date,transport_type,origin_city,origin_state,origin_zip,destination_city,destination_state,destination_zip"]
    for i in range(n):
        o, d = cities[i % 8], cities[(i // 8 + 1 + i) % 8]
        if o == d:
            d = cities[(cities.index(d) + 1) % 8]
        day = start + dt.timedelta(days=i // 50)
        dzip = "99999" if bad_every and i % bad_every == bad_every - 1 else d[2]
        kind = ("VAN", "REEFER", "FLATBED")[(i // 64) % 3]
        lines.append(f"S{i},{day},{kind},{o[0]},{o[1]},{o[2]}-{i:04d},{d[0]},{d[1]},{dzip}")
    path.write_text("\n".join(lines) + "\n")
