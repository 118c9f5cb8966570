"""Tenant code at plan and apply runs sealed and bounded (featureplane.registry.sandbox).

Hostile definitions (an on-demand view whose UDF loops on Feast's sample input, a module that
sleeps forever, one that calls ``os._exit``, one that allocates without bound) must each fail
`featureplane plan`, `featureplane apply` (the gate) and the apply child itself in bounded time,
in one line naming the tenant, the file and the limit, with the registry unchanged. A tenant
module that collects everything it can reach (its environment, every process's environment and
command line it can read, its open files, the network) must find no platform secret, while its
apply into a PostgreSQL registry works end to end; `plan` works with a read-only database role.
`pytest -s` prints the figures.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest

from featureplane.embedded.redis import EmbeddedRedis
from featureplane.errors import ApplyError
from featureplane.feast_config import close_registry, open_registry
from featureplane.registry.apply import apply_tenant
from featureplane.registry.sandbox import namespaces
from featureplane.tenancy.catalog import load_spec
from tests.support.trees import OWNER, Platform, Tree, cli

TENANT = "hostile"
# Long enough for the child to import Feast and reach the tenant's code on 2 busy cores.
TIMEOUT, MEMORY_MB = 15, 1024
LIMITS = {
    "FEATUREPLANE_PLAN_TIMEOUT_SECONDS": str(TIMEOUT),
    "FEATUREPLANE_PLAN_MEMORY_MB": str(MEMORY_MB),
}
# Beyond the limit: starting `featureplane` and Feast in the parent, staging the registry.
MARGIN = 30.0

DEFINITIONS = f"""\
from datetime import timedelta

from feast import Entity, FeatureView, Field
from feast.types import Int64

from featureplane.sources import parquet_source

account = Entity(name="account", join_keys=["account_id"], description="An account.",
                 owner="{OWNER}")
account_stats = FeatureView(
    name="account_stats",
    entities=[account],
    ttl=timedelta(days=1),
    schema=[Field(name="account_id", dtype=Int64),
            Field(name="txns", dtype=Int64, description="Transactions.")],
    source=parquet_source("account_events"),
    description="Per-account counts.",
    owner="{OWNER}",
)
"""

ODFV_LOOP = """\
from feast import Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Int64

amount = RequestSource(name="hostile_amount", schema=[Field(name="amount", dtype=Int64)])


@on_demand_feature_view(sources=[amount], schema=[Field(name="doubled", dtype=Int64)],
                        mode="python", description="Loops on Feast's sample input.")
def hostile_doubled(inputs):
    while list(inputs["amount"]) == [1]:  # the value Feast infers the schema with
        pass
    return {"doubled": [2 * a for a in inputs["amount"]]}
"""

SLEEP = "import time\n\nwhile True:\n    time.sleep(60)\n"
EXIT = "import os\n\nos._exit(3)\n"
HOG = "hoard = []\nwhile True:\n    hoard.append(bytes(64 << 20))\n"

# (id, file, its text, what the one line says besides the tenant and the file)
HOSTILE = [
    ("odfv-loop", "hostile_odfv.py", ODFV_LOOP,
     [f"the {TIMEOUT} s plan time limit", "FEATUREPLANE_PLAN_TIMEOUT_SECONDS",
      "inferring on-demand feature view 'hostile_doubled'"]),
    ("import-sleep", "hostile_sleep.py", SLEEP,
     [f"the {TIMEOUT} s plan time limit", "FEATUREPLANE_PLAN_TIMEOUT_SECONDS", "importing it"]),
    ("os-exit", "hostile_exit.py", EXIT, ["exited with code 3", "importing it"]),
    ("unbounded-allocation", "hostile_hog.py", HOG,
     [f"the {MEMORY_MB} MB plan memory limit", "FEATUREPLANE_PLAN_MEMORY_MB", "importing it"]),
]  # fmt: skip


def sqlite_rows(tree: Tree) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the SQLite registry, all projects (protos as bytes)."""
    with closing(sqlite3.connect(str(tree.settings.registry))) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(db.execute(f'SELECT * FROM "{t}"'), key=repr) for t in tables}


