"""The Argo deployment, compiled offline: what `argo-workflows create` builds and sends to a cluster.

No cluster and no network: the code package goes to moto's S3 server on 127.0.0.1 (tests/fakes/s3_server.py) and
the Kubernetes API is an in-memory fake on 127.0.0.1 (below) that records the objects Metaflow creates. The flows are
deployed with the exact commands of docs/deploy.md, in a subprocess, from the repository root, with only the
environment a platform team provides (METAFLOW_HOME points at an empty directory: no ~/.metaflowconfig leaks in).

Checked here: the WorkflowTemplate (`--only-json`) of every block in connectors.yaml — cron, @project, one template per
step, the sync pods' CPU/memory (the block's `resources:` or the default), @retry, image, namespace; the CronWorkflow,
the embedded `connectors` config (override files included) in the uploaded code package, and the Argo Events Sensors
of the downstream flows (event-name filters, payload → Parameter mappings). NOT checked (needs a real cluster): that
Argo accepts these objects, that pods start from the image, that the webhook → EventSource → Sensor chain fires. See
docs/deploy.md.

Optional packages (skipped when missing): `pip install moto flask flask-cors` then `pip install 'kubernetes<33'`.
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

pytest.importorskip("moto.server", reason="optional: pip install moto flask flask-cors")
pytest.importorskip("flask", reason="optional: pip install moto flask flask-cors")
pytest.importorskip("flask_cors", reason="optional: pip install moto flask flask-cors")
pytest.importorskip("kubernetes", reason="optional: pip install 'kubernetes<33'")

from ingest.config import DEFAULT_RESOURCES  # noqa: E402
from ingest.triggers import flow_triggers  # noqa: E402

from .fakes.s3_server import S3Server  # noqa: E402 - after the importorskip

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "ingest"
IMAGE = "registry.example.com/data/ingest:0.1.0"
SERVICE_INTERNAL_URL = "http://metaflow-metadata-service.metaflow:8080"
ARGO_EVENTS = {
    "METAFLOW_ARGO_EVENTS_EVENT": "metaflow-event",
    "METAFLOW_ARGO_EVENTS_EVENT_SOURCE": "argo-events-webhook",
    "METAFLOW_ARGO_EVENTS_SERVICE_ACCOUNT": "operate-workflow-sa",
    "METAFLOW_ARGO_EVENTS_WEBHOOK_URL": "http://argo-events-webhook-eventsource-svc.argo-events:12000/metaflow-event",
}
CONNECTORS = yaml.safe_load((ROOT / "connectors.yaml").read_text())
BLOCKS = sorted(CONNECTORS["connectors"])
# The platform's floor under every pod's request. Metaflow sizes a Kubernetes pod by the larger of `@resources` and
# `@kubernetes`'s defaults (1 CPU, 4096 MB unless these are set: Netflix/metaflow#2464), so without a lower floor a
# block's smaller `resources:` would be silently raised to 4096 MB. docs/deploy.md asks the platform for these.
KUBERNETES_FLOOR = {"METAFLOW_KUBERNETES_CPU": "0.5", "METAFLOW_KUBERNETES_MEMORY": "512"}
# metaflow's vendored yaml imports the deprecated top-level `_yaml` when its Kubernetes plugin loads: not ours
pytestmark = pytest.mark.filterwarnings("ignore:The _yaml extension module:DeprecationWarning")
ARTIFACTS = os.environ.get("ARGO_COMPILE_OUT")  # scripts/argo_compile.sh: keep the compiled objects for review


class FakeKubeAPI:
    """Just enough of the Kubernetes API for Metaflow's ArgoClient: namespaced custom objects (argoproj.io) kept in
    memory — GET (404 when absent), POST (create), PUT (replace), DELETE. Every request is recorded."""

    def __init__(self):
        self.objects: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self._version = 0
        lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _status(self, code: int, reason: str) -> None:
                self._reply(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                                   "message": f"{reason}: {self.path}", "code": code})

            def _handle(self) -> None:
                path = self.path.split("?")[0].rstrip("/")
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                with lock:
                    api.requests.append((self.command, path))
                    if path == "/ping":  # the Metaflow metadata service's version probe (same fake server)
                        self.send_response(200)
                        self.send_header("METADATA_SERVICE_VERSION", "2.4.13")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    if self.command == "GET":
                        return self._reply(200, api.objects[path]) if path in api.objects else self._status(404, "NotFound")
                    if self.command == "DELETE":
                        return self._reply(200, {"kind": "Status", "status": "Success"}) if api.objects.pop(path, None) \
                            else self._status(404, "NotFound")
                    if self.command in ("POST", "PUT"):
                        key = f"{path}/{body['metadata']['name']}" if self.command == "POST" else path
                        if self.command == "POST" and key in api.objects:
                            return self._status(409, "AlreadyExists")
                        api._version += 1
                        body["metadata"]["resourceVersion"] = str(api._version)
                        api.objects[key] = body
                        return self._reply(201 if self.command == "POST" else 200, body)
                    return self._status(405, "MethodNotAllowed")

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "not-a-secret"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": NAMESPACE}}],
        }))
        return path

    def get(self, plural: str, name: str) -> dict | None:
        return self.objects.get(f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/{plural}/{name}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        yield server


@pytest.fixture(scope="module")
def kube():
    api = FakeKubeAPI()
    yield api
    api.close()


@pytest.fixture(scope="module")
def deploy_env(s3, kube, tmp_path_factory) -> dict:
    """The environment of a deploy job: what the platform's Metaflow config provides, pointed at the stand-ins."""
    home = tmp_path_factory.mktemp("argo-deploy")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("METAFLOW_", "AWS_", "KUBE", "ARGO_", "INGEST_", "JIRA_"))}
    env.update(s3.metaflow_env())
    env.update(ARGO_EVENTS)
    env.update({
        "METAFLOW_USER": "deployer",
        "METAFLOW_HOME": str(home),                              # no config.json there: only what we set counts
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(home),           # nothing lands in the repository
        "METAFLOW_DEFAULT_METADATA": "service",
        "METAFLOW_SERVICE_URL": kube.url,                        # the deployer's view of the metadata service
        "METAFLOW_SERVICE_INTERNAL_URL": SERVICE_INTERNAL_URL,   # the pods' view
        "METAFLOW_KUBERNETES_NAMESPACE": NAMESPACE,
        "METAFLOW_KUBERNETES_CONTAINER_IMAGE": IMAGE,
        "KUBECONFIG": str(kube.write_kubeconfig(home / "kubeconfig")),
        "PYTHONUNBUFFERED": "1",
        **KUBERNETES_FLOOR,
    })
    return env


