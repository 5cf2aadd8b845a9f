"""The newest airbyte-source-s3 (a Python connector, isolated in its own environment) reading CSV files from a
loopback S3 (moto's server), through `ingest run`: real reads, incremental reruns, SIGKILL then rerun.

airbyte-source-s3 4.16.1 cannot be installed as published: its metadata pins `smart-open[s3]==4.16.1`, a release
that does not exist. The block replaces that requirement (`dependency_overrides`), in the connector's environment only.
"""
from __future__ import annotations

import json
import random

import pytest

from .support.flowing import kill_when_flowing
from .fakes.s3_server import S3Server

BUCKET = "landing"
OVERRIDES = '["smart-open[s3]>=7,<8"]'
KEYS = {"S3_KEY": "s3-key-dummy-8812", "S3_SECRET": "s3-secret-dummy-9931"}


def config(url: str, *, overrides: bool = True, primary_key: bool = False) -> str:
    return f"""\
defaults:
  check_timeout: 10s
  batch: {{max_records: 500}}
connectors:
  s3:
    team: data
    source: airbyte-source-s3==4.16.1
    {"dependency_overrides: " + OVERRIDES if overrides else ""}
    config:
      bucket: {BUCKET}
      credentials: {{auth_type: iam_user, aws_access_key_id: "${{S3_KEY}}", aws_secret_access_key: "${{S3_SECRET}}"}}
      endpoint: {url}
      streams:
        - name: orders
          globs: ["orders/*.csv"]
          format: {{filetype: csv}}
          input_schema: '{{"id": "integer", "customer": "string", "amount": "number", "updated_at": "string"}}'
    streams:
      - name: orders
        {"primary_key: id" if primary_key else ""}
"""


def put_files(s3: S3Server, first: int, count: int, rows: int) -> None:
    client = s3._client()
    for i in range(first, first + count):
        body = "id,customer,amount,updated_at\n" + "".join(
            f"{i * rows + j},c{j % 97},{(j * 7) % 1000}.25,2024-01-01T00:00:00Z\n" for j in range(rows))
        client.put_object(Bucket=BUCKET, Key=f"orders/part-{i:04d}.csv", Body=body.encode())


@pytest.fixture
def s3():
    with S3Server(bucket=BUCKET) as server:
        yield server


def test_newest_s3_reads_a_loopback_bucket_incrementally(project, s3):
    put_files(s3, 0, 3, 100)

    project.write_config(config(s3.url, overrides=False))
    r = project.cli("install")
    assert r.code == 2, r.output
    assert "requires smart-open[s3]==4.16.1, which is not on the package index" in r.stderr, r.output
    assert "dependency_overrides" in r.stderr and "Traceback" not in r.output

    project.write_config(config(s3.url))
    r = project.cli("install")
    assert r.code == 0, r.output
    assert "isolated" in r.stdout
    r = project.cli("check", "s3", env=KEYS)
    assert r.code == 0 and "check succeeded" in r.stdout, r.output

    r = project.cli("run", "s3", env=KEYS)
    assert r.code == 0, r.output
    assert project.scalar("SELECT count(*) FROM s3_orders") == 300
    assert project.scalar("SELECT count(DISTINCT _ab_source_file_url) FROM s3_orders") == 3
    assert project.scalar("SELECT sum(amount) FROM s3_orders WHERE id < 3") == pytest.approx(0.25 + 7.25 + 14.25)

    r = project.cli("run", "s3", env=KEYS)  # nothing new in the bucket: nothing read
    assert r.code == 0, r.output
    assert project.scalar("SELECT count(*) FROM s3_orders") == 300

    put_files(s3, 3, 1, 100)
    r = project.cli("run", "s3", env=KEYS)
    assert r.code == 0, r.output
    assert project.scalar("SELECT count(*) FROM s3_orders") == 400
    assert project.scalar("SELECT count(*) - count(DISTINCT id) FROM s3_orders") == 0
    for secret in KEYS.values():
        assert secret.encode() not in project.db.read_bytes()


def _history(project) -> dict:
    rows = project.query("SELECT state FROM _ingest_state WHERE block = 's3' AND state_key = 'orders'")
    return json.loads(rows[0][0])["stream"]["stream_state"].get("history", {}) if rows else {}


@pytest.mark.timeout(600)
def test_sigkill_an_isolated_s3_run_then_rerun_loses_nothing_and_duplicates_nothing(project, s3):
    files, rows = 60, 2000  # ~5 s of reading: progress is reported every 2 s, the kills land inside the read
    put_files(s3, 0, files, rows)
    project.write_config(config(s3.url, primary_key=True))
    assert project.cli("install").code == 0
    rng = random.Random(20261202)
    partial = 0
    for delay in [rng.uniform(0.0, 2.0) for _ in range(3)]:
        kill_when_flowing(["run", "s3"], project.root, KEYS, delay, timeout=240, may_finish=True)
        if not project.db.exists():
            continue
        history = _history(project)
        tables = {t for (t,) in project.query("SELECT table_name FROM information_schema.tables")}
        if "s3_orders" not in tables:
            continue
        # state never ahead of data: every file the checkpoint lists as read is in the table, whole
        for url in history:
            assert project.scalar("SELECT count(*) FROM s3_orders WHERE _ab_source_file_url = ?", [url]) == rows, url
        assert project.scalar("SELECT count(*) - count(DISTINCT id) FROM s3_orders") == 0
        if len(history) < files:
            partial += 1
    r = project.cli("run", "s3", env=KEYS, timeout=300)
    assert r.code == 0, r.output
    assert project.scalar("SELECT count(*) FROM s3_orders") == files * rows
    assert project.scalar("SELECT count(DISTINCT id) FROM s3_orders") == files * rows
    assert partial >= 1, "no kill landed mid-run; the test proved nothing"
