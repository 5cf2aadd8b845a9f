"""connectors.yaml validation, end to end through the real CLI.

Every file in fixtures/configs/bad/ must be rejected by `ingest validate` AND by `ingest run <block>`: exit 2, an
error naming the file, line, block and key (the `# expect:` lines), no traceback, no secret, and nothing written
(no DuckDB file created, an existing one left byte-for-byte untouched).
Every file in fixtures/configs/good/ must validate, and `ingest list` / `ingest validate` must not import the
Airbyte CDK (or a connector, DuckDB, Arrow) and stay fast.

Fixture headers (comment lines at the top of a fixture):
    # expect: <substring>           every command's stderr must contain it ({file} = the config path passed to -c)
    # expect-validate: <substring>  only `ingest validate` (which checks every block) must report it
    # forbid: <substring>           must appear nowhere in stdout/stderr (e.g. a literal secret in the file)
    # block: <name>                 the block `ingest run` is asked to sync
    # lists: <a>, <b>               (good configs) the blocks `ingest list` / `ingest validate` must show
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .support.cli import CONNECTORS_DIR, ROOT, CliResult as Result, invoke_cli
from .support.configs import CONFIGS, FAKE_SECRET, TIMEOUT, duckdb_files, env, finish, start

BAD = sorted((CONFIGS / "bad").glob("*.yaml"))
GOOD = sorted((CONFIGS / "good").glob("*.yaml"))

# Modules `ingest list` / `ingest validate` must never import (top-level package names).
HEAVY = ("airbyte_cdk", "source_jira", "source_faker", "duckdb", "pyarrow", "pandas", "requests_cache")


@dataclass
class Case:
    path: Path
    expects: list[str] = field(default_factory=list)
    expects_validate: list[str] = field(default_factory=list)
    forbids: list[str] = field(default_factory=list)
    block: str | None = None
    lists: list[str] = field(default_factory=list)


def header_text(path: Path) -> str:
    """A fixture's text for reading its header, whatever its encoding: the corpus holds UTF-16/32 files (with and
    without a byte-order mark), Latin-1 and binary garbage on purpose; their `# expect:` lines are plain ASCII."""
    raw = path.read_bytes()
    for bom, codec in ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"),
                       (b"\xef\xbb\xbf", "utf-8")):
        if raw.startswith(bom):
            return raw[len(bom):].decode(codec)
    if raw[1:2] == b"\0":  # UTF-16-LE without a byte-order mark
        return raw.decode("utf-16-le", errors="replace")
    return raw.decode("utf-8", errors="replace")


def read_case(path: Path) -> Case:
    case = Case(path)
    for line in header_text(path).splitlines():
        if not line.startswith("#"):
            if line.strip():
                break
            continue
        key, sep, value = line[1:].strip().partition(":")
        if not sep:
            continue
        value = value.strip()
        if key == "expect":
            case.expects.append(value)
        elif key == "expect-validate":
            case.expects_validate.append(value)
        elif key == "forbid":
            case.forbids.append(value)
        elif key == "block":
            case.block = value
        elif key == "lists":
            case.lists = [b.strip() for b in value.split(",") if b.strip()]
    return case


def stage(root: Path, fixture: Path) -> Path:
    """Copy a fixture and the files it refers to (support/, the repo's overrides/) into `root`; return the copy.

    Relative paths in a config resolve next to the config file, and commands run from a different directory, so
    a product that resolved them against the working directory would fail the good configs.
    """
    root.mkdir(parents=True)
    shutil.copy(fixture, root / fixture.name)
    shutil.copytree(CONFIGS / "support", root / "support")
    if (ROOT / "overrides").is_dir():
        shutil.copytree(ROOT / "overrides", root / "overrides")
    return root / fixture.name


def ingest(args: list[str], cwd: Path, extra_env: dict | None = None) -> Result:
    return finish(start(args, cwd, extra_env))


def make_duckdb(path: Path) -> None:
    import duckdb

    con = duckdb.connect(str(path))
    con.execute("create table keep_me as select 42 as answer")
    con.close()


def fingerprint(path: Path) -> tuple:
    stat = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), stat.st_size, stat.st_mtime_ns


def assert_rejected(result: Result, config: Path, case: Case, *, validate: bool) -> None:
    assert result.code == 2, str(result)
    wanted = case.expects + (case.expects_validate if validate else [])
    for expect in wanted:
        text = expect.replace("{file}", str(config))
        assert text in result.stderr, f"expected {text!r} in stderr\n{result}"
    assert "Traceback" not in result.output, str(result)
    assert FAKE_SECRET not in result.output, str(result)
    for forbidden in case.forbids:
        assert forbidden not in result.output, f"{forbidden!r} must not be shown\n{result}"
    errors = [line for line in result.stderr.splitlines() if line.startswith("config error:")]
    assert errors, str(result)
    for line in errors:
        # Every problem names the file and a line: `config error: <file>:<line>: ...`
        assert line.startswith(f"config error: {config}:"), line
        assert line[len(f"config error: {config}:"):].split(":", 1)[0].isdigit(), line


def test_corpus_is_big_enough_and_well_formed():
    assert len(BAD) >= 15
    assert GOOD
    for path in BAD:
        case = read_case(path)
        assert header_text(path).startswith("# expect: "), f"{path.name}: must start with an '# expect:' line"
        assert case.block, f"{path.name}: needs a '# block:' line"
        assert any("{file}:" in e for e in case.expects), f"{path.name}: one expectation must pin file:line"
    for path in GOOD:
        assert read_case(path).lists, f"{path.name}: needs a '# lists:' line"


# `run` over an existing DuckDB file, once per stage of the per-block checks (after the structural check passed):
# files, package, secrets, literal secret, connector spec loading, spec validation (package and manifest).
# (`validate` runs over an existing DuckDB file and `run` starts without one for every fixture.)
RUN_OVER_EXISTING_DB = {
    "missing_overrides_file", "unknown_package", "missing_secret", "jira_literal_token", "broken_override_file",
    "faker_count_zero", "jira_missing_email", "manifest_oneof_missing_key",
}


def test_run_over_existing_db_cases_reach_the_per_block_checks():
    from ingest.config import load_project

    for name in sorted(RUN_OVER_EXISTING_DB):
        load_project(CONFIGS / "bad" / f"{name}.yaml")  # raises if the structural check already rejects it


@pytest.mark.parametrize("fixture", BAD, ids=[p.stem for p in BAD])
def test_bad_config_is_rejected_and_nothing_is_written(fixture: Path, tmp_path: Path):
    case = read_case(fixture)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    # Independent copies, so each command's effects are visible on its own:
    # - validate, with a DuckDB file already where the block writes (the default path next to the config);
    # - run, with no DuckDB file yet;
    # - for some files (see RUN_OVER_EXISTING_DB), run again with an existing DuckDB file.
    validate_cfg = stage(tmp_path / "validate", fixture)
    runs = [stage(tmp_path / "run", fixture)]
    if fixture.stem in RUN_OVER_EXISTING_DB:
        runs.append(stage(tmp_path / "existing", fixture))
    existing = [cfg.parent / "warehouse.duckdb" for cfg in [validate_cfg, *runs[1:]]]
    for db in existing:
        make_duckdb(db)
    before = [fingerprint(db) for db in existing]

    # validate in its strict mode: an unset secret is an error there too (by default it is a warning, tested below).
    # In this process (support/cli.py, `invoke_cli`): every command here ends before a sync could start.
    results = [invoke_cli(["-c", str(validate_cfg), "validate", "--require-secrets"], cwd, env())]
    results += [invoke_cli(["-c", str(cfg), "run", case.block], cwd, env()) for cfg in runs]

    assert_rejected(results[0], validate_cfg, case, validate=True)
    for cfg, result in zip(runs, results[1:]):
        assert_rejected(result, cfg, case, validate=False)
    assert duckdb_files(tmp_path) == sorted(existing), "a rejected config must not create a DuckDB file"
    assert [fingerprint(db) for db in existing] == before, "a rejected config must not touch an existing DuckDB file"


@pytest.mark.parametrize("fixture", GOOD, ids=[p.stem for p in GOOD])
def test_good_config_validates(fixture: Path, tmp_path: Path):
    case = read_case(fixture)
    config = stage(tmp_path / "project", fixture)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    validate, listed = (finish(p) for p in [start(["-c", str(config), "validate"], cwd), start(["-c", str(config), "list"], cwd)])
    assert validate.code == 0, str(validate)
    assert [line.split()[1] for line in validate.stdout.splitlines() if line.startswith("ok ")] == case.lists, str(validate)
    assert listed.code == 0, str(listed)
    shown = [line.split()[0] for line in listed.stdout.splitlines()[1:] if line.strip()]
    assert shown == case.lists, str(listed)
    for result in (validate, listed):
        assert "Traceback" not in result.output and FAKE_SECRET not in result.output, str(result)
        assert result.stderr == "", str(result)
    assert duckdb_files(tmp_path) == [], "validate/list must not create a DuckDB file"


# Runs the real console entry point (`ingest.cli:main`) and reports, at exit, which heavy modules were imported
# and how long the command took inside the interpreter.
PROBE = r"""
import atexit, json, os, sys, time
started = time.perf_counter()

def report():
    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(os.environ["PROBE_HEAVY"].split(",")))
    with open(os.environ["PROBE_OUT"], "w") as f:
        json.dump({"heavy": loaded, "seconds": time.perf_counter() - started}, f)

