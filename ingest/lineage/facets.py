"""OpenLineage events and their facets, built from a sync's block, run record, targets and results.

Pure builders (no I/O): `build_event` gives the RunEvent the emitter sends. Every free text (error messages,
descriptions, tags) goes through the redactor; dataset names come from `naming`.
"""
from __future__ import annotations

import datetime as dt
import logging
import re

from ..secrets import REDACTOR
from .naming import destination_dataset, ingest_run_uuid, metaflow_run_uuid, source_dataset, source_namespace
from .warehouse import warehouse_inputs

METAFLOW_NAMESPACE = "metaflow"
TEAM_OWNER_TYPE = "TEAM"
_ADDED_COLUMN = re.compile(r"^added column (\S+) (.+)$")  # StreamTarget.schema_changes entries

log = logging.getLogger("ingest.lineage")


def build_event(state: str, *, namespace: str, job: str, block, run, targets: dict, results: dict | None,
                error: BaseException | None, destination=None, parent: tuple[str, str] | None = None,
                pathspec: str | None = None, streams: list[str] | None = None):
    """The RunEvent of one moment (START, COMPLETE, FAIL) of a sync: job `job` in `namespace`, the warehouse tables
    the block's config reads and the source's streams as inputs, the tables in `destination` (a DestinationIdentity)
    as outputs, the Metaflow run `parent` if any; `streams` (the run's) go into the tags."""
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState

    producer = _producer()
    if state == "START":
        when = run.started_at
    else:
        when = run.ended_at or dt.datetime.now(dt.timezone.utc)
    return RunEvent(
        eventType=RunState[state],
        eventTime=_iso(when),
        run=Run(runId=ingest_run_uuid(run.run_id),
                facets=_run_facets(block, run, error, producer, parent, pathspec, streams)),
        job=Job(namespace=namespace, name=job, facets=_job_facets(block, producer)),
        inputs=[*_warehouse_inputs(block, destination, producer),
                *(_input(block, t, (results or {}).get(name), producer) for name, t in targets.items())],
        outputs=[_output(destination, t, (results or {}).get(name), state, producer) for name, t in targets.items()],
        producer=producer,
    )


def _run_facets(block, run, error, producer, parent: tuple[str, str] | None, pathspec: str | None,
                streams: list[str] | None) -> dict:
    from openlineage.client.facet_v2 import error_message_run, parent_run, processing_engine_run, tags_run

    facets: dict = {
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=_version("ingest"), name="ingest", openlineageAdapterVersion=_version("openlineage-python"),
            producer=producer,
        ),
    }
    # The job is the block whatever the run covers; which of its streams this run synced is said here.
    tags = [("ingest.run_id", run.run_id), ("ingest.block", block.name), ("ingest.team", block.team),
            ("ingest.source", block.source_label), ("ingest.streams", ",".join(sorted(set(streams or []))))]
    if pathspec and parent:
        tags.append(("metaflow.pathspec", pathspec))
    facets["tags"] = tags_run.TagsRunFacet(
        tags=[tags_run.TagsRunFacetFields(key=k, value=REDACTOR.redact(v), source="INGEST") for k, v in tags if v],
        producer=producer,
    )
    if parent:
        flow, run_pathspec = parent
        parent_uuid = metaflow_run_uuid(run_pathspec)
        kwargs: dict = {}
        if "root" in {f.name for f in _attrs_fields(parent_run.ParentRunFacet)}:
            kwargs["root"] = parent_run.Root(run=parent_run.RootRun(runId=parent_uuid),
                                             job=parent_run.RootJob(namespace=METAFLOW_NAMESPACE, name=flow))
        facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=parent_uuid), job=parent_run.Job(namespace=METAFLOW_NAMESPACE, name=flow),
            producer=producer, **kwargs,
        )
    if error is not None:
        kind = getattr(error, "failure_type", None) or "error"
        message = run.error or f"{kind}: {error}"
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=REDACTOR.redact(message), programmingLanguage="python", producer=producer,
        )
    return facets


def _attrs_fields(cls):
    import attr

    return attr.fields(cls)


def _job_facets(block, producer) -> dict:
    from openlineage.client.facet_v2 import documentation_job, job_type_job, ownership_job

    facets: dict = {
        "jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="INGEST", jobType="SYNC", producer=producer),
        "ownership": ownership_job.OwnershipJobFacet(
            owners=[ownership_job.Owner(name=f"team:{block.team}", type=TEAM_OWNER_TYPE)], producer=producer,
        ),
    }
    description = getattr(block.spec, "description", None)
    if description:
        facets["documentation"] = documentation_job.DocumentationJobFacet(description=REDACTOR.redact(description), producer=producer)
    return facets


def _warehouse_inputs(block, destination, producer) -> list:
    """The warehouse tables the block's config reads (a puller's `{from: warehouse, query: ...}`), named like our
    outputs (warehouse.py); they come first, as the lineage reads: shipments → the API → our table."""
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.facet_v2 import datasource_dataset

    return [InputDataset(namespace=namespace, name=name, facets={
                "dataSource": datasource_dataset.DatasourceDatasetFacet(name=destination.kind, uri=namespace,
                                                                        producer=producer)})
            for namespace, name in warehouse_inputs(getattr(block, "config", None), destination)]


