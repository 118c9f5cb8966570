"""`featureplane plan` / `apply`: Feast's real plan against a real SQLite registry, classified.

Each scenario is a tenant of its own (its own Feast project) in one fresh registry under
tmp_path: a baseline is applied with `apply_tenant`, then a modified copy of its repo is planned
or applied through the real CLI. Many changes are batched into one modified repo, since each
Feast parse costs seconds.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from contextlib import closing
from typing import Any

import pytest

from featureplane.embedded.redis import EmbeddedRedis
from featureplane.registry.audit import audit_path
from featureplane.registry.feast_plan import ObjectDiff
from featureplane.registry.plan import Change, classify
from featureplane.settings import Settings
from tests.support.trees import Platform, Tree, cli

# A baseline repo with one object per change the modified copies make. Columns are written
# "name:Type"; every view reads its own `<name>_events` Parquet source unless told otherwise.
BASELINE = """\
\"\"\"Governed-apply test tenant.\"\"\"

import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float32, Float64, Int64, String

from featureplane.sources import parquet_source

OWNER = "ml@example.com"
TYPES = {"Int64": Int64, "Float32": Float32, "Float64": Float64, "String": String}


def entity(name, key, value_type=ValueType.INT64, description=None):
    return Entity(
        name=name,
        join_keys=[key],
        value_type=value_type,
        description=description or f"A {name}.",
        owner=OWNER,
    )


def columns(spec, documented):
    pairs = [column.split(":") for column in spec.split()]
    text = "{}." if documented else ""
    return [Field(name=n, dtype=TYPES[t], description=text.format(n)) for n, t in pairs]


def view(name, entities, keys, features, ttl=timedelta(days=7), source=None, **kwargs):
    return FeatureView(
        name=name,
        entities=entities,
        ttl=ttl,
        schema=columns(keys, False) + columns(features, True),
        source=source or parquet_source(f"{name}_events"),
        description=kwargs.pop("description", f"{name}."),
        owner=OWNER,
        tags=kwargs.pop("tags", {"team": "gov"}),
        **kwargs,
    )


def moved(name, folder):
    \"\"\"A source that keeps its name but reads another folder.\"\"\"
    project = os.environ["FEATUREPLANE_PROJECT"]
    path = Path(os.environ["FEATUREPLANE_DATA_DIR"]) / "offline" / project / folder
    path.mkdir(parents=True, exist_ok=True)
    return FileSource(name=name, path=str(path), timestamp_field="event_timestamp")


customer = entity("customer", "customer_id")
shop = entity("shop", "shop_id")
region = entity("region", "region_id", ValueType.STRING)
device = entity("device", "device_id")
legacy = entity("legacy", "legacy_id")

customer_stats = view(
    "customer_stats", [customer], "customer_id:Int64",
    "spend:Float64 visits:Int64 score:Float32 churn:Float64",
)
shop_stats = view("shop_stats", [shop], "shop_id:Int64", "sales:Float64", ttl=timedelta(0))
region_stats = view("region_stats", [region], "region_id:String", "rain:Float64")
device_stats = view("device_stats", [device], "device_id:Int64", "battery:Float64")
legacy_stats = view("legacy_stats", [legacy], "legacy_id:Int64", "old:Float64")
keyed_stats = view("keyed_stats", [customer], "customer_id:Int64", "ratio:Float64")
path_stats = view("path_stats", [customer], "customer_id:Int64", "hops:Int64")
ts_stats = view("ts_stats", [customer], "customer_id:Int64", "lag:Float64")

