"""Feature logging: what a feature service with a ``logging_config`` served, written to its
owner's offline store in Feast's logged-features format, off the request path.

The request path calls :meth:`FeatureLog.offer` once it has encoded the answer: two dict
lookups, the sampling draw (``sample_rate``: a fraction of requests, as Feast samples) and
appends of what the request already holds (its body and the encoded answer, as bytes: holding
the answer's dicts and lists until the write instead made garbage collection and allocation
dearer for every request). Every ``feature_log_flush_seconds``, or sooner once the buffer is
half full, :meth:`FeatureLog.run` takes the buffer and, in a thread, parses each service's
answers into one Arrow table of Feast's schema (:mod:`.logplans`) and writes it as Feast's file
offline store writes logs (``DaskOfflineStore.write_logged_features``): a ``<uuid>-0.parquet``
in the destination folder (a relative path is in the owner's repo folder), inside
``partition_by`` folders if any. The file is written in a hidden folder beside it (readers skip
names starting with ``.``) and renamed into place, so a reader never sees part of one.

Bounded: a worker holds at most ``feature_log_max_rows`` rows besides the batch being written;
a request that does not fit is answered and not logged. Rows not logged are counted by reason
(``overflow``, ``refused``, ``error``); nothing here waits or fails a request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import random
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

from featureplane.gateway.logplans import LOG_DATE, LOG_TIMESTAMP, REQUEST_ID, ServiceLogging
from featureplane.observability.metrics import (
    FEATURE_LOG_DROPPED_ROWS,
    FEATURE_LOG_ROWS,
    buffered_counter,
)
from featureplane.sources import offline_dir

if TYPE_CHECKING:
    from featureplane.gateway.lookup import PreparedLookup
    from featureplane.gateway.plans import ReadPlans
    from featureplane.settings import Settings

log = logging.getLogger("featureplane.gateway")
# Feast's FieldStatus names, at the index of their number (a log's status column holds it).
_STATUSES = pa.array([FieldStatus.Name(n) for n in range(len(FieldStatus.keys()))])

# One logged request: its plan, its body, the encoded answer, the request id, when it was
# answered (epoch seconds) and its entity rows.
_Item = tuple[ServiceLogging, bytes, bytes, str | None, float, int]


class _Buffer:
    """Logged requests, a list per part of :data:`_Item`: an append creates no object that the
    garbage collector tracks (a tuple per request would, and they would live until the write)."""

    __slots__ = ("answers", "bodies", "plans", "request_ids", "rows", "times")

    def __init__(self) -> None:
        self.plans: list[ServiceLogging] = []
        self.bodies: list[bytes] = []
        self.answers: list[bytes] = []
        self.request_ids: list[str | None] = []
        self.times: list[float] = []
        self.rows: list[int] = []

    def items(self) -> list[_Item]:
        parts = (self.plans, self.bodies, self.answers, self.request_ids, self.times, self.rows)
        return list(zip(*parts, strict=True))


class FeatureLog:
    """One worker's buffer of logged answers and the flusher that writes them."""

    def __init__(self, settings: Settings) -> None:
        self._repos = settings.feature_repo_path
        self._data = settings.data_path
        self._max_rows = settings.feature_log_max_rows
        self._interval = settings.feature_log_flush_seconds
        self._buffer = _Buffer()
        self._rows = 0
        self._soon = max(1, self._max_rows // 2)  # rows that wake the flusher before its time
        self._wake = asyncio.Event()
        self._stopping = False
        self._reported: set[tuple[str, str, str]] = set()  # (tenant, service, why), logged once
        self._failing: set[tuple[str, str]] = set()  # services whose latest write failed

    # -- the request path ----------------------------------------------------------------

    def offer(
        self,
        plans: ReadPlans,
        prepared: PreparedLookup,
        service: str,
        body: bytes,
        answer: bytes,
        request_id: str | None,
    ) -> None:
        """Keep a request for ``service`` (its ``body`` and encoded ``answer``) for the log if
        the service logs and the draw says so. Never raises."""
        try:
            reads, transforms = prepared.reads, prepared.transforms
            project = reads[0].plan.project if reads else transforms[0].plan.project
            owner = plans.projects.get(project)  # gone if a refresh dropped the tenant
            plan = owner.logging.get(service) if owner is not None else None
            if plan is None or (plan.sample_rate < 1.0 and random.random() >= plan.sample_rate):
                return
            rows = prepared.rows
            if plan.refused is not None or self._rows + rows > self._max_rows:
                reason = "overflow" if plan.refused is None else "refused"
                labels = (plan.tenant, plan.service, reason)
                buffered_counter(FEATURE_LOG_DROPPED_ROWS, *labels).inc(rows)
                if plan.refused is not None:
                    self._report(plan, plan.refused)
            else:
                self._rows += rows
                buffer = self._buffer
                buffer.plans.append(plan)
                buffer.bodies.append(body)
                buffer.answers.append(answer)
                buffer.request_ids.append(request_id)
                buffer.times.append(time.time())
                buffer.rows.append(rows)
                if self._rows >= self._soon and not self._wake.is_set():
                    self._wake.set()
        except Exception:  # logging must never cost a request its answer
            log.exception("feature log: could not keep a request's answer")

    # -- the flusher ---------------------------------------------------------------------

    async def run(self) -> None:
        """Write what is buffered every interval (sooner once half the buffer is used) until
        :meth:`aclose`, then once more."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            stopping = self._stopping
            try:
                await self.flush()
            except Exception:  # keep flushing whatever one batch did
                log.exception("feature log: a flush failed")
            if stopping:
                return

    async def aclose(self, runner: asyncio.Task[None]) -> None:
        """Stop ``runner`` (this log's :meth:`run`) after it writes what is buffered."""
        self._stopping = True
        self._wake.set()
        await runner

    async def flush(self) -> None:
        """Write everything buffered now (in a thread: conversion and I/O stay off the loop)."""
        buffer, self._buffer, self._rows = self._buffer, _Buffer(), 0
        if buffer.plans:
            await asyncio.to_thread(self._write_all, buffer)

    def _write_all(self, buffer: _Buffer) -> None:
        groups: dict[tuple[Any, ...], list[_Item]] = {}
        for item in buffer.items():  # one file per service; refreshed plans merge if alike
            plan = item[0]
            key = (plan.tenant, plan.service, plan.project, plan.path, plan.partition_by)
            groups.setdefault((*key, plan.schema), []).append(item)
        for batch in groups.values():
            plan, rows = batch[-1][0], sum(item[5] for item in batch)
            where = self._destination(plan)
            if isinstance(where, str):
                FEATURE_LOG_DROPPED_ROWS.labels(plan.tenant, plan.service, "refused").inc(rows)
                self._report(plan, where)
                continue
            try:
                write_logs(log_table(plan, batch), where, plan.partition_by)
            except Exception as exc:
                FEATURE_LOG_DROPPED_ROWS.labels(plan.tenant, plan.service, "error").inc(rows)
                if (plan.tenant, plan.service) not in self._failing:
                    self._failing.add((plan.tenant, plan.service))
                    log.error(
                        "feature log of service %r (tenant %r) failed to write to %s: %r",
                        plan.service, plan.tenant, where, exc,
                    )  # fmt: skip
                continue
            FEATURE_LOG_ROWS.labels(plan.tenant, plan.service).inc(rows)
            if (plan.tenant, plan.service) in self._failing:
                self._failing.discard((plan.tenant, plan.service))
                log.warning("feature log of service %r writes again to %s", plan.service, where)

    def _report(self, plan: ServiceLogging, why: str) -> None:
        if (plan.tenant, plan.service, why) not in self._reported:
            self._reported.add((plan.tenant, plan.service, why))
            log.warning(
                "feature service %r of tenant %r is not logged: %s", plan.service, plan.tenant, why
            )

    def _destination(self, plan: ServiceLogging) -> Path | str:
        """The folder Feast's file store would write ``plan``'s logs to (a relative path is in
        the owner's repo folder), or why the gateway refuses it: one worker writes for every
        tenant, so a tenant's logs stay in its repo folder or its offline folder."""
        repo = self._repos / plan.tenant
        path = Path(plan.path)
        target = (path if path.is_absolute() else repo / path).resolve()
        roots = (repo.resolve(), offline_dir(self._data, plan.project, "").resolve())
        if not any(target.is_relative_to(root) for root in roots):
            return (
                f"its destination {plan.path!r} is outside the tenant's repo folder and its "
                "offline folder"
            )
        return target


def _array(values: list[Any], kind: pa.DataType) -> pa.Array:
    """``values`` (as answered: bytes in base64) as ``kind``; one that does not convert (a
    mistyped request field) is null."""
    if pa.types.is_binary(kind):
        values = [_unbase64(v) for v in values]
    elif pa.types.is_list(kind) and pa.types.is_binary(kind.value_type):
        values = [None if v is None else [_unbase64(b) for b in v] for v in values]
    try:
        return _convert(values, kind)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        kept = []
        for value in values:
            try:
                pa.scalar(value, type=kind)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                value = None
            kept.append(value)
        return pa.array(kept, type=kind)


def _convert(values: list[Any], kind: pa.DataType) -> pa.Array:
    # Python floats straight to float32 take ~1.3 us each in pyarrow 2x; via float64, ~20 ns.
    wide = {pa.float32(): pa.float64(), pa.list_(pa.float32()): pa.list_(pa.float64())}.get(kind)
    if wide is not None:
        return pa.array(values, type=wide).cast(kind)
    return pa.array(values, type=kind)


def _status_numbers(texts: list[str | None]) -> pa.Array:
    """Status names as Feast's numbers; the usual all-PRESENT column without a per-value
    conversion."""
    if texts.count("PRESENT") == len(texts):
        return pa.array(np.ones(len(texts), np.int32))
    return pc.index_in(pa.array(texts, pa.string()), value_set=_STATUSES).cast(pa.int32())


def _unbase64(value: Any) -> Any:
    return base64.b64decode(value) if isinstance(value, str) else value


def log_table(plan: ServiceLogging, items: Sequence[_Item]) -> pa.Table:
    """One log row per entity row of ``items``, in ``plan``'s schema (Feast's): join keys and
    request fields, each feature's value, event time (whole seconds, as Feast's logger writes
    it) and status number, then the log time, its date and the request id."""
    assert plan.schema is not None
    # A view's features share its event times in every answer: parse them once per view.
    first: dict[str, str] = {}
    owner = {c: first.setdefault(c[: -len(short) - 2], c) for c, _, short in plan.features}
    keys: dict[str, list[Any]] = {k: [] for k in plan.keys}
    values: dict[str, list[Any]] = {c: [] for c, _, _ in plan.features}
    stamps: dict[str, list[Any]] = {c: [] for c in first.values()}
    statuses: dict[str, list[Any]] = {c: [] for c, _, _ in plan.features}
    shapes: dict[tuple[str, ...], _Shape] = {}  # where each column is in answers named alike
    for _, body, encoded, _, _, rows in items:
        answer = orjson.loads(encoded)
        names = tuple(answer["metadata"]["feature_names"])
        shape = shapes.get(names)
        if shape is None:
            shape = shapes[names] = _shape(plan, names, keys, values, statuses, stamps, owner)
        results = answer["results"]
        for i, key_values in shape.keys:
            key_values.extend(results[i]["values"])
        if shape.sent:  # request fields, and anything the answer lacks
            entities = orjson.loads(body).get("entities")
            for key, key_values in shape.sent:
                given = entities.get(key) if type(entities) is dict else None
                if type(given) is not list or len(given) != rows:
                    given = [None] * rows
                key_values.extend(given)
        for i, value_list, status_list, stamp_list in shape.features:
            result = results[i]
            value_list.extend(result["values"])
            status_list.extend(result["statuses"])
            if stamp_list is not None:
                stamp_list.extend(result["event_timestamps"])
        for lists in shape.missing:  # not answered (never, for a service): null
            for nulls in lists:
                nulls.extend([None] * rows)

    columns: dict[str, pa.Array] = {}
    for name, key_values in keys.items():
        columns[name] = _array(key_values, plan.schema.field(name).type)
    for name, stamp_texts in stamps.items():
        column = f"{name}__timestamp"
        columns[column] = _seconds(stamp_texts, plan.schema.field(column).type)
    for name, _, _ in plan.features:
        columns[name] = _array(values[name], plan.schema.field(name).type)
        columns[f"{name}__timestamp"] = columns[f"{owner[name]}__timestamp"]
        columns[f"{name}__status"] = _status_numbers(statuses[name])
    counts = np.fromiter((item[5] for item in items), np.int64, len(items))
    micros = np.fromiter((round(item[4] * 1_000_000) for item in items), np.int64, len(items))
    times = pa.array(np.repeat(micros, counts)).cast(plan.schema.field(LOG_TIMESTAMP).type)
    columns[LOG_TIMESTAMP] = times
    columns[LOG_DATE] = times.cast(pa.date32())
    request_ids = [item[3] or uuid.uuid4().hex for item in items]
    columns[REQUEST_ID] = pa.array(request_ids, pa.string()).take(
        pa.array(np.repeat(np.arange(len(items)), counts))
    )
    return pa.Table.from_arrays([columns[n] for n in plan.schema.names], schema=plan.schema)


@dataclass(frozen=True)
class _Shape:
    """Where ``log_table``'s columns come from in answers with one list of names."""

    keys: list[tuple[int, list[Any]]]  # (answer column, key column)
    sent: list[tuple[str, list[Any]]]  # (request field, key column)
    features: list[tuple[int, list[Any], list[Any], list[Any] | None]]  # value, status, time
    missing: list[list[list[Any]]]  # the columns to fill with nulls, per missing feature


def _shape(
    plan: ServiceLogging,
    names: tuple[str, ...],
    keys: dict[str, list[Any]],
    values: dict[str, list[Any]],
    statuses: dict[str, list[Any]],
    stamps: dict[str, list[Any]],
    owner: dict[str, str],
) -> _Shape:
    index = {n: i for i, n in enumerate(names)}
    full_names = bool(plan.features) and plan.features[0][1] in index
    shape = _Shape([], [], [], [])
    for key, key_values in keys.items():
        if key in index:  # a join key as answered, else a request field as sent
            shape.keys.append((index[key], key_values))
        else:
            shape.sent.append((key, key_values))
    for name, full, short in plan.features:
        i = index.get(full if full_names else short)
        shared = stamps[name] if owner[name] == name else None
        if i is None:
            shape.missing.append([values[name], statuses[name], *([shared] if shared else [])])
        else:
            shape.features.append((i, values[name], statuses[name], shared))
    return shape


def _seconds(texts: list[str | None], kind: pa.DataType) -> pa.Array:
    """RFC 3339 times as answered, truncated to whole seconds (``kind``: Feast's log type)."""
    strings = pa.array(texts, pa.string())
    try:  # the quick path: any time between 1677 and 2262
        return strings.cast(pa.timestamp("ns", tz="UTC")).cast(kind, safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        seconds = pc.utf8_slice_codeunits(strings, 0, 19)
        parsed = pc.strptime(seconds, format="%Y-%m-%dT%H:%M:%S", unit="s", error_is_null=True)
        return parsed.cast(kind)


def write_logs(table: pa.Table, folder: Path, partition_by: Sequence[str]) -> None:
    """``table`` under ``folder`` as Feast's file offline store writes logs (same call, same
    names), atomically: staged in a hidden folder, then each file renamed into place."""
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".featureplane-{uuid.uuid4().hex}"
    try:
        ds.write_dataset(
            table,
            base_dir=str(staging),
            basename_template=f"{uuid.uuid4().hex}-{{i}}.parquet",
            partitioning=list(partition_by) or None,
            use_threads=False,
            format=ds.ParquetFileFormat(),
            existing_data_behavior="overwrite_or_ignore",
        )
        for written in sorted(staging.rglob("*.parquet")):
            target = folder / written.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(written, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
