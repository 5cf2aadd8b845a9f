"""The same sources into Snowflake (a fakesnow server, the real connector over HTTP) as into DuckDB:
`ingest run jira --stream issues --destination snowflake` and a puller land the same rows, incrementally and on a
full refresh."""
from __future__ import annotations

import shutil

from .support.cli import ROOT, run_cli
from .fakes.fake_greenscreens import FakeGreenscreens
from .fakes.fake_jira import FakeJira
from .support import blocks, pullers
from .support.snowflake import assert_clean, env_for



def _duck_issues(project) -> set[tuple]:
    return set(project.query("SELECT id, key, epoch_us(updated) FROM jira_issues"))


def _sf_issues(sf) -> set[tuple]:
    return set(sf.query('SELECT "ID", "KEY", DATE_PART(epoch_microsecond, "UPDATED") FROM "JIRA_ISSUES"'))


def test_jira_issues_land_the_same_in_snowflake_as_in_duckdb(project, sf):
    with FakeJira(issue_count=80, seed=11, token="tok-SF-jira-SECRET-77") as jira:
        shutil.copytree(ROOT / "overrides", project.root / "overrides")
        project.write_config(sf.defaults() + blocks.dump({"connectors": {"jira": blocks.jira_block(jira.base_url)}}))
        env = {**env_for(project), "JIRA_EMAIL": jira.email, "JIRA_API_TOKEN": jira.token}

        def run(*args):
            r = run_cli(["run", "jira", "--stream", "issues", *args], project.root, env=env)
            assert r.code == 0, r.output
            assert_clean(r)
            assert jira.token not in r.output
            return r

        run("--destination", "snowflake")
        run("--destination", "duckdb")
        duck = _duck_issues(project)
        assert len(duck) == 80 and _sf_issues(sf) == duck

        # incremental: only the changed issues (plus the re-delivered boundary one) come back, in both
        changed = [i["id"] for i in jira.issues[:3]]
        for issue_id in changed:
            jira.touch_issue(issue_id)
        run("--destination", "snowflake")
        run("--destination", "duckdb")
        duck = _duck_issues(project)
        assert len(duck) == 80 and _sf_issues(sf) == duck
        loads = sf.query('SELECT "_INGEST_LOAD_ID", count(*) FROM "JIRA_ISSUES" GROUP BY 1 ORDER BY 1')
        assert len(loads) == 2 and 3 <= loads[1][1] <= 4  # 3 changed (+ the boundary record, deduped)

        # full refresh replaces the Snowflake table; the rows stay the same
        run("--destination", "snowflake", "--full-refresh")
        assert _sf_issues(sf) == duck
        assert sf.scalar('SELECT count(DISTINCT "_INGEST_LOAD_ID") FROM "JIRA_ISSUES"') == 1


def test_a_puller_lands_in_snowflake_like_in_duckdb(project, sf):
    with FakeGreenscreens() as gs:
        pullers.write_pricing_block(project, gs)
        text = (project.root / "connectors.yaml").read_text()
        snowflake = sf.defaults()[sf.defaults().index("  snowflake:"):]
        (project.root / "connectors.yaml").write_text(text.replace("defaults:\n", "defaults:\n" + snowflake, 1))
        env = {**env_for(project), **pullers.gs_env(gs)}
        for dest in ("snowflake", "duckdb", "snowflake"):  # the second Snowflake run re-prices nothing new
            r = run_cli(["run", "truck_prices", "--destination", dest], project.root, env=env)
            assert r.code == 0, r.output
            assert_clean(r)
            assert gs.client_secret not in r.output
    duck = {lane_id for (lane_id,) in project.query(f"SELECT lane_id FROM {pullers.PRICES_TABLE}")}
    snow = [lane_id for (lane_id,) in sf.query(f'SELECT "LANE_ID" FROM "{pullers.PRICES_TABLE.upper()}"')]
    assert len(snow) == len(set(snow)) == len(duck) > 0 and set(snow) == duck