def _input(block, target, result, producer):
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.facet_v2 import datasource_dataset

    namespace = source_namespace(block)
    facets = {
        "dataSource": datasource_dataset.DatasourceDatasetFacet(name=block.source_label, uri=namespace, producer=producer),
        "schema": _schema([(c, t, _description(target, c)) for c, t in target.columns.items()], producer),
    }
    input_facets: dict = {}
    if result is not None:
        try:
            from openlineage.client.facet_v2 import input_statistics_input_dataset as stats

            input_facets["inputStatistics"] = stats.InputStatisticsInputDatasetFacet(rowCount=int(result.records), producer=producer)
        except ImportError:  # older clients have no input statistics facet
            pass
    return InputDataset(namespace=namespace, name=source_dataset(block, target.stream), facets=facets,
                        inputFacets=input_facets)


def _output(destination, target, result, state: str, producer):
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.facet_v2 import (datasource_dataset, lifecycle_state_change_dataset,
                                             output_statistics_output_dataset, ownership_dataset)

    namespace, name, kind = destination_dataset(destination, target.table)
    facets: dict = {
        "dataSource": datasource_dataset.DatasourceDatasetFacet(name=kind, uri=namespace, producer=producer),
        "schema": _schema(_output_columns(target, kind), producer),
        "ownership": ownership_dataset.OwnershipDatasetFacet(
            owners=[ownership_dataset.Owner(name=f"team:{target.team}", type=TEAM_OWNER_TYPE)], producer=producer,
        ),
    }
    output_facets: dict = {}
    if state == "COMPLETE" and target.staged:
        facets["lifecycleStateChange"] = lifecycle_state_change_dataset.LifecycleStateChangeDatasetFacet(
            lifecycleStateChange=lifecycle_state_change_dataset.LifecycleStateChange.OVERWRITE, producer=producer,
        )
    # Rows are counted when they are committed: on COMPLETE, and on FAIL for append/dedup loads (their checkpoints
    # stay). A failed staged (replace) load may or may not have been swapped in, so no count is claimed for it.
    if result is not None and (state == "COMPLETE" or not target.staged):
        output_facets["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
            rowCount=int(result.rows_written), producer=producer,
        )
    return OutputDataset(namespace=namespace, name=name, facets=facets, outputFacets=output_facets)


def _output_columns(target, kind: str) -> list[tuple[str, str, str | None]]:
    """(column, SQL type, description) of the table: the stream's fields, the columns this run added, ours.
    Descriptions are looked up by field, before Snowflake's upper-casing renames the column."""
    sql = _sql_types(kind)
    columns = {c: sql.get(t, t) for c, t in target.columns.items()}
    for change in target.schema_changes or []:
        m = _ADDED_COLUMN.match(change)
        if m:
            columns[m.group(1)] = m.group(2)
    for c, t in _meta_columns().items():
        columns.setdefault(c, sql.get(t, t))
    upper = kind == "snowflake"
    return [(c.upper() if upper else c, t, _description(target, c)) for c, t in columns.items()]


def _description(target, field: str) -> str | None:
    """What a field means: the stream's schema says it (`StreamTarget.descriptions`), ours are described once
    (META_DESCRIPTIONS) for targets that do not carry them. Redacted like every free text."""
    text = (getattr(target, "descriptions", None) or {}).get(field) or _meta_descriptions().get(field)
    return REDACTOR.redact(text) if text else None


def _schema(columns: list[tuple[str, str, str | None]], producer):
    from openlineage.client.facet_v2 import schema_dataset

    return schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=c, type=t, description=d) for c, t, d in columns],
        producer=producer,
    )


def _sql_types(kind: str) -> dict[str, str]:
    """Ingest column type → the destination's SQL type (the schema facet shows what the warehouse holds)."""
    try:
        if kind == "duckdb":
            from ..destinations.duckdb import SQL_TYPES

            return dict(SQL_TYPES)
        if kind == "snowflake":
            from ..destinations.snowflake.sql import SQL_TYPES

            return dict(SQL_TYPES)
    except Exception:  # noqa: BLE001 - fall back to ingest's own type names
        log.debug("lineage: no SQL types for %s", kind, exc_info=True)
    return {}


def _meta_columns() -> dict[str, str]:
    from ..destinations.typing import META_COLUMNS

    return dict(META_COLUMNS)


def _meta_descriptions() -> dict[str, str]:
    from ..destinations.descriptions import META_DESCRIPTIONS

    return META_DESCRIPTIONS


# ---------------------------------------------------------------- small helpers


def _iso(value) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.isoformat()
    return dt.datetime.now(dt.timezone.utc).isoformat()


_VERSIONS: dict[str, str] = {}


def _version(package: str) -> str:
    if package not in _VERSIONS:
        try:
            from importlib.metadata import version

            _VERSIONS[package] = version(package)
        except Exception:  # noqa: BLE001
            _VERSIONS[package] = "unknown"
    return _VERSIONS[package]


def _producer() -> str:
    """The `producer` URI of our events and facets."""
    return f"urn:ingest:{_version('ingest')}"
