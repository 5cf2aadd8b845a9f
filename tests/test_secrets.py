"""Secrets never leave the process: not in output, errors, logs (even with -vv), nor in the tables we write.

A recognisable fake secret is put in the environment and the CLI is made to fail in every way we can think of
around it; the secret (and its URL-/JSON-encoded forms) must never be printed. The redactor itself is unit-tested.
"""
from __future__ import annotations

import base64
import io
import json
import logging
import sys
import textwrap
from pathlib import Path
from urllib.parse import quote

import pytest

from ingest.secrets import MASK, REDACTOR, RedactingFilter, Redactor

from .support.cli import ROOT
from .support.configs import CONFIGS, duckdb_files, finish, start

SECRET = "tok-SECRET-abc123xyz"
EMAIL = "someone@example.com"
ENV = {"JIRA_API_TOKEN": SECRET, "JIRA_EMAIL": EMAIL, "JIRA_DOMAIN": "example.atlassian.net"}
OVERRIDE = ROOT / "overrides" / "source-jira.yaml"


def leaked_forms(secret: str = SECRET) -> list[str]:
    """The secret as is and the forms it takes in URLs, JSON and HTTP Basic auth headers."""
    return [
        secret,
        quote(secret, safe=""),
        json.dumps(secret),
        base64.b64encode(f"{EMAIL}:{secret}".encode()).decode(),
        "SECRET-abc123",  # any recognisable fragment
    ]


def assert_no_secret(result) -> None:
    for form in leaked_forms():
        assert form not in result.output, f"secret leaked as {form!r}\n{result}"


def write_project(tmp_path: Path, blocks: str, defaults: str = "") -> Path:
    project = tmp_path / "project"
    project.mkdir(parents=True, exist_ok=True)
    if OVERRIDE.is_file():
        (project / "overrides").mkdir(exist_ok=True)
        (project / "overrides" / OVERRIDE.name).write_text(OVERRIDE.read_text())
    (project / "support").mkdir(exist_ok=True)
    (project / "support" / "manifest.yaml").write_text((CONFIGS / "support" / "manifest.yaml").read_text())
    text = (textwrap.dedent(defaults) if defaults else "") + "connectors:\n" + textwrap.indent(textwrap.dedent(blocks), "  ")
    path = project / "connectors.yaml"
    path.write_text(text)
    return path


def jira_block(config: str, *, overrides: bool = True) -> str:
    return (
        "jira:\n  team: fraud\n  source: airbyte-source-jira==4.0.0\n"
        + ("  overrides: overrides/source-jira.yaml\n" if overrides and OVERRIDE.is_file() else "")
        + "  config:\n"
        + textwrap.indent(textwrap.dedent(config), "    ")
        + "  streams:\n    - name: issues\n    - name: projects\n      write: replace\n"
    )


