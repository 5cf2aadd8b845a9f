"""Redaction masks what is shown or sent as text, never the data we produce ourselves.

A secret can be an ordinary word or number ("safety", "2026"). Masking it inside structured data we write would
corrupt the ledger (`landed_at: "****-12-02…"`, `table: "carrier_****_basics"`) and break every later `status`.
So: event payloads keep their timestamps, names, ids and counts exactly; free text (error messages, logs, CLI
errors) is still redacted; a reference whose value is too short to redact is refused before anything is written.
Real runs of the carrier-safety puller against its loopback fake, through the CLI.
"""
from __future__ import annotations

import datetime as dt
import json

import pytest

from .fakes.fake_fmcsa import FakeFMCSA
from .support.pullers import KEY_ENV
from .support.pullers import write_carrier_block as write_block


def _landed_payloads(project) -> list[dict]:
    return [json.loads(p) for (p,) in project.query("SELECT payload FROM _ingest_events WHERE name LIKE 'data_landed.%'")]


@pytest.mark.parametrize("web_key", ["safety", "2026", "compliance"], ids=["word-in-table-names", "number-in-dates", "team-name"])
def test_a_secret_that_is_a_common_word_or_number_does_not_rewrite_the_ledger(project, web_key):
    with FakeFMCSA(web_key=web_key) as fake:
        write_block(project, fake, streams=("snapshots", "basics"))
        run = project.cli("run", "carrier_safety", env={KEY_ENV: web_key})
    assert run.code == 0, run.output[-3000:]
    payloads = _landed_payloads(project)
    assert {p["table"] for p in payloads} == {"carrier_safety_snapshots", "carrier_safety_basics"}
    for p in payloads:
        assert dt.datetime.fromisoformat(p["landed_at"]).year >= 2026, p
        assert p["team"] == "compliance" and p["block"] == "carrier_safety" and p["rows"] > 0
        assert p["idempotency_key"] == f"carrier_safety:{p['stream']}:{p['load_id']}"
    assert project.scalar("SELECT count(*) FROM _ingest_runs WHERE status = 'succeeded'") == 1
    status = project.cli("status", "--team", "compliance", env={KEY_ENV: web_key})
    assert status.code == 0, status.output
    assert "carrier_safety" in status.output
    events = project.cli("events", "list", env={KEY_ENV: web_key})
    assert events.code == 0, events.output
    # ...and the secret is still masked where it is text: the request URLs in the debug log
    debug = project.cli("-vv", "run", "carrier_safety", env={KEY_ENV: web_key})
    assert debug.code == 0, debug.output[-3000:]
    assert f"webKey={web_key}" not in debug.output


def test_error_messages_inside_events_are_redacted_as_text(project):
    """A failed run: the `data_failed` event's message is free text (redacted); its timestamp and names are not."""
    web_key = "2026"
    with FakeFMCSA(web_key="another-key-entirely") as fake:
        write_block(project, fake, streams=("snapshots",))
        run = project.cli("run", "carrier_safety", env={KEY_ENV: web_key})
    assert run.code == 1 and "FMCSA refused the webKey" in run.stderr, run.output[-3000:]
    (payload,) = [json.loads(p) for (p,) in project.query("SELECT payload FROM _ingest_events WHERE name LIKE 'data_failed.%'")]
    assert dt.datetime.fromisoformat(payload["failed_at"]).year >= 2026
    assert payload["table"] == "carrier_safety_snapshots"
    assert "webKey=2026" not in payload["error_message"] and "FMCSA refused the webKey" in payload["error_message"]
    error = project.scalar("SELECT error FROM _ingest_runs")
    assert "webKey=2026" not in error


@pytest.mark.parametrize("value", ["7", "ab", "x9z"])
@pytest.mark.parametrize("command", [("run", "carrier_safety"), ("check", "carrier_safety"), ("validate",)])
def test_a_reference_too_short_to_redact_is_refused_before_anything_is_written(project, value, command):
    write_block(project, None, streams=("snapshots",))
    result = project.cli(*command, env={KEY_ENV: value})
    assert result.code == 2, result.output
    assert f"secret reference ${{{KEY_ENV}}} resolves to a value of {len(value)} character(s): too short" in result.stderr
    assert "connectors.carrier_safety.config.web_key" in result.stderr
    assert not project.db.exists(), "a refused config writes nothing"
