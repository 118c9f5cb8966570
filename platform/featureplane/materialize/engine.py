"""A Feast batch engine that writes Feast's Redis layout column-wise, in bounded batches.

Select it in feature_store.yaml, and `featureplane materialize` and plain `feast materialize`
both use it::

    batch_engine:
      type: featureplane.materialize.engine.FeatureplaneEngine
      batch_rows: 10000

Feast's local engine reads the window into pandas, converts every cell to a protobuf object,
hashes every field name again for every row and talks to Redis through redis-py's per-command
machinery. This engine keeps the data in Arrow end to end:

- **Read** (:mod:`featureplane.materialize.filesource`): a Parquet ``FileSource`` under Feast's
  file offline store is scanned with ``pyarrow.dataset`` — only the needed columns, the window
  filter pushed into the scan — in two passes: keys and times to find each entity's latest row
  (Feast's order: event time, then created time), then the feature columns a batch of
  ``batch_rows`` at a time, keeping those rows. Memory is the window's keys and times plus one
  batch. Any other source goes through the offline store's ``pull_latest_from_table_or_query``.
- **Encode** (:mod:`featureplane.online.encoding`): keys, values and timestamps a column at
  a time into Feast's exact bytes, then every row's whole ``HSET`` (and ``EXPIRE``) command as
  RESP, so a batch is one contiguous buffer — no Python loop over rows or cells.
- **Write** (:mod:`featureplane.online.pipeline`): one raw pipelined connection (on a
  Redis Cluster, one per primary: each batch is split by the owner of each key's slot). Each
  batch first learns what Redis holds: while no key of the run exists yet, one ``EXISTS key…``
  per batch (a first load costs Redis one lookup per key and Python one reply); once one does,
  one ``HGET key _ts:<view>`` per key. Then ``HSET`` only the rows newer than what is stored
  (Feast's rule): an older event never overwrites a newer one, and a rerun writes nothing. The
  read-then-write window is one batch, as in Feast. The store's ``skip_dedup`` skips the read,
  as Feast skips it. HSET replies are only counted (one line each), when the next batch's
  lookup is read, so Redis writes one batch while Python encodes the next.

On 1M entities x 10 features Redis' own CPU time (about 2.4 us per 11-field HSET) is what
bounds a run; the Python side uses about two thirds of it.

The bytes are exactly Feast's, so Feast's SDK and the gateway read them unchanged (one
deliberate difference: an int column with nulls keeps its exact values, where Feast's local
engine goes through float64 and rounds past 2**53). What this engine does not specialise — a
non-Redis online store, views with transformations, aggregations or vector indexes, views also
written offline, entityless views — Feast's local engine does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis
from feast.infra.common.materialization_job import MaterializationJobStatus, MaterializationTask
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.online_stores.redis import RedisOnlineStore, _versioned_fv_name
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel
from feast.utils import _get_column_names
from pydantic import StrictInt
from redis.cluster import RedisCluster
from redis.exceptions import ClusterDownError

from featureplane.materialize.filesource import Columns, LatestRows, latest_mask, local_parquet_path
from featureplane.online import codec, encoding
from featureplane.online.pipeline import Pipeline
from featureplane.online.slots import key_slot, slot_owners


class FeatureplaneEngineConfig(FeastConfigBaseModel):  # type: ignore[misc]  # Feast is untyped
    type: Literal["featureplane.materialize.engine.FeatureplaneEngine"] = (
        "featureplane.materialize.engine.FeatureplaneEngine"
    )
    batch_rows: StrictInt = 10_000
    """Rows read, encoded and written per round trip: bounds memory beyond the keys."""


@dataclass(frozen=True)
class _ViewLayout:
    """Where a view's columns come from and what they become in Redis."""

    columns: Columns  # source column names
    key_columns: list[str]  # source names of the join keys, sorted by their Feast names
    key_names: list[str]  # the join keys' Feast names, sorted
    key_types: list[int]
    value_types: list[int]  # per feature, in ``columns.features`` order
    fields: list[bytes]  # per feature: the hash field
    ts_field: bytes
    suffix: bytes  # the project


