"""Record the Jira vcrpy cassettes in fixtures/cassettes/jira/ that tests/test_jira_cli.py replays.

    .venv/bin/python tests/record_jira_cassettes.py          # rewrites fixtures/cassettes/jira/*.yaml

WHERE THE RECORDINGS COME FROM - read this before trusting them:
the cassettes are recorded from the LOCAL FAKE (tests/fakes/fake_jira.py, a loopback server in this process),
NOT from a real Jira Cloud site. The fake serves today's endpoints and response shapes as documented by
Atlassian (GET /rest/api/3/search/jql with `nextPageToken`/`isLast` paging, no `total`/`startAt`; the removed
/rest/api/3/search answers 410), with deterministic made-up issues. So a replay proves that the runner, the
connector and overrides/source-jira.yaml work end to end against those shapes with a config exactly like a
user's (`domain: acme.atlassian.net`, no `base_url`); it does not prove that Jira Cloud still answers that way.
To check against the real API, run `ingest run jira --stream issues` with real credentials (see README).

How a recording is made:
1. FakeJira(seed=SEED, issue_count=ISSUES) starts on 127.0.0.1; a temp project gets `connectors.yaml` from
   `project_config(base_url=fake.base_url)` (the replay config plus one `base_url:` line; both add CASSETTE_CONFIG) and a copy of
   overrides/source-jira.yaml.
2. `python -m tests.support.cassettes --record` (the suite's one VCR runner) runs the real CLI in a subprocess: `ingest run jira --stream issues`
   -> issues_initial.yaml (every issue, paged).
3. CHANGES are applied to the fake (an issue touched, one edited, two added), then the same command runs again
   on the same DuckDB file, so it starts from the saved cursor -> issues_incremental.yaml (changed issues only,
   plus the boundary record Jira re-delivers for `updated >= cursor`).
The runner drops the Authorization header and rewrites http://127.0.0.1:<port> to https://acme.atlassian.net in
URIs and bodies. The replay's JQL (`updated >= <epoch ms> and updated <= <epoch ms>`, one per window) must match
exactly, so re-record whenever START_DATE, CASSETTE_CONFIG,
the override's request parameters or the connector version change (the replay then fails loudly: record mode
`none`). Recording is deterministic: re-running this script reproduces the same files.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CASSETTE_DIR = ROOT / "fixtures" / "cassettes" / "jira"
INITIAL = CASSETTE_DIR / "issues_initial.yaml"
INCREMENTAL = CASSETTE_DIR / "issues_incremental.yaml"
OVERRIDE = ROOT / "overrides" / "source-jira.yaml"

SITE = "https://acme.atlassian.net"
DOMAIN = "acme.atlassian.net"
SEED = 11
ISSUES = 60  # two pages of the override's page size (50): exercises nextPageToken paging
START_DATE = "2024-01-01T00:00:00Z"
# The issues stream reads in monthly windows up to now; a cassette must ask the same JQL at every replay, so its
# config ends the windows at a fixed time (after every change below), and reads them one at a time (vcrpy records
# requests made from several threads at once unreliably).
CASSETTE_CONFIG = {"end_date": '"2024-07-01T00:00:00Z"', "num_workers": "1"}
# Placeholders for recording; the Authorization header is not stored and not matched on replay.
EMAIL = "recorder@example.com"
TOKEN = "recording-token-not-a-secret"

# What changes between the two recordings (all strictly newer than every initial issue).
TOUCHED_ID = "10003"
TOUCHED_UPDATED = "2024-06-01T09:00:00.123+0000"
EDITED_ID = "10010"
EDITED_SUMMARY = "Renamed by the incremental recording"
EDITED_UPDATED = "2024-06-02T10:30:00.456+0000"
ADDED = 2

# The block as a user writes it (secrets as references). The recording adds one `base_url:` line.
PROJECT_CONFIG = """\
defaults:
  duckdb: {path: warehouse.duckdb}
