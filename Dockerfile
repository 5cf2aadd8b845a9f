# The image every IngestFlow pod runs (METAFLOW_KUBERNETES_CONTAINER_IMAGE): the runner, plus every connector release
# that connectors.lock pins, built into the connectors cache at image build time so pods start without a download.
# Build it from the repository root at the commit you deploy:  docker build -t ingest:$(git rev-parse --short HEAD) .
# (Not built in CI here: these machines have no Docker engine. `ingest install` itself is tested, see docs/deploy.md.)
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    INGEST_CONNECTORS_DIR=/opt/ingest/connectors \
    UV_CACHE_DIR=/tmp/uv-cache

WORKDIR /opt/ingest/app
COPY pyproject.toml README.md ./
COPY ingest ./ingest
RUN pip install --no-cache-dir '.[snowflake,flows]'

# The connectors: exactly the releases connectors.lock names (an unlocked, unpinned block fails the build here,
# as it would fail the deploy). Each isolated connector gets its own virtualenv; manifests only their files.
COPY connectors.yaml connectors.lock ./
COPY overrides ./overrides
RUN ingest install && rm -rf "$UV_CACHE_DIR" && chmod -R a+rX "$INGEST_CONNECTORS_DIR"

# Pods run as a non-root user; the connectors cache is read-only for them (a release missing from the image would be
# built at task start into INGEST_CONNECTORS_DIR — point it at a writable volume if you rely on that).
RUN useradd --create-home ingest
USER ingest
