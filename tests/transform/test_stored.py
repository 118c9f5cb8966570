"""Stored on-demand feature views (``write_to_online_store=True``): `featureplane materialize`
computes them over their source's latest rows in a sealed worker of the tenant and writes them
as Feast does, so the gateway serves the stored values and Feast's own SDK reads the same ones
from the same Redis. The quickstart repo with two stored views added (Feast 0.67 itself refuses
a python-mode stored view over the quickstart's view: its schema inference gets a None)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pandas as pd  # type: ignore[import-untyped]  # no stubs pinned
import pytest
import redis
from feast.feature_server_utils import convert_response_to_dict

from featureplane.embedded.gateway import GatewayProcess
from featureplane.embedded.redis import EmbeddedRedis
from featureplane.feast_config import feature_store
from featureplane.observability import runs
from featureplane.tenancy.catalog import load_spec
from tests.support.gateway import bearer, columns_by_name, start_gateway
from tests.support.quickstart import TENANT, issue_token, quickstart_tree
from tests.support.trees import Tree, cli

STORED = """

@on_demand_feature_view(
    sources=[driver_stats_fv],
    schema=[Field(name="conv_plus_acc", dtype=Float64)],
    entities=[driver],
    mode="pandas",
    write_to_online_store=True,
)
def stored_rates(inputs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    out["conv_plus_acc"] = (inputs["conv_rate"] + inputs["acc_rate"]).astype("float64")
    return out


@on_demand_feature_view(
    sources=[driver_stats_fv],
    schema=[Field(name="trips_doubled", dtype=Int64)],
    entities=[driver],
    mode="pandas",
    write_to_online_store=True,
)
def stored_trips(inputs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"trips_doubled": inputs["avg_daily_trips"] * 2})


@on_demand_feature_view(  # refused: no request data at materialization
    sources=[driver_stats_fv, input_request],
    schema=[Field(name="conv_plus_val", dtype=Float64)],
    entities=[driver],
    mode="pandas",
    write_to_online_store=True,
)
def stored_with_request(inputs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"conv_plus_val": inputs["conv_rate"] + inputs["val_to_add"]})
"""

FEATURES = ["stored_rates:conv_plus_acc", "stored_trips:trips_doubled"]
DRIVERS = [1001, 1002, 1003, 1004, 1005, 424242]  # the last one has no rows


@pytest.fixture(scope="module")
def stored(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Tree, GatewayProcess, str]]:
    tree = quickstart_tree(tmp_path_factory.mktemp("stored"), redis_server.url, STORED)
    gateway = start_gateway(tree.settings, workers=1)
    try:
        yield tree, gateway, issue_token(tree)
    finally:
        gateway.stop()


def _expected(tree: Tree) -> dict[str, list[Any]]:
    """The stored views over each driver's latest row of the last day (the source's ttl), as
    Feast's materialization picks them; None for a driver without one."""
    rows = pd.read_parquet(
        tree.settings.feature_repo_path / TENANT / "data" / "driver_stats.parquet"
    )
    recent = rows[rows["event_timestamp"] >= pd.Timestamp.now(tz="UTC") - timedelta(days=1)]
    latest = recent.sort_values("event_timestamp").groupby("driver_id").last()
    sums, doubled = [], []
    for driver in DRIVERS:
        row = latest.loc[driver] if driver in latest.index else None
        sums.append(None if row is None else float(row["conv_rate"] + row["acc_rate"]))
        doubled.append(None if row is None else int(row["avg_daily_trips"]) * 2)
    return {"conv_plus_acc": sums, "trips_doubled": doubled}


def test_stored_views_are_served_as_feast_stores_them(
    stored: tuple[Tree, GatewayProcess, str],
) -> None:
    tree, gateway, token = stored
    body = {"features": FEATURES, "entities": {"driver_id": DRIVERS}}
    resp = httpx.post(f"{gateway.base}/get-online-features", json=body, headers=bearer(token))
    assert resp.status_code == 200, resp.text
    ours = columns_by_name(resp.json())

    store = feature_store(
        tree.settings, load_spec(tree.settings.tenants_path / TENANT / "tenant.yaml")
    )
    response = store.get_online_features(
        features=FEATURES, entity_rows=[{"driver_id": d} for d in DRIVERS]
    )
    assert ours == columns_by_name(convert_response_to_dict(response.proto))

    expected = _expected(tree)
    assert expected["conv_plus_acc"][0] is not None, "no source row in the last day"
    assert ours["trips_doubled"] == expected["trips_doubled"]
    for got, want in zip(ours["conv_plus_acc"], expected["conv_plus_acc"], strict=True):
        assert got == (None if want is None else pytest.approx(want, rel=1e-6))
    refused = {"features": ["stored_with_request:conv_plus_val"], "entities": body["entities"]}
    resp_refused = httpx.post(
        f"{gateway.base}/get-online-features", json=refused, headers=bearer(token)
    )
    assert resp_refused.status_code == 400, resp_refused.text
    assert "write_to_online_store=True with request data" in resp_refused.text
    statuses = resp.json()["results"][1]["statuses"]
    assert (statuses[0], statuses[-1]) == ("PRESENT", "NOT_FOUND")


def test_materialize_records_the_stored_views(stored: tuple[Tree, GatewayProcess, str]) -> None:
    """Each run of a stored view is in the run records (the gateway's materialization metrics
    and freshness), as a feature view's is: one success per `featureplane materialize`."""
    tree, _, _ = stored
    client = redis.Redis.from_url(tree.settings.require_redis_url())
    before = runs.parse(client.hgetall(runs.runs_key(TENANT)))
    done = cli(tree, "materialize", TENANT)
    assert done.returncode == 0, done.stderr
    assert (
        "not computed quickstart/stored_with_request: write_to_online_store=True with request"
        in " ".join(done.stdout.split())
    ), done.stdout
    after = runs.parse(client.hgetall(runs.runs_key(TENANT)))
    for view in ("stored_rates", "stored_trips"):
        assert after.views[view].success == before.views[view].success + 1, after.views[view]
        assert after.views[view].rows > 0
