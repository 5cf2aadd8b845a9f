"""Connector releases that cannot share one environment, side by side in one connectors.yaml, through the CLI.

Real releases from PyPI (built once into the suite's connectors cache with uv); every API call ends at DNS or at a
closed loopback port, so `check` fails cleanly and `discover` works where the connector's streams are static.
"""
from __future__ import annotations

import re
import time

import pytest
import yaml

from ingest.sources.environments import available_pythons

from .support.cli import Project

# stripe 5.14.1 pins pendulum==2.1.2, salesforce needs pendulum>=3: one `pip install` of both is ResolutionImpossible
# (shared/reference/connector-compat.md). Here stripe runs in-process (its manifest on our CDK 7), salesforce isolated.
SIDE_BY_SIDE = """\
defaults:
  check_timeout: 4s
connectors:
  stripe:
    team: finance
    source: airbyte-source-stripe==5.14.1
    config:
      account_id: acct_dummy
      client_secret: ${STRIPE_KEY}
      start_date: "2024-01-01T00:00:00Z"
    streams: [{name: charges}]
  sf:
    team: sales
    source: airbyte-source-salesforce==2.10.3
    config:
      client_id: dummy-client
      client_secret: ${SF_SECRET}
      refresh_token: ${SF_TOKEN}
      start_date: "2024-01-01T00:00:00Z"
    streams: [{name: Account}]
"""
SECRETS = {"STRIPE_KEY": "sk_test_dummy-not-real", "SF_SECRET": "sf-secret-dummy-3141", "SF_TOKEN": "sf-token-dummy-2718"}


def lock_of(project: Project) -> dict:
    return yaml.safe_load((project.root / "connectors.lock").read_text())["blocks"]


def test_stripe_and_salesforce_run_side_by_side(project):
    project.write_config(SIDE_BY_SIDE)
    r = project.cli("install")
    assert r.code == 0, r.output
    lock = lock_of(project)
    assert (lock["stripe"]["version"], lock["stripe"]["runtime"]) == ("5.14.1", "in_process")
    assert (lock["sf"]["version"], lock["sf"]["runtime"]) == ("2.10.3", "isolated")
    assert "python" not in lock["sf"]  # the runner's own Python: the lock names only an exception

    listed = project.cli("list")
    assert listed.code == 0, listed.output
    assert re.search(r"stripe .* airbyte-source-stripe==5\.14\.1 +in_process \(declarative manifest", listed.stdout), listed.stdout
    assert re.search(r"sf .* airbyte-source-salesforce==2\.10\.3 +isolated \(a Python connector", listed.stdout), listed.stdout

    discovered = project.cli("discover", "stripe", env=SECRETS)
    assert discovered.code == 0, discovered.output
    assert re.search(r"^ *charges +", discovered.stdout, re.M), discovered.stdout

    spec = project.cli("spec", "sf")  # salesforce builds its spec in code: asked of the connector in its environment
    assert spec.code == 0, spec.output
    assert {"client_id", "client_secret", "refresh_token"} <= set(yaml.safe_load(spec.stdout)["required"])

    started = time.monotonic()
    checked = project.cli("check", "sf", env=SECRETS)
    elapsed = time.monotonic() - started
    assert checked.code == 1, checked.output
    assert checked.stderr.startswith("sf: check failed: "), checked.output
    assert elapsed < 30, f"check took {elapsed:.0f} s (check_timeout is 4 s)"
    for secret in SECRETS.values():
        assert secret not in checked.output and secret not in spec.output and secret not in discovered.output


def test_a_release_that_does_not_start_on_the_runners_python_gets_another(project):
    """airbyte-source-freshdesk 3.1.3 pins CDK 0.72, whose dataclasses do not import on Python 3.11: `install`
    tries the runner's Python, then the newest other one it allows, and locks the one it starts on."""
    older = [v for v in available_pythons() if tuple(map(int, v.split("."))) < (3, 11)]
    if not older:
        pytest.skip(f"needs a Python older than 3.11 besides the runner's (found {sorted(available_pythons())})")
    project.write_config("""\
        connectors:
          freshdesk:
            team: support
            source: airbyte-source-freshdesk==3.1.3
            config: {domain: ingest-dummy.freshdesk.com, api_key: "${FRESHDESK_KEY}", start_date: "2024-01-01T00:00:00Z"}
            streams: [{name: tickets}]
        """)
    r = project.cli("install")
    assert r.code == 0, r.output
    assert "does not start on Python 3.11" in r.stderr and "mutable default" in r.stderr, r.output
    entry = lock_of(project)["freshdesk"]
    assert entry["runtime"] == "isolated" and entry["python"] == max(older, key=lambda v: tuple(map(int, v.split("."))))
    assert f"on Python {entry['python']}" in entry["reason"]
    discovered = project.cli("discover", "freshdesk", env={"FRESHDESK_KEY": "fd-dummy-key"})
    assert discovered.code == 0, discovered.output
    assert re.search(r"^ *tickets +", discovered.stdout, re.M), discovered.stdout


def test_a_locked_python_this_machine_lacks_is_named(project):
    """A lock written where Python 3.10 was present, read on a machine without it: the error says which Python,
    where it came from, and what this machine has — not a uv traceback."""
    project.write_config("""\
        connectors:
          demo:
            team: platform
            source: airbyte-source-faker==7.2.1
            config: {count: 10}
            streams: [{name: users}]
        """)
    (project.root / "connectors.lock").write_text(yaml.safe_dump({"format": 1, "blocks": {"demo": {
        "source": "airbyte-source-faker", "version": "7.2.1", "runtime": "isolated", "reason": "x", "python": "3.99"}}}))
    r = project.cli("run", "demo")
    assert r.code != 0, r.output
    assert "airbyte-source-faker==7.2.1 runs on Python 3.99 (connectors.lock), which this machine lacks (found: " in r.stderr, r.output
    assert "Traceback" not in r.output
