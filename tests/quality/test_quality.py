"""The quality checks of ingest: GX 1.x suites beside each tenant's definitions, a policy per
feature view, quarantine with a report, and nothing that failed a strict suite ever written or
served.

The tests share one deployment of their own (a redis-server, a SQLite registry and a data
folder in a temp dir, with only the fraud tenant); each test leaves its landing folder empty.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import redis

from featureplane.embedded.gateway import settings_env
from featureplane.embedded.redis import EmbeddedRedis, redis_server_binary
from featureplane.errors import ConfigError, SuiteError, TenantSpecError
from featureplane.feast_config import feature_store
from featureplane.materialize.runner import materialize_tenant
from featureplane.observability.runs import RUNS_PREFIX
from featureplane.quality.quarantine import quarantine_dir
from featureplane.quality.suite import read_suite, read_suites, suite_dir
from featureplane.registry.apply import apply_tenant
from featureplane.samples import generate, land
from featureplane.settings import Settings
from featureplane.sources import landing_dir, offline_dir
from featureplane.tenancy.catalog import TenantCatalog, load_spec
from featureplane.tenancy.spec import Quality, TenantSpec
from tests.support.cli import run_cli
from tests.support.components import require
from tests.support.gateway import start_gateway

ROOT = Path(__file__).resolve().parents[2]
TENANT, SOURCE, VIEW = "fraud", "account_activity", "account_stats"
# The source each sample view reads (as the tenants' definitions declare).
SAMPLE_SOURCES = {
    "account_stats": "account_activity",
    "product_price": "price_updates",
    "product_demand": "demand_daily",
    "user_profile": "user_activity",
    "user_item_affinity": "user_item_events",
}


# -- suite files and policies (no servers) ------------------------------------------------------


def test_sample_suites_build_and_pass_their_sample_data() -> None:
    from featureplane.quality.validator import Validator

    settings = Settings(tenants_dir=ROOT / "tenants", feature_repo_dir=ROOT / "feature_repo")
    catalog = TenantCatalog.load(settings.tenants_path, settings.feature_repo_path)
    now = datetime.now(UTC)
    for name, spec in catalog.items():
        suites = read_suites(suite_dir(settings.feature_repo_path, name))
        assert suites, f"{name} declares no expectation suite"
        validator = Validator(suites.values())
        for rows in (1, 7, 300):
            tables = generate(settings, spec, rows, now)
            for suite in suites.values():
                [result] = validator.validate(tables[SAMPLE_SOURCES[suite.name]], [suite.name])
                assert result.success, [f.to_dict() for f in result.failures]
                assert result.evaluated == len(suite.entries)


def _suite(tmp_path: Path, text: str, name: str = "account_stats.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            "expectations:\n  - expect_column_values_to_not_be_null: {column: a}\n"
            "  - expect_colum_values_to_be_between: {column: a, min_value: 0}\n",
            "expectations[1] (line 3)",
            "unknown expectation 'expect_colum_values_to_be_between' "
            "(did you mean 'expect_column_values_to_be_between'?)",
        ),
        (
            "expectations:\n  - ExpectColumnValuesToBeBetween: {column: a, min_valu: 0}\n",
            "expectations[0] (line 2) (expect_column_values_to_be_between)",
            "min_valu: extra fields not permitted",
        ),
        (
            "expectations:\n  - expect_column_values_to_be_between: {column: a, mostly: 2}\n",
            "expectations[0] (line 2) (expect_column_values_to_be_between)",
            "mostly: ensure this value is less than or equal to 1",
        ),
        (
            "expectations:\n  - expect_column_values_to_not_be_null: {}\n",
            "expectations[0] (line 2) (expect_column_values_to_not_be_null)",
            "column: field required",
        ),
        (
            "expectations:\n  - expect_column_values_to_not_be_null\n",
            "expectations[0] (line 2)",
            "must map one expectation to its arguments",
        ),
        (
            "expectations:\n  - expect_column_values_to_not_be_null: [a]\n",
            "expectations[0] (line 2)",
            "the arguments of 'expect_column_values_to_not_be_null' must be a mapping",
        ),
        ("expectations: []\n", "expectations", "must be a non-empty list"),
        ("- expect_column_to_exist: {column: a}\n", "<file>", "must be a mapping"),
        ("expectations: [\n", "line 2", "not valid YAML"),
        ("expectation: []\n", "expectation", "unknown key"),
    ],
)
def test_malformed_suite_names_the_file_and_entry(
    tmp_path: Path, text: str, where: str, message: str
) -> None:
    path = _suite(tmp_path, text)
    with pytest.raises(SuiteError) as excinfo:
        read_suite(path).to_gx()
    assert isinstance(excinfo.value, ConfigError)
    assert any(w == where and message in m for w, m in excinfo.value.problems), (
        excinfo.value.problems
    )
    assert f"{path}: {where}: " in str(excinfo.value)


def test_json_suites_and_class_names_are_accepted(tmp_path: Path) -> None:
    doc = {"expectations": [{"ExpectColumnValuesToNotBeNull": {"column": "a"}}]}
    path = _suite(tmp_path, json.dumps(doc), "demand.json")
    suite = read_suite(path)
    assert suite.name == "demand"
    assert [e.expectation for e in suite.entries] == ["expect_column_values_to_not_be_null"]
    assert suite.to_gx().expectations[0].column == "a"
    _suite(tmp_path, "expectations:\n  - expect_column_to_exist: {column: a}\n", "demand.yaml")
    with pytest.raises(SuiteError, match=r"suite 'demand' is also in demand\.json"):
        read_suites(tmp_path)


def test_policy_defaults_to_warn_with_per_view_overrides(tmp_path: Path) -> None:
    catalog = TenantCatalog.load(ROOT / "tenants", ROOT / "feature_repo")
    assert catalog["fraud"].quality.policy("account_stats") == "strict"
    assert catalog["pricing"].quality.policy("product_price") == "strict"
    assert catalog["pricing"].quality.policy("product_demand") == "warn"
    assert catalog["recsys"].quality.policy("user_profile") == "warn"
    assert Quality().policy("anything") == "warn"

    shutil.copytree(ROOT / "tenants", tmp_path / "tenants")
    path = tmp_path / "tenants" / "pricing" / "tenant.yaml"
    path.write_text(path.read_text().replace("product_price: strict", "product_price: stricter"))
    with pytest.raises(TenantSpecError) as excinfo:
        load_spec(path)
    assert any(f == "quality.product_price" for f, _ in excinfo.value.problems)


# -- the checks, against a real Redis and real Feast---------------------------------------------


@dataclass
class Platform:
    settings: Settings
    spec: TenantSpec
    client: redis.Redis

    @property
    def landing(self) -> Path:
        return landing_dir(self.settings.data_path, self.spec.feast_project, SOURCE)

    @property
    def offline(self) -> Path:
        return offline_dir(self.settings.data_path, self.spec.feast_project, SOURCE)

    @property
    def quarantine(self) -> Path:
        return quarantine_dir(self.settings.data_path, self.spec.feast_project, SOURCE)

    def parts(self) -> set[str]:
        return {p.name for p in self.offline.glob("*.parquet")}

    def land(self, name: str, table: pa.Table) -> Path:
        self.landing.mkdir(parents=True, exist_ok=True)
        path = self.landing / f"{name}.parquet"
        pq.write_table(table, path)
        return path

    def online(self, ids: list[int]) -> list[Any]:
        store = feature_store(self.settings, self.spec)
        got = store.get_online_features(
            features=[f"{VIEW}:txn_amount_avg_7d"],
            entity_rows=[{"account_id": i} for i in ids],
        ).to_dict()
        return list(got["txn_amount_avg_7d"])

    def dump(self) -> dict[bytes, Any]:
        """Every key and value of the online store but the run records."""
        out: dict[bytes, Any] = {}
        for key in self.client.scan_iter(count=1000):
            if key.startswith(RUNS_PREFIX.encode()):
                continue
            kind = self.client.type(key)
            out[key] = self.client.hgetall(key) if kind == b"hash" else self.client.dump(key)
        return out


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    try:
        redis_server_binary()
    except ConfigError:
        require(False, "redis-server")
    tmp = tmp_path_factory.mktemp("quality")
    tenants = tmp / "tenants"  # only fraud: the gateway below serves just this deployment
    shutil.copytree(ROOT / "tenants" / TENANT, tenants / TENANT)
    with EmbeddedRedis() as server:
        settings = Settings(
            redis_url=server.url,
            data_dir=tmp / "data",
            tenants_dir=tenants,
            feature_repo_dir=ROOT / "feature_repo",
        )
        spec = TenantCatalog.load(tenants)[TENANT]
        assert spec.quality.policy(VIEW) == "strict"
        land(settings, spec, generate(settings, spec, 40, datetime.now(UTC) - timedelta(hours=2)))
        apply_tenant(settings, spec)
        report = materialize_tenant(settings, spec)  # the sample batch passes its suite
        assert [v.outcome for v in report.quality] == ["passed"]
        with redis.Redis.from_url(server.url) as client:
            yield Platform(settings, spec, client)


def _batch(platform: Platform, ids: list[int], **columns: list[Any]) -> pa.Table:
    """Rows for ``ids``, stamped now (newer than anything online), with ``columns`` replaced."""
    spec, settings = platform.spec, platform.settings
    table = generate(settings, spec, max(ids), datetime.now(UTC))[SOURCE].slice(0, max(ids))
    table = table.filter(pc.is_in(table.column("account_id"), pa.array(ids, pa.int64())))
    now = pa.array([datetime.now(UTC)] * table.num_rows, pa.timestamp("us", tz="UTC"))
    table = table.set_column(
        table.schema.get_field_index("event_timestamp"), "event_timestamp", now
    )
    for name, values in columns.items():
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pa.array(values, table.schema.field(name).type))
    return table


def test_good_batch_passes_and_is_served(platform: Platform) -> None:
    parts = platform.parts()
    good = _batch(platform, [1, 2, 3])
    platform.land("good", good)
    report = materialize_tenant(platform.settings, platform.spec)
    [verdict] = report.quality
    assert (verdict.source, verdict.batch, verdict.outcome) == (SOURCE, "good.parquet", "passed")
    assert verdict.report is None
    assert len(platform.parts() - parts) == 1
    assert not list(platform.landing.glob("*.parquet"))
    assert not (platform.quarantine / "good.report.json").exists()
    assert platform.online([1, 2, 3]) == good.column("txn_amount_avg_7d").to_pylist()


def test_strict_failure_is_quarantined_and_nothing_is_written(platform: Platform) -> None:
    ids = list(range(4, 12))
    amounts = [-5.0, 10.0, -1.5, 20.0, 30.0, -0.25, 40.0, 50.0]  # three negative
    account_ids: list[int | None] = [*ids[:-2], None, None]  # two null ids
    bad = _batch(platform, ids, txn_amount_avg_7d=amounts, account_id=account_ids)
    platform.land("bad-strict", bad)
    before, parts = platform.dump(), platform.parts()

    proc = run_cli("materialize", TENANT, env=settings_env(platform.settings), timeout=120)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    held = platform.quarantine / "bad-strict.parquet"
    report_path = platform.quarantine / "bad-strict.report.json"
    error = proc.stderr.replace("\n", " ")
    for needle in (f"tenant '{TENANT}'", f"source '{SOURCE}'", "batch 'bad-strict.parquet'"):
        assert needle in error, proc.stderr
    assert f"report: {report_path}" in error, proc.stderr
    assert f"{VIEW} (strict)" in error
    # Nothing written: not the offline part, not Redis; the batch waits in quarantine as landed.
    assert platform.dump() == before
    assert platform.parts() == parts
    assert not list(platform.landing.glob("*.parquet"))
    assert pq.read_table(held).equals(bad)
    archive = platform.settings.data_path / "archive" / TENANT / SOURCE
    assert not (archive / "bad-strict.parquet").exists()

    report = json.loads(report_path.read_text())
    assert report["tenant"] == TENANT
    assert report["source"] == SOURCE
    assert report["batch"] == "bad-strict.parquet"
    assert report["outcome"] == "quarantined"
    assert report["rows"] == len(ids)
    assert report["data"] == str(held)
    [suite] = report["suites"]
    assert suite["name"] == VIEW
    assert suite["feature_views"] == {VIEW: "strict"}
    assert suite["failed"] == 2
    by_type = {(f["expectation"], f["kwargs"].get("column")): f for f in report["failures"]}
    assert set(by_type) == {
        ("expect_column_values_to_be_between", "txn_amount_avg_7d"),
        ("expect_column_values_to_not_be_null", "account_id"),
    }
    amount = by_type[("expect_column_values_to_be_between", "txn_amount_avg_7d")]
    assert amount["kwargs"] == {"column": "txn_amount_avg_7d", "min_value": 0}
    assert amount["file"] == str(suite_dir(ROOT / "feature_repo", TENANT) / f"{VIEW}.yaml")
    assert isinstance(amount["line"], int)
    assert amount["unexpected_count"] == 3
    assert amount["unexpected_percent"] == pytest.approx(37.5)
    assert sorted(amount["partial_unexpected_list"]) == [-5.0, -1.5, -0.25]
    assert sorted(r["txn_amount_avg_7d"] for r in amount["sample_rows"]) == [-5.0, -1.5, -0.25]
    nulls = by_type[("expect_column_values_to_not_be_null", "account_id")]
    assert nulls["unexpected_count"] == 2
    assert [r["account_id"] for r in nulls["sample_rows"]] == [None, None]
    assert all(set(r) == set(bad.column_names) for r in nulls["sample_rows"])


def test_good_batches_of_a_failing_run_still_go_through(platform: Platform) -> None:
    bad_ids, good_ids = [12, 13], [14, 15]
    served_before = platform.online(bad_ids)
    platform.land("mixed-bad", _batch(platform, bad_ids, txn_amount_avg_7d=[-1.0, 2.0]))
    good = _batch(platform, good_ids)
    platform.land("mixed-good", good)
    parts = platform.parts()

    report = materialize_tenant(platform.settings, platform.spec)

    outcomes = {v.batch: v.outcome for v in report.quality}
    assert outcomes == {"mixed-bad.parquet": "quarantined", "mixed-good.parquet": "passed"}
    assert [v.batch for v in report.quarantined] == ["mixed-bad.parquet"]
    assert "batch 'mixed-bad.parquet'" in report.refusal()
    assert "mixed-good" not in report.refusal()
    assert len(platform.parts() - parts) == 1  # the good batch's part only
    assert platform.online(good_ids) == good.column("txn_amount_avg_7d").to_pylist()
    assert platform.online(bad_ids) == served_before
    assert (platform.quarantine / "mixed-bad.parquet").exists()


def test_warn_failure_is_reported_counted_and_materialized(platform: Platform) -> None:
    warn_spec = platform.spec.model_copy(update={"quality": Quality(default="warn")})
    ids = [16, 17, 18]
    bad = _batch(platform, ids, txn_amount_avg_7d=[-3.0, 4.0, -5.0])
    platform.land("bad-warn", bad)
    parts = platform.parts()
    counted = platform.client.hget(f"{RUNS_PREFIX}{{{TENANT}}}", f"{VIEW}|quality_failures_warn")

    report = materialize_tenant(platform.settings, warn_spec)

    [verdict] = report.quality
    assert verdict.outcome == "warned"
    assert verdict.failed == {VIEW: "warn"}
    assert verdict.report == platform.quarantine / "warned" / "bad-warn.report.json"
    document = json.loads(verdict.report.read_text())
    assert document["outcome"] == "warned"
    [failure] = document["failures"]
    assert failure["expectation"] == "expect_column_values_to_be_between"
    assert failure["unexpected_count"] == 2
    assert failure["feature_views"] == {VIEW: "warn"}
    assert not (platform.quarantine / "bad-warn.parquet").exists()
    assert len(platform.parts() - parts) == 1
    assert platform.online(ids) == [-3.0, 4.0, -5.0]  # served: that is what warn means
    after = platform.client.hget(f"{RUNS_PREFIX}{{{TENANT}}}", f"{VIEW}|quality_failures_warn")
    assert int(after or 0) == int(counted or 0) + 1


def _counter(body: str, policy: str) -> float:
    pattern = (
        rf'^featureplane_quality_failures_total\{{feature_view="{VIEW}",policy="{policy}",'
        rf'tenant="{TENANT}"\}} (\S+)$'
    )
    found = re.search(pattern, body, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_strict_failures_are_counted_on_the_gateway_metrics(platform: Platform) -> None:
    gateway = start_gateway(platform.settings, workers=1)
    try:
        before = _counter(httpx.get(f"{gateway.base}/metrics", timeout=10).text, "strict")
        platform.land("counted", _batch(platform, [19], txn_amount_avg_7d=[-9.0]))
        assert materialize_tenant(platform.settings, platform.spec).quarantined
        body = httpx.get(f"{gateway.base}/metrics", timeout=10).text
    finally:
        gateway.stop()
    assert _counter(body, "strict") == before + 1
    assert "# TYPE featureplane_quality_failures_total counter" in body


def _repos_copy(tmp_path: Path) -> Path:
    """The fraud tenant's repo and the shared feature_store.yaml, to edit suites in."""
    repos = tmp_path / "feature_repo"
    shutil.copytree(ROOT / "feature_repo" / TENANT, repos / TENANT)
    shutil.copy(ROOT / "feature_repo" / "feature_store.yaml", repos)
    return repos


