"""Every sample tenant's on-demand feature view (pandas, python, python singleton), served by the
real gateway, equals what Feast answers for the same rows: alone, beside stored features, with
full feature names, for present and absent entities."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from featureplane.embedded.gateway import GatewayProcess
from featureplane.feast_config import close_registry, open_registry
from tests.support.deployment import Deployment, entity_rows, feast_answer, feature_views
from tests.support.gateway import bearer, columns_by_name

# tenant -> (ODFV, its source view, request data per row)
ODFVS: dict[str, tuple[str, str, dict[str, list[Any]]]] = {
    "fraud": ("transaction_risk", "account_stats", {"txn_amount": [i * 37.5 for i in range(31)]}),
    "pricing": ("checkout_price", "product_price", {}),
    "recsys": ("ranking_hints", "user_item_affinity", {}),
}  # fmt: skip


def _feast(
    deployment: Deployment, tenant: str, features: list[str], rows: list[dict[str, Any]], full: bool
) -> dict[str, list[Any]]:
    if tenant != "pricing":
        return columns_by_name(feast_answer(deployment, tenant, features, rows, full))
    # A singleton view: Feast 0.67 computes only the first entity row, so ask it row by row.
    answers = [columns_by_name(feast_answer(deployment, tenant, features, [r], full)) for r in rows]
    return {name: [a[name][0] for a in answers] for name in answers[0]}


def _odfv_features(deployment: Deployment, tenant: str, name: str) -> list[str]:
    registry = open_registry(deployment.settings)
    try:
        project = deployment.catalog[tenant].feast_project
        odfv = registry.get_on_demand_feature_view(name, project)
        return [f"{name}:{f.name}" for f in odfv.features]
    finally:
        close_registry(registry)


@pytest.mark.parametrize("full", [False, True], ids=["short-names", "full-names"])
@pytest.mark.parametrize("tenant", sorted(ODFVS))
def test_sample_odfvs_equal_feast(
    deployment: Deployment, http: httpx.Client, tenant: str, full: bool
) -> None:
    name, source, request_data = ODFVS[tenant]
    view = next(v for v in feature_views(deployment, tenant) if v.name == source)
    rows, absent = entity_rows(deployment, tenant, view, n_present=25, n_absent=5)
    assert any(absent)
    for i, row in enumerate(rows):
        row.update({k: v[i] for k, v in request_data.items()})
    odfv = _odfv_features(deployment, tenant, name)
    stored = [f"{source}:{view.features[0].name}"]
    for features in (odfv, [*odfv, *stored], [odfv[0], *stored]):
        columns = {k: [r[k] for r in rows] for k in rows[0]}
        body = {"features": features, "entities": columns, "full_feature_names": full}
        resp = http.post(
            "/get-online-features", json=body, headers=bearer(deployment.tokens[tenant])
        )
        assert resp.status_code == 200, resp.text
        ours = columns_by_name(resp.json())
        theirs = _feast(deployment, tenant, features, rows, full)
        assert list(ours) == list(theirs), features
        # Stored values of absent entities: null in both (statuses differ on purpose).
        assert ours == theirs, features


def test_missing_request_data_is_a_400_naming_it(
    deployment: Deployment, http: httpx.Client
) -> None:
    body = {"features": ["transaction_risk:is_large"], "entities": {"account_id": [1]}}
    resp = http.post("/get-online-features", json=body, headers=bearer(deployment.tokens["fraud"]))
    assert resp.status_code == 400
    assert "'txn_amount'" in resp.json()["error"]["message"]


def test_another_tenants_odfv_is_forbidden(deployment: Deployment, http: httpx.Client) -> None:
    body = {"features": ["checkout_price:final_price"], "entities": {"store_id": [1], "sku": ["a"]}}
    resp = http.post("/get-online-features", json=body, headers=bearer(deployment.tokens["fraud"]))
    assert resp.status_code == 403, resp.text


def test_a_pandas_view_over_a_hundred_rows_equals_feast(
    deployment: Deployment, http: httpx.Client
) -> None:
    """100 entity rows (the quota) through the pandas view: its allocations must fit the worker's
    memory budget (which counts on top of what the fork shares with the zygote)."""
    ids = deployment.tables["fraud"]["account_activity"].column("account_id").to_pylist()
    rows = [{"account_id": ids[i % len(ids)], "txn_amount": i * 3.25} for i in range(100)]
    features = ["transaction_risk:amount_vs_avg", "transaction_risk:is_large"]
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    body = {"features": features, "entities": columns}
    resp = http.post("/get-online-features", json=body, headers=bearer(deployment.tokens["fraud"]))
    assert resp.status_code == 200, resp.text
    theirs = columns_by_name(feast_answer(deployment, "fraud", features, rows, False))
    assert columns_by_name(resp.json()) == theirs


@pytest.mark.parametrize("tenant", ["fraud", "recsys"])  # pricing's quota is 100 req/s
def test_concurrent_requests_each_get_their_own_answer(
    deployment: Deployment, gateway: GatewayProcess, tenant: str
) -> None:
    """Requests waiting together go to the worker as one batch: 30 at once, one entity row
    each, every answer is its own row's (Feast computes the oracle)."""
    name, source, request_data = ODFVS[tenant]
    view = next(v for v in feature_views(deployment, tenant) if v.name == source)
    rows, _ = entity_rows(deployment, tenant, view, n_present=25, n_absent=5)
    for i, row in enumerate(rows):
        row.update({k: v[i] for k, v in request_data.items()})
    features = _odfv_features(deployment, tenant, name)
    theirs = _feast(deployment, tenant, features, rows, False)

    async def ask_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.base, timeout=30) as client:
            headers = bearer(deployment.tokens[tenant])
            return await asyncio.gather(*(
                client.post("/get-online-features", headers=headers, json={
                    "features": features, "entities": {k: [v] for k, v in row.items()}
                })
                for row in rows
            ))  # fmt: skip

    answers = asyncio.run(ask_all())
    assert [a.status_code for a in answers] == [200] * len(rows), answers[0].text
    for i, answer in enumerate(answers):
        assert columns_by_name(answer.json()) == {k: [v[i]] for k, v in theirs.items()}, rows[i]
