"""Names in OpenLineage terms: run ids, the Metaflow parent, and the namespaces and names of the datasets a sync reads
and writes (per the OpenLineage naming spec).

Dataset namespaces are identifiers and are NOT redacted (see the package docstring): they come only from non-secret
config keys and carry just scheme://host[:port]. The destination side is the destination's own `identity`
(`DestinationIdentity`, data the destination gives), never a parsed `describe()` string.
"""
from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ..destinations.base import DestinationIdentity

log = logging.getLogger("ingest.lineage")


def ingest_run_uuid(run_id: str) -> str:
    """The OpenLineage runId of an ingest run: deterministic, so anyone holding our run id can find the run."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ingest:{run_id}"))


def metaflow_run_uuid(run_pathspec: str) -> str:
    """The OpenLineage runId we give a Metaflow run (`IngestFlow/123`); a downstream flow can compute the same."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"metaflow:{run_pathspec}"))


def metaflow_parent(pathspec: str | None) -> tuple[str, str] | None:
    """`IngestFlow/123/sync/4` (a task) or `IngestFlow/123` (a run) → ('IngestFlow', 'IngestFlow/123').
    None outside Metaflow (no pathspec, or the CLI's `cli/<run id>`)."""
    parts = [p for p in str(pathspec or "").split("/") if p]
    if len(parts) < 2 or parts[0] == "cli":
        return None
    return parts[0], f"{parts[0]}/{parts[1]}"


# ---------------------------------------------------------------- naming


def url_origin(url: str) -> str | None:
    """scheme://host[:port] of a URL, never its user:password, path or query."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        if not parts.scheme or not host:
            return None
        host = f"[{host}]" if ":" in host else host
        return f"{parts.scheme.lower()}://{host}{f':{parts.port}' if parts.port else ''}"
    except ValueError:
        return None


def _connector_name(block) -> str:
    """airbyte-source-jira → jira; a manifest → its file stem; a puller → its name."""
    s = block.spec
    if s.source:
        return block.package.removeprefix("airbyte-source-")
    if s.manifest:
        return Path(s.manifest).stem
    return str(s.puller)


def _scheme(text: str) -> str:
    """Something usable as a URI scheme: lowercase letters, digits, '+', '-', '.'."""
    return re.sub(r"[^a-z0-9+.-]+", "-", text.lower()).strip("-") or "source"


def source_namespace(block) -> str:
    """Where a block reads from, as a dataset namespace:
    - `base_url` in the config → its scheme://host[:port] (`http://127.0.0.1:8080`, `https://api.greenscreens.ai`);
    - `domain` → `<connector>://<domain>` (`jira://acme.atlassian.net`);
    - a puller without base_url → the API host it uses by default (from its spec);
    - otherwise the connector itself, locally (`airbyte-source-faker://local`)."""
    config = getattr(block, "config", None) or {}
    base_url = config.get("base_url")
    if isinstance(base_url, str) and (origin := url_origin(base_url)):
        return origin
    domain = config.get("domain")
    if isinstance(domain, str) and domain.strip():
        host = url_origin(domain if "://" in domain else f"https://{domain}")
        if host:
            return f"{_scheme(_connector_name(block))}://{host.split('://', 1)[1]}"
    if block.spec.puller:
        try:
            from ..sources.pullers import puller_spec

            default = ((puller_spec(block.spec.puller) or {}).get("properties") or {}).get("base_url", {}).get("default")
            if isinstance(default, str) and (origin := url_origin(default)):
                return origin
        except Exception:  # noqa: BLE001 - naming must never fail an event
            log.debug("lineage: no default base_url for puller %s", block.spec.puller, exc_info=True)
    s = block.spec
    label = block.package or (f"manifest-{Path(s.manifest).stem}" if s.manifest else f"puller-{s.puller}")
    return f"{_scheme(label)}://local"


def source_dataset(block, stream: str) -> str:
    """The dataset name of a stream a block reads: `<block>.<stream>`. The stream alone is not enough: two blocks on
    one API host (two Jira sites behind one proxy, two accounts of one API) often have streams of the same name,
    and their data is not the same dataset."""
    return f"{block.name}.{stream}"


def destination_dataset(destination: "DestinationIdentity | None", table: str) -> tuple[str, str, str]:
    """(namespace, name, kind) of a table in a destination, from its identity (`Destination.identity`), as
    OpenLineage's dbt integration names the same table (so a dbt model reading it links to our output):
    DuckDB `duckdb://<absolute path>` + `<file stem>.main.<table>`; Snowflake `snowflake://<account>` +
    `DATABASE.SCHEMA.TABLE` in Snowflake's own (upper-case) spelling. Without an identity: `unknown`."""
    if destination is None:
        return "unknown", table, "unknown"
    return destination.namespace, destination.dataset(table), destination.kind
