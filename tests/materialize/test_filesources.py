"""Any Feast FileSource a tenant defines is materialized: a relative path (resolved against the
tenant's repo, as Feast resolves it), a single file, a folder outside the platform's offline
store, read in place. A view that cannot be materialized fails the run, naming it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featureplane.embedded.redis import EmbeddedRedis
from featureplane.errors import MaterializationError
from featureplane.feast_config import feature_store
from featureplane.materialize.runner import materialize_tenant
from featureplane.registry.apply import apply_tenant
from featureplane.tenancy.catalog import load_spec
from tests.support.trees import Platform, Tree, cli

TENANT = "filesrc"
DEFINITIONS = """\
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource
from feast.types import Float64, Int64

driver = Entity(name="driver", join_keys=["driver_id"])
schema = [Field(name="driver_id", dtype=Int64), Field(name="conv_rate", dtype=Float64)]


def view(name, path):
    source = FileSource(name=f"{name}_source", path=path, timestamp_field="event_timestamp")
    return FeatureView(
        name=name, entities=[driver], ttl=timedelta(days=1), schema=schema, source=source
    )


relative_file = view("relative_file", "data/driver_stats.parquet")
folder = view("folder", "data/hourly")
"""


def _rows(ids: list[int], rate: float, at: datetime) -> pa.Table:
    return pa.table(
        {
            "driver_id": pa.array(ids, pa.int64()),
            "conv_rate": [rate + i for i in ids],
            "event_timestamp": pa.array([at] * len(ids), pa.timestamp("us", tz="UTC")),
        }
    )


@pytest.fixture(scope="module")
def platform(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Platform:
    return Platform(tmp_path_factory.mktemp("filesources"), redis_server.url.replace("/0", "/4"))


def _online(tree: Tree, view: str, ids: list[int]) -> list[object]:
    spec = load_spec(tree.settings.tenants_path / TENANT / "tenant.yaml")
    got = feature_store(tree.settings, spec).get_online_features(
        features=[f"{view}:conv_rate"], entity_rows=[{"driver_id": i} for i in ids]
    )
    return list(got.to_dict()["conv_rate"])


def test_relative_single_file_and_outside_folder_are_read_in_place(platform: Platform) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    tree = platform.tree("in-place", TENANT, {f"{TENANT}_repo.py": DEFINITIONS})
    data = tree.settings.feature_repo_path / TENANT / "data"
    (data / "hourly").mkdir(parents=True)
    pq.write_table(_rows([1, 2], 0.5, now - timedelta(days=20)), data / "driver_stats.parquet")
    pq.write_table(_rows([1, 2], 0.25, now - timedelta(hours=2)), data / "hourly" / "a.parquet")
    pq.write_table(_rows([2], 0.75, now - timedelta(hours=1)), data / "hourly" / "b.parquet")
    spec = load_spec(tree.settings.tenants_path / TENANT / "tenant.yaml")
    apply_tenant(tree.settings, spec)

    report = materialize_tenant(tree.settings, spec)

    assert report.ingested == {}  # nothing lands for sources outside the offline store
    assert {v.feature_view: v.rows for v in report.views} == {"relative_file": 2, "folder": 3}
    # The first run loads a 20-day-old file although the view's ttl is one day.
    assert {v.feature_view: v.start for v in report.views}["relative_file"] == now - timedelta(
        days=20
    )
    assert _online(tree, "relative_file", [1, 2]) == [1.5, 2.5]
    assert _online(tree, "folder", [1, 2, 3]) == [1.25, 2.75, None]  # the newest row wins
    again = materialize_tenant(tree.settings, spec)  # incremental: nothing new
    assert all(v.rows == 0 for v in again.views)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("s3://bucket/stats.parquet", "reads s3://bucket/stats.parquet, not a local path"),
        ("data/missing.parquet", "which does not exist"),
    ],
)
def test_a_view_that_cannot_be_materialized_fails_naming_it(
    platform: Platform, path: str, reason: str
) -> None:
    definitions = DEFINITIONS.replace('"data/driver_stats.parquet"', repr(path)).replace(
        'folder = view("folder", "data/hourly")\n', ""
    )
    tree = platform.tree(f"bad-{path.split(':')[0]}", TENANT, {f"{TENANT}_repo.py": definitions})
    spec = load_spec(tree.settings.tenants_path / TENANT / "tenant.yaml")
    apply_tenant(tree.settings, spec)
    named = f"{TENANT}/relative_file: cannot be materialized"
    with pytest.raises(MaterializationError, match=named) as excinfo:
        materialize_tenant(tree.settings, spec)
    assert reason in str(excinfo.value)
    proc = cli(tree, "materialize", TENANT)
    assert proc.returncode == 1
    assert named in proc.stderr