atexit.register(report)
from ingest.cli import main
main(sys.argv[1:], prog_name="ingest")
"""


@pytest.mark.parametrize("command", ["list", "validate"])
def test_list_and_validate_do_not_import_the_cdk_and_are_fast(command: str, tmp_path: Path):
    config = stage(tmp_path / "project", CONFIGS / "good" / "every_option.yaml")
    out = tmp_path / "probe.json"
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "-c", str(config), command], cwd=tmp_path, capture_output=True, text=True,
        timeout=TIMEOUT, env=env({"PROBE_OUT": str(out), "PROBE_HEAVY": ",".join(HEAVY)}),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["heavy"] == [], f"`ingest {command}` imported {report['heavy']}"
    # Importing the CDK alone takes seconds; list/validate take ~0.2 s. Generous for a loaded CI machine.
    assert report["seconds"] < 3.0, report


def test_resources_in_every_accepted_form_and_the_default():
    """`resources:` as the scheduled flow gets it (tests/test_argo_compile.py checks the pod): memory in MB whether
    written as MB or Mi/Gi, fractional CPUs, and each key a block leaves out from the one default."""
    from ingest.config import DEFAULT_RESOURCES, load_project

    project = load_project(CONFIGS / "good" / "every_option.yaml")
    sized = {name: block.spec.resources.model_dump() for name, block in project.blocks.items()}
    assert sized == {
        "demo": {"cpu": 0.5, "memory": 512},
        "jira_proxied": DEFAULT_RESOURCES,
        "custom": {"cpu": DEFAULT_RESOURCES["cpu"], "memory": 1536},
        "warehouse": DEFAULT_RESOURCES,
    }


def test_repo_connectors_yaml_validates(tmp_path: Path):
    if not (ROOT / "connectors.yaml").is_file():
        pytest.skip("no connectors.yaml in the repository")
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "connectors.yaml", project / "connectors.yaml")
    shutil.copy(ROOT / "connectors.lock", project / "connectors.lock")
    if (ROOT / "overrides").is_dir():
        shutil.copytree(ROOT / "overrides", project / "overrides")
    # a pull-request check: no production secret is set; unset references are warnings, the rest is checked
    pr = ingest(["validate"], project, {})
    assert pr.code == 0, str(pr)
    assert re.search(r"^ok +demo +isolated \(a Python connector", pr.stdout, re.M), str(pr)
    assert re.search(r"^ok +jira +in_process \(declarative manifest", pr.stdout, re.M), str(pr)
    assert re.search(r"^warn +jira +.*secret reference \$\{JIRA_API_TOKEN\} is not set", pr.stdout, re.M), str(pr)
    assert "not in connectors.lock yet" not in pr.stdout, str(pr)
    assert (project / "connectors.lock").read_text() == (ROOT / "connectors.lock").read_text()
    # every secret the repo's blocks reference, with a plausible value (the domain must look like a host)
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", (ROOT / "connectors.yaml").read_text()))
    env = {name: FAKE_SECRET for name in names}
    env.update({"JIRA_DOMAIN": "example.atlassian.net", "JIRA_EMAIL": "someone@example.com"})
    result = ingest(["validate"], project, env)
    assert result.code == 0, str(result)
    assert FAKE_SECRET not in result.output
    assert duckdb_files(project) == []


def test_missing_secrets_are_all_reported(tmp_path: Path):
    """With --require-secrets, unset references are errors, reported together, each at its own key and line, with
    what to export. By default (a pull-request check, where production secrets are absent) they are warnings: exit 0,
    the rest of the config is still checked, and `run`/`check` still refuse to start."""
    config = stage(tmp_path / "project", CONFIGS / "good" / "faker_and_jira.yaml")
    unset = {"INGEST_TEST_JIRA_DOMAIN": "", "INGEST_TEST_JIRA_EMAIL": ""}
    strict, lenient, run = (finish(p) for p in [
        start(["-c", str(config), "validate", "--require-secrets"], tmp_path, unset),
        start(["-c", str(config), "validate"], tmp_path, unset),
        start(["-c", str(config), "check", "jira"], tmp_path, unset),
    ])
    domain = f"{config}:33: connectors.jira.config.domain: secret reference ${{INGEST_TEST_JIRA_DOMAIN}} is not set"
    email = f"{config}:34: connectors.jira.config.email: secret reference ${{INGEST_TEST_JIRA_EMAIL}} is not set"
    assert strict.code == 2, str(strict)
    assert domain in strict.stderr and email in strict.stderr, str(strict)
    assert re.search(r"^ok +demo ", strict.stdout, re.M), str(strict)  # the other block is still checked and fine
    assert lenient.code == 0, str(lenient)
    assert f"warn  jira             {domain}" in lenient.stdout and f"warn  jira             {email}" in lenient.stdout, str(lenient)
    assert run.code == 2 and domain in run.stderr, str(run)
    for result in (strict, lenient, run):
        assert FAKE_SECRET not in result.output and "Traceback" not in result.output


def test_unknown_block_and_missing_file(tmp_path: Path):
    config = stage(tmp_path / "project", CONFIGS / "good" / "minimal.yaml")
    unknown, missing = (
        finish(p)
        for p in [
            start(["-c", str(config), "run", "nope"], tmp_path),
            start(["-c", str(tmp_path / "missing.yaml"), "validate"], tmp_path),
        ]
    )
    assert unknown.code == 2 and "no connector block named 'nope' (blocks: demo)" in unknown.stderr, str(unknown)
    assert missing.code == 2 and f"{tmp_path / 'missing.yaml'}: file not found" in missing.stderr, str(missing)
    for result in (unknown, missing):
        assert "Traceback" not in result.output, str(result)
    assert duckdb_files(tmp_path) == []


def test_problems_are_listed_in_file_order_in_process():
    """The library API (used by Metaflow steps) raises one ConfigError with every structural problem, in file order."""
    from ingest.config import load_project
    from ingest.errors import ConfigError

    path = CONFIGS / "bad" / "many_problems.yaml"
    with pytest.raises(ConfigError) as info:
        load_project(path)
    lines = [int(p.split(":")[1]) for p in info.value.problems]
    assert lines == sorted(lines) and len(lines) == 3, info.value.problems
    assert all(p.startswith(f"{path}:") for p in info.value.problems)


# Every command that reads connectors.yaml (all but `add`, tested in test_scaffold.py), with the arguments it needs.
EVERY_COMMAND = [
    ["list"], ["validate"], ["install", "demo"], ["spec", "demo"], ["check", "demo"], ["discover", "demo"],
    ["run", "demo"], ["run", "demo", "--full-refresh"], ["status"], ["state", "show", "demo"],
    ["state", "reset", "demo"], ["events", "list"], ["events", "replay"],
]


def test_every_command_refuses_two_streams_in_one_table(tmp_path: Path):
    """The table check is in the shared load path, not only in `validate`: no command starts (nor writes a DuckDB
    file) while two streams would write one table."""
    config = stage(tmp_path / "project", CONFIGS / "bad" / "table_collision_explicit.yaml")
    procs = [start(["-c", str(config), *args], tmp_path) for args in EVERY_COMMAND]
    expected = (f"config error: {config}:16: connectors.billing.streams[0].table: table 'shared_users' is also "
                f"written by connectors.demo.streams[0] (stream 'users', {config}:10)")
    for args, proc in zip(EVERY_COMMAND, procs):
        result = finish(proc)
        assert result.code == 2, str(result)
        assert result.stderr.startswith(expected) and len(result.stderr.splitlines()) == 1, str(result)
    assert duckdb_files(tmp_path) == []


def test_a_directory_or_a_non_utf8_file_as_config_is_one_line_exit_2(tmp_path: Path):
    directory = tmp_path / "configs"
    directory.mkdir()
    latin1 = stage(tmp_path / "latin1", CONFIGS / "bad" / "not_utf8_latin1.yaml")
    results = [finish(p) for p in [start(["-c", str(directory), command], tmp_path) for command in ("list", "validate")]
               + [start(["-c", str(latin1), "status"], tmp_path)]]
    for result in results[:2]:
        assert result.code == 2, str(result)
        assert result.stderr == f"config error: {directory}: is a directory, not a YAML file\n", str(result)
    assert results[2].code == 2, str(results[2])
    assert results[2].stderr == f"config error: {latin1}:7: not UTF-8 text (byte 0xe9); save the file as UTF-8\n"


@pytest.mark.parametrize("fixture", ["overrides_alias_bomb", "overrides_recursive_alias", "overrides_deep_nesting"])
def test_check_and_discover_refuse_an_override_that_attacks_the_parser(fixture: str, tmp_path: Path):
    """The issue's case: an alias bomb in an overrides file passed `validate` and hung `discover`."""
    config = stage(tmp_path / "project", CONFIGS / "bad" / f"{fixture}.yaml")
    case = read_case(config)
    results = [finish(p) for p in [start(["-c", str(config), command, "jira"], tmp_path) for command in ("check", "discover")]]
    for result in results:
        assert_rejected(result, config, case, validate=False)


