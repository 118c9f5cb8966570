"""Lint of tenant repos: each rule fires on a bad repo (through `featureplane plan`), and the
sample tenants lint clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from featureplane.embedded.redis import EmbeddedRedis
from featureplane.registry.lint import shadowed
from featureplane.registry.plan import plan_tenant
from featureplane.tenancy.catalog import TenantCatalog
from tests.support.settings import make_settings
from tests.support.trees import Platform, cli

BAD_DEFINITIONS = '''\
"""One object per lint rule; `tagged` and `kept` are fine."""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Float64, Int64

from featureplane.sources import parquet_source

OWNER = "ml@example.com"

anon = Entity(name="anon", join_keys=["anon_id"])  # no description, no owner
kept = Entity(name="kept", join_keys=["kept_id"], description="Fine.", owner=OWNER)


def view(name, **overrides):
    options = {
        "entities": [anon],
        "ttl": timedelta(days=1),
        "description": f"{name}.",
        "owner": OWNER,
        "schema": [
            Field(name="anon_id", dtype=Int64),
            Field(name="x", dtype=Float64, description="x."),
        ],
        "source": parquet_source(f"{name}_events"),
    }
    return FeatureView(name=name, **(options | overrides))


nodesc = view("nodesc", description="")
stranger = view("stranger", owner="someone@elsewhere.com")
ownerless = view("ownerless", owner="")
tagged = view("tagged", owner="", tags={"owner": "ML@example.com"})
forever = view("forever", ttl=timedelta(0))
undocumented = view(
    "undocumented", schema=[Field(name="anon_id", dtype=Int64), Field(name="y", dtype=Float64)]
)
elsewhere = FileSource(name="outside_events", path="/srv/x.parquet", timestamp_field="ts")
outside = view("outside", source=elsewhere)
dup = view("dup")
bare_service = FeatureService(name="bare_service", features=[tagged])
'''

BAD_MODULES = {
    "govbad_definitions.py": BAD_DEFINITIONS,
    # A second, distinct view under a taken name, in another module.
    "govbad_more.py": "from govbad_definitions import view\n\ndup = view('dup')\n",
    # Shadowed by the standard library and by redis-py: Feast never sees these definitions.
    "types.py": "from feast import Entity\n\nghost = Entity(name='ghost', join_keys=['g'])\n",
    "redis.py": "GHOST = 1\n",
}

EXPECTED = {
    ("module-name", "error", "feature_repo/govbad/redis.py", "redis"),
    ("module-name", "error", "feature_repo/govbad/types.py", "types"),
    ("unique-name", "error", "feature_repo/govbad/govbad_more.py", "dup"),
    ("unique-name", "error", "feature_repo/govbad/govbad_more.py", "dup_events"),  # its source
    ("description", "error", "feature_repo/govbad/govbad_definitions.py", "anon"),
    ("description", "error", "feature_repo/govbad/govbad_definitions.py", "nodesc"),
    ("owner", "error", "feature_repo/govbad/govbad_definitions.py", "stranger"),
    ("owner", "error", "feature_repo/govbad/govbad_definitions.py", "ownerless"),
    ("ttl", "error", "feature_repo/govbad/govbad_definitions.py", "forever"),
    ("feast", "error", "feature_repo/govbad", None),  # Feast's own refusal of the duplicate
    ("entity-owner", "warning", "feature_repo/govbad/govbad_definitions.py", "anon"),
    ("feature-doc", "warning", "feature_repo/govbad/govbad_definitions.py", "undocumented"),
    ("service-doc", "warning", "feature_repo/govbad/govbad_definitions.py", "bare_service"),
    ("source-path", "warning", "feature_repo/govbad/govbad_definitions.py", "outside_events"),
}


@pytest.fixture(scope="module")
def platform(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Platform:
    return Platform(tmp_path_factory.mktemp("lint"), redis_server.url)


def test_every_rule_fires_and_names_file_and_object(platform: Platform) -> None:
    tree = platform.tree("bad", "govbad", BAD_MODULES)
    proc = cli(tree, "plan", "govbad", "--json")
    assert proc.returncode == 1
    assert "lint error(s)" in proc.stderr
    findings = json.loads(proc.stdout)["lint"]
    assert {(f["rule"], f["severity"], f["file"], f["name"]) for f in findings} == EXPECTED
    for f in findings:
        assert f["file"] in f["message"], f
        assert f["name"] is None or repr(f["name"]) in f["message"], f
    (duplicate,) = [f for f in findings if f["name"] == "dup"]
    assert "govbad_definitions.py (dup)" in duplicate["message"]
    assert "govbad_more.py (dup)" in duplicate["message"]
    (shadow,) = [f for f in findings if f["file"].endswith("types.py")]
    assert "standard library" in shadow["message"]
    (stranger,) = [f for f in findings if f["name"] == "stranger"]
    assert "someone@elsewhere.com" in stranger["message"]
    assert "ml@example.com" in stranger["message"]


def test_the_table_shows_lint_and_apply_refuses_lint_errors(platform: Platform) -> None:
    tree = platform.tree("bad-apply", "govbad", BAD_MODULES)
    proc = cli(tree, "apply", "govbad", "--allow-breaking", "lint is not waived")
    assert proc.returncode == 1
    assert "nothing applied" in proc.stderr
    assert "[module-name] feature_repo/govbad/types.py" in proc.stdout
    assert not (tree.settings.data_path / "audit").exists()  # nothing was accepted


def test_a_tenant_sets_its_own_severities(platform: Platform) -> None:
    """tenant.yaml `lint:`: a default, per-rule entries, `off`; Feast's own refusal stays an
    error; the JSON and the table show the effective level beside the platform's."""
    lenient = "lint: {default: warning, owner: error, source-path: off}\n"
    tree = platform.tree("bad-lenient", "govbad", BAD_MODULES, tenant_yaml=lenient)
    proc = cli(tree, "plan", "govbad", "--json")
    assert proc.returncode == 1  # owner (the tenant's choice) and feast are still errors
    findings = json.loads(proc.stdout)["lint"]
    kept = [e for e in EXPECTED if e[0] != "source-path"]
    effective = {
        (r, "error" if r in ("owner", "feast") else "warning", f, n) for r, _, f, n in kept
    }
    assert {(f["rule"], f["severity"], f["file"], f["name"]) for f in findings} == effective
    assert {(f["rule"], f["default"]) for f in findings} == {(r, s) for r, s, _, _ in kept}
    table = cli(tree, "plan", "govbad").stdout
    assert "warning [ttl] feature_repo/govbad/govbad_definitions.py (forever)" in table
    assert "(tenant.yaml lint; error by default)" in table
    assert "[source-path]" not in table


