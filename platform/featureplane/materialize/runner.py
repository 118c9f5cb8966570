"""A tenant's materialization run: landing -> offline Parquet -> online Redis.

1. Ingest (:mod:`featureplane.ingest.landing`): every batch waiting in
   ``landing/<project>/<source>/`` is checked (:class:`~featureplane.quality.checker.BatchChecker`)
   and, unless quarantined, becomes a part of the offline store; accepted batches are scored for
   drift against the tenant's training reference, when one was taken.
2. Online: Feast materializes each feature view over its window. Incremental by default: from
   the end of the last run (or the earliest event of a newly ingested batch, if older; or the
   earliest offline event on the first run — Feast's own first incremental run would only load
   now - ttl) to now.

The run returns its :class:`MaterializeReport`; batches quarantined by a strict suite are in it
(``report.quarantined``), and the caller decides what that means (the CLI exits 1). One control
Redis client serves the whole run (run records, quality counters, drift), and each source's
offline event times are read once per run (:class:`OfflineTimes`).

Crash safety (a run may be SIGKILLed anywhere; rerunning converges to what one uninterrupted run
writes, tested in ``tests/materialize/test_crash.py``):

- One run per tenant at a time (an ``flock`` on ``state/<project>.lock``, released by the kernel
  when the holder dies), so a rerun may sweep a killed run's temporary files.
- Ingest is idempotent and keeps pending windows durably (:mod:`featureplane.ingest.landing`).
- Feast records a view's materialization interval only after its engine wrote everything, and
  the engine writes each key's values and ``_ts:<view>`` in one ``HSET``, skipping rows not newer
  than what is stored: a rerun rewrites nothing already there and completes the rest.
- A killed run records no success (nor failure: it cannot): its ``started`` count in the run
  records is not matched by a success or failure.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from featureplane.errors import MaterializationError
from featureplane.feast_config import feature_store, has_transformation, tenant_views
from featureplane.ingest.landing import SourceIngest, clear_pending, ingest_source, state_dir, utc
from featureplane.materialize.filesource import event_times, parquet_path
from featureplane.observability import runs
from featureplane.online.clients import redis_client
from featureplane.quality.checker import BatchChecker, Verdict
from featureplane.quality.drift import DriftMonitor, DriftScore
from featureplane.settings import Settings
from featureplane.sources import offline_dir
from featureplane.tenancy.spec import TenantSpec
from featureplane.transform.batch import transform_frame
from featureplane.transform.protocol import WorkerLoad
from featureplane.transform.support import BATCH_TRANSFORMATION, odfv_refusal

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView, OnDemandFeatureView
    from redis import Redis


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
    skipped: list[str] = field(default_factory=list)  # stored on-demand views refused, and why

    @property
    def quarantined(self) -> list[Verdict]:
        """The batches a strict suite held back (nothing of them written or served)."""
        return [v for v in self.quality if not v.admitted]

    def refusal(self) -> str:
        """Why the run failed: each quarantined batch with its report (empty when none was)."""
        if not self.quarantined:
            return ""
        lines = [
            f"tenant {self.tenant!r}: {len(self.quarantined)} landed batch(es) failed a strict "
            "expectation suite and were quarantined (nothing of them written or served; the "
            "other batches went through):"
        ]
        for v in self.quarantined:
            views = ", ".join(f"{view} ({policy})" for view, policy in sorted(v.failed.items()))
            lines.append(
                f"  source {v.source!r}, batch {v.batch!r}: failed {views}; report: {v.report}"
            )
        return "\n".join(lines)


Progress = Callable[[str], None]


@contextmanager
def _tenant_lock(settings: Settings, project: str) -> Iterator[None]:
    """One materialization per tenant at a time; the kernel drops the lock if its holder dies."""
    path = state_dir(settings, project).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MaterializationError(
                f"project {project!r} is being materialized by another process ({path} is locked)"
            ) from None
        yield  # closing the file releases the lock


class OfflineTimes:
    """A source's offline event times, read once per run after ingest (parts do not change
    while views materialize): the bounds of incremental windows and each window's row count."""

    def __init__(self, path: Path, ts_field: str) -> None:
        self.column = event_times(path, ts_field)

    def earliest(self) -> datetime | None:
        if self.column is None or len(self.column) == 0:
            return None
        return utc(pc.min(self.column).as_py())

    def latest(self) -> datetime | None:
        if self.column is None or len(self.column) == 0:
            return None
        return utc(pc.max(self.column).as_py())

    def window_stats(self, start: datetime, end: datetime) -> tuple[int, float | None]:
        """Rows with event times in [start, end), and the newest of them (epoch seconds)."""
        column = self.column
        if column is None:
            return 0, None
        mask = pc.and_(
            pc.greater_equal(column, pa.scalar(start, column.type)),
            pc.less(column, pa.scalar(end, column.type)),
        )
        inside = column.filter(mask)
        newest = pc.max(inside).as_py()
        return len(inside), (utc(newest).timestamp() if newest is not None else None)


