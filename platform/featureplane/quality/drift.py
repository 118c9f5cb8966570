"""Drift of landed batches from a training reference: PSI per feature, and KS for numeric ones.

`featureplane drift reference <tenant>` summarizes the tenant's offline data — what its models
were trained on — per feature view and feature, and stores the summary as JSON in Redis
(``featureplane:drift:{tenant}:reference``), where every materialization process finds it.
Materialization then scores each accepted batch against it (:class:`DriftMonitor`) and records
the latest scores beside the run records (:func:`featureplane.observability.runs.record_drift`),
which every gateway exports at scrape time. A feature has drifted when a score exceeds its
threshold in tenant.yaml (``drift:``).

What the reference keeps per feature, so it stays small whatever the offline data's size:

- numeric (integers, floats, decimals): bin edges at the reference's deciles and the share of
  values in each bin, plus up to :data:`SAMPLE_SIZE` evenly spaced quantiles of the values as
  the KS sample (their empirical CDF is within ``1 / SAMPLE_SIZE`` of the reference's, which a
  random sample of that size would only be within ~``1.4 / sqrt(SAMPLE_SIZE)``);
- categorical (strings, booleans): the :data:`TOP_CATEGORIES` most frequent values and their
  shares, and the share of all the others.

Both keep the share of missing values (null, NaN, infinite) as one more bin, so a rise in
missing values is drift too. Other types (lists, bytes, timestamps) are not scored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import redis
from pydantic import BaseModel, ConfigDict, ValidationError

from featureplane.errors import ConfigError, MaterializationError
from featureplane.observability import runs
from featureplane.offline import read_parts
from featureplane.settings import Settings
from featureplane.tenancy.spec import TenantSpec

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

BINS = 10
SAMPLE_SIZE = 2000
TOP_CATEGORIES = 20
# Stands in for an empty bin's share: PSI's log ratio is infinite at 0 (the usual 1e-4).
EPSILON = 1e-4

Floats = npt.NDArray[np.float64]
Kind = Literal["numeric", "categorical"]


def reference_key(tenant: str) -> str:
    return f"{runs.DRIFT_PREFIX}{{{tenant}}}:reference"


# -- statistics ------------------------------------------------------------------------------


def psi(expected: Floats, actual: Floats) -> float:
    """Population stability index of two distributions over the same bins (shares summing to
    1): ``sum((a - e) * ln(a / e))``, empty bins counted as :data:`EPSILON`."""
    e = np.maximum(np.asarray(expected, np.float64), EPSILON)
    a = np.maximum(np.asarray(actual, np.float64), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_statistic(first: Floats, second: Floats) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest distance between the two
    empirical CDFs, evaluated at every observed value (ties included)."""
    a, b = np.sort(first), np.sort(second)
    if not a.size or not b.size:
        raise ValueError("the KS statistic needs at least one value on each side")
    at = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, at, side="right") / a.size
    cdf_b = np.searchsorted(b, at, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


# -- the reference ---------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureReference(_Model):
    """One feature's summary. ``shares`` are per bin — numeric: ``len(edges) + 1`` bins, the
    i-th holding values in ``(edges[i-1], edges[i]]``; categorical: one per category, then all
    other values — and, last, missing values."""

    kind: Kind
    column: str  # in the batch source (a feature view's field mapping may rename it)
    shares: list[float]
    edges: list[float] = []
    categories: list[str] = []
    sample: list[float] = []  # numeric: sorted, for KS


class ViewReference(_Model):
    source: str
    rows: int
    features: dict[str, FeatureReference]


class Reference(_Model):
    tenant: str
    taken_at: datetime
    start: datetime | None = None  # the event-time window summarized (None: unbounded)
    end: datetime | None = None
    views: dict[str, ViewReference]


def kind_of(arrow_type: pa.DataType) -> Kind | None:
    t = arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        return "categorical"
    return None


def _floats(column: pa.ChunkedArray) -> tuple[Floats, int]:
    """The finite values as float64, and how many rows are missing (null, NaN, +-inf)."""
    # Unsafe: an int64 beyond 2**53 rounds to the nearest float rather than failing the run.
    values: Floats = pc.cast(column, pa.float64(), safe=False).to_numpy()  # nulls become NaN
    finite = values[np.isfinite(values)]
    return finite, len(values) - finite.size


def _strings(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(column, pa.string())  # booleans read "true"/"false"


def _numeric_counts(edges: Floats, finite: Floats, missing: int) -> Floats:
    bins = np.searchsorted(edges, finite, side="left")
    counts = np.bincount(bins, minlength=edges.size + 1).astype(np.float64)
    return np.append(counts, missing)


def _categorical_counts(categories: Sequence[str], strings: pa.ChunkedArray) -> Floats:
    index = pc.index_in(strings, value_set=pa.array(categories, pa.string()))
    other = len(categories)
    positions = pc.fill_null(index, other).to_numpy().astype(np.int64)
    positions[pc.is_null(strings).to_numpy(zero_copy_only=False)] = other + 1
    return np.bincount(positions, minlength=other + 2).astype(np.float64)


def summarize(column: pa.ChunkedArray, source_column: str) -> FeatureReference | None:
    """The reference summary of one feature's values, or None for a type that is not scored."""
    kind = kind_of(column.type)
    rows = len(column)
    if kind is None or rows == 0:
        return None
    if kind == "numeric":
        finite, missing = _floats(column)
        if finite.size:
            edges = np.unique(np.quantile(finite, np.linspace(0, 1, BINS + 1)[1:-1]))
            if finite.size <= SAMPLE_SIZE:
                sample = np.sort(finite)
            else:  # the values at evenly spaced ranks: actual values, ties kept
                ranks = (np.arange(SAMPLE_SIZE) + 0.5) / SAMPLE_SIZE
                sample = np.quantile(finite, ranks, method="inverted_cdf")
        else:
            edges = sample = np.empty(0)
        counts = _numeric_counts(edges, finite, missing)
        return FeatureReference(
            kind=kind,
            column=source_column,
            shares=(counts / rows).tolist(),
            edges=edges.tolist(),
            sample=sample.tolist(),
        )
    strings = _strings(column)
    present = pc.drop_null(strings)
    counted = pc.value_counts(present)
    values = counted.field("values").to_numpy(zero_copy_only=False)
    frequency = counted.field("counts").to_numpy()
    # Most frequent first; ties by value, so the same data always gives the same reference.
    order = np.lexsort((values, -frequency))[:TOP_CATEGORIES]
    categories = [str(v) for v in values[order]]
    counts = _categorical_counts(categories, strings)
    return FeatureReference(
        kind=kind, column=source_column, shares=(counts / rows).tolist(), categories=categories
    )


@dataclass(frozen=True)
class FeatureScore:
    psi: float
    ks: float | None  # None for categorical features, or a batch without a finite value


def score(reference: FeatureReference, column: pa.ChunkedArray) -> FeatureScore:
    """The batch's ``column`` against the feature's reference."""
    rows = len(column)
    if rows == 0:
        raise ValueError("an empty batch has no distribution to compare")
    expected = np.asarray(reference.shares, np.float64)
    if reference.kind == "numeric":
        finite, missing = _floats(column)
        counts = _numeric_counts(np.asarray(reference.edges, np.float64), finite, missing)
        ks = None
        if finite.size and reference.sample:
            ks = ks_statistic(np.asarray(reference.sample, np.float64), finite)
        return FeatureScore(psi(expected, counts / rows), ks)
    counts = _categorical_counts(reference.categories, _strings(column))
    return FeatureScore(psi(expected, counts / rows), None)


def _source_columns(fv: FeatureView) -> dict[str, str]:
    """Feature name -> its column in the batch source."""
    renamed = {feature: column for column, feature in (fv.batch_source.field_mapping or {}).items()}
    return {f.name: renamed.get(f.name, f.name) for f in fv.features}


def _in_window(
    table: pa.Table, ts_field: str, start: datetime | None, end: datetime | None
) -> pa.Table:
    column = table.column(ts_field)
    mask = None
    if start is not None:
        mask = pc.greater_equal(column, pa.scalar(start, column.type))
    if end is not None:
        before = pc.less(column, pa.scalar(end, column.type))
        mask = before if mask is None else pc.and_(mask, before)
    return table if mask is None else table.filter(mask)


def take_reference(
    settings: Settings,
    spec: TenantSpec,
    start: datetime | None = None,
    end: datetime | None = None,
    store: FeatureStore | None = None,
) -> Reference:
    """Summarize every feature view's offline data with event times in ``[start, end)``."""
    from featureplane.feast_config import feature_store, tenant_views

    store = store or feature_store(settings, spec)
    views: dict[str, ViewReference] = {}
    for fv in tenant_views(store.registry, store.project):
        source = fv.batch_source
        path = getattr(source, "path", None)
        if not path:
            continue  # not a Parquet FileSource: nothing featureplane lands
        columns = _source_columns(fv)
        table = read_parts(Path(path))
        if table is None:
            continue
        table = _in_window(table, source.timestamp_field, start, end)
        if table.num_rows == 0:
            continue
        features = {}
        for feature, column in columns.items():
            if column in table.column_names:
                summary = summarize(table.column(column), column)
                if summary is not None:
                    features[feature] = summary
        if features:
            views[fv.name] = ViewReference(
                source=source.name, rows=table.num_rows, features=features
            )
    if not views:
        window = f" between {start or '-'} and {end or '-'}" if start or end else ""
        raise MaterializationError(
            f"tenant {spec.name!r} has no offline data{window} to take a drift reference from: "
            f"run `featureplane materialize {spec.name}` first"
        )
    return Reference(
        tenant=spec.name, taken_at=datetime.now(UTC), start=start, end=end, views=views
    )


def save_reference(client: redis.Redis, reference: Reference) -> None:
    """Store the reference; the latest scores were against the one it replaces: drop them."""
    pipe = client.pipeline(transaction=True)
    pipe.set(reference_key(reference.tenant), reference.model_dump_json())
    pipe.delete(runs.drift_key(reference.tenant))
    pipe.execute()


def load_reference(client: redis.Redis, tenant: str) -> Reference | None:
    raw = client.get(reference_key(tenant))
    if raw is None:
        return None
    try:
        return Reference.model_validate_json(raw)
    except ValidationError as exc:
        raise ConfigError(
            f"{reference_key(tenant)} is not a drift reference: take it again with "
            f"`featureplane drift reference {tenant}` ({exc.error_count()} errors)"
        ) from exc


# -- scoring batches during materialization ----------------------------------------------------


@dataclass(frozen=True)
class DriftScore:
    """One feature of one landed batch against the reference, with its thresholds."""

    source: str
    batch: str
    feature_view: str
    feature: str
    rows: int
    psi: float
    psi_limit: float
    ks: float | None
    ks_limit: float

    @property
    def drifted(self) -> bool:
        return self.psi > self.psi_limit or (self.ks is not None and self.ks > self.ks_limit)


@dataclass
class DriftMonitor:
    """Scores each batch materialization accepts, for every view fed by its source."""

    spec: TenantSpec
    reference: Reference | None
    sources: dict[str, list[str]] = field(default_factory=dict)  # source -> referenced views
    scores: list[DriftScore] = field(default_factory=list)

    @classmethod
    def load(
        cls, spec: TenantSpec, views: Iterable[FeatureView], control: redis.Redis
    ) -> DriftMonitor:
        reference = load_reference(control, spec.name)
        monitor = cls(spec, reference)
        if reference is not None:
            for fv in views:
                if fv.name in reference.views:
                    monitor.sources.setdefault(fv.batch_source.name, []).append(fv.name)
        return monitor

    def observe(self, source: str, batch: str, table: pa.Table) -> list[DriftScore]:
        """Score an accepted batch; too small a batch (``drift.min_rows``) is not scored."""
        if self.reference is None or table.num_rows < self.spec.drift.min_rows:
            return []
        found = []
        limits = self.spec.drift
        for view in self.sources.get(source, []):
            for feature, reference in self.reference.views[view].features.items():
                if reference.column not in table.column_names:
                    continue  # the quality checks own the schema; nothing to compare here
                column = table.column(reference.column)
                if kind_of(column.type) != reference.kind:
                    continue
                got = score(reference, column)
                found.append(
                    DriftScore(
                        source=source,
                        batch=batch,
                        feature_view=view,
                        feature=feature,
                        rows=table.num_rows,
                        psi=got.psi,
                        psi_limit=limits.limit(view, feature, "psi"),
                        ks=got.ks,
                        ks_limit=limits.limit(view, feature, "ks"),
                    )
                )
        self.scores.extend(found)
        return found

    def record(self, client: redis.Redis) -> None:
        """The latest score of each feature (a later batch's overwrites an earlier one's)."""
        latest: dict[tuple[str, str, str], float] = {}
        for s in self.scores:
            latest[(s.feature_view, s.feature, "psi")] = s.psi
            if s.ks is not None:
                latest[(s.feature_view, s.feature, "ks")] = s.ks
        runs.record_drift(client, self.spec.name, latest)