# (id, block yaml, defaults yaml, expected substring): every one is a config error (exit 2) near the secret.
CONFIG_FAILURES = [
    (
        "spec-error-on-neighbouring-key",
        jira_block("""\
            domain: ${JIRA_DOMAIN}
            email: 12345
            api_token: ${JIRA_API_TOKEN}
            start_date: "2024-01-01"
        """),
        "",
        "connectors.jira.config.email: expected a string; got an integer",
    ),
    (
        "secret-used-for-keys-that-fail-the-spec",
        jira_block("""\
            domain: ${JIRA_DOMAIN}
            email: ${JIRA_EMAIL}
            api_token: ${JIRA_API_TOKEN}
            start_date: ${JIRA_API_TOKEN}
            lookback_window_minutes: ${JIRA_API_TOKEN}
            projects: "${JIRA_API_TOKEN}"
            issues_stream_expand_with: ["${JIRA_API_TOKEN}"]
        """),
        "",
        "connectors.jira.config.start_date: does not match the pattern",
    ),
    (
        "literal-secret",
        jira_block(f"""\
            domain: ${{JIRA_DOMAIN}}
            email: ${{JIRA_EMAIL}}
            api_token: {SECRET}
        """),
        "",
        "connectors.jira.config.api_token: is a secret: give a reference like ${MY_TOKEN}",
    ),
    (
        "literal-secret-and-a-missing-reference",
        jira_block(f"""\
            domain: ${{JIRA_DOMAIN}}
            email: ${{INGEST_TEST_UNSET_EMAIL}}
            api_token: "{SECRET}"
        """),
        "",
        "connectors.jira.config.email: secret reference ${INGEST_TEST_UNSET_EMAIL} is not set",
    ),
    (
        "secret-pasted-into-a-reference",
        jira_block(f"""\
            domain: ${{JIRA_DOMAIN}}
            email: ${{JIRA_EMAIL}}
            api_token: ${{{SECRET}}}
        """),
        "",
        "connectors.jira.config.api_token: malformed secret reference",
    ),
    (
        "secret-in-a-oneof-that-matches-no-option",
        """\
        custom:
          team: data
          manifest: support/manifest.yaml
          config:
            base_url: https://api.example.com
            credentials: {auth_type: bearer, api_key: "${JIRA_API_TOKEN}"}
          streams: [{name: things}]
        """,
        "",
        "connectors.custom.config.credentials: matches none of the allowed options: API key, OAuth",
    ),
    (
        "literal-snowflake-password",
        """\
        demo:
          team: platform
          source: airbyte-source-faker==7.2.1
          streams: [{name: users}]
        """,
        f"""\
        defaults:
          snowflake:
            account: acme
            password: {SECRET}
        """,
        "defaults.snowflake.password: is a secret",
    ),
]


@pytest.mark.parametrize("blocks,defaults,expected", [c[1:] for c in CONFIG_FAILURES], ids=[c[0] for c in CONFIG_FAILURES])
def test_config_errors_never_show_the_secret(tmp_path: Path, blocks: str, defaults: str, expected: str):
    config = write_project(tmp_path, blocks, defaults)
    block = blocks.split(":", 1)[0].strip()
    procs = [
        start(["-vv", "-c", str(config), "validate", "--require-secrets"], tmp_path, ENV),
        start(["-vv", "-c", str(config), "run", block], tmp_path, ENV),
    ]
    for result in (finish(p) for p in procs):
        assert result.code == 2, str(result)
        assert expected in result.stderr, str(result)
        assert "Traceback" not in result.output, str(result)
        assert_no_secret(result)
    assert duckdb_files(tmp_path) == []


def test_list_and_spec_never_show_the_secret(tmp_path: Path):
    config = write_project(tmp_path, jira_block("""\
        domain: ${JIRA_DOMAIN}
        email: ${JIRA_EMAIL}
        api_token: ${JIRA_API_TOKEN}
    """))
    for result in (finish(p) for p in [start(["-vv", "-c", str(config), cmd, *rest], tmp_path, ENV)
                                       for cmd, *rest in (["list"], ["validate"], ["spec", "jira"])]):
        assert result.code == 0, str(result)
        assert_no_secret(result)


def _override_supports_local_failures() -> str | None:
    if not OVERRIDE.is_file():
        return f"{OVERRIDE.relative_to(ROOT)} is not there yet"
    text = OVERRIDE.read_text()
    missing = [k for k in ("base_url", "max_retries") if k not in text]
    if missing:
        return f"{OVERRIDE.relative_to(ROOT)} does not support {', '.join(missing)} yet"
    return None


