"""The read path above the store seam, with the in-memory reader standing in for Redis."""

from __future__ import annotations

import asyncio
import time

import pytest
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.protos.feast.types.Value_pb2 import Value
from google.protobuf.timestamp_pb2 import Timestamp

from featureplane.errors import StoreUnavailableError
from featureplane.feast_config import close_registry, open_registry
from featureplane.gateway.lookup import FeatureRequest, Tally, prepare
from featureplane.gateway.plans import ReadPlans, ViewPlan
from featureplane.gateway.reader import InMemoryOnlineReader
from featureplane.online import codec
from featureplane.tenancy.catalog import TenantCatalog
from tests.support.deployment import Deployment

REQUEST = FeatureRequest(features=["account_stats:txn_count_24h"], entities={"account_id": [7, 8]})


def _plans(deployment: Deployment, fraud_serving: dict[str, object] | None = None) -> ReadPlans:
    """The read plans, fraud's tenant.yaml given ``serving: fraud_serving`` if set."""
    tenants = dict(deployment.catalog.tenants)
    if fraud_serving is not None:
        tenants["fraud"] = tenants["fraud"].model_validate(
            {**tenants["fraud"].model_dump(), "serving": fraud_serving}
        )
    registry = open_registry(deployment.settings)
    try:
        return ReadPlans.load(TenantCatalog(tenants, deployment.catalog.root), registry)
    finally:
        close_registry(registry)


@pytest.fixture(scope="module")
def catalog(deployment: Deployment) -> ReadPlans:
    return _plans(deployment)


@pytest.fixture(scope="module")
def checked(deployment: Deployment) -> ReadPlans:
    """fraud checking the ttl of every view (account_stats: 7 days)."""
    return _plans(deployment, {"ttl_check": {"default": True}})


def _stamp(event_time: float) -> bytes:
    ts = Timestamp(seconds=int(event_time), nanos=int(event_time % 1 * 1e9))
    raw: bytes = ts.SerializeToString()
    return raw


def _row(
    plan: ViewPlan, account: int, event_time: float, **values: Value
) -> dict[bytes, dict[bytes, bytes]]:
    """One stored account_stats row, as the engine writes it."""
    key = (
        plan.key_prefix
        + codec.coerce_key_value("account_id", codec.INT64, account)[1]
        + plan.key_suffix
    )
    stored = {plan.fields[f]: v.SerializeToString() for f, v in values.items()}
    return {key: {**stored, plan.ts_field: _stamp(event_time)}}


def test_values_come_from_the_hash_the_plan_names(
    deployment: Deployment, catalog: ReadPlans
) -> None:
    plan = catalog.projects["fraud"].views["account_stats"]
    key = (
        plan.key_prefix + codec.coerce_key_value("account_id", codec.INT64, 7)[1] + plan.key_suffix
    )
    stored = {
        plan.fields["txn_count_24h"]: Value(int64_val=42).SerializeToString(),
        plan.ts_field: Timestamp(seconds=1_700_000_000).SerializeToString(),
    }
    reader = InMemoryOnlineReader({key: stored})
    prepared = prepare(catalog, deployment.catalog["fraud"], REQUEST)
    tally: Tally = []
    answer = prepared.answer(asyncio.run(reader.read(prepared.commands)), tally=tally)
    column = answer["results"][1]
    # Years older than the view's 7-day ttl, and PRESENT: ttl is not checked by default.
    assert column["values"] == [42, None]
    assert column["statuses"] == ["PRESENT", "NOT_FOUND"]
    assert column["event_timestamps"] == ["2023-11-14T22:13:20Z", codec.EPOCH]
    assert tally == [("account_stats", "NOT_FOUND", 1), ("account_stats", "PRESENT", 1)]


def test_plans_hold_the_registry_ttl_and_check_it_only_when_the_owner_says(
    deployment: Deployment, catalog: ReadPlans, checked: ReadPlans
) -> None:
    week = 7 * 86400
    assert catalog.projects["fraud"].views["account_stats"].ttl_seconds == week
    assert catalog.projects["fraud"].views["account_stats"].max_age == 0
    assert checked.projects["fraud"].views["account_stats"].max_age == week
    assert checked.projects["pricing"].views == catalog.projects["pricing"].views  # not its own
    listed = _plans(deployment, {"ttl_check": {"default": True, "views": {"account_stats": False}}})
    assert listed.projects["fraud"].views["account_stats"].max_age == 0