svc_keep = FeatureService(
    name="svc_keep", features=[customer_stats[["spend"]]], description="Kept.", owner=OWNER
)
svc_trim = FeatureService(
    name="svc_trim",
    features=[customer_stats[["spend", "visits"]], device_stats],
    description="Trimmed.",
    owner=OWNER,
)
svc_gone = FeatureService(
    name="svc_gone", features=[shop_stats], description="Deleted.", owner=OWNER
)
"""


def edit(source: str, *replacements: tuple[str, str]) -> str:
    """``source`` with each (old, new) replaced exactly once (a typo fails loudly)."""
    for old, new in replacements:
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    return source


CUSTOMER = '"spend:Float64 visits:Int64 score:Float32 churn:Float64",'
NO_ZERO_TTL = ('"sales:Float64", ttl=timedelta(0))', '"sales:Float64", ttl=timedelta(days=3))')

BREAKING = edit(
    BASELINE,
    # feature removed (churn), dtype changed (score), feature added (safe), ttl shrunk
    (CUSTOMER, '"spend:Float64 visits:Int64 score:Float64 fresh:Int64", ttl=timedelta(days=1),'),
    NO_ZERO_TTL,  # ttl newly set where it was 0
    ('"region_id", ValueType.STRING)', '"region_code", ValueType.STRING)'),  # entity join key
    ('"region_id:String"', '"region_code:String"'),
    ('entity("device", "device_id")', 'entity("device", "device_id", ValueType.STRING)'),
    ('"device_id:Int64"', '"device_id:String"'),  # entity value type
    ("legacy = entity(", "_legacy = None and entity("),  # entity deleted
    ("legacy_stats = view(", "_legacy_stats = None and view("),  # feature view deleted
    ('[customer], "customer_id:Int64", "ratio',
     '[customer, shop], "customer_id:Int64 shop_id:Int64", "ratio'),  # view entities
    ('"hops:Int64")', '"hops:Int64", source=moved("path_stats_events", "path_stats_v2"))'),
    ('"lag:Float64")',
     '"lag:Float64", source=parquet_source("ts_stats_events", timestamp_field="at"))'),
    ('features=[customer_stats[["spend", "visits"]], device_stats]',
     'features=[customer_stats[["spend"]]]'),  # a feature and a view leave a service
    ("svc_gone = FeatureService(", "_svc_gone = None and FeatureService("),  # service deleted
    ('description="Kept."', 'description="Kept, documented."'),  # safe
)  # fmt: skip

SAFE_BASELINE = edit(BASELINE, NO_ZERO_TTL)
SAFE = edit(
    SAFE_BASELINE,
    (CUSTOMER,
     CUSTOMER[:-2] + ' fresh:Int64", ttl=timedelta(days=14), description="Spend, visits.",'),
    ('{"team": "gov"})', '{"team": "gov", "tier": "gold"})'),
    ('entity("customer", "customer_id")',
     'entity("customer", "customer_id", description="A payer.")'),
    ('features=[customer_stats[["spend"]]]', 'features=[customer_stats[["spend", "visits"]]]'),
    ("svc_keep = FeatureService(", """\
merchant = entity("merchant", "merchant_id")
merchant_stats = view("merchant_stats", [merchant], "merchant_id:Int64", "fees:Float64")
svc_new = FeatureService(name="svc_new", features=[merchant_stats], description="New.")
svc_keep = FeatureService("""),
)  # fmt: skip


def registry_rows(settings: Settings, project: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every registry row of the project, read straight from the SQLite file (protos as bytes)."""
    with closing(sqlite3.connect(str(settings.registry))) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            table: sorted(db.execute(f"SELECT * FROM {table} WHERE project_id = ?", (project,)))
            for table in tables
            if "project_id" in {c[1] for c in db.execute(f"PRAGMA table_info({table})")}
        }


def keyed(doc: dict[str, Any]) -> dict[tuple[str, str, str | None], dict[str, Any]]:
    return {(c["object_type"], c["name"], c["field"]): c for c in doc["changes"]}


