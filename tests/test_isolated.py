"""The isolated runtime (ingest/sources/isolated.py): a Python connector run in its own environment, as a child.

Offline against the real airbyte-source-faker 7.2.1 (CDK 6, while the runner is on CDK 7) and a tiny fixture
connector (tests/fixtures/isolated_connector) for what faker never does: hang, crash, die, print to stdout.
"""
from __future__ import annotations

import datetime as dt
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from ingest.errors import SyncError
from ingest.secrets import REDACTOR
from ingest.sources.base import RecordBatch
from ingest.sources.isolated import IsolatedSource
from ingest.sources.protocol import (
    ConfiguredAirbyteCatalog, ConfiguredAirbyteStream, DestinationSyncMode, SyncMode, Type, state_to_dict,
)

FIXTURE_CONNECTOR = Path(__file__).parent / "fixtures" / "isolated_connector"
FAKER = "airbyte-source-faker"


def _build_env(directory: Path, *requirements: str) -> str:
    """A connector environment built with uv, the way the runner builds them; its python."""
    uv = Path(sys.executable).with_name("uv")
    subprocess.run([str(uv), "venv", "-q", "--python", sys.executable, str(directory)], check=True)
    python = directory / "bin" / "python"
    subprocess.run([str(uv), "pip", "install", "-q", "--python", str(python), *requirements], check=True)
    return str(python)


@pytest.fixture(scope="session")
def faker_python(connectors_cache) -> str:
    """faker 7.2.1's environment in the suite's connectors cache (conftest builds it once per machine)."""
    from ingest.sources.environments import ConnectorCache

    return str(ConnectorCache(connectors_cache).ensure_venv(FAKER, "7.2.1"))


@pytest.fixture(scope="session")
def fixture_python(tmp_path_factory) -> str:
    source = tmp_path_factory.mktemp("src") / "isolated_connector"
    shutil.copytree(FIXTURE_CONNECTOR, source)  # building writes into the source tree: not into the repo
    return _build_env(tmp_path_factory.mktemp("envs") / "fixture", "airbyte-cdk==6.61.6", str(source))


def faker(python: str, **config) -> IsolatedSource:
    base = {"count": 2500, "seed": 1, "records_per_slice": 1000, "parallelism": 1, "always_updated": False}
    return IsolatedSource(python, FAKER, {**base, **config}, label="faker")


def fixture(python: str, **config) -> IsolatedSource:
    return IsolatedSource(python, "airbyte-source-isolated-test", config, label="fixture", check_timeout=3)


def configured(catalog, *names: str) -> ConfiguredAirbyteCatalog:
    streams = [s for s in catalog.streams if s.name in names]
    return ConfiguredAirbyteCatalog(streams=[ConfiguredAirbyteStream(
        stream=s, sync_mode=SyncMode.incremental if SyncMode.incremental in s.supported_sync_modes else SyncMode.full_refresh,
        destination_sync_mode=DestinationSyncMode.append, cursor_field=s.default_cursor_field or None,
    ) for s in streams])


def read_all(source: IsolatedSource, catalog, state=()) -> tuple[dict[str, list[dict]], list]:
    records: dict[str, list[dict]] = {}
    others = []
    for message in source.read(catalog, list(state)):
        if isinstance(message, RecordBatch):
            assert len(message.records) == len(message.emitted_at)
            records.setdefault(message.stream, []).extend(message.records)
        else:
            others.append(message)
    return records, others


def descendants() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if running(p)]


def running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE  # a zombie runs no code
    except psutil.NoSuchProcess:
        return False