@pytest.fixture(scope="module")
def platform(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Platform:
    platform = Platform(tmp_path_factory.mktemp("sandbox"), redis_server.url)
    platform.applied("baseline", TENANT, {"hostile_definitions.py": DEFINITIONS})
    return platform


@pytest.mark.parametrize(("file", "text", "says"), [h[1:] for h in HOSTILE],
                         ids=[h[0] for h in HOSTILE])  # fmt: skip
def test_hostile_definition_fails_in_bounded_time_and_changes_nothing(
    platform: Platform, file: str, text: str, says: list[str]
) -> None:
    tree = platform.tree(file, TENANT, {"hostile_definitions.py": DEFINITIONS, file: text})
    before = sqlite_rows(tree)
    assert before["feature_views"]  # the baseline is there to be left alone
    named = f"feature_repo/{TENANT}/{file}"
    figures = []
    for command in ("plan", "apply"):
        began = time.monotonic()
        proc = cli(tree, command, TENANT, **LIMITS)
        elapsed = time.monotonic() - began
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        line = lines[0]
        for word in [f"error: tenant '{TENANT}': {named}:", *says]:
            assert word in line, (command, word, line)
        assert elapsed < TIMEOUT + MARGIN, (command, elapsed)
        assert sqlite_rows(tree) == before
        figures.append(f"{command} {elapsed:.1f} s")

    # The apply child itself (no gate in front of it).
    spec = load_spec(tree.settings.tenants_path / TENANT / "tenant.yaml")
    bounded = tree.settings.model_copy(
        update={"plan_timeout_seconds": TIMEOUT, "plan_memory_mb": MEMORY_MB}
    )
    began = time.monotonic()
    with pytest.raises(ApplyError) as caught:
        apply_tenant(bounded, spec)
    elapsed = time.monotonic() - began
    message = str(caught.value)
    assert "\n" not in message
    assert f"tenant '{TENANT}': " in message
    assert str(tree.settings.feature_repo_path / TENANT / file) in message
    for word in says:
        assert word in message, word
    assert elapsed < TIMEOUT + MARGIN
    assert sqlite_rows(tree) == before
    figures.append(f"apply child {elapsed:.1f} s")
    print(f"\n[sandbox] {file}: {', '.join(figures)}: {line}")


# -- no secret in reach -----------------------------------------------------------------------

REGISTRY_PASSWORD = "registry-pw-Qv83Lx"
REDIS_PASSWORD = "redis-pw-Tm52Ke"
PEPPER = "pepper-Hs71Wd-0123456789abcdef"

SPY = """\
import json
import os
import socket
from pathlib import Path


def _read(path):
    try:
        return Path(path).read_bytes().decode(errors="replace")
    except OSError as exc:
        return f"<{type(exc).__name__}>"


def _reaches(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


here = Path(__file__).parent
pids = sorted(p.name for p in Path("/proc").iterdir() if p.name.isdigit())
report = {
    "environ": dict(os.environ),
    "processes": {p: [_read(f"/proc/{p}/environ"), _read(f"/proc/{p}/cmdline")] for p in pids},
    "parent": _read(f"/proc/{os.getppid()}/environ"),
    "fds": {fd: [_read(f"/proc/self/fd/{fd}")[:100_000]] for fd in os.listdir("/proc/self/fd")},
    "reaches": {str(port): _reaches(port) for port in PORTS},
}
(here / f"spy-{len(list(here.glob('spy-*')))}.json").write_text(json.dumps(report))
"""


@pytest.mark.postgres
def test_tenant_code_finds_no_secret_and_apply_works_on_postgres(
    postgres_url: str, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    platform = Platform(tmp_path, redis_server.url)
    redis_port = int(redis_server.url.rsplit(":", 1)[1].split("/")[0])
    pg_port = int(postgres_url.rsplit(":", 1)[1].split("/")[0])
    spy = f"PORTS = [{redis_port}, {pg_port}]\n" + SPY
    tree = platform.tree("spy", "spy", {"spy_definitions.py": DEFINITIONS, "spy_spy.py": spy})
    registry = postgres_url.replace("featureplane@", f"featureplane:{REGISTRY_PASSWORD}@")
    redis_url = redis_server.url.replace("redis://", f"redis://:{REDIS_PASSWORD}@")
    secrets = {
        "FEATUREPLANE_ENVIRONMENT": "production",
        "FEATUREPLANE_REGISTRY": registry,
        "FEATUREPLANE_REDIS_URL": redis_url,
        "FEATUREPLANE_TOKEN_PEPPER": PEPPER,
    }
    proc = cli(tree, "apply", "spy", **secrets)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    settings = tree.settings.model_copy(update={"registry": registry})
    opened = open_registry(settings)
    try:
        views = {v.name for v in opened.list_feature_views("spy", allow_cache=False)}
    finally:
        close_registry(opened)
    assert views == {"account_stats"}

    reports = [
        json.loads(p.read_text()) for p in (tree.root / "feature_repo" / "spy").glob("spy-*")
    ]
    assert len(reports) == 2  # the plan child (the gate) and the apply child
    needles = [REGISTRY_PASSWORD, REDIS_PASSWORD, PEPPER, registry, redis_url, postgres_url]
    for report in reports:
        assert report["environ"]["FEATUREPLANE_PROJECT"] == "spy"  # it did run, and looked
        assert set(report["environ"]) <= {
            "PATH", "HOME", "TMPDIR", "LANG", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE",
            "FEATUREPLANE_PROJECT", "FEATUREPLANE_REGISTRY_URL", "FEATUREPLANE_REDIS_TYPE",
            "FEATUREPLANE_REDIS_CONNECTION", "FEATUREPLANE_DATA_DIR",
            # Set by Feast's import in the child itself (a folder of its TMPDIR).
            "PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR",
        }  # fmt: skip
        text = json.dumps(report)
        for needle in needles:
            assert needle not in text
        assert str(pg_port) not in report["environ"]["FEATUREPLANE_REGISTRY_URL"]
        if namespaces():  # its own PID and network namespaces: no one else, no network
            assert list(report["processes"]) == ["1"], sorted(report["processes"])
            assert not any(report["reaches"].values())
    print(
        f"\n[sandbox] spy: {len(reports[0]['processes'])} process(es) visible, "
        f"network {report['reaches']}, namespaces {'on' if namespaces() else 'OFF'}"
    )


@pytest.mark.postgres
def test_plan_needs_only_select_on_the_registry(
    postgres_url: str, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """What docs/ci.md promises: pull requests plan with a read-only credential."""
    platform = Platform(tmp_path, redis_server.url)
    tree = platform.tree("reader", "reader", {"reader_definitions.py": DEFINITIONS})
    spec = load_spec(tree.settings.tenants_path / "reader" / "tenant.yaml")
    apply_tenant(tree.settings.model_copy(update={"registry": postgres_url}), spec)
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("DROP ROLE IF EXISTS plan_reader")
        db.execute("CREATE ROLE plan_reader LOGIN")
        db.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO plan_reader")
    reader = {"FEATUREPLANE_REGISTRY": postgres_url.replace("featureplane@", "plan_reader@")}
    before = _pg_rows(postgres_url)
    (tree.root / "feature_repo" / "reader" / "reader_definitions.py").write_text(
        DEFINITIONS.replace("Per-account counts.", "Per-account counts, v2.")
    )
    planned = cli(tree, "plan", "reader", "--json", **reader)
    assert planned.returncode == 0, planned.stderr
    changes = json.loads(planned.stdout)["changes"]
    assert [(c["name"], c["field"]) for c in changes] == [("account_stats", "description")]
    refused = cli(tree, "apply", "reader", **reader)
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "permission denied" in refused.stderr
    assert _pg_rows(postgres_url) == before


def _pg_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as db:
        tables = [
            row[0]
            for row in db.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        return {t: sorted(db.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}


# -- what Feast's apply did outside the registry ----------------------------------------------

LEGACY = f"""\
from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Int64

from online_definitions import account
from featureplane.sources import parquet_source

legacy_stats = FeatureView(
    name="legacy_stats",
    entities=[account],
    ttl=timedelta(days=1),
    schema=[Field(name="account_id", dtype=Int64),
            Field(name="old", dtype=Int64, description="Retired.")],
    source=parquet_source("legacy_events"),
    description="Removed by the next apply.",
    owner="{OWNER}",
)
"""


def test_apply_deletes_removed_views_online_rows_from_the_parent(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """The child never touches Redis; the parent deletes a removed view's online rows, as
    Feast's own apply would, and leaves the kept view's."""
    from datetime import UTC, datetime

    import redis
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from featureplane.feast_config import feature_store
    from featureplane.online import codec

    platform = Platform(tmp_path, redis_server.url.rsplit("/", 1)[0] + "/5")
    modules = {"online_definitions.py": DEFINITIONS, "online_legacy.py": LEGACY}
    tree = platform.applied("before", "online", modules)
    spec = load_spec(tree.settings.tenants_path / "online" / "tenant.yaml")
    store = feature_store(tree.settings, spec)
    key = EntityKey(join_keys=["account_id"], entity_values=[Value(int64_val=7)])
    now = datetime.now(UTC)
    for view, feature in (("account_stats", "txns"), ("legacy_stats", "old")):
        store._get_provider().online_write_batch(
            store.config,
            store.get_feature_view(view),
            [(key, {feature: Value(int64_val=1)}, now, None)],
            None,
        )
    close_registry(store.registry)
    client = redis.Redis.from_url(tree.settings.require_redis_url())

    # The entity's own hash: other tests of the session share this Redis database.
    stored = (
        codec.key_names_prefix(["account_id"])
        + codec.coerce_key_value("account_id", codec.INT64, 7)[1]
        + spec.feast_project.encode()
    )

    def fields() -> set[bytes]:
        return set(client.hkeys(stored))

    assert {b"_ts:account_stats", b"_ts:legacy_stats"} <= fields()
    after = platform.tree("after", "online", {"online_definitions.py": DEFINITIONS})
    apply_tenant(after.settings, spec)
    assert b"_ts:account_stats" in fields()
    assert b"_ts:legacy_stats" not in fields()
    assert len(fields()) == 2  # account_stats' feature and timestamp, nothing of legacy_stats
    client.close()
