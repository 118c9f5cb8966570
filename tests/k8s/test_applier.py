"""Server-side apply and pruning, on the kubernetes client's real request objects.

No API server runs here: the client's HTTP pool is replaced by a recorder that answers like the
API server (apply echoes the object; list returns the namespaces given), so what is checked is
the request the real typed clients build. Not exercised: the server's apply semantics
(field ownership, conflicts), admission, and NetworkPolicy enforcement.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import urllib3
from kubernetes.client import ApiClient, Configuration
from typer.testing import CliRunner

from featureplane import cli
from featureplane.errors import FeatureplaneError
from featureplane.k8s import applier as applier_module
from featureplane.k8s.applier import Applier
from featureplane.k8s.manifests import render_tenant
from featureplane.tenancy.catalog import TenantCatalog

ROOT = Path(__file__).resolve().parents[2]
CATALOG = TenantCatalog.load(ROOT / "tenants", ROOT / "feature_repo")
HOST = "https://kubernetes.default.svc"


def _namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


class RecordingPool:
    """Stands in for urllib3's PoolManager inside the kubernetes client."""

    def __init__(self, namespaces: list[dict[str, Any]] | None = None, status: int = 200) -> None:
        self.namespaces = namespaces or []
        self.status = status
        self.requests: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> urllib3.HTTPResponse:
        self.requests.append({"method": method, "url": url, **kwargs})
        if method == "GET":
            answer: Any = {"apiVersion": "v1", "kind": "NamespaceList", "metadata": {}}
            answer["items"] = self.namespaces
        elif method == "DELETE":
            answer = {"apiVersion": "v1", "kind": "Status", "status": "Success"}
        else:
            answer = json.loads(kwargs["body"])  # apply answers with the applied object
        return urllib3.HTTPResponse(
            body=json.dumps(answer).encode(),
            status=self.status,
            headers={"Content-Type": "application/json"},
            preload_content=False,
        )


def _applier(pool: RecordingPool, dry_run: bool = False) -> Applier:
    config = Configuration(host=HOST)
    config.api_key = {"authorization": "Bearer featureplane-sa-token"}
    client = ApiClient(config)
    client.rest_client.pool_manager = pool
    return Applier(client, dry_run=dry_run)


def _path_of(manifest: dict[str, Any]) -> str:
    group = manifest["apiVersion"]
    prefix = "/api/v1" if group == "v1" else f"/apis/{group}"
    plural = {"NetworkPolicy": "networkpolicies"}.get(
        manifest["kind"], manifest["kind"].lower() + "s"
    )
    namespace = manifest["metadata"].get("namespace")
    middle = f"/namespaces/{namespace}" if namespace else ""
    return f"{HOST}{prefix}{middle}/{plural}/{manifest['metadata']['name']}"


@pytest.mark.parametrize("dry_run", [False, True])
def test_every_object_is_server_side_applied_once(dry_run: bool) -> None:
    pool = RecordingPool()
    applier = _applier(pool, dry_run)
    expected = [m for spec in CATALOG.values() for m in render_tenant(spec)]
    for spec in CATALOG.values():
        applier.apply_all(render_tenant(spec))
    assert len(pool.requests) == len(expected)
    for sent, manifest in zip(pool.requests, expected, strict=True):
        url = urlsplit(sent["url"])
        assert sent["method"] == "PATCH"
        assert f"{url.scheme}://{url.netloc}{url.path}" == _path_of(manifest)
        query = dict(parse_qsl(url.query))
        assert query.pop("fieldManager") == "featureplane"
        assert query.pop("force") == "true"
        assert query.pop("fieldValidation") == "Strict"
        assert query == ({"dryRun": "All"} if dry_run else {})
        assert sent["headers"]["Content-Type"] == "application/apply-patch+yaml"
        assert sent["headers"]["authorization"] == "Bearer featureplane-sa-token"
        assert json.loads(sent["body"]) == manifest


def test_applying_twice_sends_identical_requests() -> None:
    first, second = RecordingPool(), RecordingPool()
    for pool in (first, second):
        applier = _applier(pool)
        for spec in CATALOG.values():
            applier.apply_all(render_tenant(spec))
    assert first.requests == second.requests


def _cluster() -> list[dict[str, Any]]:
    managed = {"app.kubernetes.io/managed-by": "featureplane"}
    return [
        _namespace("fp-fraud", managed | {"featureplane.io/tenant": "fraud"}),
        _namespace("fp-churn", managed | {"featureplane.io/tenant": "churn"}),  # removed tenant
        _namespace("team-x", {"featureplane.io/tenant": "gone"}),  # not ours: never touched
    ]


def test_prune_without_the_flag_only_warns() -> None:
    pool = RecordingPool(_cluster())
    said: list[str] = []
    assert _applier(pool).prune(CATALOG.keys(), False, said.append) == ["fp-churn"]
    assert [r["method"] for r in pool.requests] == ["GET"]
    (get,) = pool.requests
    query = dict(parse_qsl(urlsplit(get["url"]).query))
    assert query == {"labelSelector": "app.kubernetes.io/managed-by=featureplane"}
    assert said == [
        "namespace fp-churn belongs to tenant churn, no longer in tenants/: "
        "pass --prune to delete it"
    ]


@pytest.mark.parametrize("dry_run", [False, True])
def test_prune_deletes_only_removed_tenants_namespaces(dry_run: bool) -> None:
    pool = RecordingPool(_cluster())
    said: list[str] = []
    _applier(pool, dry_run).prune(CATALOG.keys(), True, said.append)
    deletes = [r for r in pool.requests if r["method"] == "DELETE"]
    assert [urlsplit(d["url"]).path for d in deletes] == ["/api/v1/namespaces/fp-churn"]
    query = dict(parse_qsl(urlsplit(deletes[0]["url"]).query))
    assert query == ({"dryRun": "All"} if dry_run else {})
    assert said == ["deleted namespace fp-churn (tenant churn is no longer in tenants/)"]


def test_api_errors_name_the_object() -> None:
    pool = RecordingPool(status=422)
    with pytest.raises(FeatureplaneError, match=r"tenant fraud: apply Namespace fp-fraud: .*422"):
        _applier(pool).apply_all(render_tenant(CATALOG["fraud"]))


def test_cli_apply_dry_run_warns_about_orphans(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = RecordingPool(_cluster())
    monkeypatch.setattr(applier_module, "api_client", lambda: _applier(pool).api)
    env = {
        "FEATUREPLANE_TENANTS_DIR": str(ROOT / "tenants"),
        "FEATUREPLANE_FEATURE_REPO_DIR": str(ROOT / "feature_repo"),
        "COLUMNS": "200",
    }
    result = CliRunner().invoke(
        cli.app, ["k8s", "apply", "--tenant", "fraud", "--dry-run"], env=env
    )
    assert result.exit_code == 0, result.output
    patches = [r for r in pool.requests if r["method"] == "PATCH"]
    assert len(patches) == len(render_tenant(CATALOG["fraud"]))
    assert all("dryRun=All" in r["url"] for r in patches)
    assert not [r for r in pool.requests if r["method"] == "DELETE"]
    assert "pass --prune to delete it" in result.output
