"""The generated dashboards, rules and provisioning files: current, valid, and loadable."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from featureplane.dashboards import DashboardConfig, artifacts, queries
from featureplane.dashboards.config import BurnWindow
from featureplane.tenancy.catalog import TenantCatalog
from tests.support.components import require_binary
from tests.support.dashboards import DASHBOARDS, dashboard, panel_queries
from tests.support.paths import ROOT

RULES = ROOT / artifacts.RULES
RULES_TEST = ROOT / "dashboards/prometheus/tests/rules_test.yaml"


@pytest.fixture(scope="module")
def catalog() -> TenantCatalog:
    return TenantCatalog.load(ROOT / "tenants")


def test_generated_files_are_current(catalog: TenantCatalog) -> None:
    assert artifacts.stale(ROOT, catalog) == [], "run `featureplane dashboards generate`"


def test_write_all_writes_only_what_changed(catalog: TenantCatalog, tmp_path: Path) -> None:
    assert sorted(artifacts.write_all(tmp_path, catalog)) == sorted(artifacts.render_all(catalog))
    (tmp_path / artifacts.RULES).write_text("groups: []\n")
    assert artifacts.stale(tmp_path, catalog) == [artifacts.RULES]
    assert artifacts.write_all(tmp_path, catalog) == [artifacts.RULES]
    assert artifacts.stale(tmp_path, catalog) == []


def test_generated_files_say_so(catalog: TenantCatalog) -> None:
    for path, text in artifacts.render_all(catalog).items():
        if path.suffix == ".json":
            assert artifacts.GENERATED in json.loads(text)["description"], path
        else:
            assert text.startswith(f"# {artifacts.GENERATED}\n"), path


def test_promtool_checks_the_rules() -> None:
    promtool = require_binary("promtool")
    subprocess.run([promtool, "check", "rules", str(RULES)], check=True, capture_output=True)


def test_promtool_unit_tests_pass() -> None:
    promtool = require_binary("promtool")
    done = subprocess.run(
        [promtool, "test", "rules", str(RULES_TEST)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_panel_query_parses(tmp_path: Path) -> None:
    """promtool parses each panel query as a recording rule's expression."""
    exprs = [param.values[0] for param in panel_queries()]
    assert not [e for e in exprs if "$" in e], "a Grafana variable left unsubstituted"
    rules = [{"record": f"panel:query:{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "panels.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    promtool = require_binary("promtool")
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_tests_order_every_group() -> None:
    groups = [g["name"] for g in yaml.safe_load(RULES.read_text())["groups"]]
    assert yaml.safe_load(RULES_TEST.read_text())["group_eval_order"] == groups


def test_every_tenant_has_its_slo_rules(catalog: TenantCatalog) -> None:
    groups = {g["name"]: g["rules"] for g in yaml.safe_load(RULES.read_text())["groups"]}
    latency = groups["featureplane.slo.latency"]
    for name in catalog:
        records = {r["record"] for r in latency if r["labels"] == {"tenant": name}}
        windows = DashboardConfig().slo_windows
        assert records == {queries.latency_errors_record(w) for w in windows}
        alerts = groups[f"featureplane.slo.alerts.{name}"]
        assert {(a["alert"], a["labels"]["long"], a["labels"]["severity"]) for a in alerts} == {
            (alert, long, severity)
            for alert in ("FeatureplaneAvailabilityBudgetBurn", "FeatureplaneLatencyBudgetBurn")
            for long, severity in (
                ("1h", "page"),
                ("6h", "page"),
                ("1d", "ticket"),
                ("3d", "ticket"),
            )
        }


@pytest.mark.parametrize(
    ("target_ms", "bucket"),
    [(10, 0.01), (25, 0.025), (12, 0.015), (0.1, 0.00025), (10_000, 10.0)],
)
def test_latency_slo_uses_the_target_bucket_or_the_next_one_up(
    target_ms: float, bucket: float
) -> None:
    assert queries.latency_bucket(target_ms / 1000) == bucket


def test_latency_slo_refuses_a_target_beyond_the_histogram() -> None:
    with pytest.raises(ValueError, match="beyond the largest histogram bucket"):
        queries.latency_bucket(11)


def test_whole_second_buckets_match_either_spelling() -> None:
    # prometheus_client exposes le="1.0"; Prometheus 3 normalises it to le="1".
    ratio = queries.Queries(DashboardConfig()).latency_error_ratio('tenant="x"', "5m", 0.9)
    assert 'le=~"1|1\\\\.0"' in ratio


def test_the_job_is_configured_in_one_place(catalog: TenantCatalog) -> None:
    rendered = artifacts.render_all(catalog, DashboardConfig(job="fp-gateway"))
    for path in (*DASHBOARDS, artifacts.RULES):
        assert 'job="featureplane"' not in rendered[path].replace('\\"', '"'), path
        assert 'job="fp-gateway"' in rendered[path].replace('\\"', '"'), path


def _leaves(value: Any, at: str = "") -> dict[str, Any]:
    """Every scalar (and empty container) by its path: ``/panels[3]/targets[0]/expr``."""
    if isinstance(value, dict) and value:
        return {
            k: v for key, item in value.items() for k, v in _leaves(item, f"{at}/{key}").items()
        }
    if isinstance(value, list) and value:
        return {
            k: v for i, item in enumerate(value) for k, v in _leaves(item, f"{at}[{i}]").items()
        }
    return {at: value}


@pytest.mark.parametrize("path", DASHBOARDS, ids=str)
def test_dashboard_round_trips_through_the_sdk_models(path: Path) -> None:
    """Nothing the generator wrote is dropped or changed by the SDK's own models (the SDK may
    add defaults, e.g. an empty ``fieldConfig.defaults.custom``)."""
    register_default_plugins()
    original = dashboard(path)
    again = json.loads(json.dumps(Dashboard.from_json(original), cls=JSONEncoder))
    dropped = {k: v for k, v in _leaves(original).items() if _leaves(again).get(k, ...) != v}
    assert dropped == {}


@pytest.mark.parametrize("path", DASHBOARDS, ids=str)
def test_every_panel_queries_prometheus_through_the_datasource_variable(path: Path) -> None:
    board = dashboard(path)
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert panels
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=str)
def test_datasource_variable_defaults_to_the_provisioned_datasource(path: Path) -> None:
    provisioned = yaml.safe_load((ROOT / artifacts.DATASOURCES).read_text())["datasources"]
    variable = next(v for v in dashboard(path)["templating"]["list"] if v["type"] == "datasource")
    assert variable["query"] == "prometheus"
    assert variable["current"]["value"] == DashboardConfig().datasource_uid
    assert [d["uid"] for d in provisioned] == [DashboardConfig().datasource_uid]


def test_dashboards_have_stable_uids() -> None:
    uids = {path: dashboard(path)["uid"] for path in DASHBOARDS}
    assert uids == {
        artifacts.TENANT_SLA: "featureplane-tenant-sla",
        artifacts.PLATFORM_OVERVIEW: "featureplane-platform-overview",
    }


def test_dashboard_provider_serves_a_folder() -> None:
    providers = yaml.safe_load((ROOT / artifacts.DASHBOARD_PROVIDERS).read_text())["providers"]
    assert [(p["type"], p["options"]["path"]) for p in providers] == [
        ("file", DashboardConfig().dashboards_path)
    ]


def test_the_burn_rate_panel_follows_the_burn_windows(catalog: TenantCatalog) -> None:
    """The panel plots the paging windows, its thresholds are their rates, and its description
    names the page and ticket rates of the alerts."""
    windows = (
        BurnWindow("1h", "5m", 10, "2m", "page"),
        BurnWindow("1d", "2h", 2, "1h", "ticket"),
    )
    config = DashboardConfig(burn_windows=windows)
    board = json.loads(artifacts.render_all(catalog, config)[artifacts.TENANT_SLA])
    [panel] = [p for p in board["panels"] if p["title"] == "Error-budget burn rate"]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [(s["value"], s["color"]) for s in steps] == [(None, "green"), (10, "red")]
    assert panel["description"].endswith("Pages at 10 (1 h); tickets at 2 (1 d).")
    legends = [(t["refId"], t["legendFormat"]) for t in panel["targets"]]
    assert legends == [("A", "availability 1h"), ("B", "latency 1h")]


def test_burn_windows_need_their_recording_rules() -> None:
    with pytest.raises(ValueError, match=r"\['2d'\] are not among slo_windows"):
        DashboardConfig(burn_windows=(BurnWindow("2d", "6h", 1, "3h", "ticket"),))