@pytest.mark.skipif(_override_supports_local_failures() is not None, reason=str(_override_supports_local_failures()))
def test_failed_sync_against_unreachable_jira_never_shows_the_secret(tmp_path: Path):
    """A real sync that fails (connection refused on 127.0.0.1:9, no retries) with -vv: connector logs, tracebacks,
    the error summary and the run records in DuckDB must not contain the token. The token is also part of the URL
    path (base_url prefix), so every connection error message carries it: all of them must be redacted."""
    config = write_project(tmp_path, jira_block("""\
        domain: ${JIRA_DOMAIN}
        email: ${JIRA_EMAIL}
        api_token: ${JIRA_API_TOKEN}
        base_url: http://127.0.0.1:9/${JIRA_API_TOKEN}
        max_retries: 0
        start_date: "2024-01-01T00:00:00Z"
    """), "defaults:\n  duckdb: {path: sync.duckdb}\n")
    check_config = config.with_name("check.yaml")
    check_config.write_text(config.read_text().replace("sync.duckdb", "check.duckdb"))
    procs = [
        start(["-vv", "-c", str(config), "run", "jira"], tmp_path, ENV),
        start(["-vv", "-c", str(check_config), "check", "jira"], tmp_path, ENV),
    ]
    run, check = (finish(p) for p in procs)
    assert run.code == 1, str(run)
    assert "error: sync of jira failed" in run.stderr, str(run)
    assert MASK in run.stderr, "the URL in the connection errors should show the token masked"
    assert_no_secret(run)
    assert check.code == 1 and "check failed" in check.stderr, str(check)
    assert_no_secret(check)

    import duckdb

    con = duckdb.connect(str(config.parent / "sync.duckdb"), read_only=True)
    try:
        tables = con.execute("select table_schema, table_name from information_schema.tables").fetchall()
        assert tables, "the failed run should still be recorded"
        for schema, table in tables:
            dump = repr(con.execute(f'select * from "{schema}"."{table}"').fetchall())
            for form in leaked_forms():
                assert form not in dump, f"secret stored in {schema}.{table}"
    finally:
        con.close()


# ---------------------------------------------------------------- resolution registers secrets (in process)


def test_resolved_and_literal_secrets_are_registered(tmp_path: Path, monkeypatch):
    from ingest.config import load_project
    from ingest.errors import ConfigError

    from .support.blocks import prepared

    resolved = "res-SECRET-resolved-4711"
    literal = "lit-SECRET-literal-4712"
    monkeypatch.setenv("INGEST_TEST_RESOLVED", resolved)
    monkeypatch.setenv("JIRA_EMAIL", EMAIL)
    good = write_project(tmp_path / "good", jira_block("""\
        domain: example.atlassian.net
        email: ${JIRA_EMAIL}
        api_token: ${INGEST_TEST_RESOLVED}
    """))
    block = prepared(load_project(good).block("jira"))
    assert block.config["api_token"] == resolved
    assert REDACTOR.redact(f"Authorization: token {resolved}") == f"Authorization: token {MASK}"
    assert resolved not in repr(block), "a block's repr must not show its resolved config"

    bad = write_project(tmp_path / "bad", jira_block(f"""\
        domain: example.atlassian.net
        email: ${{JIRA_EMAIL}}
        api_token: {literal}
    """))
    with pytest.raises(ConfigError) as info:
        prepared(load_project(bad).block("jira"))
    assert literal not in str(info.value)
    assert REDACTOR.redact(literal) == MASK, "a literal secret found in a config is redacted from then on"


# ---------------------------------------------------------------- the redactor


def test_redactor_masks_every_registered_value_and_ignores_tiny_ones():
    r = Redactor()
    assert r.redact("nothing registered") == "nothing registered"
    r.add("abc")  # too short to be a secret; would mask ordinary words
    r.add("")
    r.add(None)  # type: ignore[arg-type]
    assert r.redact("abc") == "abc"
    r.add("s3cr3t-value")
    r.add("s3cr3t-value-longer")  # overlapping secrets: the longest wins, nothing half-masked
    r.add("a.b*c+(d)")  # regex metacharacters are literal
    assert r.redact("x s3cr3t-value-longer y s3cr3t-value z") == f"x {MASK} y {MASK} z"
    assert r.redact("pw=a.b*c+(d); not aXbbc") == f"pw={MASK}; not aXbbc"
    assert r.redact(12345) == "12345"