def test_a_malformed_suite_stops_the_run_before_anything_is_written(
    platform: Platform, tmp_path: Path
) -> None:
    repos = _repos_copy(tmp_path)
    path = suite_dir(repos, TENANT) / f"{VIEW}.yaml"
    path.write_text(
        path.read_text().replace(
            "expect_column_values_to_not_be_null: {column: account_id}",
            "expect_column_values_to_not_be_nul: {column: account_id}",
        )
    )
    settings = platform.settings.model_copy(update={"feature_repo_dir": repos})
    batch = platform.land("waiting", _batch(platform, [20]))
    before, parts = platform.dump(), platform.parts()
    try:
        with pytest.raises(SuiteError) as excinfo:
            materialize_tenant(settings, platform.spec)
        assert str(excinfo.value) == (
            f"{path}: expectations[1] (line 9): unknown expectation "
            "'expect_column_values_to_not_be_nul' "
            "(did you mean 'expect_column_values_to_not_be_null'?)"
        )
        # Nothing moved or written: the batch still waits in landing.
        assert batch.exists()
        assert platform.parts() == parts
        assert platform.dump() == before
        assert not (platform.quarantine / "waiting.report.json").exists()
    finally:
        batch.unlink(missing_ok=True)


def test_suites_and_policies_must_name_known_feature_views(
    platform: Platform, tmp_path: Path
) -> None:
    repos = _repos_copy(tmp_path)
    folder = suite_dir(repos, TENANT)
    shutil.copy(folder / f"{VIEW}.yaml", folder / "acount_stats.yaml")
    settings = platform.settings.model_copy(update={"feature_repo_dir": repos})
    with pytest.raises(SuiteError, match="names no feature view or source of project 'fraud'"):
        materialize_tenant(settings, platform.spec)

    typo = platform.spec.model_copy(update={"quality": Quality.model_validate({"acount": "warn"})})
    with pytest.raises(TenantSpecError, match=r"quality\.acount: no feature view 'acount'"):
        materialize_tenant(platform.settings, typo)
