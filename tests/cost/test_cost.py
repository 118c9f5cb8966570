"""Cost tracking against real components: the sample deployment in a real Redis, the real
gateway's /metrics, and the `featureplane cost report` command."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from featureplane import cost
from featureplane.cli import app
from featureplane.cost import report as cost_report
from featureplane.cost.online import OnlineBytesCache
from featureplane.embedded.gateway import GatewayProcess
from featureplane.errors import ConfigError
from featureplane.gateway.app import create_app
from tests.support.deployment import Deployment
from tests.support.gateway import bearer
from tests.support.paths import ROOT

FRAUD_ROWS = [1, 2, 3]
FRAUD_BODY = {"features": ["account_stats:txn_count_24h"], "entities": {"account_id": FRAUD_ROWS}}


@pytest.fixture
def client(deployment: Deployment) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(deployment.settings.require_redis_url()) as connection:
        yield connection


def _true_bytes(client: redis.Redis, deployment: Deployment) -> dict[str, tuple[int, float]]:
    """Every key's MEMORY USAGE, attributed by the longest project suffix: the exact figure."""
    specs = sorted(deployment.catalog.values(), key=lambda s: -len(s.feast_project))
    found = {spec.name: (0, 0.0) for spec in specs}
    for key in client.scan_iter(count=1000):
        if key.startswith(b"featureplane:"):
            continue
        owner = next((s.name for s in specs if key.endswith(s.feast_project.encode())), None)
        if owner is not None:
            keys, total = found[owner]
            size = client.execute_command("MEMORY USAGE", key, "SAMPLES", 0)
            found[owner] = (keys + 1, total + float(size))
    return found


def test_online_bytes_are_attributed_to_the_right_tenant(
    client: redis.Redis, deployment: Deployment
) -> None:
    truth = _true_bytes(client, deployment)
    estimate = cost.sample_online_bytes(client, list(deployment.catalog.values()), sample_size=25)
    assert sum(keys for keys, _ in truth.values()) > 0
    for tenant, (keys, total) in truth.items():
        got = estimate[tenant]
        assert got.keys == keys, tenant
        assert got.sampled == min(keys, 25), tenant
        if keys:
            assert 0.5 * total <= got.bytes <= 2 * total, (tenant, got, total)
        else:
            assert got.bytes == 0
    # Sampled a handful, the sum still lands near the exact total over all tenants.
    exact = sum(total for _, total in truth.values())
    assert 0.5 * exact <= sum(o.bytes for o in estimate.values()) <= 2 * exact


def _families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_gateway_exports_cost_gauges(
    http: httpx.Client, client: redis.Redis, deployment: Deployment
) -> None:
    truth = _true_bytes(client, deployment)
    families = _families(http.get("/metrics").text)
    online = families["featureplane_cost_online_bytes"]
    for spec in deployment.catalog.values():
        keys, total = truth[spec.name]
        got = online[(("tenant", spec.name),)]
        assert (0.5 * total <= got <= 2 * total) if keys else got == 0, spec.name
        cpu = families["featureplane_cost_quota_cpu_cores"]
        assert cpu[(("kind", "limits"), ("tenant", spec.name))] == cost.quantity(
            spec.kubernetes.limits.cpu
        )
        memory = families["featureplane_cost_quota_memory_bytes"]
        assert memory[(("kind", "requests"), ("tenant", spec.name))] == cost.quantity(
            spec.kubernetes.requests.memory
        )
        estimate = families["featureplane_cost_estimate"]
        assert estimate[(("item", "cpu_quota"), ("tenant", spec.name))] > 0


class _Closing(redis.Redis):  # type: ignore[misc]  # redis is untyped here
    """A client that records being closed."""

    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


def test_the_gateway_sampler_makes_its_client_on_first_use_and_closes_it(
    deployment: Deployment,
) -> None:
    made: list[_Closing] = []

    def connect() -> redis.Redis:
        made.append(_Closing.from_url(deployment.settings.require_redis_url()))
        return made[-1]

    specs = list(deployment.catalog.values())
    sampler = cost.CostSampler(OnlineBytesCache(connect), None)

    async def run() -> tuple[object, object]:
        assert made == []  # nothing connects before the first scrape
        first = await sampler.online_bytes(specs)
        again = await sampler.online_bytes(specs)  # cached: no second client, no second scan
        await sampler.aclose()
        return first, again

    first, again = asyncio.run(run())
    assert isinstance(first, dict)
    assert first == again
    assert sum(o.keys for o in first.values()) > 0
    assert len(made) == 1
    assert made[0].closed


def test_a_bad_price_file_fails_the_scrape_not_the_start(
    deployment: Deployment, tmp_path: Path
) -> None:
    """The gateway starts; each scrape fails naming the file and field (rather than pricing
    with defaults nobody chose) until the file is fixed."""
    prices = tmp_path / "prices.yaml"
    prices.write_text("per_cpu_core_month: -3\n")
    app = create_app(deployment.settings.model_copy(update={"cost_prices": prices}))

    async def run() -> tuple[int, str]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                health = await client.get("/health")
                for _ in range(2):
                    with pytest.raises(ConfigError, match=r"prices\.yaml: per_cpu_core_month"):
                        await client.get("/metrics")
                prices.write_text("per_cpu_core_month: 10\n")
                fixed = await client.get("/metrics")
        return health.status_code, fixed.text

    health, text = asyncio.run(run())
    assert health == 200
    fraud = next(spec for spec in deployment.catalog.values() if spec.name == "fraud")
    estimate = _families(text)["featureplane_cost_estimate"]
    cores = cost.quantity(fraud.kubernetes.requests.cpu)
    assert estimate[(("item", "cpu_quota"), ("tenant", "fraud"))] == pytest.approx(10 * cores)


