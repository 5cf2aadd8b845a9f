"""Scaffolding new blocks (`ingest add`) and dummy configs, over the real specs of real connector releases.

The releases' files come from the suite's connectors cache (fetched once per machine with uv, files only: fast)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from ingest.config import load_project
from ingest.errors import ConfigError
from ingest.sources import scaffold
from ingest.sources.environments import ConnectorCache

ROOT = Path(__file__).resolve().parents[1]
CACHE = ConnectorCache(os.environ.get("INGEST_CONNECTORS_DIR") or ROOT / ".cache" / "connectors", notify=lambda line: None)

# The releases measured in shared/reference/cdk7-manifests.md (pinned: the tests must not move with PyPI).
RELEASES = {
    "stripe": ("airbyte-source-stripe", "5.14.1"),
    "jira": ("airbyte-source-jira", "4.0.0"),
    "slack": ("airbyte-source-slack", "3.0.0"),
    "github": ("airbyte-source-github", "2.7.1"),
    "notion": ("airbyte-source-notion", "3.2.0"),
    "zendesk_support": ("airbyte-source-zendesk-support", "4.9.1"),
}
EXISTING = """\
# Our connectors. Keep this comment!
defaults:
  destination: duckdb   # local default

connectors:
  demo:
    team: platform        # owner
    puller: truck_pricing
    streams:
      - name: quotes
    # schedule: "*/5 * * * *"   (kept commented)
