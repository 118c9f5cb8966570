"""Feature logging through the real gateway: the repo `feast init` writes, plus a few logged
services, served by the gateway and read back with Feast's own logged-features API over the same
registry — rows, values, statuses and request ids equal what the gateway answered."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from feast import FeatureStore
from feast.feature_logging import FeatureServiceLoggingSource
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
from prometheus_client.parser import text_string_to_metric_families

from featureplane.embedded.gateway import GatewayProcess
from featureplane.embedded.redis import EmbeddedRedis
from featureplane.feast_config import feature_store
from featureplane.tenancy.catalog import load_spec
from tests.support.gateway import bearer, start_gateway
from tests.support.quickstart import TENANT, issue_token, quickstart_tree
from tests.support.trees import Tree

LOGGED = "driver_activity_logged"
SAMPLED = "driver_activity_sampled"
OVERFLOW = "driver_activity_overflow"
PARTITIONED = "driver_activity_partitioned"
# Feast's quickstart definitions, plus services that log elsewhere than its data/ folder (which
# also holds the quickstart's Parquet sources, so Feast cannot read logs back from there).
SERVICES = """

driver_activity_logged = FeatureService(
    name="driver_activity_logged",
    features=[
        driver_stats_fv[["conv_rate", "acc_rate", "avg_daily_trips"]],
        transformed_conv_rate,
    ],
    logging_config=LoggingConfig(destination=FileLoggingDestination(path="logs/activity")),
)
driver_activity_sampled = FeatureService(
    name="driver_activity_sampled",
    features=[driver_stats_fv[["conv_rate"]]],
    logging_config=LoggingConfig(
        destination=FileLoggingDestination(path="logs/sampled"), sample_rate=0.25
    ),
)
driver_activity_overflow = FeatureService(
    name="driver_activity_overflow",
    features=[driver_stats_fv[["conv_rate"]]],
    logging_config=LoggingConfig(destination=FileLoggingDestination(path="logs/overflow")),
)
driver_activity_partitioned = FeatureService(
    name="driver_activity_partitioned",
    features=[driver_stats_fv[["conv_rate"]]],
    logging_config=LoggingConfig(
        destination=FileLoggingDestination(path="logs/partitioned", partition_by=["__log_date"])
    ),
)
driver_activity_s3 = FeatureService(
    name="driver_activity_s3",
    features=[driver_stats_fv[["conv_rate"]]],
    logging_config=LoggingConfig(destination=FileLoggingDestination(path="s3://bucket/logs")),
)
driver_activity_outside = FeatureService(
    name="driver_activity_outside",
    features=[driver_stats_fv[["conv_rate"]]],
    logging_config=LoggingConfig(destination=FileLoggingDestination(path="../elsewhere")),
)
"""
ENTITIES = {"driver_id": [1001, 1002, 1005, 999999], "val_to_add": [1, 2, 3, 4],
            "val_to_add_2": [10, 20, 30, 40]}  # fmt: skip
STATUS = {name: number for name, number in FieldStatus.items()}


@pytest.fixture(scope="module")
def tree(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return quickstart_tree(tmp_path_factory.mktemp("feature-logging"), redis_server.url, SERVICES)


@pytest.fixture(scope="module")
def token(tree: Tree) -> str:
    return issue_token(tree)


def _gateway(tree: Tree, **settings: str) -> GatewayProcess:
    with pytest.MonkeyPatch.context() as env:
        for name, value in settings.items():
            env.setenv(f"FEATUREPLANE_{name.upper()}", value)
        # No rate quota: the sampling test sends a few hundred requests at once.
        return start_gateway(tree.settings.model_copy(update={"quotas_enabled": False}), 1)


@pytest.fixture(scope="module")
def gateway(tree: Tree) -> Iterator[GatewayProcess]:
    gateway = _gateway(tree, feature_log_flush_seconds="0.2")
    try:
        yield gateway
    finally:
        gateway.stop()


def _ask(gateway: GatewayProcess, token: str, body: dict[str, Any]) -> httpx.Response:
    answer = httpx.post(
        f"{gateway.base}/get-online-features", json=body, headers=bearer(token), timeout=10
    )
    assert answer.status_code == 200, answer.text
    return answer


def _metric(gateway: GatewayProcess, name: str, **labels: str) -> float:
    text = httpx.get(f"{gateway.base}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def _eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _store(tree: Tree) -> FeatureStore:
    return feature_store(
        tree.settings, load_spec(tree.settings.tenants_path / TENANT / "tenant.yaml")
    )


def _feast_logs(tree: Tree, service: str) -> list[dict[str, Any]]:
    """The service's logs as Feast reads them back (the provider's logged-features API)."""
    store = _store(tree)
    fs = store.get_feature_service(service)
    now = datetime.now(UTC)
    job = store._get_provider().retrieve_feature_service_logs(
        fs, now - timedelta(hours=1), now + timedelta(hours=1), store.config, store.registry
    )
    rows: list[dict[str, Any]] = job.to_arrow().to_pylist()
    return rows


def _logged_rows(tree: Tree, folder: str) -> int:
    path = tree.settings.feature_repo_path / TENANT / folder
    files = sorted(path.rglob("*.parquet")) if path.exists() else []
    return sum(pq.read_metadata(f).num_rows for f in files)


def _feast_schema(tree: Tree, service: str, scratch: Path) -> pa.Schema:
    """The schema Feast derives for the service's logs, as Parquet keeps it (there is no
    seconds unit in Parquet: Feast's own files hold its timestamp[s] columns as ms)."""
    store = _store(tree)
    source = FeatureServiceLoggingSource(store.get_feature_service(service), "demo")
    schema = source.get_schema(store.registry)
    pq.write_table(schema.empty_table(), scratch / f"{service}.parquet")
    return pq.read_schema(scratch / f"{service}.parquet").remove_metadata()


