"""A Feast batch engine that writes Feast's Redis layout column-wise, in bounded batches.

Select it in feature_store.yaml, and `featureplane materialize` and plain `feast materialize`
both use it::

    batch_engine:
      type: featureplane.materialize.engine.FeatureplaneEngine
      batch_rows: 10000

Feast's local engine converts every cell to a protobuf object, hashes every field name again for
every row and holds the whole window in memory as Python objects. This engine asks the offline
store for the same latest-row-per-entity table, then per Arrow batch of ``batch_rows`` rows:
encodes keys, values and timestamps a column at a time (:mod:`featureplane.materialize.encoding`),
reads the stored event times in one pipelined round trip, and writes only rows that are newer
(an older event never overwrites a newer one; rerunning writes nothing) with pipelined HSETs.
The bytes are exactly Feast's, so Feast's SDK and the gateway read them unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa
import redis
from feast.infra.common.materialization_job import MaterializationJobStatus, MaterializationTask
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel
from feast.utils import _get_column_names
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import StrictInt

from featureplane.gateway import codec
from featureplane.materialize import encoding
from featureplane.resp import Command, pack_all


class FeatureplaneEngineConfig(FeastConfigBaseModel):  # type: ignore[misc]  # Feast is untyped
    type: Literal["featureplane.materialize.engine.FeatureplaneEngine"] = (
        "featureplane.materialize.engine.FeatureplaneEngine"
    )
    batch_rows: StrictInt = 10_000
    """Rows encoded and written per round trip; bounds memory beyond the offline table."""


class FeatureplaneEngine(LocalComputeEngine):  # type: ignore[misc]  # Feast is untyped
    def __init__(self, *, batch_rows: int = 10_000, **kwargs: Any) -> None:
        kwargs.pop("type", None)
        super().__init__(**kwargs)
        self.batch_rows = batch_rows

    def _materialize_one(
        self, registry: BaseRegistry, task: MaterializationTask, **kwargs: Any
    ) -> LocalMaterializationJob:
        job_id = f"{task.feature_view.name}-{task.start_time}-{task.end_time}"
        try:
            self._write(registry, task)
        except Exception as exc:  # Feast expects failures as job status, not exceptions
            return LocalMaterializationJob(
                job_id=job_id, status=MaterializationJobStatus.ERROR, error=exc
            )
        return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.SUCCEEDED)

    def _write(self, registry: BaseRegistry, task: MaterializationTask) -> int:
        fv = task.feature_view
        entities = [registry.get_entity(name, task.project) for name in fv.entities]
        join_keys, features, ts_field, created_field = _get_column_names(fv, entities)
        table: pa.Table = self.offline_store.pull_latest_from_table_or_query(
            config=self.repo_config,
            data_source=fv.batch_source,
            join_key_columns=join_keys,
            feature_name_columns=features,
            timestamp_field=ts_field,
            created_timestamp_column=created_field,
            start_date=task.start_time,
            end_date=task.end_time,
        ).to_arrow()
        mapping = fv.batch_source.field_mapping or {}
        table = table.rename_columns([mapping.get(c, c) for c in table.column_names])
        key_types = {c.name: int(c.dtype.to_value_type().value) for c in fv.entity_columns}
        for entity in entities:
            key_types.setdefault(entity.join_key, int(entity.value_type.value))
        sorted_keys = sorted(mapping.get(k, k) for k in join_keys)
        value_types = {f.name: int(f.dtype.to_value_type().value) for f in fv.features}
        fields = [codec.feature_field(fv.name, f) for f in value_types]
        ts_key = codec.timestamp_field(fv.name)
        ts_column = mapping.get(fv.batch_source.timestamp_field, fv.batch_source.timestamp_field)
        config = self.repo_config.online_store
        client = self.online_store._get_client(config)
        prefix, suffix = codec.key_names_prefix(sorted_keys), task.project.encode()
        written = 0
        for batch in table.to_batches(max_chunksize=self.batch_rows):
            keys = encoding.entity_keys(
                [batch.column(k) for k in sorted_keys],
                [key_types[k] for k in sorted_keys],
                prefix,
                suffix,
            )
            stamps, nanos = encoding.timestamps(batch.column(ts_column))
            stored = _pipeline(client, [(b"HGET", key, ts_key) for key in keys])
            newer = _newer_rows(keys, nanos, stored)
            if not newer:
                continue
            columns = [encoding.value_column(batch.column(f), t) for f, t in value_types.items()]
            writes: list[Command] = []
            for i in newer:
                pairs = [
                    p for field, col in zip(fields, columns, strict=True) for p in (field, col[i])
                ]
                writes.append((b"HSET", keys[i], *pairs, ts_key, stamps[i]))
                if config.key_ttl_seconds:
                    writes.append((b"EXPIRE", keys[i], str(config.key_ttl_seconds).encode()))
            _pipeline(client, writes)
            written += len(newer)
        return written


def _pipeline(client: Any, commands: list[Command]) -> list[Any]:
    """Send the commands in one write and read every reply (standalone Redis); Redis Cluster
    clients route by slot, so they go through redis-py's own pipeline instead."""
    if not isinstance(client, redis.Redis):
        with client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(pipe.execute())
    connection = client.connection_pool.get_connection()
    try:
        # One buffer: given a list, redis-py calls sendall once per item.
        connection.send_packed_command([pack_all(commands)])
        replies = [connection.read_response() for _ in commands]
    except BaseException:
        connection.disconnect()  # a half-read connection must not go back to the pool
        raise
    finally:
        client.connection_pool.release(connection)
    for reply in replies:
        if isinstance(reply, redis.ResponseError):
            raise reply
    return replies


def _newer_rows(
    keys: list[bytes], nanos: np.ndarray[Any, Any], stored: list[bytes | None]
) -> list[int]:
    """Rows whose event time is newer than what the store holds (and than earlier rows here)."""
    latest: dict[bytes, int] = {}
    keep: dict[bytes, int] = {}
    for i, (key, raw) in enumerate(zip(keys, stored, strict=True)):
        seen = latest.get(key)
        if seen is None:
            seen = 0
            if raw:
                ts = Timestamp.FromString(raw)
                seen = ts.seconds * 1_000_000_000 + ts.nanos
        new = int(nanos[i])
        if seen and new <= seen:
            continue
        latest[key] = new
        keep[key] = i
    return sorted(keep.values())
