"""A tenant's materialization run: landing -> offline Parquet -> online Redis.

1. Ingest: every batch waiting in ``landing/<project>/<source>/`` is checked by the quality
   gate (:mod:`.quality`) and, unless quarantined, becomes an atomic, content-addressed part of
   the offline store (``offline/<project>/<source>/``) — the folder the Feast FileSource reads —
   and moves to ``archive/``. A quarantined batch never reaches the offline store, so nothing of
   it is ever materialized or served; the run fails (:class:`QualityError`) after the rest.
   Each accepted batch is scored for drift against the tenant's training reference
   (:mod:`.drift`), when one was taken; the latest scores go beside the run records.
2. Online: Feast materializes each feature view over its window. Incremental by default: from
   the end of the last run (or the earliest event of a newly ingested batch, if older; or the
   earliest offline event on the first run — Feast's own first incremental run would only load
   now - ttl) to now.

Crash safety (a run may be SIGKILLed anywhere; rerunning converges to what one uninterrupted run
writes, tested in ``tests/materialize/test_crash.py``):

- One run per tenant at a time (an ``flock`` on ``state/<project>.lock``, released by the kernel
  when the holder dies), so a rerun may sweep a killed run's temporary files.
- A batch's part is named by the digest of the landing batch and is durable before the batch
  leaves ``landing/``: a kill in between re-ingests the batch into the same part, never a second.
- The earliest event of each ingested batch is kept in ``state/<project>/<source>.pending``
  (written durably before the batch leaves ``landing/``) until every view reading the source
  has been materialized: the next run's window starts there even though the batches are no
  longer in ``landing/`` (late data older than the last run would otherwise never go online).
- Feast records a view's materialization interval only after its engine wrote everything, and
  the engine writes each key's values and ``_ts:<view>`` in one ``HSET``, skipping rows not newer
  than what is stored: a rerun rewrites nothing already there and completes the rest.
- A killed run records no success (nor failure: it cannot): its ``started`` count in the run
  records is not matched by a success or failure.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featureplane.errors import MaterializationError, QualityError
from featureplane.feast_config import feature_store
from featureplane.observability import runs
from featureplane.offline import fsync_dir, read_parts, sweep_temporaries, write_part
from featureplane.quality.checker import QualityGate, Verdict
from featureplane.quality.drift import DriftMonitor, DriftScore
from featureplane.settings import Settings
from featureplane.sources import landing_dir
from featureplane.tenancy.spec import TenantSpec

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView


@dataclass
class SourceIngest:
    source: str
    batches: int = 0
    rows: int = 0
    earliest: datetime | None = None


@dataclass
class ViewRun:
    feature_view: str
    start: datetime
    end: datetime
    seconds: float
    rows: int = 0


@dataclass
class MaterializeReport:
    tenant: str
    ingested: dict[str, SourceIngest] = field(default_factory=dict)
    views: list[ViewRun] = field(default_factory=list)
    seconds: float = 0.0
    quality: list[Verdict] = field(default_factory=list)  # one per checked batch
    drift: list[DriftScore] = field(default_factory=list)  # per accepted batch and feature


Progress = Callable[[str], None]


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _state_dir(settings: Settings, project: str) -> Path:
    return settings.data_path / "state" / project


def _pending_path(settings: Settings, project: str, source: str) -> Path:
    return _state_dir(settings, project) / f"{source}.pending"


def read_pending(settings: Settings, project: str, source: str) -> datetime | None:
    """The earliest event ingested offline but not yet materialized by every view, if any."""
    path = _pending_path(settings, project, source)
    try:
        return _utc(datetime.fromisoformat(path.read_text().strip()))
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


@contextmanager
def _tenant_lock(settings: Settings, project: str) -> Iterator[None]:
    """One materialization per tenant at a time; the kernel drops the lock if its holder dies."""
    path = _state_dir(settings, project).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MaterializationError(
                f"project {project!r} is being materialized by another process ({path} is locked)"
            ) from None
        yield  # closing the file releases the lock


def _ingest_source(
    settings: Settings,
    project: str,
    source: str,
    path: Path,
    ts_field: str,
    gate: QualityGate,
    drift: DriftMonitor,
) -> SourceIngest:
    result = SourceIngest(source)
    result.earliest = read_pending(settings, project, source)  # left by a run that died
    landing = landing_dir(settings.data_path, project, source)
    archive = settings.data_path / "archive" / project / source
    sweep_temporaries(path)  # a killed run's; we hold the tenant lock, so no writer is live
    for batch in sorted(landing.glob("*.parquet")):
        if batch.name.startswith("."):
            continue
        raw = batch.read_bytes()
        table = pq.read_table(pa.BufferReader(raw))
        if ts_field not in table.column_names:
            raise MaterializationError(f"{batch}: no timestamp column {ts_field!r}")
        if not gate.admit(source, batch, table):
            continue  # quarantined with its report: no offline part, so never materialized
        # Named by the landing batch: a batch re-ingested after a crash lands on the same part.
        write_part(table, path, key=hashlib.sha256(raw).hexdigest()[:32])
        drift.observe(source, batch.name, table)
        if table.num_rows:
            earliest = _utc(pc.min(table.column(ts_field)).as_py())
            if result.earliest is None or earliest < result.earliest:
                result.earliest = earliest
                # Durable before the batch leaves landing/: the only other record of it.
                _write_pending(settings, project, source, earliest)
        archive.mkdir(parents=True, exist_ok=True)
        shutil.move(batch, archive / batch.name)
        result.batches += 1
        result.rows += table.num_rows
    return result


def _earliest_offline(path: Path, ts_field: str) -> datetime | None:
    table = read_parts(path, columns=[ts_field])
    if table is None or table.num_rows == 0:
        return None
    return _utc(pc.min(table.column(ts_field)).as_py())


def _window_stats(
    path: Path, ts_field: str, start: datetime, end: datetime
) -> tuple[int, float | None]:
    """Offline rows with event times in [start, end), and the newest of them (epoch seconds)."""
    table = read_parts(path, columns=[ts_field])
    if table is None:
        return 0, None
    column = table.column(ts_field)
    mask = pc.and_(
        pc.greater_equal(column, pa.scalar(start, column.type)),
        pc.less(column, pa.scalar(end, column.type)),
    )
    inside = column.filter(mask)
    newest = pc.max(inside).as_py()
    return len(inside), (_utc(newest).timestamp() if newest is not None else None)


def _latest_offline(path: Path, ts_field: str) -> datetime | None:
    table = read_parts(path, columns=[ts_field])
    if table is None or table.num_rows == 0:
        return None
    return _utc(pc.max(table.column(ts_field)).as_py())


def _window(
    fv: FeatureView,
    ingest: SourceIngest,
    path: Path,
    start: datetime | None,
    end: datetime | None,
) -> tuple[datetime, datetime] | None:
    ts_field = fv.batch_source.timestamp_field
    if end is None:
        latest = _latest_offline(path, ts_field)
        now = datetime.now(UTC)
        # Feast's window is half-open: the newest event must fall before ``end``.
        end = max(now, latest + timedelta(microseconds=1)) if latest else now
    if start is None:
        intervals = fv.materialization_intervals
        candidates = [ingest.earliest] if ingest.earliest else []
        if intervals:
            candidates.append(_utc(intervals[-1][1]))
        else:
            first = _earliest_offline(path, ts_field)
            if first is not None:
                candidates.append(first)
        if not candidates:
            return None
        start = min(candidates)
    start, end = _utc(start), _utc(end)
    if start >= end:
        return None
    return start, end


def materialize_tenant(
    settings: Settings,
    spec: TenantSpec,
    start: datetime | None = None,
    end: datetime | None = None,
    progress: Progress | None = None,
    store: FeatureStore | None = None,
) -> MaterializeReport:
    with _tenant_lock(settings, spec.feast_project):
        return _materialize(settings, spec, start, end, progress, store)


def _materialize(
    settings: Settings,
    spec: TenantSpec,
    start: datetime | None,
    end: datetime | None,
    progress: Progress | None,
    store: FeatureStore | None,
) -> MaterializeReport:
    say = progress or (lambda _msg: None)
    began = time.perf_counter()
    report = MaterializeReport(spec.name)
    store = store or feature_store(settings, spec)
    views = [fv for fv in store.list_feature_views() if fv.online]
    if not views:
        raise MaterializationError(
            f"project {spec.feast_project!r} has no online feature views: "
            f"run `featureplane apply {spec.name}` first"
        )
    # Suites are read and built before anything is written: a malformed one stops the run here.
    gate = QualityGate.load(settings, spec, store.list_feature_views())
    drift = DriftMonitor.load(settings, spec, views)
    for fv in views:
        source = fv.batch_source
        if source.name not in report.ingested:
            say(f"ingest {source.name}")
            report.ingested[source.name] = _ingest_source(
                settings,
                spec.feast_project,
                source.name,
                Path(source.path),
                source.timestamp_field,
                gate,
                drift,
            )
    with settings.redis_client() as control:
        drift.record(control)  # the batches are offline already, whatever happens online
        for fv in views:
            source = fv.batch_source
            window = _window(fv, report.ingested[source.name], Path(source.path), start, end)
            if window is None:
                say(f"{fv.name}: nothing new")
                continue
            say(f"{fv.name}: {window[0]:%Y-%m-%d %H:%M:%S} -> {window[1]:%Y-%m-%d %H:%M:%S}")
            view_began = time.perf_counter()
            runs.record_start(control, spec.name, fv.name)
            try:
                store.materialize(start_date=window[0], end_date=window[1], feature_views=[fv.name])
            except Exception as exc:  # Feast raises anything from its engines; name the view.
                runs.record_failure(control, spec.name, fv.name, time.perf_counter() - view_began)
                raise MaterializationError(
                    f"{spec.name}/{fv.name}: {type(exc).__name__}: {exc}"
                ) from exc
            seconds = time.perf_counter() - view_began
            rows, newest = _window_stats(Path(source.path), source.timestamp_field, *window)
            runs.record_success(control, spec.name, fv.name, rows, seconds, newest)
            report.views.append(ViewRun(fv.name, *window, seconds, rows))
    if start is None and end is None:
        # Incremental windows start at or before the pending events, end now, and every view
        # went through: nothing is pending any more. An explicit --start or --end may have left
        # some of them out.
        for name in report.ingested:
            _pending_path(settings, spec.feast_project, name).unlink(missing_ok=True)
    report.seconds = time.perf_counter() - began
    report.quality = gate.verdicts
    report.drift = drift.scores
    if gate.quarantined:
        raise QualityError(gate.refusal(), report)
    return report
