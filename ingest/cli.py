"""The `ingest` command line. Thin: parse flags, call the library, render. Exit codes: 0 ok, 1 sync failed, 2 bad input.

Heavy imports (the Airbyte CDK, connectors) happen inside the commands that need them, so `ingest list` and
`ingest validate` stay fast.
"""
from __future__ import annotations

import json
import logging
import sys

import click

from . import render
from .errors import ConfigError, IngestError
from .secrets import REDACTOR, RedactingFilter


class _OneLine(logging.Filter):
    """Below -vv, log records carry no tracebacks: the connector's errors are summarised by our own error line."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = record.exc_text = record.stack_info = None
        return True


def _setup_logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if verbose < 2:
        handler.addFilter(_OneLine())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING)
    if verbose < 2:
        # The connectors are chatty at INFO (one line per request); keep them at WARNING unless -vv.
        logging.getLogger("airbyte").setLevel(logging.WARNING)
        logging.getLogger("ingest.connector").setLevel(logging.WARNING if verbose == 0 else logging.INFO)
    # Fetching a connector or building its environment (first use) always says so: a slow first run explains itself.
    install = logging.getLogger("ingest.install")
    install.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    install.propagate = False
    for h in list(install.handlers):
        install.removeHandler(h)
    plain = logging.StreamHandler(sys.stderr)
    plain.addFilter(RedactingFilter())
    plain.setFormatter(logging.Formatter("  ⋯ %(message)s"))
    install.addHandler(plain)


class _Group(click.Group):
    """Turns our errors into a clear message and the documented exit code, never a stack trace."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:  # a stop signal outside a sync (a sync turns it into a failed run)
            click.echo(f"error: {exc or 'interrupted'}", err=True)
            ctx.exit(1)
        except IngestError as exc:
            kind = "config error" if isinstance(exc, ConfigError) else "error"
            for line in REDACTOR.redact(str(exc)).splitlines() or [kind]:
                click.echo(f"{kind}: {line}", err=True)
            ctx.exit(exc.exit_code)


def _project(ctx):
    from .config import load_project

    return load_project(ctx.obj["config"])


def _manager(ctx, progress=None, resolve: str | None = None):
    """The library entry point. With `resolve`, the block is validated (secrets, spec) before the manager and its
    heavy imports (pyarrow, the CDK) load, so a config mistake fails fast and touches nothing."""
    project = _project(ctx)
    if resolve:
        from .sources.connector import prepare

        for warning in prepare(project.block(resolve)):
            logging.getLogger("ingest").warning("%s", warning)
    from .sync.runner import AirbyteManager

    return AirbyteManager(project, progress=progress)


@click.group(cls=_Group)
@click.option("-c", "--config", "config", envvar="INGEST_CONFIG", default="connectors.yaml", show_default=True,
              help="Path to connectors.yaml (or set INGEST_CONFIG).")
@click.option("-v", "--verbose", count=True, help="-v: info logs, -vv: debug logs and connector chatter.")
@click.pass_context
def main(ctx, config, verbose):
    """Run data-ingestion connector blocks from connectors.yaml into DuckDB or Snowflake."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config
    ctx.obj["verbose"] = verbose
    _setup_logging(verbose)
    _stop_on_sigterm()


def _quiet_connector(ctx) -> None:
    """check/discover end in one line of ours saying what failed; the CDK's own ERROR/WARNING lines on the way there
    ("Retries exhausted ...", "Stream x is not available: <a urllib3 repr>") are detail: shown with -v."""
    if not ctx.obj.get("verbose"):
        logging.getLogger("airbyte").setLevel(logging.CRITICAL)
        logging.getLogger("ingest.connector").setLevel(logging.ERROR)


def _stop_on_sigterm() -> None:
    """SIGTERM (a pod being evicted, `kill`, Argo stopping a workflow) stops a run the way Ctrl-C does: what was read
    is committed up to its last checkpoint, the run is recorded as failed, locks are released, an isolated
    connector's child process is stopped — instead of dying mid-transaction with the child left running.
    The handler lives in the library (ingest.stopping) so the Metaflow step behaves the same."""
    from .stopping import STOP_SIGNALS

    STOP_SIGNALS.install()


@main.command("list")
@click.pass_context
def list_(ctx):
    """List the connector blocks and the runtime each one runs in (no connector code is loaded)."""
    from .sources.lockfile import LockFile

    project = _project(ctx)
    render.print_blocks(project, LockFile.load(project.lock_path))


@main.command()
@click.argument("blocks", nargs=-1)
@click.option("--require-secrets", is_flag=True,
              help="Unset ${SECRET} references are errors (default: warnings, so validate works as a pull-request check).")
@click.pass_context
def validate(ctx, blocks, require_secrets):
    """Check connectors.yaml: structure, secret references, connectors.lock and each block's config against its
    connector's spec. Exit 2 on any problem; unset secrets are warnings unless --require-secrets."""
    from .sources.connector import Connector, prepare
    from .sources.lockfile import LockFile

    project = _project(ctx)
    names = list(blocks) or list(project.blocks)
    lock = LockFile.load(project.lock_path)
    problems = []
    for name in names:
        try:
            block = project.block(name)
            notes, connector = [], None
            if block.package:
                connector = Connector(block, lock=lock, persist=False)
                stale = connector.stale()
                if stale:
                    raise ConfigError(f"{project.lock_path}: block {name!r}: {stale}; run `ingest install {name}`")
                if lock.get(name) is None:
                    notes.append(f"not in {project.lock_path.name} yet: `ingest install {name}` pins its release")
            warnings = prepare(block, require_secrets=require_secrets, connector=connector)
            click.echo(f"ok    {name:<16} {render.runtime_text(block, lock) if block.package else block.source_label}")
            for line in notes + warnings:
                click.echo(f"warn  {name:<16} {line}")
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)


