"""The latest row per entity of a Parquet FileSource window, read with Arrow in bounded memory.

Feast's file offline store reads the whole source into dask/pandas, sorts it and drops
duplicates. This reads only the columns the view needs, filters the event-time window with an
Arrow expression (pushed into the Parquet scan), and works in two passes:

1. keys and timestamps only: sort by join keys, event time and created time (stable, so among
   full ties the row read last wins), and mark the last row of each entity — one bit per row;
2. every needed column, one record batch at a time, keeping the marked rows.

Memory is the keys and timestamps of the window plus one batch, not the window's features.
Semantics are Feast's (``DaskOfflineStore`` + the local engine's dedup): the window is
``start <= event time <= end`` (both ends inclusive, as Feast's ``between``), tz-naive times
are UTC, and a null created time loses a tie to any value.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

_UNIT_NANOS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


@dataclass(frozen=True)
class Columns:
    """Source column names (after reversing the field mapping) for each role."""

    join_keys: Sequence[str]
    features: Sequence[str]
    timestamp: str
    created: str | None


def parquet_path(source: Any, repo_path: Path | str | None) -> Path:
    """The local Parquet file or folder behind a Feast FileSource, resolved as Feast resolves
    it (a relative path against the repo). :class:`ValueError` says why when there is none: not
    a FileSource, another format, a remote URI."""
    from feast.data_format import ParquetFormat
    from feast.infra.offline_stores.file_source import FileSource

    if not isinstance(source, FileSource):
        raise ValueError(f"its batch source {source.name!r} is a {type(source).__name__}")
    file_format = source.file_options.file_format
    if file_format is not None and not isinstance(file_format, ParquetFormat):
        raise ValueError(f"its batch source {source.name!r} is not Parquet ({file_format})")
    uri = FileSource.get_uri_for_file_path(repo_path=repo_path, uri=source.file_options.uri)
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        uri = parsed.path
    elif parsed.scheme:
        raise ValueError(f"its batch source {source.name!r} reads {uri}, not a local path")
    return Path(uri)


def local_parquet_path(source: Any, repo_path: Path | str | None) -> str | None:
    """:func:`parquet_path` when it exists, else None (this reader does not handle it: the
    offline store does)."""
    try:
        path = parquet_path(source, repo_path)
    except ValueError:
        return None
    return str(path) if path.exists() else None


def event_times(path: Path, ts_field: str) -> pa.ChunkedArray | None:
    """Every event time of a Parquet file or folder (read as Feast and :class:`LatestRows`
    read it: hidden and ``_`` files skipped), or None when there is nothing there."""
    if not path.exists():
        return None
    dataset = ds.dataset(str(path), format="parquet")
    if not dataset.files:
        return None
    return dataset.to_table(columns=[ts_field]).column(ts_field)


def _bound(moment: datetime, kind: pa.TimestampType, upper: bool) -> pa.Scalar:
    """``moment`` as a scalar of the column's type, rounded so that comparing in the column's
    unit keeps the meaning of ``>= start`` / ``<= end``."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    delta = aware.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    step = _UNIT_NANOS[kind.unit]
    nanos = micros * 1000
    ticks = nanos // step if upper else -(-nanos // step)  # floor for end, ceiling for start
    return pa.scalar(ticks, pa.int64()).cast(kind)


def _window(schema: pa.Schema, column: str, start: datetime, end: datetime) -> ds.Expression:
    kind = schema.field(column).type
    field = pc.field(column)
    return (field >= _bound(start, kind, upper=False)) & (field <= _bound(end, kind, upper=True))