def _window(
    fv: FeatureView,
    pending: datetime | None,
    times: OfflineTimes,
    start: datetime | None,
    end: datetime | None,
) -> tuple[datetime, datetime] | None:
    if end is None:
        latest = times.latest()
        now = datetime.now(UTC)
        # Feast's window is half-open: the newest event must fall before ``end``.
        end = max(now, latest + timedelta(microseconds=1)) if latest else now
    if start is None:
        intervals = fv.materialization_intervals
        candidates = [pending] if pending else []
        if intervals:
            candidates.append(utc(intervals[-1][1]))
        else:
            first = times.earliest()
            if first is not None:
                candidates.append(first)
        if not candidates:
            return None
        start = min(candidates)
    start, end = utc(start), utc(end)
    if start >= end:
        return None
    return start, end


def _source_paths(
    settings: Settings, spec: TenantSpec, views: list[FeatureView]
) -> dict[str, Path]:
    """Each view's batch source as a local Parquet file or folder, resolved as Feast resolves
    it (a relative path against the tenant's repo). A view whose source is anything else, or
    a file that is not there, fails the run before anything is written, naming the view."""
    repo = settings.feature_repo_path / spec.name
    offline = offline_dir(settings.data_path, spec.feast_project, "").resolve()
    paths = {}
    for fv in views:
        try:
            path = parquet_path(fv.batch_source, repo).resolve()
        except ValueError as exc:
            raise MaterializationError(
                f"{spec.name}/{fv.name}: cannot be materialized: {exc}; featureplane "
                "materializes feature views whose batch source is a local Parquet FileSource"
            ) from None
        if not path.exists() and not path.is_relative_to(offline):
            raise MaterializationError(
                f"{spec.name}/{fv.name}: cannot be materialized: its batch source "
                f"{fv.batch_source.name!r} reads {path}, which does not exist"
            )
        paths[fv.batch_source.name] = path
    return paths


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
    listed = tenant_views(store.registry, store.project)
    for fv in filter(has_transformation, listed):
        report.skipped.append(f"{fv.name}: {BATCH_TRANSFORMATION}")
    views = [fv for fv in listed if fv.online and not has_transformation(fv)]
    if not views:
        raise MaterializationError(
            f"project {spec.feast_project!r} has no online feature views: "
            f"run `featureplane apply {spec.name}` first"
        )
    paths = _source_paths(settings, spec, views)  # every view materializable, or nothing done
    with redis_client(settings) as control:
        # Suites are read and built before anything is written: a malformed one stops the run.
        checker = BatchChecker.load(settings, spec, listed, control)
        drift = DriftMonitor.load(spec, views, control)
        for fv in views:
            source = fv.batch_source
            landed = offline_dir(settings.data_path, spec.feast_project, source.name)
            if source.name not in report.ingested and paths[source.name] == landed.resolve():
                say(f"ingest {source.name}")
                report.ingested[source.name] = ingest_source(
                    settings,
                    spec.feast_project,
                    source.name,
                    paths[source.name],
                    source.timestamp_field,
                    checker,
                    drift,
                )
            # Any other source is read where it is: nothing lands for it.
        drift.record(control)  # the batches are offline already, whatever happens online
        times: dict[str, OfflineTimes] = {}
        for fv in views:
            source = fv.batch_source
            if source.name not in times:
                times[source.name] = OfflineTimes(paths[source.name], source.timestamp_field)
            ingest = report.ingested.get(source.name)
            pending = ingest.earliest if ingest else None
            window = _window(fv, pending, times[source.name], start, end)
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
            rows, newest = times[source.name].window_stats(*window)
            runs.record_success(control, spec.name, fv.name, rows, seconds, newest)
            report.views.append(ViewRun(fv.name, *window, seconds, rows))
        explicit = start is not None or end is not None
        for odfv in _stored_transforms(store, report):
            _materialize_stored(settings, spec, store, odfv, report, control, say, explicit)
    if start is None and end is None:
        # Incremental windows start at or before the pending events, end now, and every view
        # went through: nothing is pending any more. An explicit --start or --end may have left
        # some of them out.
        for name in report.ingested:
            clear_pending(settings, spec.feast_project, name)
    report.seconds = time.perf_counter() - began
    report.quality = checker.verdicts
    report.drift = drift.scores
    return report


def _stored_transforms(store: FeatureStore, report: MaterializeReport) -> list[OnDemandFeatureView]:
    """The project's on-demand views that materialization writes (``write_to_online_store``),
    read without their functions (skip_udf: this process never runs tenant code). Those
    featureplane refuses (`plan` names them too) go to ``report.skipped``, with the reason."""
    views = store.registry.list_on_demand_feature_views(
        store.project, allow_cache=False, skip_udf=True
    )
    kept = []
    for view in (v for v in views if v.write_to_online_store and v.enabled):
        reason = odfv_refusal(view)
        if reason is None:
            kept.append(view)
        else:
            report.skipped.append(f"{view.name}: {reason}")
    return kept