@main.command()
@click.argument("blocks", nargs=-1)
@click.option("--upgrade", is_flag=True, help="Re-resolve unpinned blocks to the newest release (default: keep the lock's).")
@click.pass_context
def install(ctx, blocks, upgrade):
    """Fetch each block's connector release, build its environment if it runs isolated, and pin it in
    connectors.lock (all 'source:' blocks by default). Run it while building an image so pods start ready."""
    from rich.console import Console
    from rich.table import Table

    from .sources.connector import Connector
    from .sources.lockfile import LockFile

    project = _project(ctx)
    names = list(blocks) or [n for n, b in project.blocks.items() if b.package]
    lock = LockFile.load(project.lock_path)
    table = Table("block", "connector", "runtime", "why", box=None)
    for name in names:
        block = project.block(name)
        if not block.package:
            table.add_row(name, block.source_label, "in_process", "nothing to install")
            continue
        entry = Connector(block, lock=lock).install(upgrade=upgrade)
        table.add_row(name, f"{entry.source}=={entry.version}", entry.runtime, entry.reason)
    Console(width=220).print(table)


@main.command()
@click.argument("connector")
@click.option("--team", required=True, help="The team that owns the block (who hears when it breaks).")
@click.option("--name", help="Block name (default: from the connector, e.g. zendesk_support).")
@click.option("--stream", "streams", multiple=True, help="Streams to sync (repeatable; default: the first, others listed as comments).")
@click.pass_context
def add(ctx, connector, team, name, streams):
    """Append a block for CONNECTOR ('stripe', 'airbyte-source-stripe' or 'airbyte-source-stripe==5.14.1') to
    connectors.yaml, pinned to that release (default: the newest), with its required config, secrets as ${...}
    references and its optional settings as comments. Then: export the secrets, `ingest validate`, `ingest check`."""
    from .sources.scaffold import add_block

    written, text = add_block(ctx.obj["config"], connector, team, name=name, streams=list(streams),
                              notify=lambda line: click.echo(f"  ⋯ {line}", err=True))
    click.echo(text.rstrip("\n"))
    click.echo(f"\nadded block {written!r} to {ctx.obj['config']}. Next: set the ${{...}} secrets above, then "
               f"`ingest validate {written}` and `ingest check {written}`; `ingest install {written}` locks the release.",
               err=True)


@main.command()
@click.argument("block")
@click.pass_context
def spec(ctx, block):
    """Print the connector's config spec (JSON schema)."""
    click.echo(json.dumps(_manager(ctx).spec(block), indent=2))


@main.command()
@click.argument("block")
@click.pass_context
def check(ctx, block):
    """Check that the block's connector can connect with its config."""
    _quiet_connector(ctx)
    ok, message = _manager(ctx, resolve=block).check(block)
    if ok:
        click.echo(f"{block}: check succeeded")
        return
    click.echo(f"{block}: check failed: {message}", err=True)
    ctx.exit(1)


