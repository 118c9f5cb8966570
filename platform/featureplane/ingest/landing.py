"""Landing batches into the offline store: ``landing/<project>/<source>/*.parquet`` -> parts.

Every batch waiting in ``landing/<project>/<source>/`` is checked by the run's
:class:`~featureplane.quality.checker.BatchChecker` and, unless quarantined, becomes an atomic,
content-addressed part of the offline store (``offline/<project>/<source>/``, the folder the
Feast FileSource reads; :mod:`featureplane.offline`) and moves to ``archive/``. A quarantined
batch never reaches the offline store, so nothing of it is ever materialized or served. Each
accepted batch is scored for drift (:class:`~featureplane.quality.drift.DriftMonitor`).

Crash safety (the caller holds the tenant's run lock, so no other writer is live):

- A batch's part is named by the digest of the landing batch and is durable before the batch
  leaves ``landing/``: a kill in between re-ingests the batch into the same part, never a second.
- The earliest event of each ingested batch is kept in ``state/<project>/<source>.pending``
  (written durably before the batch leaves ``landing/``) until every view reading the source has
  been materialized (:func:`clear_pending`): the next run's window starts there even though the
  batches are no longer in ``landing/`` (late data older than the last run would otherwise never
  go online).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featureplane.errors import MaterializationError
from featureplane.offline import fsync_dir, sweep_temporaries, write_part
from featureplane.quality.checker import BatchChecker
from featureplane.quality.drift import DriftMonitor
from featureplane.settings import Settings
from featureplane.sources import landing_dir


@dataclass
class SourceIngest:
    """What one run ingested for one source."""

    source: str
    batches: int = 0
    rows: int = 0
    earliest: datetime | None = None  # the earliest event not yet materialized by every view


def utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def state_dir(settings: Settings, project: str) -> Path:
    """A project's run state: pending windows (and, beside it, ``<project>.lock``)."""
    return settings.data_path / "state" / project


def _pending_path(settings: Settings, project: str, source: str) -> Path:
    return state_dir(settings, project) / f"{source}.pending"


def read_pending(settings: Settings, project: str, source: str) -> datetime | None:
    """The earliest event ingested offline but not yet materialized by every view, if any."""
    path = _pending_path(settings, project, source)
    try:
        return utc(datetime.fromisoformat(path.read_text().strip()))
    except FileNotFoundError:
        return None


def _write_pending(settings: Settings, project: str, source: str, earliest: datetime) -> None:
    path = _pending_path(settings, project, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    with tmp.open("w") as fh:
        fh.write(earliest.isoformat())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def clear_pending(settings: Settings, project: str, source: str) -> None:
    """Every view reading ``source`` has materialized its pending events."""
    _pending_path(settings, project, source).unlink(missing_ok=True)


def ingest_source(
    settings: Settings,
    project: str,
    source: str,
    path: Path,
    ts_field: str,
    checker: BatchChecker,
    drift: DriftMonitor,
) -> SourceIngest:
    """Check and write every batch landed for ``source`` into its offline folder ``path``."""
    result = SourceIngest(source)
    result.earliest = read_pending(settings, project, source)  # left by a run that died
    landing = landing_dir(settings.data_path, project, source)
    archive = settings.data_path / "archive" / project / source
    sweep_temporaries(path)  # a killed run's; the caller holds the tenant lock
    for batch in sorted(landing.glob("*.parquet")):
        if batch.name.startswith("."):
            continue
        raw = batch.read_bytes()
        table = pq.read_table(pa.BufferReader(raw))
        if ts_field not in table.column_names:
            raise MaterializationError(f"{batch}: no timestamp column {ts_field!r}")
        if not checker.admit(source, batch, table):
            continue  # quarantined with its report: no offline part, so never materialized
        # Named by the landing batch: a batch re-ingested after a crash lands on the same part.
        write_part(table, path, key=hashlib.sha256(raw).hexdigest()[:32])
        drift.observe(source, batch.name, table)
        if table.num_rows:
            earliest = utc(pc.min(table.column(ts_field)).as_py())
            if result.earliest is None or earliest < result.earliest:
                result.earliest = earliest
                # Durable before the batch leaves landing/: the only other record of it.
                _write_pending(settings, project, source, earliest)
        archive.mkdir(parents=True, exist_ok=True)
        shutil.move(batch, archive / batch.name)
        result.batches += 1
        result.rows += table.num_rows
    return result
