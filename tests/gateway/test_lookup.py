"""The read path above the store seam, with the in-memory reader standing in for Redis."""

from __future__ import annotations

import asyncio

import pytest
from feast.protos.feast.types.Value_pb2 import Value
from google.protobuf.timestamp_pb2 import Timestamp

from featureplane.errors import StoreUnavailableError
from featureplane.feast_config import close_registry, open_registry
from featureplane.gateway.lookup import FeatureRequest, prepare
from featureplane.gateway.plans import ReadPlans
from featureplane.gateway.reader import InMemoryOnlineReader
from featureplane.online import codec
from tests.support.deployment import Deployment

REQUEST = FeatureRequest(features=["account_stats:txn_count_24h"], entities={"account_id": [7, 8]})


@pytest.fixture(scope="module")
def catalog(deployment: Deployment) -> ReadPlans:
    registry = open_registry(deployment.settings)
    try:
        return ReadPlans.load(deployment.catalog, registry)
    finally:
        close_registry(registry)


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
    answer = prepared.answer(asyncio.run(reader.read(prepared.commands)))
    column = answer["results"][1]
    assert column["values"] == [42, None]
    assert column["statuses"] == ["PRESENT", "NOT_FOUND"]
    assert column["event_timestamps"] == ["2023-11-14T22:13:20Z", codec.EPOCH]


def test_an_unavailable_store_is_a_503_error(deployment: Deployment, catalog: ReadPlans) -> None:
    reader = InMemoryOnlineReader()
    reader.available = False
    with pytest.raises(StoreUnavailableError) as excinfo:
        asyncio.run(reader.read(prepare(catalog, deployment.catalog["fraud"], REQUEST).commands))
    assert excinfo.value.status_code == 503
