"""IngestFlow: one generic Metaflow flow, configured per connector block at deploy time.

    python flows/ingest_flow.py --config-value connector '{"name": "jira"}' run           # locally
    python flows/ingest_flow.py --config-value connector '{"name": "jira"}' argo-workflows create   # production

- `connectors` (Config) is connectors.yaml, parsed at deploy time by `ingest.flowconfig.parse_for_flow`, which also
  embeds the files blocks refer to (overrides, manifests): the value travels with the code package.
- `connector` (Config) picks the block: its cron becomes `@schedule`, its name the `@project` (ingest_<block>), so
  every block deploys as its own Argo CronWorkflow; its `resources:` (or the default) the `sync` step's `@resources`.
- `start` fans out over the block's streams: one `sync` task (pod) per stream. Each task runs the SAME library call
  as `ingest run <block> --stream <s>` and announces what it landed from inside the step (DataLanded events).
- Secrets: in production, attach Metaflow `@secrets` (e.g. `--with secrets:sources=[...]` at deploy time) so the
  environment holds JIRA_API_TOKEN & co.; locally they come from your shell.
"""
from __future__ import annotations

import os

from metaflow import Config, FlowSpec, Parameter, card, config_expr, current, project, resources, retry, schedule, step

from ingest.flowconfig import pick, project_name, resources_of, schedule_of  # noqa: F401  (used inside config_expr)


@project(name=config_expr("project_name(connector)"))
@schedule(cron=config_expr("schedule_of(connectors, connector)"))
class IngestFlow(FlowSpec):
    connectors = Config("connectors", default="connectors.yaml", parser="ingest.flowconfig.parse_for_flow")
    connector = Config("connector", default_value={"name": "demo"})

    destination = Parameter("destination", default="", help="Override the block's destination (duckdb | snowflake | path).")
    full_refresh = Parameter("full_refresh", default=False, type=bool, help="Ignore state; replace tables atomically.")

    @step
    def start(self):
        block = pick(self.connectors, self.connector)
        self.block_name = self.connector["name"]
        self.team = block["team"]
        self.streams = [s["name"] for s in block["streams"]]
        self.next(self.sync, foreach="streams")

    @card(type="blank", id="ingest_sync")
    @retry(times=1, minutes_between_retries=0)
    # Each stream's pod: the block's `resources:` in connectors.yaml (checked at deploy), else DEFAULT_RESOURCES.
    @resources(cpu=config_expr("resources_of(connectors, connector)['cpu']"),
               memory=config_expr("resources_of(connectors, connector)['memory']"))
    @step
    def sync(self):
        import ingest
        from ingest.flowconfig import materialize

        # Kubernetes/Argo stop a pod with SIGTERM (SIGKILL after the grace period): end the sync cleanly.
        ingest.stop_on_signals()
        self.stream = self.input
        # The same library call as `ingest run <block> --stream <s>`; a failed sync is returned (not raised) so the
        # card shows it before the task fails below.
        result = ingest.run(
            self.block_name, streams=[self.stream], config=materialize(dict(self.connectors), data_dir=os.getcwd()),
            full_refresh=bool(self.full_refresh), destination=self.destination or None,
            # Locally every stream task writes the same DuckDB file (one writer process at a time): take turns.
            lock_wait=float(os.environ.get("INGEST_LOCK_WAIT", "900")),
            run_pathspec=current.pathspec, raise_on_failure=False,
        )
        r = result.streams.get(self.stream)
        self.result = {
            "stream": self.stream,
            "table": r.table if r else None,
            "records": r.records if r else 0,
            "rows_written": r.rows_written if r else 0,
            "state_before": r.state_before if r else None,
            "state_after": r.state_after if r else None,
            "schema_changes": r.schema_changes if r else [],
            "seconds": round(result.seconds, 2),
            "destination": result.destination,
            "run_id": result.run.run_id,
            "status": "succeeded" if result.ok else "failed",
            "error": str(result.error) if result.error else None,
            "events_sent": result.events_sent,
            "event_errors": result.event_errors,
            "rows_history": result.rows_history.get(self.stream, []),
        }
        _render_card(self.block_name, self.team, self.result)
        if not result.ok:
            # Fail the task (so @retry and Argo see it); the data_failed event has already gone out.
            raise RuntimeError(f"sync of {self.block_name}.{self.stream} failed [{result.error.failure_type}]: {result.error}")
        self.next(self.join)

    @step
    def join(self, inputs):
        self.results = [i.result for i in inputs]
        self.block_name = inputs[0].block_name
        self.next(self.end)

    @step
    def end(self):
        total = sum(r["records"] for r in self.results)
        print(f"{self.block_name}: {total} records across {len(self.results)} stream(s)")


def _render_card(block: str, team: str, r: dict) -> None:
    """The operational view of one stream task: what landed, how long, state before/after, schema, events."""
    import json

    from metaflow.cards import Markdown, Table

    from ingest.status import sparkline

    status = "✅ succeeded" if r["status"] == "succeeded" else f"❌ failed: {r['error']}"
    current.card.append(Markdown(f"# {block}.{r['stream']} → `{r['table']}`\n\nTeam **{team}** · {status}"))
    current.card.append(
        Table(
            [
                ["records read", f"{r['records']:,}"],
                ["rows written", f"{r['rows_written']:,}"],
                ["duration (s)", f"{r['seconds']}"],
                ["destination", r["destination"]],
                ["state before", json.dumps(r["state_before"], default=str)],
                ["state after", json.dumps(r["state_after"], default=str)],
                ["schema changes", "; ".join(r["schema_changes"]) or "none"],
                ["events sent", f"{r['events_sent']}" + (f" ({len(r['event_errors'])} pending)" if r["event_errors"] else "")],
                ["rows per run", f"{sparkline(r['rows_history'])}  {' '.join(str(n) for n in r['rows_history'])}"],
                ["run id", r["run_id"]],
            ],
            headers=["", ""],
        )
    )


if __name__ == "__main__":
    IngestFlow()
