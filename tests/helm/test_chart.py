"""The Helm chart, with the real helm: lint, render each ci/ scenario, validate every object
against the Kubernetes OpenAPI schemas (kubernetes-validate, strict), and staleness checks.

No cluster runs here: a live install and `helm test` are not exercised.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.chart import CHART, chart_tenant_names, copies, tenant_names
from tests.support.components import require

HELM = Path(sys.executable).with_name("helm")
KUBERNETES_VERSION = "1.31.0"  # pinned schema set shipped with kubernetes-validate
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}  # no OpenAPI schema: checked by hand below
SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
RELEASE = "fp"

Obj = dict[str, Any]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    require(HELM.exists(), f"helm at {HELM}")
    return subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, timeout=60, check=False
    )


@cache
def render(*args: str) -> tuple[Obj, ...]:
    done = helm("template", RELEASE, str(CHART), "--namespace", "featureplane", *args)
    assert done.returncode == 0, done.stderr
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def scenario(name: str) -> tuple[Obj, ...]:
    return render("-f", str(CHART / "ci" / name))


def of_kind(objs: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: tuple[Obj, ...], kind: str) -> Obj:
    found = of_kind(objs, kind)
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


def env_of(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container["env"]}


def test_scenarios_exist() -> None:
    assert {"minimal-values.yaml", "production-values.yaml", "cluster-redis-values.yaml"} <= set(
        SCENARIOS
    )


@pytest.mark.parametrize("values", [None, *SCENARIOS])
def test_lint_strict(values: str | None) -> None:
    extra = ["-f", str(CHART / "ci" / values)] if values else []
    done = helm("lint", "--strict", str(CHART), *extra)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values", SCENARIOS)
def test_rendered_objects_are_valid_kubernetes(values: str) -> None:
    objs = scenario(values)
    assert objs
    for obj in objs:
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")


@pytest.mark.parametrize("values", SCENARIOS)
def test_gateway_deployment(values: str) -> None:
    objs = scenario(values)
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    (gateway,) = pod["containers"]
    assert gateway["command"] == ["featureplane"]
    assert gateway["args"] == ["serve"]
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert gateway["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    # Non-root, read-only root, no capabilities, RuntimeDefault seccomp.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = gateway["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    env = env_of(gateway)
    assert env["FEATUREPLANE_ENVIRONMENT"]["value"] == "production"
    assert env["FEATUREPLANE_GATEWAY_HOST"]["value"] == "0.0.0.0"
    for name in ("FEATUREPLANE_TOKEN_PEPPER", "FEATUREPLANE_REGISTRY", "FEATUREPLANE_REDIS_URL"):
        assert "secretKeyRef" in env[name]["valueFrom"], name
    # The metrics dir is writable: an emptyDir mounted over its parent.
    metrics_dir = env["FEATUREPLANE_METRICS_DIR"]["value"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = [m for m in gateway["volumeMounts"] if metrics_dir.startswith(m["mountPath"])]
    assert mounts
    assert "emptyDir" in volumes[mounts[0]["name"]]
    selector = one(objs, "Deployment")["spec"]["selector"]["matchLabels"]
    for constraint in pod["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"] == selector
    assert one(objs, "Service")["spec"]["ports"][0]["port"] == 8080
    assert one(objs, "Service")["spec"]["selector"] == selector


def test_redis_mode_sets_redis_type() -> None:
    def redis_type(objs: tuple[Obj, ...]) -> str:
        container = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        return str(env_of(container)["FEATUREPLANE_REDIS_TYPE"]["value"])

    assert redis_type(scenario("minimal-values.yaml")) == "redis"
    cluster = scenario("cluster-redis-values.yaml")
    assert redis_type(cluster) == "redis_cluster"
    container = one(cluster, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    ref = env_of(container)["FEATUREPLANE_REDIS_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "featureplane-redis-cluster", "key": "seed-url"}


@pytest.mark.parametrize("values", SCENARIOS)
def test_one_cronjob_per_tenant(values: str) -> None:
    tenants = (
        yaml.safe_load((CHART / "ci" / values).read_text()).get("tenants")
        or yaml.safe_load((CHART / "values.yaml").read_text())["tenants"]
    )
    jobs = of_kind(scenario(values), "CronJob")
    by_tenant = {j["metadata"]["labels"]["featureplane.io/tenant"]: j for j in jobs}
    assert len(jobs) == len(by_tenant) == len(tenants)
    for tenant in tenants:
        job = by_tenant[tenant["name"]]
        assert job["spec"]["schedule"] == tenant["schedule"]
        pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == ["materialize", tenant["name"]]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert env_of(container)["FEATUREPLANE_ENVIRONMENT"]["value"] == "production"


def test_production_objects() -> None:
    objs = scenario("production-values.yaml")
    assert "replicas" not in one(objs, "Deployment")["spec"]  # the HPA owns it
    hpa = one(objs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert one(objs, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    # kubernetesAuth: the gateway may create TokenReviews.
    binding = one(objs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "system:auth-delegator"
    assert one(objs, "Deployment")["spec"]["template"]["spec"]["automountServiceAccountToken"]
    for job in of_kind(objs, "CronJob"):
        volumes = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
        claims = [
            v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v
        ]
        assert claims == ["featureplane-data"]


def test_minimal_has_no_operator_objects() -> None:
    objs = scenario("minimal-values.yaml")
    assert not [o for o in objs if o["kind"] in CRD_KINDS | {"HorizontalPodAutoscaler"}]
    assert one(objs, "Deployment")["spec"]["replicas"] == 1
    assert not of_kind(objs, "ClusterRoleBinding")


def test_service_monitor_structure() -> None:
    objs = scenario("production-values.yaml")
    monitor = one(objs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"] == one(objs, "Service")["spec"]["selector"]
    assert spec["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    ]
    # The rules and dashboards select job="featureplane": the job comes from this label.
    assert one(objs, "Service")["metadata"]["labels"][spec["jobLabel"]] == "featureplane"


def test_prometheus_rule_carries_the_generated_groups() -> None:
    rule = one(scenario("production-values.yaml"), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    generated = yaml.safe_load((CHART.parents[1] / "dashboards/prometheus/rules.yaml").read_text())
    assert rule["spec"]["groups"] == generated["groups"]
    for group in rule["spec"]["groups"]:
        assert group["name"]
        assert group["rules"]
        for r in group["rules"]:
            assert ("record" in r) != ("alert" in r)
            assert r["expr"]


def test_dashboard_configmaps() -> None:
    maps = of_kind(scenario("minimal-values.yaml"), "ConfigMap")
    dashboards = {
        key: json.loads(value)
        for m in maps
        if m["metadata"]["labels"].get("grafana_dashboard") == "1"
        for key, value in m["data"].items()
    }
    grafana = CHART.parents[1] / "dashboards/grafana"
    assert dashboards == {p.name: json.loads(p.read_text()) for p in grafana.glob("*.json")}
    assert not of_kind(scenario("cluster-redis-values.yaml"), "ConfigMap")


def test_helm_test_pod_curls_ready() -> None:
    pod = one(scenario("minimal-values.yaml"), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["args"][-1] == "http://fp-featureplane:8080/ready"


@pytest.mark.parametrize(
    "bad",
    [
        ["--set", "gateway.replicaCount=-1"],
        ["--set", "replicaCount=-1"],  # unknown top-level key
        ["--set-string", "gateway.port=8080"],  # wrong type
        ["--set", "redis.mode=sentinel"],
        ["--set", "tenants[0].name=Not_A_Name,tenants[0].schedule=@hourly-ish"],
        ["--set", "autoscaling.targetCPUUtilizationPercentage=150"],
    ],
)
def test_schema_rejects_bad_values(bad: list[str]) -> None:
    done = helm("template", RELEASE, str(CHART), *bad)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr


def test_schema_is_draft_07() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])


def test_chart_tenants_match_tenants_dir() -> None:
    assert chart_tenant_names() == tenant_names(), "run `python -m tests.support.chart`"


def test_chart_copies_are_current() -> None:
    pairs = copies()
    for source, copy in pairs:
        stale = not copy.exists() or copy.read_bytes() != source.read_bytes()
        assert not stale, f"{copy} is stale: run `featureplane dashboards generate`"
    carried = set((CHART / "files/dashboards").glob("*.json"))
    assert carried == {copy for _, copy in pairs if copy.suffix == ".json"}


# -- security: every Pod the chart renders -------------------------------------------------------

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}
# Where each container may write (the root filesystem is read-only): emptyDirs or the data PVC.
WRITABLE = {
    "gateway": {"/tmp", "/var/run/featureplane", "/var/lib/featureplane"},
    "materialize": {"/tmp", "/var/lib/featureplane"},
    "curl": set(),
}
SECRET_ENV = {"FEATUREPLANE_TOKEN_PEPPER", "FEATUREPLANE_REGISTRY", "FEATUREPLANE_REDIS_URL"}


def pod_specs(objs: tuple[Obj, ...]) -> list[tuple[str, Obj]]:
    """(``Kind/name``, Pod spec) of every workload object."""
    found = []
    for obj in objs:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        spec = obj["spec"]
        if obj["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if obj["kind"] != "Pod":
            spec = spec["template"]["spec"]
        found.append((f"{obj['kind']}/{obj['metadata']['name']}", spec))
    return found


@pytest.mark.parametrize("values", SCENARIOS)
def test_every_container_is_non_root_read_only_and_unprivileged(values: str) -> None:
    pods = pod_specs(scenario(values))
    assert {name.split("/")[0] for name, _ in pods} >= {"Deployment", "CronJob", "Pod"}
    for name, pod in pods:
        pod_sc = pod.get("securityContext", {})
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(key), f"{name}: {key}"
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for volume in volumes.values():
            assert "hostPath" not in volume, f"{name}: hostPath volume {volume['name']}"
        containers = [*pod.get("initContainers", []), *pod["containers"]]
        for container in containers:
            where = f"{name}/{container['name']}"
            sc = container.get("securityContext", {})

            def effective(key: str, sc: Obj = sc, pod_sc: Obj = pod_sc) -> Any:
                return sc.get(key, pod_sc.get(key))

            assert effective("runAsNonRoot") is True, where
            assert isinstance(effective("runAsUser"), int), where
            assert effective("runAsUser") > 0, where
            assert effective("seccompProfile") == {"type": "RuntimeDefault"}, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged") is not True, where
            assert "ALL" in sc["capabilities"]["drop"], where
            assert not sc["capabilities"].get("add"), where
            writable = {
                m["mountPath"]
                for m in container.get("volumeMounts", [])
                if not m.get("readOnly")
                and {"emptyDir", "persistentVolumeClaim"} & set(volumes[m["name"]])
            }
            others = [
                m["mountPath"]
                for m in container.get("volumeMounts", [])
                if not m.get("readOnly") and m["mountPath"] not in writable
            ]
            assert not others, f"{where}: writable mounts that are not emptyDir/PVC: {others}"
            assert writable == WRITABLE[container["name"]], where


@pytest.mark.parametrize("values", SCENARIOS)
def test_secrets_come_from_secret_references_only(values: str) -> None:
    for name, pod in pod_specs(scenario(values)):
        for container in pod["containers"]:
            if container["name"] == "curl":
                continue
            env = env_of(container)
            assert env["FEATUREPLANE_ENVIRONMENT"]["value"] == "production", name
            for secret in SECRET_ENV:
                ref = env[secret]["valueFrom"]["secretKeyRef"]
                assert ref["name"]
                assert ref["key"]
                assert not ref.get("optional"), f"{name}: {secret} may be missing"
            for var in container["env"]:
                value = str(var.get("value", ""))
                assert "fpt_" not in value, f"{name}: a token in {var['name']}"
                assert not ("://" in value and "@" in value), (
                    f"{name}: credentials in {var['name']}"
                )
        # Only the gateway with Kubernetes auth (TokenReview) gets an API token.
        if name.startswith("Deployment/"):
            kubernetes_auth = "kubernetesAuth: true" in (CHART / "ci" / values).read_text()
            assert pod["automountServiceAccountToken"] is kubernetes_auth, name
        else:
            assert pod["automountServiceAccountToken"] is False, name


@pytest.mark.parametrize(
    "weaken",
    [
        ["--set", "securityContext.readOnlyRootFilesystem=false"],
        ["--set", "securityContext.allowPrivilegeEscalation=true"],
        ["--set", "securityContext.privileged=true"],
        ["--set", "securityContext.runAsNonRoot=false"],
        ["--set", "securityContext.runAsUser=0"],
        ["--set", "securityContext.capabilities.drop={NET_RAW}"],
        ["--set", "securityContext.capabilities.add={NET_ADMIN}"],
        ["--set", "securityContext.seccompProfile.type=Unconfined"],
        ["--set", "podSecurityContext.runAsNonRoot=false"],
        ["--set", "podSecurityContext.runAsUser=0"],
        ["--set", "podSecurityContext.seccompProfile.type=Unconfined"],
        ["--set", "securityContext=null"],
        ["--set", "secrets.tokenPepper.name="],
        ["--set", "registry.existingSecret="],
        ["--set", "redis.existingSecret="],
    ],
)
def test_schema_refuses_weakened_security(weaken: list[str]) -> None:
    done = helm("template", RELEASE, str(CHART), *weaken)
    assert done.returncode != 0, f"{weaken} rendered"
    assert "values don't meet the specifications of the schema" in done.stderr, done.stderr


@pytest.mark.parametrize("name", ["FEATUREPLANE_ENVIRONMENT", *sorted(SECRET_ENV)])
def test_extra_env_cannot_override_environment_or_secrets(name: str) -> None:
    done = helm(
        "template", RELEASE, str(CHART),
        "--set", f"extraEnv[0].name={name}", "--set", "extraEnv[0].value=development",
    )  # fmt: skip
    assert done.returncode != 0
    assert f"extraEnv must not set {name}" in done.stderr


def test_dockerfile_runs_as_a_non_root_user() -> None:
    lines = [
        line.split("#", 1)[0].strip()
        for line in (CHART.parent.parent / "Dockerfile").read_text().splitlines()
    ]
    users = [line.split(None, 1)[1] for line in lines if line.upper().startswith("USER ")]
    assert users, "the Dockerfile sets no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "a numeric USER, so runAsNonRoot can verify it"
    assert int(uid) > 0
    assert not gid or int(gid) > 0
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["securityContext"]["runAsUser"] == int(uid)
    # Nothing after USER switches back or writes into the image at run time.
    after = lines[lines.index(f"USER {users[-1]}") + 1 :]
    assert not [line for line in after if line.upper().startswith(("RUN ", "USER "))]