connectors:
  jira:
    team: fraud
    description: Jira Cloud issues and projects.
    source: airbyte-source-jira
    overrides: overrides/source-jira.yaml
    config:
      domain: ${JIRA_DOMAIN}
      email: ${JIRA_EMAIL}
      api_token: ${JIRA_API_TOKEN}
      start_date: "%s"
    streams:
      - name: issues
      - name: projects
        write: replace
""" % START_DATE


def project_config(base_url: str | None = None, cassette: bool = True) -> str:
    """The block; `cassette` adds CASSETTE_CONFIG (fixed windows, one at a time), `base_url` points it at a fake."""
    text = PROJECT_CONFIG
    if cassette:
        extra = "".join(f"      {key}: {value}\n" for key, value in CASSETTE_CONFIG.items())
        text = text.replace("      start_date:", extra + "      start_date:")
    if base_url is None:
        return text
    return text.replace("      domain: ${JIRA_DOMAIN}\n", f"      domain: ${{JIRA_DOMAIN}}\n      base_url: {base_url}\n")


def write_project(root: Path, base_url: str | None = None, cassette: bool = True) -> None:
    """connectors.yaml + overrides/source-jira.yaml in `root`, as in a user's checkout (`cassette=False`: without
    CASSETTE_CONFIG, i.e. windows up to now, read concurrently — exactly a user's block)."""
    (root / "overrides").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(OVERRIDE, root / "overrides" / "source-jira.yaml")
    (root / "connectors.yaml").write_text(project_config(base_url, cassette))


def env(email: str = EMAIL, token: str = TOKEN) -> dict:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("JIRA_", "INGEST_"))}
    out.setdefault("METAFLOW_USER", "ci")
    out.update(JIRA_DOMAIN=DOMAIN, JIRA_EMAIL=email, JIRA_API_TOKEN=token, PYTHONUNBUFFERED="1")
    return out


def vcr_cli_command(cassette: Path, *cli_args: str, record: bool = False) -> list[str]:
    from tests.support.cassettes import cassette_command

    return cassette_command(cassette, *cli_args, record=record)


def apply_changes(fake) -> list[str]:
    """The edits between the two recordings; returns the ids of the issues they changed or created."""
    fake.touch_issue(TOUCHED_ID, updated=TOUCHED_UPDATED)
    fake.upsert_issue(EDITED_ID, summary=EDITED_SUMMARY, updated=EDITED_UPDATED)
    added = fake.add_issues(ADDED)
    return [TOUCHED_ID, EDITED_ID, *(i["id"] for i in added)]


def record() -> None:
    from tests.fakes.fake_jira import FakeJira
    from tests.support.cassettes import check_written, record_run

    CASSETTE_DIR.mkdir(parents=True, exist_ok=True)
    with FakeJira(seed=SEED, issue_count=ISSUES, email=EMAIL, token=TOKEN) as fake, \
            tempfile.TemporaryDirectory(prefix="record-jira-") as tmp:
        root = Path(tmp)
        write_project(root, base_url=fake.base_url)
        for cassette in (INITIAL, INCREMENTAL):
            cassette.unlink(missing_ok=True)

        record_run(INITIAL, vcr_cli_command(INITIAL, "run", "jira", "--stream", "issues", record=True), root, env())
        changed = apply_changes(fake)
        record_run(INCREMENTAL, vcr_cli_command(INCREMENTAL, "run", "jira", "--stream", "issues", record=True), root, env())

        paths = {r.path for r in fake.requests}
        assert paths == {"/rest/api/3/search/jql"}, f"unexpected endpoints recorded: {sorted(paths)}"
        assert all(r.status == 200 for r in fake.requests), [(r.path, r.status) for r in fake.requests]
    for cassette in (INITIAL, INCREMENTAL):
        check_written(cassette, "127.0.0.1", TOKEN, "uthorization")
    print(f"changed between the recordings: {', '.join(changed)}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(textwrap.dedent(__doc__))
        sys.exit(0 if sys.argv[1] in ("-h", "--help") else 2)
    record()