def _quantities(report: cost_report.Report, tenant: str) -> dict[str, float | None]:
    return {line.item: line.quantity for line in report.lines if line.tenant == tenant}


def test_report_counts_exactly_what_went_through_the_gateway(
    http: httpx.Client, gateway: GatewayProcess, client: redis.Redis, deployment: Deployment
) -> None:
    specs = list(deployment.catalog.values())

    def measured() -> dict[str, float | None]:
        measure = cost_report.report(specs, client, cost.Prices(), gateway.base, 5)
        return _quantities(measure, "fraud")

    before = measured()
    assert before["requests"] is not None
    assert before["entity_rows"] is not None
    sent = 7
    for _ in range(sent):
        answer = http.post(
            "/get-online-features", json=FRAUD_BODY, headers=bearer(deployment.tokens["fraud"])
        )
        assert answer.status_code == 200, answer.text
    expected = (before["requests"] + sent, before["entity_rows"] + sent * len(FRAUD_ROWS))
    deadline = time.monotonic() + 5.0
    while True:  # each worker flushes its counters every 100 ms
        after = measured()
        if (after["requests"], after["entity_rows"]) == expected or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert (after["requests"], after["entity_rows"]) == expected
    assert after["rows_materialized"]
    assert after["rows_materialized"] > 0
    assert after["online_storage"]
    assert after["online_storage"] > 0


def test_report_formats(
    gateway: GatewayProcess, client: redis.Redis, deployment: Deployment
) -> None:
    specs = list(deployment.catalog.values())
    report = cost_report.report(specs, client, cost.Prices(), gateway.base, 5)
    parsed = list(csv.DictReader(io.StringIO(cost_report.to_csv(report))))
    assert tuple(parsed[0]) == cost_report.COLUMNS
    assert {row["tenant"] for row in parsed} == {s.name for s in specs} | {"*"}
    grand = parsed[-1]
    assert grand["item"] == "total"
    assert float(grand["cost"]) == pytest.approx(report.total)
    tenant_totals = [float(r["cost"]) for r in parsed[:-1] if r["item"] == "total"]
    assert sum(tenant_totals) == pytest.approx(report.total)
    document = json.loads(cost_report.to_json(report))
    assert document["currency"] == "USD"
    assert document["gateway"] == gateway.base
    assert document["total"] == pytest.approx(report.total)
    line = next(r for r in document["lines"] if r["item"] == "cpu_quota")
    assert line["cost"] == pytest.approx(line["quantity"] * line["unit_price"])


def _env(deployment: Deployment, **extra: str) -> dict[str, str]:
    settings = deployment.settings
    return {
        "FEATUREPLANE_REDIS_URL": settings.require_redis_url(),
        "FEATUREPLANE_DATA_DIR": str(settings.data_path),
        "FEATUREPLANE_TENANTS_DIR": str(ROOT / "tenants"),
        "FEATUREPLANE_FEATURE_REPO_DIR": str(ROOT / "feature_repo"),
        "FEATUREPLANE_COST_PRICES": "",
        **extra,
    }


def test_cli_table_and_json_with_and_without_a_gateway(
    gateway: GatewayProcess, deployment: Deployment, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("currency: EUR\nper_cpu_core_month: 10\n")
    env = _env(deployment, FEATUREPLANE_COST_PRICES=str(prices))
    runner = CliRunner()
    table = runner.invoke(app, ["cost", "report", "--gateway", gateway.base], env=env)
    assert table.exit_code == 0, table.output
    assert "EUR" in table.output
    assert "fraud" in table.output
    assert "total" in table.output
    stopped = runner.invoke(
        app, ["cost", "report", "--format", "json", "--gateway", "http://127.0.0.1:9"], env=env
    )
    assert stopped.exit_code == 0, stopped.output
    document = json.loads(stopped.stdout)
    assert document["gateway"] is None
    assert "running gateway" in document["note"]
    lines = {(r["tenant"], r["item"]): r for r in document["lines"]}
    assert lines[("fraud", "requests")]["quantity"] is None
    assert lines[("fraud", "online_storage")]["quantity"] > 0
    assert lines[("fraud", "cpu_quota")]["unit_price"] == 10


def test_prices_parse_with_errors_naming_file_and_field(tmp_path: Path) -> None:
    assert cost.load_prices(None) == cost.Prices()
    good = tmp_path / "good.yaml"
    good.write_text("per_million_requests: 1.5\nper_gib_month_online: 20\n")
    assert cost.load_prices(good).per_million_requests == 1.5
    bad = tmp_path / "bad.yaml"
    bad.write_text("per_million_requests: 1.5\nper_cpu_core_month: -3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: per_cpu_core_month: .*greater than"):
        cost.load_prices(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("per_milion_requests: 1\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: per_milion_requests: Extra inputs"):
        cost.load_prices(typo)
    listed = tmp_path / "listed.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(ConfigError, match=r"listed\.yaml: the price model must be a mapping"):
        cost.load_prices(listed)


def test_quantities() -> None:
    assert cost.quantity("500m") == 0.5
    assert cost.quantity("2") == 2
    assert cost.quantity("4Gi") == 4 * 1024**3
    assert cost.quantity("1G") == 1e9