def deploy(env: dict, flow: str, *args: str, expect_ok: bool = True) -> subprocess.CompletedProcess:
    """`python flows/<flow> <args>` from the repository root (connectors.yaml and the override files are read there);
    `flow` may also be an absolute path (a flow written by a test)."""
    path = flow if os.path.isabs(flow) else f"flows/{flow}"
    proc = subprocess.run([sys.executable, path, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    if expect_ok:
        assert proc.returncode == 0, f"{flow} {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def keep(name: str, obj: dict) -> None:
    if ARTIFACTS:
        Path(ARTIFACTS).mkdir(parents=True, exist_ok=True)
        (Path(ARTIFACTS) / f"{name}.json").write_text(json.dumps(obj, indent=2))


def load_flow_module(flow: str):
    spec = importlib.util.spec_from_file_location(f"_argo_compile_{Path(flow).stem}", ROOT / "flows" / flow)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def quantity(value: str) -> float:
    """'4096.0M' / '4096M' / '1.0' / '1' / '500m' → a number in the unit Metaflow writes (M for memory, cores)."""
    value = str(value)
    if value.endswith("m") and not value.endswith("Mi"):
        return float(value[:-1]) / 1000
    return float(value.rstrip("Mi").rstrip("M"))


def containers(template: dict) -> dict[str, dict]:
    return {t["name"]: t for t in template["spec"]["templates"] if "container" in t}


def code_package(s3: S3Server, template: dict) -> tarfile.TarFile:
    env = {e["name"]: e.get("value") for e in next(iter(containers(template).values()))["container"]["env"]}
    url = env["METAFLOW_CODE_URL"]
    assert url.startswith(f"s3://{s3.bucket}/"), url
    return tarfile.open(fileobj=io.BytesIO(s3.get(url[len(f"s3://{s3.bucket}/"):])))


# ---------------------------------------------------------------------------------------------------------------------
# IngestFlow: one WorkflowTemplate per block (`--only-json`, no cluster calls at all)
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("block", BLOCKS)
def test_every_block_compiles_to_a_workflow_template(deploy_env, block):
    proc = deploy(deploy_env, "ingest_flow.py", "--config-value", "connector", json.dumps({"name": block}),
                  "argo-workflows", "create", "--only-json")
    wt = json.loads(proc.stdout)
    keep(f"ingest_{block}.workflowtemplate", wt)
    meta = wt["metadata"]
    ann = meta["annotations"]
    assert wt["kind"] == "WorkflowTemplate" and meta["namespace"] == NAMESPACE

    # the block's cron (the CronWorkflow is created from it at deploy time) and its own @project
    assert json.loads(ann["metaflow/cron"])["schedule"] == CONNECTORS["connectors"][block]["schedule"]
    assert ann["metaflow/project_name"] == f"ingest_{block}"
    assert ann["metaflow/project_flow_name"] == f"ingest_{block}.user.deployer.IngestFlow"
    assert ann["metaflow/flow_name"] == "IngestFlow"
    # Argo names drop the underscores and are cut to 45 characters (+ a hash) when longer; the full name stays in
    # the annotations above
    full = f"ingest_{block}.user.deployer.IngestFlow"
    if len(full) <= 45:
        assert meta["name"] == full.replace("_", "").lower()
    else:
        assert len(meta["name"]) <= 45 and re.fullmatch(r"[a-z0-9.-]+\.ingestflow-[a-z0-9]{5}", meta["name"]), meta["name"]

    # one container template per step, all on the platform's image
    steps = containers(wt)
    assert {"start", "sync", "join", "end"} <= set(steps)
    dag = json.loads(ann["metaflow/dag"])["graph_structure"]
    assert dag == ["start", [["sync"]], "join", "end"]
    assert all(steps[s]["container"]["image"] == IMAGE for s in ("start", "sync", "join", "end"))

    # the block's `resources:` (or the default) is what each sync pod requests; @retry reaches the pod spec too
    declared = {**DEFAULT_RESOURCES, **CONNECTORS["connectors"][block].get("resources", {})}
    requests = steps["sync"]["container"]["resources"]["requests"]
    assert quantity(requests["cpu"]) == float(declared["cpu"]), requests
    assert quantity(requests["memory"]) == float(declared["memory"]), requests
    decos = {d.name: d.attributes for d in load_flow_module("ingest_flow.py").IngestFlow.sync.decorators}
    assert steps["sync"]["retryStrategy"]["limit"] == decos["retry"]["times"]

    # the runtime Parameters, with their defaults (the cron uses them)
    params = {p["name"]: p["value"] for p in wt["spec"]["arguments"]["parameters"]}
    assert params == {"destination": '""', "full_refresh": "false"}


def test_connectors_yaml_has_blocks_with_and_without_declared_resources():
    """What makes the compile test above prove something: one block's own `resources:` (different from the default and
    above the platform floor) must reach its template, and a block without one must get the default."""
    blocks = CONNECTORS["connectors"].values()
    declared = [b["resources"] for b in blocks if "resources" in b]
    assert any({**DEFAULT_RESOURCES, **r} != DEFAULT_RESOURCES for r in declared), \
        f"no block in connectors.yaml declares resources other than DEFAULT_RESOURCES {DEFAULT_RESOURCES}: {declared}"
    assert any("resources" not in b for b in blocks), "every block in connectors.yaml declares its resources"
    floor_cpu, floor_memory = (float(KUBERNETES_FLOOR[f"METAFLOW_KUBERNETES_{k}"]) for k in ("CPU", "MEMORY"))
    for r in [DEFAULT_RESOURCES, *declared]:
        assert float(r.get("cpu", floor_cpu)) >= floor_cpu and float(r.get("memory", floor_memory)) >= floor_memory, r


def test_a_block_with_invalid_resources_is_not_deployed(deploy_env, tmp_path):
    """A `resources:` value `ingest validate` refuses also fails the deploy, naming the block and the key."""
    data = json.loads(json.dumps(CONNECTORS))
    data["connectors"]["demo"]["resources"] = {"cpu": 1, "memory": "4GB"}
    path = tmp_path / "connectors.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = deploy(deploy_env, "ingest_flow.py", "--config", "connectors", str(path),
                  "--config-value", "connector", '{"name": "demo"}', "argo-workflows", "create", "--only-json",
                  expect_ok=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "connectors.demo.resources.memory: expected an integer number of MB (e.g. 1024) or a string with a unit " \
           "Mi or Gi (e.g. '512Mi', '2Gi'); got '4GB'" in out, out[-3000:]


def test_production_deploy_creates_the_cron_workflow_and_embeds_the_config(deploy_env, kube, s3):
    """The documented production command, end to end against the fake cluster: WorkflowTemplate + CronWorkflow."""
    webhook = ARGO_EVENTS["METAFLOW_ARGO_EVENTS_WEBHOOK_URL"]
    proc = deploy(deploy_env, "ingest_flow.py", "--config-value", "connector", '{"name": "jira"}', "--production",
                  "--with", 'secrets:sources=["ingest-jira", "ingest-snowflake"]',
                  "--with", 'environment:vars={"INGEST_EVENTS_WEBHOOK": "%s"}' % webhook,
                  "argo-workflows", "create")
    name = "ingestjira.prod.ingestflow"
    assert f"Workflow {name} for flow IngestFlow deployed" in proc.stdout + proc.stderr
    wt, cron = kube.get("workflowtemplates", name), kube.get("cronworkflows", name)
    keep("ingest_jira.prod.workflowtemplate", wt)
    keep("ingest_jira.prod.cronworkflow", cron)
    assert wt is not None and cron is not None
    assert wt["metadata"]["annotations"]["metaflow/project_flow_name"] == "ingest_jira.prod.IngestFlow"
    assert cron["spec"]["schedule"] == CONNECTORS["connectors"]["jira"]["schedule"] == "0 * * * *"
    assert cron["spec"]["suspend"] is False
    assert cron["spec"]["workflowSpec"] == {"workflowTemplateRef": {"name": name}}
    assert kube.get("sensors", name.replace(".", "-")) is None  # scheduled, not event-triggered

    # every step runs with the block's secrets source; the sync pods publish data_landed events to the webhook
    # behind the Sensors and record runs in the metadata service
    for step, t in containers(wt).items():
        if step in ("start", "sync", "join", "end"):
            assert 'secrets:sources=["ingest-jira", "ingest-snowflake"]' in " ".join(t["container"]["command"]), step
    sync = containers(wt)["sync"]["container"]
    pod_env = {e["name"]: e.get("value") for e in sync["env"]}
    assert pod_env["INGEST_EVENTS_WEBHOOK"] == pod_env["METAFLOW_ARGO_EVENTS_WEBHOOK_URL"] == webhook
    assert pod_env["METAFLOW_DEFAULT_METADATA"] == "service" and "--metadata=service" in sync["command"][-1]
    assert pod_env["METAFLOW_SERVICE_URL"] == SERVICE_INTERNAL_URL
    assert pod_env["METAFLOW_DATASTORE_SYSROOT_S3"] == s3.sysroot

    # the deployed config: connectors.yaml + the override file it names, and the chosen block
    package = code_package(s3, wt)
    config = json.loads(package.extractfile(".mf_meta/CONFIG").read())["user_configs"]
    connectors, connector = config["connectors"][0], config["connector"][0]
    assert connector == {"name": "jira"}
    assert connectors["connectors"]["jira"]["overrides"] == "overrides/source-jira.yaml"
    assert connectors["_files"]["overrides/source-jira.yaml"] == (ROOT / "overrides/source-jira.yaml").read_text()
    assert connectors["connectors"]["jira"]["config"]["api_token"] == "${JIRA_API_TOKEN}"  # a reference, not a value
    # the code package holds the flows only: `ingest` itself must be installed in the image
    assert "ingest_flow.py" in package.getnames() and not any(n.startswith("ingest/") for n in package.getnames())


def test_a_production_profile_of_connectors_yaml_is_what_gets_deployed(deploy_env, s3, tmp_path):
    """`--config connectors connectors.prod.yaml`: the same blocks, landing in Snowflake (a pod's local DuckDB file
    would vanish with the pod), sized for production. Override paths stay relative to the directory the deploy runs
    from."""
    prod = json.loads(json.dumps(CONNECTORS))
    prod["defaults"]["destination"] = "snowflake"
    prod["defaults"]["snowflake"] = {"account": "acme-xy12345", "user": "INGEST_LOADER",
                                     "private_key": "${SNOWFLAKE_PRIVATE_KEY}", "role": "INGEST_LOADER",
                                     "warehouse": "INGEST_WH", "database": "RAW", "schema": "INGEST"}
    # a fraction of a core and a Kubernetes-style quantity: both reach the pod as Metaflow's numbers (cores, MB)
    prod["connectors"]["jira"]["resources"] = {"cpu": 0.75, "memory": "2Gi"}
    path = tmp_path / "connectors.prod.yaml"
    path.write_text(yaml.safe_dump(prod, sort_keys=False))
    proc = deploy(deploy_env, "ingest_flow.py", "--config", "connectors", str(path),
                  "--config-value", "connector", '{"name": "jira"}', "argo-workflows", "create", "--only-json")
    wt = json.loads(proc.stdout)
    requests = containers(wt)["sync"]["container"]["resources"]["requests"]
    assert (quantity(requests["cpu"]), quantity(requests["memory"])) == (0.75, 2048), requests
    assert json.loads(wt["metadata"]["annotations"]["metaflow/cron"])["schedule"] == "0 * * * *"
    deployed = json.loads(code_package(s3, wt).extractfile(".mf_meta/CONFIG").read())["user_configs"]["connectors"][0]
    assert deployed["defaults"]["destination"] == "snowflake"
    assert deployed["defaults"]["snowflake"]["private_key"] == "${SNOWFLAKE_PRIVATE_KEY}"
    assert deployed["_files"] == {"overrides/source-jira.yaml": (ROOT / "overrides/source-jira.yaml").read_text()}
    # pods run the releases connectors.lock names, whatever PyPI's newest is by then
    locked = yaml.safe_load((ROOT / "connectors.lock").read_text())["blocks"]
    for name in ("demo", "jira"):
        entry = locked[name]
        assert deployed["connectors"][name]["source"] == f"{entry['source']}=={entry['version']}"
        assert deployed["connectors"][name]["runtime"] == entry["runtime"]


def test_a_block_whose_release_nothing_fixes_is_not_deployed(deploy_env, tmp_path):
    """Unpinned in connectors.yaml and absent from the lock: the deploy fails (pods would each pick PyPI's newest)."""
    data = json.loads(json.dumps(CONNECTORS))
    data["connectors"]["fresh"] = {**data["connectors"]["demo"], "source": "airbyte-source-faker"}
    path = tmp_path / "connectors.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = deploy(deploy_env, "ingest_flow.py", "--config", "connectors", str(path),
                  "--config-value", "connector", '{"name": "demo"}', "argo-workflows", "create", "--only-json",
                  expect_ok=False)
    assert proc.returncode != 0
    assert "connectors.fresh: airbyte-source-faker is not pinned in" in proc.stderr + proc.stdout
    assert "ingest install fresh" in proc.stderr + proc.stdout


# ---------------------------------------------------------------------------------------------------------------------
# Downstream flows: the Argo Events Sensors (built by ArgoWorkflows at deploy time; `--only-json` does not print them)
# ---------------------------------------------------------------------------------------------------------------------

# What the example flows' hand-written `@trigger` said before `@after_landed` wrote it: the sensors must not change.
USERS_REPORT_TRIGGER = {
    "name": "data_landed.demo.users",
    "parameters": {"table": "table", "rows": "rows", "load_id": "load_id", "destination": "destination"},
}
FRAUD_FEATURES_TRIGGERS = [
    {"name": "data_landed.jira.issues", "parameters": {"issues_load_id": "load_id", "issues_rows": "rows"}},
    {"name": "data_landed.carrier_safety.snapshots", "parameters": {"safety_load_id": "load_id", "safety_rows": "rows"}},
]


def check_sensor(sensor: dict, workflow: str, triggers: list[dict]) -> None:
    spec = sensor["spec"]
    assert spec["template"]["serviceAccountName"] == ARGO_EVENTS["METAFLOW_ARGO_EVENTS_SERVICE_ACCOUNT"]
    deps = {d["name"]: d for d in spec["dependencies"]}
    assert len(deps) == len(triggers)
    by_event = {}
    for dep in deps.values():
        assert dep["eventName"] == ARGO_EVENTS["METAFLOW_ARGO_EVENTS_EVENT"]
        assert dep["eventSourceName"] == ARGO_EVENTS["METAFLOW_ARGO_EVENTS_EVENT_SOURCE"]
        names = [e["expr"] for e in dep["filters"]["exprs"] if e["fields"] == [{"name": "name", "path": "body.payload.name"}]]
        assert len(names) == 1
        by_event[names[0]] = dep["name"]
    assert set(by_event) == {f"name == '{t['name']}'" for t in triggers}

    [trigger] = spec["triggers"]
    k8s = trigger["template"]["k8s"]
    resource = k8s["source"]["resource"]
    assert resource["kind"] == "Workflow" and resource["spec"]["workflowTemplateRef"] == {"name": workflow}
    assert resource["metadata"]["namespace"] == NAMESPACE
    declared = {p["name"] for p in resource["spec"]["arguments"]["parameters"]}
    mapped = {}
    for p in k8s["parameters"]:
        if p["src"].get("dataTemplate"):
            mapped[p["dest"]] = (p["src"]["dependencyName"], p["src"]["dataTemplate"])
    for t in triggers:
        dep = by_event[f"name == '{t['name']}'"]
        for param, field in t["parameters"].items():
            assert param in declared
            src_dep, template = mapped.pop(f"spec.arguments.parameters.#(name={param}).value")
            assert src_dep == dep, (param, src_dep, dep)
            assert f'(get $.Input.body.payload "{field}"' in template and f'hasKey $.Input.body.payload "{field}"' in template
    assert mapped == {}  # nothing mapped that the flow does not declare


def test_users_report_sensor_filters_on_its_event_and_maps_the_payload(deploy_env, kube):
    proc = deploy(deploy_env, "users_report_flow.py", "argo-workflows", "create")
    assert "data_landed.demo.users" in proc.stdout + proc.stderr  # "triggers automatically when ... is published"
    sensor = kube.get("sensors", "usersreportflow")
    keep("usersreportflow.sensor", sensor)
    keep("usersreportflow.workflowtemplate", kube.get("workflowtemplates", "usersreportflow"))
    assert sensor is not None and kube.get("workflowtemplates", "usersreportflow") is not None
    assert kube.get("cronworkflows", "usersreportflow") is None
    trigger = USERS_REPORT_TRIGGER
    assert flow_triggers(ROOT / "flows" / "users_report_flow.py") == [trigger]  # what `ingest events trigger` maps
    assert trigger["name"] == "data_landed.demo.users"
    check_sensor(sensor, "usersreportflow", [trigger])

    # re-deploying replaces the sensor in place (what a CD job does on every merge)
    version = sensor["metadata"]["resourceVersion"]
    deploy(deploy_env, "users_report_flow.py", "argo-workflows", "create")
    assert kube.get("sensors", "usersreportflow")["metadata"]["resourceVersion"] != version
    assert ("PUT", f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/sensors/usersreportflow") in kube.requests


def test_fraud_features_sensor_waits_for_both_events(deploy_env, kube):
    deploy(deploy_env, "fraud_features_flow.py", "argo-workflows", "create")
    sensor = kube.get("sensors", "fraudfeaturesflow")
    keep("fraudfeaturesflow.sensor", sensor)
    assert sensor is not None
    triggers = FRAUD_FEATURES_TRIGGERS
    assert flow_triggers(ROOT / "flows" / "fraud_features_flow.py") == triggers
    assert {t["name"] for t in triggers} == {"data_landed.jira.issues", "data_landed.carrier_safety.snapshots"}
    check_sensor(sensor, "fraudfeaturesflow", triggers)
    # no `conditions` on the trigger: Argo Events then waits for ALL dependencies (AND), not either one
    assert "conditions" not in sensor["spec"]["triggers"][0]["template"]


@pytest.mark.parametrize("flow, old_decorator", [
    ("users_report_flow.py", f"@trigger(event={USERS_REPORT_TRIGGER!r})"),
    ("fraud_features_flow.py", f"@trigger(events={FRAUD_FEATURES_TRIGGERS!r})"),
])
def test_after_landed_compiles_to_the_sensor_the_hand_written_trigger_did(deploy_env, kube, tmp_path, flow, old_decorator):
    new = (ROOT / "flows" / flow).read_text()
    old = re.sub(r"^@after_landed\(.*?\)\nclass", f"{old_decorator}\nclass", new, count=1, flags=re.S | re.M)
    old = old.replace("from ingest import after_landed", "from metaflow import trigger")
    assert "after_landed" not in old
    (tmp_path / flow).write_text(old)
    name = flow.replace("_", "").removesuffix(".py")  # users_report_flow.py → usersreportflow

    def sensor_spec() -> dict:
        spec = kube.get("sensors", name)["spec"]
        spec["template"]["metadata"]["annotations"].pop("metaflow/deployment_timestamp")  # the one difference
        return spec

    deploy(deploy_env, str(tmp_path / flow), "argo-workflows", "create")
    hand_written = sensor_spec()
    deploy(deploy_env, flow, "argo-workflows", "create")
    assert sensor_spec() == hand_written


@pytest.mark.parametrize("table, problem", [
    ("demo.no_such_stream", "demo.no_such_stream: block 'demo' has no stream 'no_such_stream' "
                            "(streams: products, purchases, users)"),
    ("no_such_block.users", "no_such_block.users: no connector block named 'no_such_block' (blocks: carrier_safety, "
                            "demo, jira, truck_prices)"),
])
def test_after_landed_refuses_to_deploy_a_table_connectors_yaml_does_not_have(deploy_env, tmp_path, table, problem):
    flow = tmp_path / "users_report_flow.py"
    flow.write_text((ROOT / "flows" / "users_report_flow.py").read_text().replace('"demo.users"', repr(table)))
    proc = deploy(deploy_env, str(flow), "argo-workflows", "create", "--only-json", expect_ok=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "@after_landed on UsersReportFlow waits for tables connectors.yaml does not have:" in out, out[-3000:]
    assert problem in out


def test_after_landed_refuses_a_payload_field_or_parameter_that_does_not_exist(deploy_env, tmp_path):
    """Checked when the flow is imported (anywhere: a typo would otherwise map nothing, silently)."""
    text = (ROOT / "flows" / "users_report_flow.py").read_text()
    flow = tmp_path / "users_report_flow.py"
    flow.write_text(text.replace('parameters=["table", "rows"', 'parameters=["table", "row_count"'))
    out = deploy(deploy_env, str(flow), "show", expect_ok=False)
    assert out.returncode != 0 and "demo.users: no payload field 'row_count' (a data_landed event carries: " in out.stderr
    flow.write_text(text.replace('parameters=["table", "rows", "load_id", "destination"]',
                                 'parameters={"table": "table", "n_rows": "rows"}'))
    out = deploy(deploy_env, str(flow), "show", expect_ok=False)
    assert out.returncode != 0
    assert "@after_landed on UsersReportFlow: it maps the payload to Parameter(s) the flow does not declare: n_rows " \
           "(declared: destination, load_id, rows, table)" in out.stderr


def test_triggered_flow_without_argo_events_config_is_refused(deploy_env):
    env = {k: v for k, v in deploy_env.items() if not k.startswith("METAFLOW_ARGO_EVENTS_")}
    proc = deploy(env, "users_report_flow.py", "argo-workflows", "create", "--only-json", expect_ok=False)
    assert proc.returncode != 0
    assert "METAFLOW_ARGO_EVENTS_EVENT" in proc.stdout + proc.stderr

