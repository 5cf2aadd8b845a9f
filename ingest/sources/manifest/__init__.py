"""Declarative-manifest plumbing for Airbyte low-code connectors run in-process on the runner's own CDK.

Connector packages are not installed in the runner's environment: the connectors cache holds, per release, the
wheel's files only (`ConnectorCache.ensure_files`, a "files dir" containing e.g. ``source_jira/`` and its
dist-info). Every function that reads package files therefore takes that files dir explicitly.

Everything here except `in_process_blocker`, `build_declarative_source`, `bounded_requests` and
`SchemaFile.get_json_schema` is import-light (stdlib, PyYAML, packaging): `ingest validate` reads manifests and
specs and must stay fast, so nothing here imports `airbyte_cdk` or the connector package at module level.

One module per concern; this package's names below are the ones the rest of the runner uses:

* `package`     - a connector package in a files dir: its import name, directory, `register_package`
* `loading`     - reading a manifest or spec file (`load_package_manifest`, `connector_spec`)
* `tree`        - a raw manifest dict: ``$ref``s, effective keys, class names, `apply_override`
* `schemas`     - `pin_package_schemas` and its `SchemaFile` loader
* `versions`    - which CDK: the runner's, the manifest's, the components'
* `blocker`     - `in_process_blocker` (with `removed_api`: calls to CDK methods that no longer exist)
* `bounded`     - check and discover without retries (`bounded_requests`, `repaired_check`, `network_needs`)
* `build`       - `build_declarative_source`, the one place that builds a CDK source

Override files
--------------
An override is a YAML mapping deep-merged into the connector's RAW packaged manifest (before `$ref`
resolution; see `apply_override`). Two conventions on top of the plain merge:

* A top-level ``spec:`` section extends the connector's spec. Packaged connectors such as
  airbyte-source-jira 4.0.0 keep their spec in ``spec.json`` and have no ``spec`` in the manifest, so an
  override's ``spec: {type: Spec, connection_specification: {properties: {...}}}`` is partial on its own.
  `connector_spec` returns the package's spec file with the manifest's ``spec.connection_specification``
  deep-merged on top (manifest wins), so extra keys an override declares (``base_url`` ...) are part of the
  spec the runner validates configs against.
* A ``max_retries`` anywhere in the manifest may be a Jinja template over ``config`` (e.g.
  ``"{{ config.get('max_retries', 10) }}"``). The CDK types ``max_retries`` as a plain int and does not
  interpolate it, so `build_declarative_source` renders such values against the sync's config before it
  hands the manifest to the CDK. Nothing else is pre-rendered.

Packages and schemas
--------------------
`register_package` makes a files dir's package importable without running its ``__init__.py`` (which imports the
package's Python source and, often, CDK modules that no longer exist), so the manifest's ``source_x.components...``
classes import. `load_package_manifest` pins every stream's schema to an absolute file (`pin_package_schemas`), so
no schema depends on which ``source_*`` module happens to be in ``sys.modules``.
"""
from __future__ import annotations

from .bounded import BoundedRequests, bounded_requests, network_needs, repaired_check
from .blocker import in_process_blocker
from .build import build_declarative_source
from .loading import connector_spec, load_package_manifest, load_yaml_file
from .package import package_dir, package_module, register_package
from .schemas import SchemaFile, pin_package_schemas
from .tree import apply_override, static_stream_names
from .versions import components_written_for, manifest_cdk_version, runner_cdk_version

__all__ = [
    "package_module",
    "package_dir",
    "register_package",
    "load_yaml_file",
    "load_package_manifest",
    "pin_package_schemas",
    "apply_override",
    "connector_spec",
    "runner_cdk_version",
    "manifest_cdk_version",
    "in_process_blocker",
    "components_written_for",
    "build_declarative_source",
    "bounded_requests",
    "BoundedRequests",
    "repaired_check",
    "static_stream_names",
    "network_needs",
    "SchemaFile",
]