STOCK_LIKE = """\
from datetime import timedelta

from feast import Entity, FeatureView, Field
from feast.types import Float64, Int64

from featureplane import parquet_source

driver = Entity(name="driver", join_keys=["driver_id"])
driver_stats = FeatureView(
    name="driver_stats",
    entities=[driver],
    ttl=timedelta(days=1),
    schema=[Field(name="driver_id", dtype=Int64), Field(name="conv_rate", dtype=Float64)],
    source=parquet_source("driver_events"),
)
"""


def test_a_repo_without_descriptions_or_owners_passes_with_default_warning(
    platform: Platform,
) -> None:
    """What `feast init` style repos need: `lint: {default: warning}` (and nothing else)."""
    modules = {"govstock_repo.py": STOCK_LIKE}
    strict = cli(platform.tree("stock-strict", "govstock", modules), "plan", "govstock")
    assert strict.returncode == 1
    assert "lint error(s)" in strict.stderr
    lenient = "lint: {default: warning}\n"
    tree = platform.tree("stock-lenient", "govstock", modules, lenient)
    proc = cli(tree, "plan", "govstock", "--json")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert document["passed"] is True
    assert {(f["rule"], f["severity"], f["default"]) for f in document["lint"]} == {
        ("description", "warning", "error"),
        ("owner", "warning", "error"),
        ("entity-owner", "warning", "warning"),
        ("feature-doc", "warning", "warning"),
    }


@pytest.mark.parametrize("tenant", ["fraud", "pricing", "recsys"])
def test_sample_tenants_lint_clean(tenant: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "redis://127.0.0.1:6379/0")
    spec = TenantCatalog.load(settings.tenants_path, settings.feature_repo_path).get_tenant(tenant)
    plan = plan_tenant(settings, spec)
    assert plan.lint == []
    assert plan.changes
    assert {(c.kind, c.classification) for c in plan.changes} == {("added", "safe")}


@pytest.mark.parametrize(
    ("module", "verdict"),
    [
        ("types", "the standard library's 'types'"),
        ("json", "the standard library's 'json'"),
        ("platform.things", "the standard library's 'platform'"),
        ("redis", "'redis' of the installed redis"),
        ("feast", "'feast' of the installed feast"),
        ("featureplane", "'featureplane' of the installed featureplane"),
        ("features", None),
        ("fraud_definitions", None),
        ("fraud.types", None),  # a package's submodule is imported by its dotted name
    ],
)
def test_shadowed_module_names(module: str, verdict: str | None) -> None:
    assert shadowed(module) == verdict


STORED_ODFV = """
from datetime import timedelta
from typing import Any

from feast import Entity, FeatureView, Field, RequestSource
from feast.batch_feature_view import batch_feature_view
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64

from featureplane import parquet_source

rider = Entity(name="rider", join_keys=["rider_id"])
bonus = RequestSource(name="bonus", schema=[Field(name="bonus_km", dtype=Float64)])
trips = FeatureView(
    name="trips", entities=[rider], ttl=timedelta(days=1),
    schema=[Field(name="rider_id", dtype=Int64), Field(name="km", dtype=Float64)],
    source=parquet_source("trips"),
)


@on_demand_feature_view(
    sources=[trips, bonus], schema=[Field(name="miles", dtype=Float64)], mode="python",
    entities=[rider], write_to_online_store=True,
)
def stored_miles(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"miles": [None if k is None else (k + b) / 1.609
                      for k, b in zip(inputs["km"], inputs["bonus_km"])]}


@batch_feature_view(
    entities=[rider], ttl=timedelta(days=1), source=trips.batch_source,
    schema=[Field(name="rider_id", dtype=Int64), Field(name="miles", dtype=Float64)],
)
def trip_miles(df: Any) -> Any:
    return df
"""


def test_plan_names_what_the_gateway_refuses_in_one_line(platform: Platform) -> None:
    tree = platform.tree(
        "refused", "govodfv", {"defs.py": STORED_ODFV},
        tenant_yaml="lint: {default: off, unsupported: warning}\n",
    )  # fmt: skip
    proc = cli(tree, "plan", "govodfv", "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    finding, batch = sorted(json.loads(proc.stdout)["lint"], key=lambda f: f["name"])
    assert (finding["rule"], finding["name"]) == ("unsupported", "stored_miles")
    assert "write_to_online_store=True with request data" in finding["message"]
    assert (batch["rule"], batch["name"]) == ("unsupported", "trip_miles")
    assert "is not materialized: featureplane does not run" in batch["message"]
    table = cli(tree, "plan", "govodfv").stdout
    assert "[unsupported] feature_repo/govodfv/defs.py (stored_miles)" in table
