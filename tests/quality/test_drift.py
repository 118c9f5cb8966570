"""Drift: PSI and KS against known values, and end to end — a reference from the offline store,
no drift on a fresh sample of the same distribution, drift on a shifted batch, in Redis and on
the gateway's /metrics.

The end-to-end tests share one deployment of their own (Redis database 6 of the session's
redis-server, a SQLite registry and a data folder in a temp dir, only the fraud tenant, with a
per-feature threshold added to its tenant.yaml).
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import redis
import redis.asyncio as aioredis
import yaml
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from typer.testing import CliRunner, Result

from featureplane.cli import app
from featureplane.embedded.gateway import settings_env
from featureplane.embedded.redis import EmbeddedRedis
from featureplane.materialize.runner import MaterializeReport, materialize_tenant
from featureplane.observability import runs
from featureplane.observability.metrics import ScrapeSnapshot, scrape_families
from featureplane.quality import drift
from featureplane.registry.apply import apply_tenant
from featureplane.samples import generate, generator_path, land
from featureplane.settings import Settings
from featureplane.tenancy.catalog import TenantCatalog
from featureplane.tenancy.spec import Drift, TenantSpec
from tests.support.gateway import start_gateway
from tests.support.paths import ROOT
from tests.support.settings import make_settings

TENANT, VIEW, SOURCE = "fraud", "account_stats", "account_activity"
NUMERIC = ["txn_count_24h", "txn_amount_avg_7d", "chargeback_rate", "days_since_signup"]
SHIFTED = ["txn_count_24h", "txn_amount_avg_7d", "is_flagged"]  # what _shift changes
OWN_PSI = 0.5  # days_since_signup's own PSI threshold in this deployment's tenant.yaml


def _normal(rng: np.random.Generator, n: int, mean: float = 0.0, sd: float = 1.0) -> pa.Array:
    return pa.chunked_array([pa.array(rng.normal(mean, sd, n))])


# -- the statistics ----------------------------------------------------------------------------


def test_psi_of_known_distributions() -> None:
    half = np.array([0.5, 0.5])
    assert drift.psi(half, half) == 0.0
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    assert drift.psi(half, np.array([0.25, 0.75])) == pytest.approx(0.274653, abs=1e-6)
    # An empty bin on either side counts as EPSILON rather than making the index infinite.
    empty = drift.psi(np.array([0.5, 0.5, 0.0]), np.array([0.4, 0.4, 0.2]))
    expected = 2 * (-0.1 * np.log(0.8)) + (0.2 - 1e-4) * np.log(0.2 / 1e-4)
    assert empty == pytest.approx(expected)


def _ks_by_definition(a: list[float], b: list[float]) -> float:
    """The largest gap between the two empirical CDFs, evaluated at every observed value."""
    return max(
        abs(sum(v <= x for v in a) / len(a) - sum(v <= x for v in b) / len(b)) for x in [*a, *b]
    )


@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "with-ties"])
def test_ks_equals_the_definition_and_scipy(discrete: bool) -> None:
    from scipy.stats import ks_2samp  # installed with great-expectations

    rng = np.random.default_rng(3)
    for n, m, shift in [(50, 80, 0.0), (120, 40, 0.4), (1, 7, 0.0), (200, 200, 2.0)]:
        a, b = rng.normal(0, 1, n), rng.normal(shift, 1.3, m)
        if discrete:  # ties inside and across the samples
            a, b = np.round(a * 2), np.round(b * 2)
        ours = drift.ks_statistic(a, b)
        assert ours == pytest.approx(_ks_by_definition(a.tolist(), b.tolist()), abs=1e-12)
        assert ours == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)
    with pytest.raises(ValueError, match="at least one value"):
        drift.ks_statistic(np.empty(0), np.ones(3))


def test_numeric_drift_on_a_shift_not_on_a_fresh_sample() -> None:
    rng = np.random.default_rng(11)
    reference = drift.summarize(_normal(rng, 20_000), "x")
    assert reference is not None
    assert reference.kind == "numeric"
    assert len(reference.edges) == drift.BINS - 1
    assert len(reference.sample) == drift.SAMPLE_SIZE  # bounded, whatever the data's size
    assert reference.sample == sorted(reference.sample)

    same = drift.score(reference, _normal(rng, 5_000))
    assert same.psi < 0.02
    assert same.ks is not None
    assert same.ks < 0.03
    # A mean shift of one standard deviation: KS is 2 * Phi(0.5) - 1 = 0.383 in theory.
    moved = drift.score(reference, _normal(rng, 5_000, mean=1.0))
    assert moved.psi > 0.2
    assert moved.ks == pytest.approx(0.383, abs=0.03)
    # Twice the spread, same centre: the CDFs part by at most Phi(1.36) - Phi(0.68) = 0.161,
    # under the KS threshold, while PSI sees the mass moved out of the middle bins.
    wider = drift.score(reference, _normal(rng, 5_000, sd=2.0))
    assert wider.psi > 0.2
    assert wider.ks == pytest.approx(0.161, abs=0.03)

    # Missing values are a bin of their own: a batch that is half null has drifted.
    values = rng.normal(0, 1, 4_000)
    holes = pa.chunked_array([pa.array(values, mask=rng.random(4_000) < 0.5)])
    assert drift.score(reference, holes).psi > 0.2


def test_ks_of_the_bounded_sample_is_within_its_resolution_of_the_full_reference() -> None:
    rng = np.random.default_rng(5)
    values = rng.gamma(2.0, 40.0, 50_000)
    reference = drift.summarize(pa.chunked_array([pa.array(values)]), "x")
    assert reference is not None
    for batch in (rng.gamma(2.0, 40.0, 3_000), rng.gamma(2.0, 55.0, 3_000)):
        got = drift.score(reference, pa.chunked_array([pa.array(batch)])).ks
        assert got == pytest.approx(drift.ks_statistic(values, batch), abs=1 / drift.SAMPLE_SIZE)


def test_categorical_drift_counts_unseen_values_and_nulls() -> None:
    rng = np.random.default_rng(2)
    genres = np.array(["drama", "comedy", "thriller", "sci-fi"])
    share = [0.4, 0.3, 0.2, 0.1]
    reference = drift.summarize(
        pa.chunked_array([pa.array(rng.choice(genres, 10_000, p=share))]), "g"
    )
    assert reference is not None
    assert reference.kind == "categorical"
    assert reference.categories == ["drama", "comedy", "thriller", "sci-fi"]  # by frequency

    fresh = drift.score(reference, pa.chunked_array([pa.array(rng.choice(genres, 3_000, p=share))]))
    assert fresh.psi < 0.01
    assert fresh.ks is None
    flipped = rng.choice(genres, 3_000, p=share[::-1])
    assert drift.score(reference, pa.chunked_array([pa.array(flipped)])).psi > 0.2
    # Values the reference never saw fall in "other"; nulls in the missing bin.
    unseen = np.where(rng.random(3_000) < 0.3, "horror", rng.choice(genres, 3_000, p=share))
    assert drift.score(reference, pa.chunked_array([pa.array(unseen)])).psi > 0.2
    nulls = pa.array(rng.choice(genres, 3_000, p=share), mask=rng.random(3_000) < 0.3)
    assert drift.score(reference, pa.chunked_array([nulls])).psi > 0.2

    flags = drift.summarize(pa.chunked_array([pa.array(rng.random(5_000) < 0.02)]), "f")
    assert flags is not None
    assert flags.categories == ["false", "true"]
    many = pa.chunked_array([pa.array(rng.random(1_000) < 0.25)])
    assert drift.score(flags, many).psi > 0.2


def test_types_that_are_not_scored() -> None:
    lists = pa.chunked_array([pa.array([[1.0], [2.0]], pa.list_(pa.float64()))])
    stamps = pa.chunked_array([pa.array([datetime.now(UTC)], pa.timestamp("us", tz="UTC"))])
    assert drift.summarize(lists, "l") is None
    assert drift.summarize(stamps, "t") is None


def test_thresholds_default_and_per_feature() -> None:
    limits = Drift.model_validate({"ks": 0.3, "features": {"v.f": {"psi": 0.1}}})
    assert limits.limit("v", "f", "psi") == 0.1
    assert limits.limit("v", "f", "ks") == 0.3  # not overridden: the tenant's
    assert limits.limit("v", "g", "psi") == 0.2  # the default
    with pytest.raises(ValidationError, match="should match pattern"):
        Drift.model_validate({"features": {"no_view": {"psi": 0.1}}})
    with pytest.raises(ValidationError):
        Drift(ks=1.5)


# -- end to end ------------------------------------------------------------------------------


@dataclass
class Fraud:
    settings: Settings
    spec: TenantSpec
    client: redis.Redis
    now: datetime
    reference_output: str  # what `featureplane drift reference` printed

    def cli(self, *args: str) -> Result:
        env = settings_env(self.settings) | {"COLUMNS": "200"}
        return CliRunner().invoke(app, list(args), env=env)

    def sample(self, rows: int, seed: int, age: timedelta) -> pa.Table:
        """The tenant's own generator with another seed: a fresh sample of its distribution."""
        path = generator_path(self.settings, self.spec)
        module_spec = importlib.util.spec_from_file_location("_drift_fraud_samples", path)
        assert module_spec is not None
        assert module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        table: pa.Table = module.generate(rows=rows, now=self.now - age, seed=seed)[SOURCE]
        return table

    def materialize(self, table: pa.Table) -> MaterializeReport:
        land(self.settings, self.spec, {SOURCE: table})
        return materialize_tenant(self.settings, self.spec)

    def latest(self) -> dict[tuple[str, str], dict[str, float]]:
        return runs.parse_drift(self.client.hgetall(runs.drift_key(TENANT)))

    def scraped(self) -> dict[tuple[str, ...], float]:
        """What a gateway exports, read the way its /metrics route reads it."""

        async def read() -> dict[str, runs.TenantRuns]:
            client = aioredis.Redis.from_url(self.settings.require_redis_url())
            try:
                return await runs.read_all(client, [TENANT])
            finally:
                await client.aclose()

        snapshot = ScrapeSnapshot([self.spec], asyncio.run(read()), 0.0, True, None)
        return {
            (family.name, *family.samples[i].labels.values()): family.samples[i].value
            for family in scrape_families(snapshot)
            if "drift" in family.name
            for i in range(len(family.samples))
        }