class FeatureplaneEngine(LocalComputeEngine):  # type: ignore[misc]  # Feast is untyped
    def __init__(self, *, batch_rows: int = 10_000, **kwargs: Any) -> None:
        kwargs.pop("type", None)
        super().__init__(**kwargs)
        self.batch_rows = batch_rows

    def _materialize_one(
        self, registry: BaseRegistry, task: MaterializationTask, **kwargs: Any
    ) -> LocalMaterializationJob:
        if not self._specialised(task.feature_view):
            return super()._materialize_one(registry, task, **kwargs)
        job_id = f"{task.feature_view.name}-{task.start_time}-{task.end_time}"
        try:
            self._write(registry, task)
        except Exception as exc:  # Feast expects failures as job status, not exceptions
            return LocalMaterializationJob(
                job_id=job_id, status=MaterializationJobStatus.ERROR, error=exc
            )
        return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.SUCCEEDED)

    def _specialised(self, fv: Any) -> bool:
        """Whether this engine writes the view itself (else Feast's local engine does)."""
        return (
            isinstance(self.online_store, RedisOnlineStore)
            and bool(fv.online)
            and not getattr(fv, "offline", False)
            and not getattr(fv, "feature_transformation", None)
            and not getattr(fv, "aggregations", None)
            and bool(fv.entity_columns)
            and not any(f.vector_index for f in fv.schema)  # Feast validates vector widths
        )

    def _layout(self, registry: BaseRegistry, task: MaterializationTask) -> _ViewLayout:
        fv = task.feature_view
        entities = [registry.get_entity(name, task.project) for name in fv.entities]
        join_keys, features, ts_field, created_field = _get_column_names(fv, entities)
        # _get_column_names reverses the field mapping; pair each source column with its name.
        source_of = dict(zip((e.join_key for e in entities), join_keys, strict=True))
        key_types = {c.name: int(c.dtype.to_value_type().value) for c in fv.entity_columns}
        for entity in entities:
            key_types.setdefault(entity.join_key, int(entity.value_type.value))
        key_names = sorted(source_of)
        view = _versioned_fv_name(fv, self.repo_config)
        return _ViewLayout(
            columns=Columns(join_keys, features, ts_field, created_field),
            key_columns=[source_of[k] for k in key_names],
            key_names=key_names,
            key_types=[key_types[k] for k in key_names],
            value_types=[int(f.dtype.to_value_type().value) for f in fv.features],
            fields=[codec.feature_field(view, f.name) for f in fv.features],
            ts_field=codec.timestamp_field(view),
            suffix=task.project.encode(),
        )

    def _latest_rows(self, task: MaterializationTask, layout: _ViewLayout) -> Iterable[Any]:
        """The window's latest row per entity, in record batches with the source's names."""
        source = task.feature_view.batch_source
        path = local_parquet_path(source, self.repo_config.repo_path)
        if path is not None and self.repo_config.offline_store.type in ("file", "dask"):
            rows = LatestRows(path, layout.columns, task.start_time, task.end_time, self.batch_rows)
            if LatestRows.supports(rows.dataset.schema, layout.columns):
                return rows
        return self._offline_rows(task, layout)

    def _offline_rows(
        self, task: MaterializationTask, layout: _ViewLayout
    ) -> Iterator[pa.RecordBatch]:
        columns = layout.columns
        table: pa.Table = self.offline_store.pull_latest_from_table_or_query(
            config=self.repo_config,
            data_source=task.feature_view.batch_source,
            join_key_columns=list(columns.join_keys),
            feature_name_columns=list(columns.features),
            timestamp_field=columns.timestamp,
            created_timestamp_column=columns.created,
            start_date=task.start_time,
            end_date=task.end_time,
        ).to_arrow()
        # The store promises one row per entity; the writer relies on it, so make sure.
        order = [columns.timestamp] + ([columns.created] if columns.created else [])
        mask = latest_mask(table, columns.join_keys, order)
        if mask is not None:
            table = table.filter(pa.array(mask))
        yield from table.to_batches(max_chunksize=self.batch_rows)

    def _write(self, registry: BaseRegistry, task: MaterializationTask) -> int:
        layout = self._layout(registry, task)
        config = self.repo_config.online_store
        client = self.online_store._get_client(config)
        batches = self._latest_rows(task, layout)
        dedup = not getattr(config, "skip_dedup", False)
        ttl = str(config.key_ttl_seconds).encode() if config.key_ttl_seconds else None
        if not _standalone(client):
            return _write_cluster(client, batches, layout, dedup, ttl)
        with Pipeline(client) as pipe:
            writer = _Writer(pipe, layout, dedup, ttl)
            for batch in batches:
                if batch.num_rows:
                    writer.write(batch, _keys(batch, layout))
            pipe.drain()
        return writer.written


class _Writer:
    """A view's batches to one Redis node through one :class:`Pipeline` (module docstring)."""

    def __init__(
        self,
        pipe: Pipeline,
        layout: _ViewLayout,
        dedup: bool,
        ttl: bytes | None,
        probe: bool = True,
    ) -> None:
        self.pipe, self.layout, self.dedup, self.ttl = pipe, layout, dedup, ttl
        # Until a batch finds a key that exists, one EXISTS per batch replaces the per-key
        # HGETs: far less work for Redis on a first load. From then on, HGETs.
        self.probe = probe
        self.written = 0

    def write(self, batch: pa.RecordBatch, keys: encoding.Pieces) -> None:
        pipe, layout, rows = self.pipe, self.layout, batch.num_rows
        if self.dedup:  # Redis answers while the values are encoded below
            pipe.send(*_lookup(rows, keys, layout, self.probe))
        commands, nanos = _hset(batch, keys, layout, self.ttl)
        if self.dedup:
            if self.probe and pipe.read(1)[0]:  # some keys exist: look their times up
                self.probe = False
                pipe.send(*_lookup(rows, keys, layout, self.probe))
            if not self.probe:
                commands = _only_newer(commands, nanos, pipe.read(rows))
        pipe.send(encoding.payload(commands))
        pipe.sent_writes(len(commands) * (2 if self.ttl else 1))
        self.written += len(commands)