def _materialize_stored(
    settings: Settings,
    spec: TenantSpec,
    store: FeatureStore,
    odfv: OnDemandFeatureView,
    report: MaterializeReport,
    control: Redis,
    say: Progress,
    explicit: bool,
) -> None:
    """Compute a stored on-demand view over its source's latest rows, as Feast's
    materialization does (``FeatureStore._materialize_odfv``: an explicit window as given, else
    the source's ttl, or 52 weeks, up to the end of the source's run), in a sealed worker of the
    tenant, and write the result under the view's name, unless every value is null (Feast
    writes nothing then). Runs only when its source was materialized now."""
    (projection,) = odfv.source_feature_view_projections.values()
    source_run = next((v for v in report.views if v.feature_view == projection.name), None)
    if source_run is None:
        say(f"{odfv.name}: nothing new")
        return
    source = store.get_feature_view(projection.name)  # a plain view: it was materialized now
    end = source_run.end
    start = source_run.start if explicit else end - (source.ttl or timedelta(weeks=52))
    say(f"{odfv.name}: {start:%Y-%m-%d %H:%M:%S} -> {end:%Y-%m-%d %H:%M:%S} (computed)")
    began = time.perf_counter()
    runs.record_start(control, spec.name, odfv.name)
    try:
        batch = source.batch_source
        latest = (
            store._get_provider()
            .offline_store.pull_latest_from_table_or_query(
                config=store.config,
                data_source=batch,
                join_key_columns=source.join_keys,
                feature_name_columns=[f.name for f in source.features],
                timestamp_field=batch.timestamp_field,
                created_timestamp_column=batch.created_timestamp_column or None,
                start_date=start,
                end_date=end,
            )
            .to_df()
        )
        # What Feast's retrieval hands the transformation: the keys, the event time under
        # Feast's entity-frame name, and the features the view takes from its source.
        inputs = latest[
            [*source.join_keys, batch.timestamp_field, *(f.name for f in projection.features)]
        ].rename(columns={batch.timestamp_field: "event_timestamp"})
        load = WorkerLoad(
            spec.feast_project,
            str(settings.feature_repo_path / spec.name),
            (odfv.to_proto().SerializeToString(),),
        )
        join_keys = {name: store.get_entity(name).join_key for name in odfv.entities}
        limit = spec.transforms.memory_mb
        output = transform_frame(
            load, odfv.name, join_keys, inputs, limit, settings.plan_timeout_seconds
        )
        features = [f.name for f in odfv.features if f.name in output.columns]
        if len(output) and features and not output[features].isnull().all().all():
            store._get_provider().ingest_df(odfv, output)
    except Exception as exc:
        runs.record_failure(control, spec.name, odfv.name, time.perf_counter() - began)
        raise MaterializationError(f"{spec.name}/{odfv.name}: {exc}") from exc
    seconds = time.perf_counter() - began
    newest = inputs["event_timestamp"].max().timestamp() if len(inputs) else None
    runs.record_success(control, spec.name, odfv.name, len(output), seconds, newest)
    report.views.append(ViewRun(odfv.name, start, end, seconds, len(output)))


def report_lines(report: MaterializeReport) -> tuple[str, list[str]]:
    """How a run reads in `featureplane materialize` (rich markup): a summary line, and one line
    per batch a suite did not pass and per feature whose drift is over its threshold."""
    rows = sum(i.rows for i in report.ingested.values())
    summary = (
        f"[green]materialized[/] {report.tenant}: {rows} new offline rows, "
        f"{len(report.views)} feature views online ({report.seconds:.1f} s)"
    )
    findings = []
    for verdict in report.quality:
        if verdict.outcome != "passed":
            colour = "red" if verdict.outcome == "quarantined" else "yellow"
            findings.append(
                f"[{colour}]{verdict.outcome}[/] {report.tenant}/{verdict.source}/"
                f"{verdict.batch}: report {verdict.report}"
            )
    for skipped in report.skipped:
        findings.append(f"[yellow]not computed[/] {report.tenant}/{skipped}")
    for drifted in (s for s in report.drift if s.drifted):
        ks = "" if drifted.ks is None else f", KS {drifted.ks:.3f} / {drifted.ks_limit:g}"
        findings.append(
            f"[yellow]drift[/] {report.tenant}/{drifted.feature_view}.{drifted.feature} in "
            f"{drifted.batch}: PSI {drifted.psi:.3f} / {drifted.psi_limit:g}{ks} "
            "(score / threshold)"
        )
    return summary, findings
