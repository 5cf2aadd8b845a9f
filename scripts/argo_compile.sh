#!/usr/bin/env bash
# Compile the Argo objects offline (no cluster, no network) — see docs/deploy.md.
#
#   scripts/argo_compile.sh            run tests/test_argo_compile.py and keep every compiled object as JSON in
#                                      ${ARGO_COMPILE_OUT:-build/argo} (WorkflowTemplates, CronWorkflow, Sensors)
#   scripts/argo_compile.sh BLOCK      print BLOCK's WorkflowTemplate (`argo-workflows create --only-json`),
#                                      compiled against a loopback S3 stand-in (moto)
#
# Needs the optional packages: pip install moto flask flask-cors && pip install 'kubernetes<33'
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export METAFLOW_USER="${METAFLOW_USER:-$(id -un | sed 's/^root$/ingest-dev/')}"

if ! "$PY" -c 'import moto.server, flask, flask_cors, kubernetes' 2>/dev/null; then
  echo "missing optional packages; install them with:" >&2
  echo "  $PY -m pip install moto flask flask-cors && $PY -m pip install 'kubernetes<33'" >&2
  exit 2
fi

if [ $# -eq 0 ]; then
  export ARGO_COMPILE_OUT="${ARGO_COMPILE_OUT:-build/argo}"
  "$PY" -m pytest -q -p no:cacheprovider tests/test_argo_compile.py
  echo "compiled objects: $ARGO_COMPILE_OUT/" >&2
  ls -1 "$ARGO_COMPILE_OUT" >&2
  exit 0
fi

block="$1"
tmp="$(mktemp -d)"
trap 'kill "$s3_pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
"$PY" -m tests.fakes.s3_server > "$tmp/env" &
s3_pid=$!
for _ in $(seq 100); do grep -q '^# pid' "$tmp/env" 2>/dev/null && break; sleep 0.1; done
grep -q '^# pid' "$tmp/env" || { echo "the S3 stand-in did not start" >&2; exit 1; }
# shellcheck disable=SC1091
. "$tmp/env"
export METAFLOW_HOME="$tmp"   # ignore ~/.metaflowconfig: only the variables below count
export METAFLOW_KUBERNETES_NAMESPACE="${METAFLOW_KUBERNETES_NAMESPACE:-ingest}"
export METAFLOW_KUBERNETES_CONTAINER_IMAGE="${METAFLOW_KUBERNETES_CONTAINER_IMAGE:-registry.example.com/data/ingest:dev}"
"$PY" flows/ingest_flow.py --config-value connector "{\"name\": \"$block\"}" argo-workflows create --only-json