def _standalone(client: Any) -> bool:
    """A standalone (or Sentinel-managed) Redis; else a Redis Cluster (:func:`_write_cluster`)."""
    return isinstance(client, redis.Redis)


def _keys(batch: pa.RecordBatch, layout: _ViewLayout) -> list[encoding.Piece | bytes]:
    return encoding.key_pieces(
        [batch.column(c) for c in layout.key_columns],
        layout.key_types,
        layout.key_names,
        layout.suffix,
    )


def _lookup(
    rows: int, keys: encoding.Pieces, layout: _ViewLayout, probe: bool
) -> list[bytes | memoryview]:
    """``EXISTS key…`` (one command, one reply) or one ``HGET key _ts:<view>`` per row."""
    if probe:
        listed = encoding.payload(encoding.Rows(rows).bulk(keys).build())
        return [b"*%d\r\n$6\r\nEXISTS\r\n" % (rows + 1), listed]
    return [encoding.payload(encoding.Rows(rows).command(b"HGET", keys, layout.ts_field).build())]


def _values(batch: pa.RecordBatch, layout: _ViewLayout) -> list[list[encoding.Piece]]:
    return [
        encoding.value_pieces(batch.column(c), t)
        for c, t in zip(layout.columns.features, layout.value_types, strict=True)
    ]


def _hset(
    batch: pa.RecordBatch, keys: encoding.Pieces, layout: _ViewLayout, ttl: bytes | None
) -> tuple[encoding.Bytes, np.ndarray[Any, Any]]:
    """Every row's ``HSET key field value … _ts:<view> ts`` (+ ``EXPIRE``), and its event time."""
    stamps, nanos = encoding.timestamps(batch.column(layout.columns.timestamp))
    arguments: list[bytes | encoding.Pieces] = [b"HSET", keys]
    for field, pieces in zip(layout.fields, _values(batch, layout), strict=True):
        arguments += [field, pieces]
    arguments += [layout.ts_field, [stamps]]
    rows = encoding.Rows(batch.num_rows).command(*arguments)
    if ttl:
        rows.command(b"EXPIRE", keys, ttl)
    return rows.build(), nanos


def _newer(nanos: np.ndarray[Any, Any], stored: Sequence[bytes | None]) -> np.ndarray[Any, Any]:
    """Rows whose event time is newer than the stored one (Feast's rule: a stored time of
    zero, or none, never wins)."""
    if not any(stored):  # a fresh store: nothing to decode
        return np.ones(len(nanos), dtype=np.bool_)
    held = encoding.timestamp_nanos(stored)
    return (held == 0) | (nanos > held)  # type: ignore[no-any-return]


def _only_newer(
    commands: encoding.Bytes, nanos: np.ndarray[Any, Any], stored: Sequence[bytes | None]
) -> encoding.Bytes:
    newer = _newer(nanos, stored)
    return commands if newer.all() else pc.filter(commands, pa.array(newer))


def _write_cluster(
    client: RedisCluster,
    batches: Iterable[pa.RecordBatch],
    layout: _ViewLayout,
    dedup: bool,
    ttl: bytes | None,
) -> int:
    """The same writes on a Redis Cluster: each batch split by the primary owning each key's
    slot, each part written through that primary's own :class:`Pipeline`. No ``EXISTS`` probe
    (a multi-key command must stay within one slot): dedup always looks times up per key. A
    slot that moves during the run fails it (``MOVED``); a rerun writes only what is missing."""
    cache = client.nodes_manager.slots_cache  # slot -> [primary, replicas…]
    nodes = {held[0].name: held[0] for held in cache.values()}
    by_slot, primaries = slot_owners((slot, slot, held[0].name) for slot, held in cache.items())
    if any(owner is None for owner in by_slot):
        raise ClusterDownError("the Redis Cluster does not serve every slot")
    index = {name: n for n, name in enumerate(primaries)}
    owners = np.array([index[name] for name in by_slot], dtype=np.int64)
    with contextlib.ExitStack() as stack:
        writers = [
            _Writer(
                stack.enter_context(Pipeline(client.get_redis_connection(nodes[name]))),
                layout,
                dedup,
                ttl,
                probe=False,
            )
            for name in primaries
        ]
        for batch in batches:
            rows = batch.num_rows
            if rows == 0:
                continue
            keys = encoding.join(_keys(batch, layout), rows)
            slots = np.fromiter((key_slot(k) for k in keys.to_pylist()), np.int64, rows)
            node_of = owners[slots]
            for n, writer in enumerate(writers):
                picked = np.flatnonzero(node_of == n)
                if len(picked) == rows:
                    writer.write(batch, [keys])
                elif len(picked):
                    taken = pa.array(picked)
                    writer.write(batch.take(taken), [keys.take(taken)])
        for writer in writers:
            writer.pipe.drain()
    return sum(w.written for w in writers)