@main.command()
@click.argument("block")
@click.option("--json", "as_json", is_flag=True, help="Print the full catalog as JSON.")
@click.pass_context
def discover(ctx, block, as_json):
    """List the streams the connector offers."""
    _quiet_connector(ctx)
    catalog = _manager(ctx, resolve=block).discover(block)
    if as_json:
        from .sources.protocol import catalog_to_dict

        click.echo(json.dumps(catalog_to_dict(catalog), indent=2, default=str))
        return
    render.print_catalog(catalog)


@main.command()
@click.argument("block")
@click.option("--stream", "streams", multiple=True, help="Only these streams (repeatable).")
@click.option("--full-refresh", is_flag=True, help="Ignore saved state, re-read everything, replace the tables atomically.")
@click.option("--destination", help="'duckdb', 'snowflake' or a path to a .duckdb file (default: the block's).")
@click.option("--wait", type=float, default=0.0, show_default=True,
              help="Seconds to wait for another run of the same streams (or a DuckDB file in use) instead of refusing.")
@click.pass_context
def run(ctx, block, streams, full_refresh, destination, wait):
    """Sync a connector block into its destination."""
    manager = _manager(ctx, progress=render.progress_printer(), resolve=block)
    click.echo(f"{block}: syncing {', '.join(streams) or 'all streams'}{' (full refresh)' if full_refresh else ''}", err=True)
    result = manager.run(block, streams=list(streams) or None, full_refresh=full_refresh, destination=destination, wait=wait)
    render.print_summary(result)
    if not result.ok:
        err = result.error
        where = f" in stream {err.stream}" if err.stream else ""
        click.echo(f"error: sync of {block} failed{where} [{err.failure_type or 'error'}]: {REDACTOR.redact(str(err))}", err=True)
        click.echo("       data and state committed before the failure are kept; rerun to resume.", err=True)
        ctx.exit(1)


@main.group()
def state():
    """Show or reset a block's saved state (cursors)."""


@state.command("show")
@click.argument("block")
@click.option("--destination", help="'duckdb', 'snowflake' or a .duckdb path (default: the block's).")
@click.option("--wait", type=float, default=30.0, show_default=True,
              help="Seconds to wait for a DuckDB file a run is writing (the run lets readers in between commits).")
@click.pass_context
def state_show(ctx, block, destination, wait):
    """Print the block's saved cursors (reads only: never creates or writes the warehouse)."""
    from .sync.state import stream_state_blob

    stored = _manager(ctx).state(block, destination, wait=wait)
    if not stored:
        click.echo(f"{block}: no saved state (the next run reads everything)")
        return
    for key, value in sorted(stored.items()):
        click.echo(f"{block}.{key}: {json.dumps(stream_state_blob(value), default=str)}")


@state.command("reset")
@click.argument("block")
@click.option("--stream", "streams", multiple=True, help="Only these streams (repeatable).")
@click.option("--destination", help="'duckdb', 'snowflake' or a .duckdb path (default: the block's).")
@click.pass_context
def state_reset(ctx, block, streams, destination):
    removed = _manager(ctx).reset_state(block, list(streams) or None, destination)
    click.echo(f"{block}: removed {removed} state entr{'y' if removed == 1 else 'ies'}; the next run reads from the start")


@main.command()
@click.option("--team", help="Only this team's blocks.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per stream.")
@click.option("--wait", type=float, default=30.0, show_default=True,
              help="Seconds to wait for a DuckDB file a run is writing (the run lets readers in between commits).")
@click.pass_context
def status(ctx, team, as_json, wait):
    """Owner, last load, last failure, pending events and freshness of every stream.
    Exits 1 when anything is late or failing (gate a downstream job, page a team)."""
    from .status import project_status

    project = _project(ctx)
    if team and team not in {b.team for b in project.blocks.values()}:
        raise ConfigError(f"--team: no block is owned by {team!r} (teams: {', '.join(sorted({b.team for b in project.blocks.values()}))})")
    rows = project_status(project, team=team, wait=wait)
    if as_json:
        for r in rows:
            click.echo(json.dumps(r.as_dict(), default=str))
    else:
        render.print_status(rows)
    for r in rows:
        for note in r.unreadable[:5]:  # a damaged ledger is reported, never a crash; status uses the rows it can read
            click.echo(f"warning: {r.block}.{r.stream}: unreadable ledger row: {note}", err=True)
        if len(r.unreadable) > 5:
            click.echo(f"warning: {r.block}.{r.stream}: {len(r.unreadable) - 5} more unreadable ledger rows (--json lists them)", err=True)
    problems = [r for r in rows if r.problem]
    if problems:
        click.echo("attention: " + ", ".join(r.problem_text for r in problems), err=True)
        ctx.exit(1)


