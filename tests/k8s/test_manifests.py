"""Rendering: every object of every sample tenant validates strictly against the pinned
Kubernetes schema; quotas are tenant.yaml's; labels are on everything; bad input is named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from featureplane.cli import app
from featureplane.k8s.manifests import (
    ManifestError,
    label_value,
    render_tenant,
    to_yaml,
    validate,
)
from featureplane.tenancy.catalog import TenantCatalog
from featureplane.tenancy.spec import TenantSpec

ROOT = Path(__file__).resolve().parents[2]
CATALOG = TenantCatalog.load(ROOT / "tenants", ROOT / "feature_repo")
KINDS = ["Namespace", "ServiceAccount", "Role", "RoleBinding", "ResourceQuota", "LimitRange"]


def _by_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_object_is_valid_and_labelled(name: str) -> None:
    spec = CATALOG[name]
    manifests = render_tenant(spec)  # validates each one (strict)
    assert {m["kind"] for m in manifests} == {*KINDS, "NetworkPolicy"}
    for manifest in manifests:
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "featureplane"
        assert labels["featureplane.io/tenant"] == spec.name
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == spec.namespace
    (namespace,) = _by_kind(manifests, "Namespace")
    assert namespace["metadata"]["name"] == spec.namespace
    assert namespace["metadata"]["labels"]["featureplane.io/cost-centre"] == spec.cost_centre
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    names = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    assert len(names) == len(manifests)  # no two objects collide
    assert list(yaml.safe_load_all(to_yaml(manifests))) == manifests


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_quota_is_tenant_yaml_and_defaults_fit_in_it(name: str) -> None:
    spec = CATALOG[name]
    manifests = render_tenant(spec)
    (quota,) = _by_kind(manifests, "ResourceQuota")
    k8s = spec.kubernetes
    assert quota["spec"]["hard"] == {
        "requests.cpu": k8s.requests.cpu,
        "requests.memory": k8s.requests.memory,
        "limits.cpu": k8s.limits.cpu,
        "limits.memory": k8s.limits.memory,
    }
    (limit_range,) = _by_kind(manifests, "LimitRange")
    (container,) = limit_range["spec"]["limits"]
    assert container["max"] == {"cpu": k8s.limits.cpu, "memory": k8s.limits.memory}


def test_defaults_are_a_quarter_of_the_quota() -> None:
    pricing = render_tenant(CATALOG["pricing"])  # requests 500m/1Gi, limits 1/2Gi
    (container,) = _by_kind(pricing, "LimitRange")[0]["spec"]["limits"]
    assert container["defaultRequest"] == {"cpu": "125m", "memory": "256Mi"}
    assert container["default"] == {"cpu": "250m", "memory": "512Mi"}


def test_network_policies_deny_by_default_and_allow_the_platform() -> None:
    policies = {
        m["metadata"]["name"]: m["spec"]
        for m in _by_kind(render_tenant(CATALOG["fraud"]), "NetworkPolicy")
    }
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = policies["allow-dns"]["egress"][0]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    platform = policies["allow-platform-egress"]["egress"][0]
    assert platform["to"] == [
        {"namespaceSelector": {"matchLabels": {"featureplane.io/platform": "true"}}}
    ]
    assert {p["port"] for p in platform["ports"]} == {8080, 6570}
    assert policies["allow-platform-ingress"]["ingress"] == [{"from": platform["to"]}]


def test_roles_never_grant_secrets() -> None:
    for manifest in _by_kind(render_tenant(CATALOG["recsys"]), "Role"):
        for rule in manifest["rules"]:
            assert "secrets" not in rule["resources"]
            assert "*" not in rule["verbs"]


def _with_kubernetes(spec: TenantSpec, **amounts: dict[str, str]) -> TenantSpec:
    """A copy with unvalidated requests/limits: what a hand-built spec could carry."""
    k8s = spec.kubernetes.model_copy(
        update={k: getattr(spec.kubernetes, k).model_copy(update=v) for k, v in amounts.items()}
    )
    return spec.model_copy(update={"kubernetes": k8s})


def test_bad_quantity_is_named() -> None:
    bad = _with_kubernetes(CATALOG["fraud"], limits={"memory": "4 gigs"})
    with pytest.raises(ManifestError, match=r"tenant fraud: kubernetes\.limits\.memory: '4 gigs'"):
        render_tenant(bad)


def test_requests_above_limits_are_refused() -> None:
    bad = _with_kubernetes(CATALOG["fraud"], requests={"cpu": "8"})
    with pytest.raises(
        ManifestError, match=r"tenant fraud: kubernetes\.requests\.cpu \(8\) exceeds"
    ):
        render_tenant(bad)


def test_schema_violation_names_tenant_kind_and_field() -> None:
    manifest = render_tenant(CATALOG["fraud"])[-1]
    manifest["spec"]["policyTypes"] = "Egress"  # must be a list
    with pytest.raises(ManifestError, match=r"tenant fraud: NetworkPolicy .*: spec\.policyTypes"):
        validate(CATALOG["fraud"], manifest)
    manifest = render_tenant(CATALOG["fraud"])[0]
    manifest["metadata"]["lables"] = {}  # strict: unknown fields are errors
    with pytest.raises(ManifestError, match=r"tenant fraud: Namespace fp-fraud"):
        validate(CATALOG["fraud"], manifest)


def test_label_values_are_made_safe() -> None:
    assert label_value("CC-1042-RISK") == "CC-1042-RISK"
    assert label_value("Risk & Fraud / EU") == "Risk-Fraud-EU"
    assert label_value("-" + "x" * 80) == "x" * 62


def _cli(*args: str) -> Any:
    env = {
        "FEATUREPLANE_TENANTS_DIR": str(ROOT / "tenants"),
        "FEATUREPLANE_FEATURE_REPO_DIR": str(ROOT / "feature_repo"),
    }
    return CliRunner().invoke(app, ["k8s", "render", *args], env=env)


def test_cli_render_stdout_and_output_dir(tmp_path: Path) -> None:
    result = _cli("--tenant", "pricing")
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.stdout))
    assert documents == render_tenant(CATALOG["pricing"])

    result = _cli("--output", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == [f"{name}.yaml" for name in sorted(CATALOG)]
    fraud = list(yaml.safe_load_all((tmp_path / "out" / "fraud.yaml").read_text()))
    assert fraud == render_tenant(CATALOG["fraud"])