def wait_gone(procs: list[psutil.Process], timeout: float = 10) -> list[psutil.Process]:
    """The processes still running after up to `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in procs if running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


# ====================================================================== the protocol, against faker


def test_spec_discover_and_check(faker_python):
    source = faker(faker_python)
    assert {"count", "seed", "records_per_slice"} <= set(source.spec()["properties"])
    assert source.check() == (True, None)
    catalog = source.discover()
    assert {s.name for s in catalog.streams} == {"products", "users", "purchases"}
    assert catalog.streams[0].json_schema["properties"]


def test_read_then_resume_from_state_reads_nothing_new(faker_python):
    source = faker(faker_python)
    catalog = configured(source.discover(), "users")
    records, others = read_all(source, catalog)
    assert len(records["users"]) == 2500
    assert [r["id"] for r in records["users"]] == list(range(1, 2501))  # the order the connector produced
    states = [m.state for m in others if m.type == Type.STATE]
    assert states and states[-1].stream.stream_state["loop_offset"] == 2500

    again, _ = read_all(source, catalog, [state_to_dict(states[-1])])  # what the runner stores and hands back
    assert again.get("users", []) == []


def test_a_syncs_discover_and_read_share_one_child_and_a_second_read_gets_a_new_one(faker_python):
    """The connector's interpreter and imports (~1.2 s of CPU for faker) are paid once per sync: the child that
    answered the sync's discover serves its read, then exits; the next command starts a fresh child."""
    def connector_children() -> set[int]:
        # direct children only: faker's forked worker runs the same command line
        return {p.pid for p in psutil.Process().children() if running(p) and "isolated_child.py" in " ".join(p.cmdline())}

    source = faker(faker_python, count=1500)
    catalog = configured(source.discover(for_sync=True), "users")
    kept = connector_children()
    assert len(kept) == 1  # done with discover, waiting for the next command
    reading = source.read(catalog, [])
    first = next(reading)
    assert connector_children() == kept
    rest = [m for m in reading if isinstance(m, RecordBatch)]
    assert sum(len(b.records) for b in [first, *rest] if isinstance(b, RecordBatch)) == 1500
    assert wait_gone([psutil.Process(pid) for pid in kept if psutil.pid_exists(pid)]) == []  # its last command
    again, _ = read_all(source, catalog)
    assert len(again["users"]) == 1500


def test_every_state_follows_the_records_it_covers(faker_python):
    """Batches are flushed before any other message: the records counted into a STATE (sourceStats, counted by the
    CDK as it emitted them) are exactly the records delivered since the previous STATE. Slices of 300 records put
    states in the middle of the 1,000-record batches."""
    source = faker(faker_python, count=1000, records_per_slice=300)
    delivered_since_state, seen, checked = 0, 0, 0
    for message in source.read(configured(source.discover(), "users"), []):
        if isinstance(message, RecordBatch):
            delivered_since_state += len(message.records)
            seen += len(message.records)
        elif message.type == Type.STATE:
            assert message.state.sourceStats.recordCount == delivered_since_state
            assert message.state.stream.stream_state["loop_offset"] <= seen
            delivered_since_state, checked = 0, checked + 1
    assert seen == 1000 and checked >= 3


def test_datetimes_arrive_as_iso_text(faker_python):
    source = faker(faker_python, count=50)
    records, _ = read_all(source, configured(source.discover(), "purchases"))
    created = records["purchases"][0]["created_at"]
    assert isinstance(created, str) and dt.datetime.fromisoformat(created).year > 1990


def test_closing_a_read_early_stops_the_child_and_its_worker(faker_python):
    source = faker(faker_python, count=10_000_000)
    catalog = configured(source.discover(), "users")
    reading = source.read(catalog, [])
    assert isinstance(next(m for m in reading if isinstance(m, RecordBatch)), RecordBatch)
    child, *workers = psutil.Process().children(recursive=True)
    assert workers, "faker's worker process"
    reading.close()
    assert not psutil.pid_exists(child.pid)  # stopped and reaped by the time close() returns
    assert wait_gone(workers, timeout=2) == []


def test_a_child_started_ahead_and_never_used_is_stopped(faker_python):
    source = faker(faker_python)
    source.discover(for_sync=True)  # a sync's discover also starts the child its read will use
    assert len(descendants()) == 1
    del source
    gc.collect()
    assert descendants() == []


# ====================================================================== failure and lifetime, with the fixture


def test_check_that_hangs_is_bounded(fixture_python):
    source = fixture(fixture_python, behaviour="hang_check")
    started = time.monotonic()
    assert source.check() == (False, "no answer within 3 s")
    assert time.monotonic() - started < 10
    assert descendants() == []


def test_stray_output_goes_to_the_debug_log_not_into_the_records(fixture_python, caplog):
    source = fixture(fixture_python, behaviour="ok", count=5)
    caplog.set_level("DEBUG", logger="ingest.connector")
    records, _ = read_all(source, configured(source.discover(), "numbers"))
    assert [r["id"] for r in records["numbers"]] == list(range(5))
    assert records["numbers"][0]["at"] == "2024-01-02T03:04:05+00:00"
    stray = [r.getMessage() for r in caplog.records if r.levelname == "DEBUG" and "stray" in r.getMessage()]
    assert stray == ["fixture: stray print to stdout", "fixture: stray bytes on fd 1"]


def test_log_messages_lose_the_cdk_traceback_text_below_debug(fixture_python, caplog):
    source = fixture(fixture_python, behaviour="ok", count=5)
    caplog.set_level("INFO", logger="ingest.connector")
    _, others = read_all(source, configured(source.discover(), "numbers"))
    logs = [m.log.message for m in others if m.type == Type.LOG]
    assert "Could not parse a page. KeyError: 'missing field'" in logs
    assert "printed by the connector itself" in logs  # an Airbyte message printed to stdout still arrives
    assert not [m for m in logs if "Traceback" in m or "Error traceback" in m]