@pytest.fixture(scope="module")
def fraud(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fraud]:
    tmp = tmp_path_factory.mktemp("drift")
    tenants = tmp / "tenants"
    shutil.copytree(ROOT / "tenants" / TENANT, tenants / TENANT)
    tenant_yaml = tenants / TENANT / "tenant.yaml"
    document = yaml.safe_load(tenant_yaml.read_text())
    document["drift"] = {"features": {f"{VIEW}.days_since_signup": {"psi": OWN_PSI}}}
    tenant_yaml.write_text(yaml.safe_dump(document))
    url = redis_server.url.rsplit("/", 1)[0] + "/6"
    settings = make_settings(tmp / "data", url).model_copy(update={"tenants_dir": tenants})
    spec = TenantCatalog.load(tenants, settings.feature_repo_path)[TENANT]
    with redis.Redis.from_url(url) as client:
        client.flushdb()
        # The training history: 2,400 rows, a week old.
        now = datetime.now(UTC).replace(microsecond=0)
        land(settings, spec, generate(settings, spec, 2_000, now - timedelta(days=7)))
        apply_tenant(settings, spec)
        report = materialize_tenant(settings, spec)
        assert report.drift == []  # no reference yet: nothing scored
        fraud = Fraud(settings, spec, client, now, "")
        taken = fraud.cli("drift", "reference", TENANT)
        assert taken.exit_code == 0, taken.output
        fraud.reference_output = taken.output
        yield fraud