@main.command("describe")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--destination", help="'duckdb', 'snowflake' or a .duckdb path (default: the block's).")
@click.option("--wait", type=float, default=30.0, show_default=True,
              help="Seconds to wait for a DuckDB file a run is writing (the run lets readers in between commits).")
@click.pass_context
def describe_(ctx, name, as_json, destination, wait):
    """Who owns a table, where it came from, what each column means: `ingest describe jira_issues` (a table) or
    `ingest describe jira.issues` (a block's stream). Reads the warehouse only; works while a run writes."""
    from .describe import describe

    d = describe(_project(ctx), name, destination, wait)
    if as_json:
        click.echo(json.dumps(d.as_dict(), default=str))
    else:
        render.print_description(d)


@main.group()
def events():
    """The "data landed" / "data failed" event ledger: list, and re-publish pending events."""


@events.command("list")
@click.option("--block", help="Only this block's events.")
@click.option("--status", type=click.Choice(["pending", "published", "recorded"]), help="Only events in this state.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--destination", help="'duckdb', 'snowflake' or a .duckdb path (default: the project's).")
@click.option("--json", "as_json", is_flag=True, help="Print the ledger rows as JSON lines.")
@click.option("--wait", type=float, default=30.0, show_default=True,
              help="Seconds to wait for a DuckDB file a run is writing (the run lets readers in between commits).")
@click.pass_context
def events_list(ctx, block, status, limit, destination, as_json, wait):
    """List ledger events (reads only: never creates or writes the warehouse)."""
    from .destinations import open_for_reading

    project = _project(ctx)
    dest = open_for_reading(project, project.block(block) if block else None, destination, wait)
    if dest is None:
        click.echo("no events: nothing has been synced to this warehouse yet", err=True)
        return
    with dest:
        rows = dest.list_events(block=block, status=status)
    rows = rows[-limit:] if limit else rows
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=str))
        return
    render.print_events(rows)


@events.command("replay")
@click.option("--block", help="Only this block's pending events.")
@click.option("--destination", help="'duckdb', 'snowflake' or a .duckdb path (default: the project's).")
@click.pass_context
def events_replay(ctx, block, destination):
    """Publish every pending event once (in order); exit 1 if some still could not be delivered."""
    from .events import WebhookPublisher, publish_pending, webhook_url
    from .destinations import open_destination

    project = _project(ctx)
    url = webhook_url(project.defaults.events.webhook)
    if not url:
        raise ConfigError("no webhook configured: set defaults.events.webhook in connectors.yaml or INGEST_EVENTS_WEBHOOK")
    with open_destination(project, project.block(block) if block else None, destination) as dest:
        sent, errors = publish_pending(dest, WebhookPublisher(url), block=block)
    click.echo(f"published {sent} pending event{'s' if sent != 1 else ''}")
    for err in errors:
        click.echo(f"error: still pending: {err}", err=True)
    if errors:
        ctx.exit(1)


@events.command("trigger")
@click.argument("flow_file", type=click.Path())
@click.option("--destination", help="'duckdb', 'snowflake' or a .duckdb path (default: the project's).")
@click.pass_context
def events_trigger(ctx, flow_file, destination):
    """Start a downstream flow locally from the latest ledger events it is triggered by (a local stand-in for the
    Argo Events sensor: same event names, same payload → Parameters mapping)."""
    from .destinations import open_destination
    from .triggers import flow_triggers, latest_payloads, parameters_for, run_flow

    triggers = flow_triggers(flow_file)
    project = _project(ctx)
    with open_destination(project, None, destination) as dest:
        payloads = latest_payloads(dest, [t["name"] for t in triggers])
    params = parameters_for(triggers, payloads)
    click.echo(f"starting {flow_file} with " + ", ".join(f"{k}={v}" for k, v in params.items()), err=True)
    status, pathspec = run_flow(flow_file, params)
    click.echo(f"{pathspec}: {status}")
    if status != "successful":
        ctx.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
