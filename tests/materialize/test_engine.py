"""The featureplane batch engine writes exactly what Feast's local engine writes.

Both engines materialize the same offline data of every sample tenant (int64, int32, float,
double, bool, string, unix_timestamp, string/float/double lists, nulls) into two Redis
databases; every key and every hash field must be byte-for-byte equal.
"""

from __future__ import annotations

from datetime import timedelta

import redis
from feast import FeatureStore, RepoConfig

from featureplane.feast_config import render
from featureplane.settings import Settings
from tests.support.deployment import Deployment

ENGINE = {"type": "featureplane.materialize.engine.FeatureplaneEngine", "batch_rows": 97}


def _store(settings: Settings, project: str, engine: object) -> FeatureStore:
    raw = render(settings, project)
    raw["batch_engine"] = engine
    return FeatureStore(config=RepoConfig(**raw))


def _dump(url: str) -> dict[bytes, dict[bytes, bytes]]:
    with redis.Redis.from_url(url) as client:
        return {key: client.hgetall(key) for key in client.scan_iter(count=1000)}


def test_featureplane_engine_writes_feasts_bytes(deployment: Deployment) -> None:
    base = deployment.settings.require_redis_url().rsplit("/", 1)[0]
    urls = {"local": f"{base}/11", ENGINE["type"]: f"{base}/12"}
    start, end = deployment.now - timedelta(days=30), deployment.now + timedelta(hours=1)
    for engine, url in urls.items():
        with redis.Redis.from_url(url) as client:
            client.flushdb()
        settings = deployment.settings.model_copy(update={"redis_url": url})
        for spec in deployment.catalog.values():
            config = ENGINE if engine == ENGINE["type"] else "local"
            store = _store(settings, spec.feast_project, config)
            used = type(store._get_provider().batch_engine).__name__
            assert used == ("FeatureplaneEngine" if config is ENGINE else "LocalComputeEngine")
            store.materialize(start, end)
    theirs, ours = _dump(urls["local"]), _dump(urls[ENGINE["type"]])
    assert len(theirs) > 1000
    assert ours.keys() == theirs.keys()
    for key, fields in theirs.items():
        assert ours[key] == fields, key


def test_older_events_never_overwrite_newer_ones(deployment: Deployment) -> None:
    """A rerun writes nothing new, and a window ending before the newest events changes nothing."""
    base = deployment.settings.require_redis_url().rsplit("/", 1)[0]
    url = f"{base}/13"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    settings = deployment.settings.model_copy(update={"redis_url": url})
    spec = deployment.catalog["fraud"]
    store = _store(settings, spec.feast_project, ENGINE)
    store.materialize(deployment.now - timedelta(days=30), deployment.now + timedelta(hours=1))
    before = _dump(url)
    store.materialize(deployment.now - timedelta(days=30), deployment.now + timedelta(hours=1))
    store.materialize(deployment.now - timedelta(days=30), deployment.now - timedelta(days=1))
    assert _dump(url) == before
