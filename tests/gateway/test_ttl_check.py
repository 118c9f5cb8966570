"""tenant.yaml ``serving.ttl_check`` through the real gateway and Redis: a tenant with two views
of one source (one-hour ttl each), one checked, materialized from a batch with a row two hours
old; the answers, and the status counter scraped from /metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyarrow as pa
import pytest
from prometheus_client.parser import text_string_to_metric_families

from featureplane.embedded.gateway import GatewayProcess
from featureplane.embedded.redis import EmbeddedRedis
from featureplane.materialize.runner import materialize_tenant
from featureplane.offline import write_part
from featureplane.online.clients import redis_client
from featureplane.registry.apply import apply_tenant
from featureplane.sources import landing_dir
from featureplane.tenancy.catalog import load_spec
from featureplane.tenancy.credentials import CredentialStore
from tests.support.gateway import bearer, start_gateway
from tests.support.trees import Platform

TENANT = "ttlcheck"
DEFINITIONS = '''\
"""Two views of one source, both with a one-hour ttl."""

from datetime import timedelta

from feast import Entity, FeatureView, Field, ValueType
from feast.types import Int64

from featureplane.sources import parquet_source

OWNER = "ml@example.com"
account = Entity(
    name="account", join_keys=["account_id"], value_type=ValueType.INT64,
    description="An account.", owner=OWNER,
)
activity = parquet_source("activity")


def view(name):
    return FeatureView(
        name=name, entities=[account], ttl=timedelta(hours=1),
        schema=[
            Field(name="account_id", dtype=Int64),
            Field(name="clicks", dtype=Int64, description="Clicks."),
        ],
        source=activity, description=f"{name}.", owner=OWNER,
    )


checked_stats = view("checked_stats")
plain_stats = view("plain_stats")
'''
# plain_stats is not listed: unchecked, the default.
SERVING = "serving: {ttl_check: {views: {checked_stats: true}}}\n"

NOW = datetime.now(UTC).replace(microsecond=0)
OLD = NOW - timedelta(hours=2)  # older than the ttl
FRESH = NOW - timedelta(minutes=1)
# Account 1 is stale, 2 fresh, 3 absent, 4 fresh with a null value.
BATCH = pa.table(
    {
        "account_id": pa.array([1, 2, 4], pa.int64()),
        "clicks": pa.array([10, 20, None], pa.int64()),
        "event_timestamp": pa.array([OLD, FRESH, FRESH], pa.timestamp("us", tz="UTC")),
    }
)
BODY = {
    "features": ["checked_stats:clicks", "plain_stats:clicks"],
    "entities": {"account_id": [1, 2, 3, 4]},
    "full_feature_names": True,
}


@pytest.fixture(scope="module")
def served(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, str]]:
    platform = Platform(tmp_path_factory.mktemp("ttl"), redis_server.url)
    tree = platform.tree("tree", TENANT, {f"{TENANT}_definitions.py": DEFINITIONS}, SERVING)
    spec = load_spec(tree.settings.tenants_path / TENANT / "tenant.yaml")
    apply_tenant(tree.settings, spec)
    write_part(BATCH, landing_dir(tree.settings.data_path, spec.feast_project, "activity"), "b")
    materialize_tenant(tree.settings, spec)
    with redis_client(tree.settings) as client:
        token = CredentialStore(client, tree.settings.pepper).issue(TENANT).token
    gateway = start_gateway(tree.settings, workers=1)
    try:
        yield gateway, token
    finally:
        gateway.stop()


def _statuses(base: str) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return {
        (s.labels["feature_view"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "featureplane_feature_status_total" and s.labels["tenant"] == TENANT
    }


def test_a_checked_view_answers_stale_rows_as_outside_max_age_and_counts_them(
    served: tuple[GatewayProcess, str],
) -> None:
    gateway, token = served
    sent = 3
    for _ in range(sent):
        answer = httpx.post(
            f"{gateway.base}/get-online-features", json=BODY, headers=bearer(token), timeout=10
        )
        assert answer.status_code == 200, answer.text
    got: dict[str, Any] = answer.json()
    columns = dict(zip(got["metadata"]["feature_names"], got["results"], strict=True))
    checked, plain = columns["checked_stats__clicks"], columns["plain_stats__clicks"]
    old, fresh = (t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in (OLD, FRESH))
    epoch = "1970-01-01T00:00:00Z"
    assert checked == {
        "values": [None, 20, None, None],
        "statuses": ["OUTSIDE_MAX_AGE", "PRESENT", "NOT_FOUND", "NULL_VALUE"],
        "event_timestamps": [old, fresh, epoch, fresh],  # a stale row shows its event time
    }
    # Off by default: the same two-hour-old row is PRESENT, as in Feast.
    assert plain == {
        "values": [10, 20, None, None],
        "statuses": ["PRESENT", "PRESENT", "NOT_FOUND", "NULL_VALUE"],
        "event_timestamps": [old, fresh, epoch, fresh],
    }
    expected = {
        ("checked_stats", "OUTSIDE_MAX_AGE"): sent,
        ("checked_stats", "PRESENT"): sent,
        ("checked_stats", "NOT_FOUND"): sent,
        ("checked_stats", "NULL_VALUE"): sent,
        ("plain_stats", "PRESENT"): 2 * sent,
        ("plain_stats", "NOT_FOUND"): sent,
        ("plain_stats", "NULL_VALUE"): sent,
    }
    deadline = time.monotonic() + 5  # buffered: exported within FLUSH_SECONDS
    while (counted := _statuses(gateway.base)) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert counted == expected