def _shift(table: pa.Table) -> pa.Table:
    """The same rows with larger amounts, more transactions and many more flagged accounts
    (all still within the view's expectation suite)."""
    rng = np.random.default_rng(99)

    def replace(t: pa.Table, name: str, values: pa.Array) -> pa.Table:
        return t.set_column(t.schema.get_field_index(name), name, values)

    table = replace(table, "txn_amount_avg_7d", pc.multiply(table["txn_amount_avg_7d"], 2.5))
    table = replace(table, "txn_count_24h", pc.add(table["txn_count_24h"], 25))
    return replace(table, "is_flagged", pa.array(rng.random(table.num_rows) < 0.3))


def test_drift_reference_command_stores_the_reference(fraud: Fraud) -> None:
    assert drift.reference_key(TENANT) in fraud.reference_output
    reference = drift.load_reference(fraud.client, TENANT)
    assert reference is not None
    [view] = reference.views.values()
    assert reference.views.keys() == {VIEW}
    assert view.source == SOURCE
    assert view.rows == 2_400
    kinds = {name: f.kind for name, f in view.features.items()}
    assert kinds == dict.fromkeys(NUMERIC, "numeric") | {"is_flagged": "categorical"}
    # Compact: a few kilobytes per feature, however much offline data there is.
    raw = fraud.client.get(drift.reference_key(TENANT))
    assert raw is not None
    assert len(raw) < 50_000 * len(kinds)

    # A window with no events is refused, naming the tenant.
    late = (fraud.now + timedelta(days=1)).isoformat()
    refused = fraud.cli("drift", "reference", TENANT, "--start", late)
    assert refused.exit_code != 0
    assert "no offline data" in str(refused.exception)