# Each is a few hundred bytes to a few kilobytes that, loaded naively, hangs or recurses; refused by one linear scan.
ATTACKS = ["yaml_alias_bomb", "yaml_recursive_alias", "yaml_recursive_alias_in_list", "yaml_deep_nesting",
           "yaml_deep_nesting_mappings", "yaml_huge_anchor_fanout"]


@pytest.mark.parametrize("fixture", ATTACKS)
def test_yaml_attacks_are_refused_in_well_under_a_second(fixture: str):
    import time

    from ingest.config import load_project
    from ingest.errors import ConfigError

    path = CONFIGS / "bad" / f"{fixture}.yaml"
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_project(path)
    elapsed = time.perf_counter() - started
    assert len(info.value.problems) == 1 and info.value.problems[0].startswith(f"{path}:"), info.value.problems
    # Measured: under 10 ms each. A bound that only a hang (the billion laughs never finishes) could miss.
    assert elapsed < 1.0, f"{fixture}: {elapsed:.2f}s"


@pytest.mark.parametrize("support, expected", [
    ("override-alias-bomb.yaml", "7: YAML aliases expand to more than 250,000 nodes (an alias bomb?)"),
    ("override-recursive.yaml", "2: recursive YAML alias *defs: it is inside its own anchor &defs"),
    ("override-fanout.yaml", "2: YAML aliases expand to more than 250,000 nodes"),
    ("override-deep.yaml", "1: nested more than 100 levels deep"),
    ("override-utf16.yaml", "1: the file is UTF-16 encoded; save it as UTF-8"),
])
def test_override_files_are_read_through_the_same_bounded_loader(support: str, expected: str):
    """Overrides (and manifests) are read by the manifest code, not load_project: the same bounds apply."""
    import time

    from ingest.sources.manifest import load_yaml_file
    from ingest.yamlfile import YAMLFileError

    started = time.perf_counter()
    with pytest.raises(YAMLFileError) as info:
        load_yaml_file(CONFIGS / "support" / support)
    assert str(info.value).startswith(f"{CONFIGS / 'support' / support}:{expected}"), str(info.value)
    assert time.perf_counter() - started < 1.0


def test_the_largest_real_manifest_is_well_within_the_bounds():
    """The bounds must not refuse real files: every connector manifest in the suite's cache loads (github 2.7.1,
    19.6k lines, is the largest)."""
    from ingest.yamlfile import load_file

    manifests = sorted(Path(CONNECTORS_DIR).glob("files/*/*/manifest.yaml"))
    assert manifests, f"no connector manifests under {CONNECTORS_DIR}/files"
    for path in manifests:
        assert isinstance(load_file(path), dict), path