"""


def _spec_and_manifest(package: str, version: str) -> tuple[dict, dict | None]:
    files = CACHE.ensure_files(package, version)
    module = scaffold.package_module_name(package)
    manifest = scaffold.package_manifest(files, module)
    for name, load in (("spec.json", json.loads), ("spec.yaml", yaml.safe_load)):
        path = files / module / name
        if path.is_file():
            return load(path.read_text()), manifest
    return manifest["spec"], manifest


@pytest.fixture(scope="module", params=sorted(RELEASES))
def release(request):
    package, version = RELEASES[request.param]
    spec, manifest = _spec_and_manifest(package, version)
    return request.param, package, version, spec, manifest


def _validator(spec: dict):
    schema = scaffold.connection_spec(spec)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _secret_paths(schema: dict, prefix: tuple = ()) -> set[tuple]:
    out = set()
    for key, prop in (schema.get("properties") or {}).items():
        if isinstance(prop, dict):
            if prop.get("airbyte_secret"):
                out.add(prefix + (key,))
            out |= _secret_paths(prop, prefix + (key,))
            for option in prop.get("oneOf") or prop.get("anyOf") or []:
                out |= _secret_paths(option, prefix + (key,))
    return out


def _leaves(config, prefix=()):
    if isinstance(config, dict):
        for k, v in config.items():
            yield from _leaves(v, prefix + (k,))
    else:
        yield prefix, config


def test_dummy_config_satisfies_the_spec_and_reaches_nothing_real(release):
    name, package, version, spec, manifest = release
    config = scaffold.dummy_config(spec, manifest=manifest)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator(spec).iter_errors(config)]
    assert errors == []
    secrets = _secret_paths(scaffold.connection_spec(spec))
    for path, value in _leaves(config):
        if path in secrets:
            assert value == scaffold.DUMMY_SECRET
        if isinstance(value, str) and any(w in path[-1] for w in ("domain", "host", "url")):
            assert scaffold.DUMMY_HOST in value, (path, value)


def test_dummy_config_sets_what_connectors_need_though_specs_say_optional():
    slack, manifest = _spec_and_manifest(*RELEASES["slack"])
    config = scaffold.dummy_config(slack, manifest=manifest)
    # Slack's spec leaves `credentials` optional; its manifest selects an authenticator by credentials.option_title.
    assert config["credentials"]["option_title"] == "Default OAuth2.0 authorization"
    notion, manifest = _spec_and_manifest(*RELEASES["notion"])
    config = scaffold.dummy_config(notion, manifest=manifest)
    assert config["start_date"] == "2024-01-01T00:00:00.000Z"  # its own pattern: milliseconds
    assert config["credentials"]["auth_type"] == "OAuth2.0"
    github, _ = _spec_and_manifest(*RELEASES["github"])
    assert scaffold.dummy_config(github)["repositories"] == ["airbytehq/airbyte"]  # minItems 1 + item pattern


def test_dummy_config_handles_schema_shapes():
    spec = {"connectionSpecification": {
        "type": "object",
        "required": ["n", "kind", "tags", "day", "auth", "base_url", "ratio"],
        "properties": {
            "n": {"type": "integer", "minimum": 5, "maximum": 9},
            "ratio": {"type": ["null", "number"], "exclusiveMinimum": 0},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "tags": {"type": "array", "minItems": 2, "uniqueItems": True, "items": {"type": "string"}},
            "day": {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
            "base_url": {"type": "string", "format": "uri"},
            "auth": {"type": "object", "anyOf": [
                {"title": "Key", "required": ["kind", "key"],
                 "properties": {"kind": {"type": "string", "enum": ["key"]}, "key": {"type": "string", "airbyte_secret": True}}},
                {"title": "None", "properties": {"kind": {"type": "string", "const": "none"}}},
            ]},
            "unused": {"type": "string", "pattern": "^never$"},
        },
    }}
    config = scaffold.dummy_config(spec)
    assert _validator(spec).is_valid(config)
    assert config["n"] == 5 and config["kind"] == "a" and config["day"] == "2024-01-01"
    assert config["auth"] == {"kind": "key", "key": scaffold.DUMMY_SECRET}
    assert len(set(config["tags"])) == 2 and "unused" not in config
    assert scaffold.DUMMY_HOST in config["base_url"]


def test_block_text_round_trips_with_secrets_as_references(release, tmp_path):
    name, package, version, spec, manifest = release
    streams, _ = scaffold.manifest_stream_names(manifest)
    assert streams, "every one of these manifests names its streams"
    text = scaffold.block_text(name, "fraud", package, version, spec, streams, discovered=False, manifest=manifest)
    path = tmp_path / "connectors.yaml"
    path.write_text(EXISTING)
    scaffold.append_block(path, text)
    block = load_project(path).block(name)
    assert block.spec.source == f"{package}=={version}" and block.team == "fraud"
    # Every secret the written config holds is a ${NAME_FIELD} reference, never a value.
    secrets = _secret_paths(scaffold.connection_spec(spec))
    written = dict(_leaves(block.spec.config))
    for path_, value in written.items():
        if path_ in secrets:
            assert value == "${" + f"{name}_{path_[-1]}".upper() + "}", (path_, value)
    assert any(p in secrets for p in written), "each of these connectors needs at least one secret"
    # The required keys are written (for a oneOf: the first option's), optional ones only as comments.
    required = scaffold.connection_spec(spec).get("required") or []
    assert set(required) <= set(block.spec.config)
    # Few streams: all active; many: the first active, the rest commented (all of them listed).
    active = [s.name for s in block.streams]
    assert active == (streams if len(streams) <= scaffold.MANY_STREAMS else streams[:1])
    for stream in streams[len(active):]:
        assert f"# - name: {stream}\n" in text
    assert '# schedule: "0 * * * *"' in text


def test_block_text_passes_spec_validation_once_secrets_are_set(tmp_path, monkeypatch):
    """What `ingest validate` checks: the written stripe block against its spec, secrets exported."""
    from ingest.config import resolve_block

    package, version = RELEASES["stripe"]
    spec, manifest = _spec_and_manifest(package, version)
    text = scaffold.block_text("stripe", "payments", package, version, spec, ["charges"], discovered=True)
    assert "client_secret: ${STRIPE_CLIENT_SECRET}" in text
    assert "# start_date: '2017-01-25T00:00:00Z'" in text  # optional, with its default
    path = tmp_path / "connectors.yaml"
    scaffold.append_block(path, text)
    monkeypatch.setenv("STRIPE_CLIENT_SECRET", "sk_test_not_a_real_key")
    assert resolve_block(load_project(path).block("stripe"), scaffold.connection_spec(spec)) == []


def test_block_text_writes_the_first_auth_option_and_names_the_others():
    package, version = RELEASES["zendesk_support"]
    spec, manifest = _spec_and_manifest(package, version)
    text = scaffold.block_text("zendesk", "support", package, version, spec, ["tickets"], discovered=False, manifest=manifest)
    block = yaml.safe_load(text)["zendesk"]
    # Optional in the spec, but the connector cannot authenticate without it: written, with its discriminator.
    assert block["config"]["credentials"] == {"credentials": "oauth2.0", "access_token": "${ZENDESK_ACCESS_TOKEN}"}
    assert "others: API Token (credentials: api_token)" in text


def test_append_keeps_every_existing_byte(tmp_path):
    path = tmp_path / "connectors.yaml"
    path.write_text(EXISTING)
    text = scaffold.block_text("stripe", "payments", "airbyte-source-stripe", "5.14.1",
                               _spec_and_manifest(*RELEASES["stripe"])[0], ["charges"], discovered=True)
    scaffold.append_block(path, text)
    assert path.read_text() == EXISTING + text
    assert set(load_project(path).blocks) == {"demo", "stripe"}


def test_append_refuses_an_existing_block_and_changes_nothing(tmp_path):
    path = tmp_path / "connectors.yaml"
    path.write_text(EXISTING)
    text = "  demo:\n    team: x\n    puller: truck_pricing\n    streams:\n      - name: quotes\n"
    with pytest.raises(ConfigError, match=r"connectors\.yaml:6: connectors\.demo: a block of that name exists"):
        scaffold.append_block(path, text)
    assert path.read_text() == EXISTING


def test_append_refuses_a_block_whose_table_another_block_writes(tmp_path):
    """Block `demo` stream `x_quotes` and block `demo_x` stream `quotes` both derive the table `demo_x_quotes`:
    appending the second would make two writers of one table, so nothing is appended."""
    path = tmp_path / "connectors.yaml"
    existing = EXISTING.replace("- name: quotes", "- name: x_quotes")
    path.write_text(existing)
    text = "  demo_x:\n    team: pricing\n    puller: truck_pricing\n    streams:\n      - name: quotes\n"
    with pytest.raises(ConfigError) as info:
        scaffold.append_block(path, text)
    assert str(info.value) == (
        f"{path}: adding block 'demo_x': connectors.demo_x.streams[0]: table 'demo_x_quotes' is also written by "
        f"connectors.demo.streams[0] (stream 'x_quotes', {path}:10) in the same destination (duckdb "
        f"{tmp_path / 'warehouse.duckdb'}); two streams in one table overwrite each other: give one of them its own "
        "'table:'; nothing was changed")
    assert path.read_text() == existing
    # With its own table it goes in.
    scaffold.append_block(path, text + "        table: demo_x_quotes_v2\n")
    assert set(load_project(path).blocks) == {"demo", "demo_x"}


def test_append_to_a_file_without_trailing_newline(tmp_path):
    path = tmp_path / "connectors.yaml"
    path.write_text(EXISTING.rstrip("\n"))
    text = "  other:\n    team: x\n    puller: truck_pricing\n    streams:\n      - name: quotes\n"
    scaffold.append_block(path, text)
    assert path.read_text() == EXISTING + text
    assert set(load_project(path).blocks) == {"demo", "other"}


def test_append_inside_connectors_when_other_keys_follow(tmp_path):
    existing = (
        "connectors:\n"
        "    demo:                  # four-space indentation, kept\n"
        "        team: platform\n"
        "        puller: truck_pricing\n"
        "        streams:\n"
        "            - name: quotes\n"
        "        # schedule: '*/5 * * * *'\n"
        "\n"
        "# --- where the data goes ---\n"
        "defaults:\n"
        "  destination: duckdb\n"
    )
    path = tmp_path / "connectors.yaml"
    path.write_text(existing)
    text = "  other:\n    team: x\n    puller: truck_pricing\n    streams:\n      - name: quotes\n"
    scaffold.append_block(path, text)
    got = path.read_text()
    lines = existing.splitlines(keepends=True)
    # After the last block and its trailing commented lines, before the blank line and the next section.
    indented = "".join("  " + ln for ln in text.splitlines(keepends=True))
    assert got == "".join(lines[:7]) + indented + "".join(lines[7:])
    project = load_project(path)
    assert set(project.blocks) == {"demo", "other"} and project.defaults.destination == "duckdb"


def test_append_creates_connectors_when_missing(tmp_path):
    path = tmp_path / "connectors.yaml"
    path.write_text("defaults:\n  destination: duckdb\n")
    text = "  other:\n    team: x\n    puller: truck_pricing\n    streams:\n      - name: quotes\n"
    scaffold.append_block(path, text)
    assert path.read_text() == "defaults:\n  destination: duckdb\nconnectors:\n" + text
    new = tmp_path / "new" / "connectors.yaml"
    scaffold.append_block(new, text)
    assert set(load_project(new).blocks) == {"other"}


def test_parse_connector_names():
    assert scaffold.parse_connector("stripe") == ("airbyte-source-stripe", None)
    assert scaffold.parse_connector("airbyte-source-zendesk-support==4.9.1") == ("airbyte-source-zendesk-support", "4.9.1")
    assert scaffold.parse_connector("source-jira") == ("airbyte-source-jira", None)
    assert scaffold.default_block_name("airbyte-source-zendesk-support") == "zendesk_support"
    with pytest.raises(ConfigError):
        scaffold.parse_connector("not a connector")


def test_add_block_writes_a_block_for_a_release(tmp_path):
    """`ingest add jira==4.0.0 --team fraud --stream issues --stream projects` (the pin keeps the test off PyPI's
    newest; without it the newest release is resolved)."""
    path = tmp_path / "connectors.yaml"
    path.write_text(EXISTING)
    heard: list[str] = []
    name, text = scaffold.add_block(path, "jira==4.0.0", "fraud", streams=["issues", "projects"], notify=heard.append, cache=CACHE)
    assert name == "jira"
    assert path.read_text() == EXISTING + text
    block = load_project(path).block("jira")
    assert block.spec.source == "airbyte-source-jira==4.0.0"
    assert [s.name for s in block.streams] == ["issues", "projects"]
    assert block.spec.config["api_token"] == "${JIRA_API_TOKEN}"
    assert "# - name: application_roles\n" in text  # the manifest's other 53 streams, commented
    with pytest.raises(ConfigError, match="a block of that name exists"):
        scaffold.add_block(path, "jira==4.0.0", "fraud", cache=CACHE)
    with pytest.raises(ConfigError, match="no stream 'isues'"):
        scaffold.add_block(path, "jira==4.0.0", "fraud", name="jira2", streams=["isues"], cache=CACHE)
    assert path.read_text() == EXISTING + text


def test_append_keeps_windows_line_endings(tmp_path):
    path = tmp_path / "connectors.yaml"
    existing = EXISTING.replace("\n", "\r\n").rstrip("\r\n")
    path.write_bytes(existing.encode())
    text = "  other:\n    team: x\n    puller: truck_pricing\n    streams:\n      - name: quotes\n"
    scaffold.append_block(path, text)
    assert path.read_bytes() == (existing + "\r\n" + text.replace("\n", "\r\n")).encode()
    assert set(load_project(path).blocks) == {"demo", "other"}


def test_ingest_add_then_validate_through_the_cli(tmp_path):
    """A newcomer's path: `ingest add` into a new connectors.yaml, `ingest validate` (a pull-request check: unset
    secrets are warnings), `--require-secrets` names each one, and the written block runs nothing by itself."""
    from .support.cli import run_cli

    r = run_cli(["add", "jira==4.0.0", "--team", "fraud", "--stream", "issues"], tmp_path)
    assert r.code == 0, r.output
    assert "source: airbyte-source-jira==4.0.0" in r.stdout and "added block 'jira'" in r.stderr
    assert load_project(tmp_path / "connectors.yaml").block("jira").team == "fraud"
    r = run_cli(["validate"], tmp_path)
    assert r.code == 0, r.output
    assert "ok    jira" in r.stdout and "JIRA_API_TOKEN" in r.stdout
    r = run_cli(["validate", "--require-secrets"], tmp_path)
    assert r.code == 2 and "JIRA_API_TOKEN" in r.stderr, r.output
    r = run_cli(["add", "jira==4.0.0", "--team", "fraud"], tmp_path)
    assert r.code == 2 and "a block of that name exists" in r.stderr, r.output
    r = run_cli(["add", "no such thing!", "--team", "fraud"], tmp_path)
    assert r.code == 2 and "expected a name like" in r.stderr, r.output


def test_ingest_add_refuses_a_stream_whose_table_is_taken(tmp_path):
    """`ingest add jira --stream issues` derives the table `jira_issues`; when another team's block already writes
    a table of that name (here, spelled in upper case: tables are case-insensitive), add refuses and writes nothing."""
    from .support.cli import run_cli

    config = tmp_path / "connectors.yaml"
    existing = EXISTING.replace("- name: quotes", "- name: quotes\n        table: JIRA_ISSUES")
    config.write_text(existing)
    r = run_cli(["add", "jira==4.0.0", "--team", "fraud", "--stream", "issues"], tmp_path)
    assert r.code == 2, r.output
    assert ("adding block 'jira': connectors.jira.streams[0]: table 'jira_issues' is also written by "
            "connectors.demo.streams[0] (stream 'quotes', connectors.yaml:11) as 'JIRA_ISSUES'") in r.stderr, r.output
    assert "Traceback" not in r.output
    assert config.read_text() == existing
    r = run_cli(["add", "jira==4.0.0", "--team", "fraud", "--stream", "projects"], tmp_path)
    assert r.code == 0, r.output