def test_redactor_masks_encoded_forms():
    r = Redactor()
    secret = 'p@ss w/rd"\\x+&'
    r.add(secret)
    for rendered in (
        secret,
        json.dumps({"token": secret}),  # JSON logs escape quotes and backslashes
        repr(secret),  # exception messages and %r
        f"https://api.example.com/?token={quote(secret, safe='')}",
        "token=" + quote(secret, safe="").replace("%20", "+"),
    ):
        out = r.redact(rendered)
        assert "ss w/rd" not in out and MASK in out, (rendered, out)


def test_redact_obj_on_nested_data():
    r = Redactor()
    r.add(SECRET)
    data = {
        "config": {"api_token": SECRET, "headers": [("Authorization", f"Basic x{SECRET}y")], "n": 3, "ok": True},
        "list": [SECRET, None, 1.5, {"deep": [[f"pre-{SECRET}"]]}],
        SECRET: "a key that is a secret",
        "tags": frozenset({SECRET}),
        "raw": SECRET.encode(),
    }
    out = r.redact_obj(data)
    assert SECRET not in repr(out)
    assert out["config"] == {"api_token": MASK, "headers": [("Authorization", f"Basic x{MASK}y")], "n": 3, "ok": True}
    assert isinstance(out["config"]["headers"][0], tuple)
    assert out["list"] == [MASK, None, 1.5, {"deep": [[f"pre-{MASK}"]]}]
    assert out[MASK] == "a key that is a secret"
    assert out["tags"] == frozenset({MASK})
    assert out["raw"] == MASK
    assert data["config"]["api_token"] == SECRET, "redact_obj must not mutate its input"


@pytest.fixture()
def redacting_logger():
    REDACTOR.add(SECRET)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("ingest.tests.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_redacting_filter_on_a_record_with_args():
    REDACTOR.add(SECRET)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token=%s user=%s config=%r", (SECRET, "bob", {"t": SECRET}), None)
    assert RedactingFilter().filter(record) is True
    assert record.getMessage() == f"token={MASK} user=bob config={{'t': '{MASK}'}}"
    assert record.args is None
    mapping = logging.LogRecord("x", logging.INFO, __file__, 1, "%(token)s!", ({"token": SECRET},), None)
    RedactingFilter().filter(mapping)
    assert mapping.getMessage() == f"{MASK}!"
    broken = logging.LogRecord("x", logging.INFO, __file__, 1, f"%d {SECRET}", ("not a number",), None)
    assert RedactingFilter().filter(broken) is True  # a bad format string must not break logging
    assert SECRET not in broken.getMessage()
    obj = logging.LogRecord("x", logging.INFO, __file__, 1, {"api_token": SECRET}, None, None)
    RedactingFilter().filter(obj)
    assert SECRET not in obj.getMessage()


def test_redacting_filter_masks_tracebacks_and_stacks(redacting_logger):
    logger, stream = redacting_logger
    try:
        raise RuntimeError(f"401 for https://jira.example.com/?token={SECRET}")
    except RuntimeError:
        logger.debug("sync failed", exc_info=True)
        logger.exception("and again for %s", SECRET)
    logger.warning("where am I %s", SECRET, stack_info=True)
    text = stream.getvalue()
    assert "Traceback" in text and "RuntimeError: 401 for https://jira.example.com/?token=****" in text
    assert "Stack (most recent call last)" in text
    assert SECRET not in text, text


def test_cli_logging_is_redacted_at_every_verbosity(capfd):
    """The handler `ingest -vv` installs is the redacting one (checked in process with the real setup)."""
    from ingest.cli import _setup_logging

    REDACTOR.add(SECRET)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        for verbose in (0, 1, 2):
            _setup_logging(verbose)
            logging.getLogger("ingest.anything").warning("token %s", SECRET)
            try:
                raise ValueError(SECRET)
            except ValueError:
                logging.getLogger("airbyte").error("boom", exc_info=True)
        err = capfd.readouterr().err
        # tracebacks only at -vv (below, our one-line error says what failed); redacted wherever they appear
        assert err.count("token ****") == 3 and err.count("boom") == 3 and err.count("ValueError: ****") == 1, err
        assert SECRET not in err
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