@pytest.fixture(scope="module")
def platform(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Platform:
    return Platform(tmp_path_factory.mktemp("governed"), redis_server.url)


@pytest.fixture(scope="module")
def breaking_tree(platform: Platform) -> Tree:
    platform.applied("gov-baseline", "gov", {"gov_definitions.py": BASELINE})
    return platform.tree("gov-breaking", "gov", {"gov_definitions.py": BREAKING})


@pytest.fixture(scope="module")
def breaking_plan(breaking_tree: Tree) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = cli(breaking_tree, "plan", "gov", "--json")
    return proc, json.loads(proc.stdout)


# Every breaking change BREAKING makes, as (object type, name, field): nothing more, nothing less.
EXPECTED_BREAKING = {
    ("feature_view", "legacy_stats", None),
    ("entity", "legacy", None),
    ("feature_service", "svc_gone", None),
    ("feature_view", "customer_stats", "features.churn"),
    ("feature_view", "customer_stats", "features.score.value_type"),
    ("feature_view", "customer_stats", "ttl"),
    ("feature_view", "shop_stats", "ttl"),
    ("entity", "region", "join_key"),
    ("feature_view", "region_stats", "entity_columns.region_code"),
    ("feature_view", "region_stats", "entity_columns.region_id"),
    ("entity", "device", "value_type"),
    ("feature_view", "device_stats", "entity_columns.device_id.value_type"),
    ("feature_view", "keyed_stats", "entities"),
    ("feature_view", "keyed_stats", "entity_columns.shop_id"),
    ("feature_view", "path_stats", "batch_source.file_options.uri"),
    ("data_source", "path_stats_events", "file_options.uri"),
    ("feature_view", "ts_stats", "batch_source.timestamp_field"),
    ("data_source", "ts_stats_events", "timestamp_field"),
    ("feature_service", "svc_trim", "features.customer_stats.feature_columns.visits"),
    ("feature_service", "svc_trim", "features.device_stats"),
}


def test_every_breaking_class_is_detected(
    breaking_plan: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    proc, doc = breaking_plan
    assert proc.returncode == 1, proc.stderr
    assert "breaking change(s)" in proc.stderr
    assert "--allow-breaking" in proc.stderr
    assert doc["tenant"] == doc["project"] == "gov"
    assert doc["breaking"] is True
    assert doc["passed"] is False
    assert doc["lint"] == []
    changes = keyed(doc)
    breaking = {k for k, c in changes.items() if c["classification"] == "breaking"}
    assert breaking == EXPECTED_BREAKING

    assert changes["feature_view", "legacy_stats", None]["kind"] == "removed"
    score = changes["feature_view", "customer_stats", "features.score.value_type"]
    assert (score["kind"], score["before"], score["after"]) == ("changed", "FLOAT", "DOUBLE")
    churn = changes["feature_view", "customer_stats", "features.churn"]
    assert (churn["kind"], churn["before"], churn["after"]) == ("removed", "DOUBLE", None)
    shrunk = changes["feature_view", "customer_stats", "ttl"]
    assert (shrunk["before"], shrunk["after"]) == ("604800s", "86400s")
    assert "shrunk" in shrunk["reason"]
    from_zero = changes["feature_view", "shop_stats", "ttl"]
    assert (from_zero["before"], from_zero["after"]) == ("0s", "259200s")
    assert "newly set" in from_zero["reason"]
    join_key = changes["entity", "region", "join_key"]
    assert (join_key["before"], join_key["after"]) == ("region_id", "region_code")
    value_type = changes["entity", "device", "value_type"]
    assert (value_type["before"], value_type["after"]) == ("INT64", "STRING")
    entities = changes["feature_view", "keyed_stats", "entities"]
    assert (entities["before"], entities["after"]) == (["customer"], ["customer", "shop"])
    uri = changes["feature_view", "path_stats", "batch_source.file_options.uri"]
    assert uri["before"].endswith("/offline/gov/path_stats_events")
    assert uri["after"].endswith("/offline/gov/path_stats_v2")
    timestamp = changes["feature_view", "ts_stats", "batch_source.timestamp_field"]
    assert (timestamp["before"], timestamp["after"]) == ("event_timestamp", "at")
    trimmed = changes["feature_service", "svc_trim", "features.device_stats"]
    assert trimmed["kind"] == "removed"

    # The safe changes in the same repo are reported as safe.
    fresh = changes["feature_view", "customer_stats", "features.fresh"]
    assert (fresh["kind"], fresh["after"], fresh["classification"]) == ("added", "INT64", "safe")
    assert changes["feature_service", "svc_keep", "description"]["classification"] == "safe"
    assert set(doc) == {
        "tenant", "project", "changes", "breaking", "lint", "allow_breaking", "passed",
    }  # fmt: skip
    assert set(fresh) == {
        "kind", "object_type", "name", "field", "before", "after", "classification", "reason",
    }  # fmt: skip


def test_allow_breaking_passes_and_is_audited(breaking_tree: Tree) -> None:
    reason = "JIRA-42: retire the legacy views"
    proc = cli(breaking_tree, "plan", "gov", "--allow-breaking", reason, GITHUB_SHA="c0ffee1")
    assert proc.returncode == 0, proc.stderr
    assert "breaking changes accepted" in proc.stdout
    assert "breaking" in proc.stdout  # the table
    lines = audit_path(breaking_tree.settings, "gov").read_text().splitlines()
    record = json.loads(lines[-1])
    assert record["tenant"] == "gov"
    assert record["reason"] == reason
    assert record["commit"] == "c0ffee1"
    assert record["command"] == "plan"
    assert record["time"].endswith("+00:00")
    recorded = {(c["object_type"], c["name"], c["field"]) for c in record["breaking"]}
    assert recorded == EXPECTED_BREAKING
    assert all(c["classification"] == "breaking" for c in record["breaking"])

    empty = cli(breaking_tree, "plan", "gov", "--allow-breaking", " ")
    assert empty.returncode == 1
    assert "needs a reason" in empty.stderr


def test_apply_refuses_a_breaking_plan_and_changes_nothing(breaking_tree: Tree) -> None:
    before = registry_rows(breaking_tree.settings, "gov")
    assert "legacy_stats" in {row[0] for row in before["feature_views"]}
    proc = cli(breaking_tree, "apply", "gov")
    assert proc.returncode == 1
    assert "nothing applied" in proc.stderr
    assert "breaking" in proc.stdout
    assert registry_rows(breaking_tree.settings, "gov") == before


def test_safe_changes_pass_the_gate_and_apply(platform: Platform) -> None:
    platform.applied("safe-baseline", "govsafe", {"govsafe_definitions.py": SAFE_BASELINE})
    tree = platform.tree("safe", "govsafe", {"govsafe_definitions.py": SAFE})

    proc = cli(tree, "plan", "govsafe", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["breaking"] is False
    assert doc["passed"] is True
    assert doc["lint"] == []
    changes = keyed(doc)
    assert {c["classification"] for c in doc["changes"]} == {"safe"}
    assert {
        ("entity", "merchant", None),
        ("feature_view", "merchant_stats", None),
        ("feature_service", "svc_new", None),
        ("data_source", "merchant_stats_events", None),
        ("feature_view", "customer_stats", "features.fresh"),
        ("feature_view", "customer_stats", "description"),
        ("feature_view", "customer_stats", "ttl"),
        ("feature_view", "shop_stats", "tags.tier"),
        ("entity", "customer", "description"),
        ("feature_service", "svc_keep", "features.customer_stats.feature_columns.visits"),
    } <= set(changes)
    assert changes["feature_view", "customer_stats", "ttl"]["reason"] == "ttl grown"

    applied = cli(tree, "apply", "govsafe")
    assert applied.returncode == 0, applied.stderr
    assert "applied" in applied.stdout
    views = {row[0] for row in registry_rows(tree.settings, "govsafe")["feature_views"]}
    assert "merchant_stats" in views
    assert not audit_path(tree.settings, "govsafe").exists()  # nothing breaking to record

    again = cli(tree, "plan", "govsafe", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["changes"] == []  # what was applied is what is declared


# -- classification rules without Feast --------------------------------------------------------


def _update(object_type: str, before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    return classify(ObjectDiff(object_type, "v", "update", before, after))


@pytest.mark.parametrize(
    ("before", "after", "classification"),
    [
        ("3600s", "7200s", "safe"),  # grown
        ("3600s", None, "safe"),  # set to 0: rows never expire
        ("7200s", "3600s", "breaking"),  # shrunk
        (None, "3600s", "breaking"),  # newly set where it was 0
    ],
)
def test_ttl_rules(before: str | None, after: str | None, classification: str) -> None:
    spec = {"name": "v"}
    (change,) = _update(
        "feature_view",
        spec | ({"ttl": before} if before else {}),
        spec | ({"ttl": after} if after else {}),
    )
    assert (change.field, change.classification) == ("ttl", classification)


def test_unknown_fields_are_breaking_and_metadata_is_safe() -> None:
    changes = _update(
        "feature_view",
        {"name": "v", "online": True, "mode": "a", "tags": {"team": "x"}},
        {"name": "v", "mode": "b", "owner": "o@example.com"},
    )
    verdicts = {c.field: c.classification for c in changes}
    assert verdicts == {
        "online": "breaking",
        "mode": "breaking",
        "tags.team": "safe",
        "owner": "safe",
    }


def test_created_and_deleted_objects() -> None:
    (created,) = classify(ObjectDiff("feature_service", "s", "create", None, {"name": "s"}))
    assert (created.kind, created.classification) == ("added", "safe")
    (gone,) = classify(ObjectDiff("feature_view", "v", "delete", {"name": "v"}, None))
    assert (gone.kind, gone.classification) == ("removed", "breaking")
    (source,) = classify(ObjectDiff("data_source", "d", "delete", {"name": "d"}, None))
    assert source.classification == "safe"