def latest_mask(
    table: pa.Table, join_keys: Sequence[str], order: Sequence[str]
) -> npt.NDArray[np.bool_] | None:
    """Which rows are the latest of their entity by the ``order`` columns (a null sorts first;
    Arrow's sort is stable, so of full ties the row read last wins); None when every row is."""
    if table.num_rows == 0 or not join_keys:
        return None
    sort_keys = [(k, "ascending", "at_start") for k in [*join_keys, *order]]
    indices = pc.sort_indices(table, sort_keys=sort_keys)
    last = np.zeros(table.num_rows, dtype=np.bool_)  # the last row of its key, in sorted order
    last[-1] = True
    for key in join_keys:
        ordered = table.column(key).take(indices)
        head, tail = ordered.slice(0, len(ordered) - 1), ordered.slice(1)
        differs = pc.not_equal(head, tail)
        if ordered.null_count:  # null keys group together, as in pandas' drop_duplicates
            both_null = pc.and_(pc.is_null(head), pc.is_null(tail))
            differs = pc.if_else(both_null, False, differs.fill_null(True))
        last[:-1] |= differs.to_numpy(zero_copy_only=False)
    if last.all():
        return None
    mask = np.zeros(table.num_rows, dtype=np.bool_)
    mask[indices.to_numpy()[last]] = True
    return mask


def _dataset(path: str) -> ds.Dataset:
    """The Parquet file or folder (hive partitions read as columns, names starting with ``.``
    or ``_`` skipped). Parts written at different times may differ in column order or add
    columns: the schema is the union of every part's."""
    dataset = ds.dataset(path, format="parquet", partitioning="hive")
    schemas = {f.physical_schema for f in dataset.get_fragments()}
    if len(schemas) <= 1:
        return dataset
    schema = pa.unify_schemas([dataset.schema, *schemas], promote_options="permissive")
    return ds.dataset(path, format="parquet", partitioning="hive", schema=schema)


class LatestRows:
    """The window's latest row per entity, as record batches of at most ``batch_rows`` rows."""

    def __init__(
        self,
        path: str,
        columns: Columns,
        start: datetime,
        end: datetime,
        batch_rows: int,
    ) -> None:
        self.dataset = _dataset(path)
        self.columns = columns
        self.batch_rows = batch_rows
        schema = self.dataset.schema
        self.filter = _window(schema, columns.timestamp, start, end)
        order = [columns.timestamp] + ([columns.created] if columns.created else [])
        self._order = order
        wanted = [*columns.join_keys, *columns.features, *order]
        self._names = list(dict.fromkeys(wanted))

    @staticmethod
    def supports(schema: pa.Schema, columns: Columns) -> bool:
        """Whether every column is present and the times are Arrow timestamps."""
        times = [columns.timestamp] + ([columns.created] if columns.created else [])
        if not {*columns.join_keys, *columns.features, *times} <= set(schema.names):
            return False
        return all(pa.types.is_timestamp(schema.field(t).type) for t in times)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        keys_and_times = self.dataset.to_table(
            columns=list(dict.fromkeys([*self.columns.join_keys, *self._order])),
            filter=self.filter,
        )
        mask = latest_mask(keys_and_times, self.columns.join_keys, self._order)
        # Pass 2 must see the rows in pass 1's order (Arrow's scans are ordered); the event
        # times of both passes are compared to prove it, cheaply.
        expected = keys_and_times.column(self.columns.timestamp).cast(pa.int64())
        del keys_and_times
        seen = 0
        scanner = self.dataset.scanner(
            columns=self._names,
            filter=self.filter,
            batch_size=self.batch_rows,
            # Decode a row group at a time rather than buffering the file: memory stays at
            # about one row group, and local reads lose nothing.
            batch_readahead=1,
            fragment_readahead=1,
            fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False),
        )
        for batch in scanner.to_batches():
            rows = batch.num_rows
            if rows == 0:
                continue
            got = batch.column(self.columns.timestamp).cast(pa.int64())
            if not got.equals(expected.slice(seen, rows).combine_chunks()):
                raise RuntimeError("the Parquet scan changed order between passes")
            if mask is not None:
                batch = batch.filter(pa.array(mask[seen : seen + rows]))
            seen += rows
            if batch.num_rows:
                yield batch
        if seen != len(expected):
            raise RuntimeError("the Parquet scan returned a different row count between passes")