def _seconds(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def test_logs_read_back_by_feast_equal_the_answers(
    tree: Tree, gateway: GatewayProcess, token: str, tmp_path: Path
) -> None:
    asks: list[dict[str, Any]] = [
        {"entities": ENTITIES, "full_feature_names": False},
        {"entities": ENTITIES, "full_feature_names": True},
        {"entities": {k: v[:1] for k, v in ENTITIES.items()}},
    ]
    answers = []
    for ask in asks:
        answer = _ask(gateway, token, {"feature_service": LOGGED, **ask})
        answers.append((answer.headers["x-request-id"], ask, answer.json()))
    expected = sum(len(ask["entities"]["driver_id"]) for ask in asks)
    _eventually(lambda: _logged_rows(tree, "logs/activity") >= expected)

    logs = _feast_logs(tree, LOGGED)
    assert len(logs) == expected
    by_request: dict[str, list[dict[str, Any]]] = {}
    for row in logs:
        by_request.setdefault(row["__request_id"], []).append(row)
    store = _store(tree)
    features = [
        (f"{p.name_to_use()}__{f.name}", f.name)
        for p in store.get_feature_service(LOGGED).feature_view_projections
        for f in p.features
    ]
    for request_id, ask, answer in answers:
        names = answer["metadata"]["feature_names"]
        columns = dict(zip(names, answer["results"], strict=True))
        rows = by_request[request_id]
        # Feast reads the folder back in no particular order: match rows by entity and input.
        rows.sort(key=lambda r: r["driver_id"])
        order = sorted(range(len(rows)), key=lambda i: ask["entities"]["driver_id"][i])
        assert [r["driver_id"] for r in rows] == [ask["entities"]["driver_id"][i] for i in order]
        full = ask.get("full_feature_names", False)
        for row, i in zip(rows, order, strict=True):
            assert row["val_to_add"] == ask["entities"]["val_to_add"][i]
            assert row["val_to_add_2"] == ask["entities"]["val_to_add_2"][i]
            for column, feature in features:
                answered = columns[column if full else feature]
                assert row[column] == answered["values"][i], column
                assert row[f"{column}__status"] == STATUS[answered["statuses"][i]], column
                stamp = row[f"{column}__timestamp"]
                assert int(stamp.timestamp()) == _seconds(answered["event_timestamps"][i])
            assert row["__log_date"] == row["__log_timestamp"].date()
    statuses = {row["driver_hourly_stats__conv_rate__status"] for row in logs}
    assert statuses == {STATUS["PRESENT"], STATUS["NOT_FOUND"]}  # 999999 is not in the store

    # Feast's layout: <uuid>-0.parquet files in the destination, nothing staged left behind,
    # each in the schema Feast derives for the service.
    folder = tree.settings.feature_repo_path / TENANT / "logs" / "activity"
    assert all(re.fullmatch(r"[0-9a-f]{32}-0\.parquet", p.name) for p in folder.iterdir())
    schema = _feast_schema(tree, LOGGED, tmp_path)
    for part in folder.iterdir():
        assert pq.read_schema(part).remove_metadata() == schema
    assert _metric(
        gateway, "featureplane_feature_log_rows_total", tenant=TENANT, service=LOGGED
    ) == float(expected)


def test_the_quickstart_service_logs_to_its_data_folder(
    tree: Tree, gateway: GatewayProcess, token: str, tmp_path: Path
) -> None:
    """driver_activity_v1, unchanged: its logs land in the repo's data/ folder, as Feast's file
    store writes them, beside the quickstart's own Parquet files."""
    data = tree.settings.feature_repo_path / TENANT / "data"
    before = set(data.glob("*-0.parquet"))
    _ask(gateway, token, {"feature_service": "driver_activity_v1", "entities": ENTITIES})
    _eventually(lambda: len(set(data.glob("*-0.parquet")) - before) == 1)
    (part,) = set(data.glob("*-0.parquet")) - before
    table = pq.read_table(part)
    assert table.num_rows == len(ENTITIES["driver_id"])
    assert table.schema.remove_metadata() == _feast_schema(tree, "driver_activity_v1", tmp_path)


def test_partitioned_logs_are_laid_out_as_feast_writes_them(
    tree: Tree, gateway: GatewayProcess, token: str
) -> None:
    """With partition_by, Feast's file store writes <path>/<value>/<uuid>-0.parquet without the
    partition column: the gateway's file and the one Feast writes of the same rows (through
    FeatureStore.write_logged_features) sit in the same folder, in the same schema, equal."""
    _ask(gateway, token, {"feature_service": PARTITIONED, "entities": ENTITIES})
    folder = tree.settings.feature_repo_path / TENANT / "logs" / "partitioned"
    _eventually(lambda: any(folder.rglob("*.parquet")))
    (ours,) = folder.rglob("*.parquet")
    store = _store(tree)
    service = store.get_feature_service(PARTITIONED)
    schema = FeatureServiceLoggingSource(service, "demo").get_schema(store.registry)
    partitions = ds.partitioning(pa.schema([("__log_date", pa.date32())]))
    logged = ds.dataset(folder, format="parquet", partitioning=partitions).to_table()
    store.write_logged_features(logged.select(schema.names).cast(schema), service)
    (theirs,) = set(folder.rglob("*.parquet")) - {ours}
    assert ours.parent == theirs.parent == folder / str(logged["__log_date"][0])
    assert re.fullmatch(r"[0-9a-f]{32}-0\.parquet", ours.name)
    assert pq.read_schema(ours).remove_metadata() == pq.read_schema(theirs).remove_metadata()
    assert pq.read_table(ours).equals(pq.read_table(theirs))


def test_sample_rate_logs_about_that_fraction(
    tree: Tree, gateway: GatewayProcess, token: str
) -> None:
    body = {"feature_service": SAMPLED, "entities": {"driver_id": [1001]}}
    requests = 400
    with httpx.Client(headers=bearer(token), timeout=10) as client:
        for _ in range(requests):
            answer = client.post(f"{gateway.base}/get-online-features", json=body)
            assert answer.status_code == 200, answer.text
    time.sleep(1.0)  # five flush intervals
    logged = _logged_rows(tree, "logs/sampled")
    # 0.25 of 400: 100, standard deviation 8.7; this fails about once in 10^5 runs.
    assert 60 <= logged <= 140, logged
    assert len(_feast_logs(tree, SAMPLED)) == logged


def test_a_full_buffer_drops_and_counts_never_failing_a_request(tree: Tree, token: str) -> None:
    """A 20-row buffer whose interval never comes: a request that does not fit is dropped and
    counted (and answered); half full wakes the flusher early; shutdown writes the rest."""
    gateway = _gateway(tree, feature_log_max_rows="20", feature_log_flush_seconds="3600")
    four = {"feature_service": OVERFLOW, "entities": ENTITIES}
    many = {"feature_service": OVERFLOW, "entities": {k: v * 6 for k, v in ENTITIES.items()}}
    dropped = {"tenant": TENANT, "service": OVERFLOW, "reason": "overflow"}
    try:
        for body in (four, many, four):  # 4 kept, 24 more do not fit, 4 kept: 8 buffered
            _ask(gateway, token, body)
        _eventually(
            lambda: (
                _metric(gateway, "featureplane_feature_log_dropped_rows_total", **dropped) == 24.0
            )
        )
        assert _logged_rows(tree, "logs/overflow") == 0
        _ask(gateway, token, four)  # 12 buffered: over half, written now
        _eventually(lambda: _logged_rows(tree, "logs/overflow") == 12)
        _ask(gateway, token, four)  # 4 buffered at shutdown
    finally:
        gateway.stop()
    assert _logged_rows(tree, "logs/overflow") == 16


def _refused(gateway: GatewayProcess, service: str) -> float:
    labels = {"tenant": TENANT, "service": service, "reason": "refused"}
    return _metric(gateway, "featureplane_feature_log_dropped_rows_total", **labels)


def test_refused_destinations_are_counted_and_reported_once(
    tree: Tree, gateway: GatewayProcess, token: str
) -> None:
    for service in ("driver_activity_s3", "driver_activity_outside"):
        for _ in range(3):
            _ask(gateway, token, {"feature_service": service, "entities": ENTITIES})
        _eventually(lambda s=service: _refused(gateway, s) == 12.0)  # type: ignore[misc]
    text = gateway.log.read_text()
    assert text.count("'driver_activity_s3' of tenant 'quickstart' is not logged") == 1
    assert text.count("'driver_activity_outside' of tenant 'quickstart' is not logged") == 1
    assert not (tree.settings.feature_repo_path / "elsewhere").exists()