def test_a_crashing_connector_gives_one_line_after_its_records(fixture_python):
    source = fixture(fixture_python, behaviour="crash", count=3)
    seen = []
    with pytest.raises(SyncError) as failure:
        for message in source.read(configured(source.discover(), "numbers"), []):
            if isinstance(message, RecordBatch):
                seen.extend(message.records)
    assert len(seen) == 3
    assert str(failure.value) == "boom: the page was malformed"
    assert failure.value.failure_type == "system_error"
    assert failure.value.stream == "numbers"


def test_a_child_that_dies_without_a_trace_error_says_why_in_one_line(fixture_python):
    source = fixture(fixture_python, behaviour="die", count=2)
    with pytest.raises(SyncError) as failure:
        read_all(source, configured(source.discover(), "numbers"))
    assert str(failure.value) == (
        "fixture: the connector process exited with code 7: MemoryError: out of memory in the parser"
    )


def test_a_missing_environment_is_a_clear_error(tmp_path):
    source = IsolatedSource(tmp_path / "nowhere" / "bin" / "python", FAKER, {})
    with pytest.raises(SyncError, match="cannot start the connector's Python"):
        source.spec()


def test_secrets_are_in_neither_argv_nor_environment_nor_on_disk(fixture_python, monkeypatch):
    secret = "sk-isolated-test-7f3a9c"
    REDACTOR.add(secret)
    monkeypatch.setenv("FIXTURE_API_KEY", secret)  # where a ${FIXTURE_API_KEY} reference got it from
    source = fixture(fixture_python, behaviour="slow", count=40, sleep=0.25, api_key=secret)
    reading = source.read(configured(source.discover(), "numbers"), [])
    try:
        next(reading)  # the child is running the connector now
        child = next(p for p in descendants() if "isolated_child.py" in " ".join(p.cmdline()))
        for proc in [child, *child.children(recursive=True)]:
            assert secret.encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            assert secret.encode() not in Path(f"/proc/{proc.pid}/environ").read_bytes()
        config_fds = [os.readlink(f"/proc/{child.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{child.pid}/fd")]
        assert any(target.startswith("/memfd:config") for target in config_fds)
    finally:
        reading.close()


KILL_SCRIPT = textwrap.dedent("""
    import json, sys
    from ingest.sources.isolated import IsolatedSource
    from test_isolated import configured

    python, package, config, stream = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    source = IsolatedSource(python, package, config)
    for message in source.read(configured(source.discover(), stream), []):
        pass
""")


@pytest.mark.parametrize("connector", ["faker reading", "fixture stuck"])
def test_sigkill_of_the_runner_leaves_no_child_or_grandchild(connector, request, tmp_path):
    """faker's child is busy writing and its worker forked by multiprocessing; the fixture's child and its forked
    grandchild just sleep, so only the kernel's death signal can end them."""
    if connector == "faker reading":
        python, package, config, stream = request.getfixturevalue("faker_python"), FAKER, {"count": 10_000_000}, "users"
    else:
        python, package, stream = request.getfixturevalue("fixture_python"), "airbyte-source-isolated-test", "numbers"
        config = {"behaviour": "hang_read"}
    script = tmp_path / "runner.py"
    script.write_text(KILL_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), str(Path(__file__).parents[1])]))
    runner = subprocess.Popen([sys.executable, str(script), python, package, json.dumps(config), stream], env=env)
    try:
        deadline = time.monotonic() + 60
        tree: list[psutil.Process] = []
        while not any(p.ppid() != runner.pid for p in tree):  # a grandchild: the read is running
            assert time.monotonic() < deadline and runner.poll() is None
            time.sleep(0.1)
            tree = [p for p in psutil.Process(runner.pid).children(recursive=True) if running(p)]
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        assert wait_gone(tree) == []
    finally:
        runner.kill()
        runner.wait()


def test_an_interactive_discover_is_bounded(fixture_python):
    """`ingest discover` of a connector that never answers: one line after 4 x the check timeout (a sync's discover
    waits as long as the connector needs)."""
    from ingest.errors import SyncError

    source = IsolatedSource(fixture_python, "airbyte-source-isolated-test", {"behaviour": "hang_discover"},
                            label="fixture", check_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(SyncError, match=r"^discover: no answer within 2 s"):
        source.discover()
    assert time.monotonic() - started < 6
    assert descendants() == []