def test_a_checked_view_answers_rows_older_than_its_ttl_as_outside_max_age(
    deployment: Deployment, checked: ReadPlans
) -> None:
    plan = checked.projects["fraud"].views["account_stats"]
    now, ttl = time.time(), plan.max_age
    old = now - ttl - 60
    store = {
        **_row(plan, 7, old, txn_count_24h=Value(int64_val=3)),  # stale
        **_row(plan, 8, now - ttl + 60, txn_count_24h=Value(int64_val=4)),  # just inside
        **_row(plan, 10, now - 60),  # fresh, its values null
    }
    request = FeatureRequest(
        features=["account_stats:txn_count_24h", "account_stats:is_flagged"],
        entities={"account_id": [7, 8, 9, 10, 7]},
    )
    prepared = prepare(checked, deployment.catalog["fraud"], request)
    tally: Tally = []
    answer = prepared.answer(
        asyncio.run(InMemoryOnlineReader(store).read(prepared.commands)), tally=tally
    )
    count, flagged = answer["results"][1:]
    stale = "OUTSIDE_MAX_AGE"
    assert count["values"] == [None, 4, None, None, None]
    assert count["statuses"] == [stale, "PRESENT", "NOT_FOUND", "NULL_VALUE", stale]
    assert flagged["values"] == [None] * 5
    assert flagged["statuses"] == [stale, "NULL_VALUE", "NOT_FOUND", "NULL_VALUE", stale]
    # A stale row still shows its event time, as Feast's server does for OUTSIDE_MAX_AGE.
    shown = codec.timestamp_text(_stamp(old))
    assert count["event_timestamps"][0] == count["event_timestamps"][4] == shown
    # Rows by their worst status: a null among the requested features makes NULL_VALUE.
    assert sorted(tally) == [
        ("account_stats", "NOT_FOUND", 1),
        ("account_stats", "NULL_VALUE", 2),
        ("account_stats", "OUTSIDE_MAX_AGE", 2),
    ]


def test_on_demand_views_get_stale_inputs_as_null_and_count_their_rows(
    deployment: Deployment, checked: ReadPlans
) -> None:
    plan = checked.projects["fraud"].views["account_stats"]
    now = time.time()
    avg = Value(double_val=10.0)
    store = {
        **_row(plan, 7, now - plan.max_age - 60, txn_amount_avg_7d=avg),
        **_row(plan, 8, now - 60, txn_amount_avg_7d=avg),
    }
    request = FeatureRequest(
        features=["transaction_risk:amount_vs_avg"],
        entities={"account_id": [7, 8], "txn_amount": [50.0, 20.0]},
    )
    prepared = prepare(checked, deployment.catalog["fraud"], request)
    replies = asyncio.run(InMemoryOnlineReader(store).read(prepared.commands))
    (computation,) = prepared.computations(replies)
    inputs = {c.name: c.values for c in computation.call.columns}
    assert inputs["txn_amount_avg_7d"] == [None, avg.SerializeToString()]
    response = GetOnlineFeaturesResponse()  # what the worker would answer
    response.metadata.feature_names.val.append("amount_vs_avg")
    response.results.add().values.extend([Value(), Value(double_val=2.0)])
    tally: Tally = []
    answer = prepared.answer(replies, [(computation, response)], tally)
    assert answer["results"][1]["statuses"] == ["NULL_VALUE", "PRESENT"]
    assert tally == [("transaction_risk", "NULL_VALUE", 1), ("transaction_risk", "PRESENT", 1)]


def test_an_unavailable_store_is_a_503_error(deployment: Deployment, catalog: ReadPlans) -> None:
    reader = InMemoryOnlineReader()
    reader.available = False
    with pytest.raises(StoreUnavailableError) as excinfo:
        asyncio.run(reader.read(prepare(catalog, deployment.catalog["fraud"], REQUEST).commands))
    assert excinfo.value.status_code == 503