def test_fresh_sample_does_not_drift(fraud: Fraud) -> None:
    report = fraud.materialize(fraud.sample(500, seed=101, age=timedelta(days=1)))
    scores = {s.feature: s for s in report.drift}
    assert scores.keys() == {*NUMERIC, "is_flagged"}
    assert not [s for s in report.drift if s.drifted], report.drift
    assert max(s.psi for s in report.drift) < 0.1
    assert all(s.ks is not None and s.ks < 0.1 for s in report.drift if s.feature in NUMERIC)
    assert scores["is_flagged"].ks is None

    latest = fraud.latest()
    for s in report.drift:
        assert latest[(VIEW, s.feature)]["psi"] == pytest.approx(s.psi)
    scraped = fraud.scraped()
    psi = scraped[("featureplane_feature_drift_psi", TENANT, VIEW, "txn_amount_avg_7d")]
    assert psi == pytest.approx(scores["txn_amount_avg_7d"].psi)
    assert ("featureplane_feature_drift_ks", TENANT, VIEW, "is_flagged") not in scraped


def test_small_batch_is_not_scored(fraud: Fraud) -> None:
    before = fraud.latest()
    small = fraud.sample(40, seed=5, age=timedelta(hours=20))  # 48 rows < min_rows 100
    assert _shift(small).num_rows < fraud.spec.drift.min_rows
    assert fraud.materialize(_shift(small)).drift == []
    assert fraud.latest() == before


def test_shifted_batch_drifts_and_the_gateway_exports_it(fraud: Fraud) -> None:
    shifted = _shift(fraud.sample(500, seed=202, age=timedelta(hours=12)))
    report = fraud.materialize(shifted)
    scores = {s.feature: s for s in report.drift}
    assert {name for name, s in scores.items() if s.drifted} == set(SHIFTED)
    for name in ("txn_amount_avg_7d", "txn_count_24h"):
        assert scores[name].psi > 0.2, scores[name]
        assert (scores[name].ks or 0) > 0.2, scores[name]
    assert scores["is_flagged"].psi > 0.2
    assert scores["days_since_signup"].psi_limit == OWN_PSI
    assert scores["days_since_signup"].ks_limit == 0.2

    latest = fraud.latest()  # the newest batch's scores replaced the fresh sample's
    assert latest[(VIEW, "txn_amount_avg_7d")] == {
        "psi": pytest.approx(scores["txn_amount_avg_7d"].psi),
        "ks": pytest.approx(scores["txn_amount_avg_7d"].ks),
    }

    gateway = start_gateway(fraud.settings, workers=1)
    try:
        text = httpx.get(f"{gateway.base}/metrics", timeout=10).text
    finally:
        gateway.stop()
    exported = {
        (s.name, *(s.labels.get(k, "") for k in ("feature", "statistic"))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("tenant") == TENANT and "drift" in s.name
    }
    assert exported[("featureplane_feature_drift_psi", "txn_amount_avg_7d", "")] == pytest.approx(
        scores["txn_amount_avg_7d"].psi
    )
    assert exported[("featureplane_feature_drift_ks", "txn_count_24h", "")] == pytest.approx(
        scores["txn_count_24h"].ks
    )
    assert exported[("featureplane_drift_threshold", "txn_amount_avg_7d", "psi")] == 0.2
    assert exported[("featureplane_drift_threshold", "days_since_signup", "psi")] == OWN_PSI
    assert exported[("featureplane_drift_threshold", "days_since_signup", "ks")] == 0.2
    assert ("featureplane_drift_threshold", "is_flagged", "ks") not in exported


def test_a_new_reference_clears_the_old_scores(fraud: Fraud) -> None:
    fraud.materialize(fraud.sample(500, seed=303, age=timedelta(hours=6)))
    assert fraud.latest()
    reference = drift.take_reference(fraud.settings, fraud.spec)
    drift.save_reference(fraud.client, reference)
    assert fraud.latest() == {}
    assert fraud.scraped() == {}
