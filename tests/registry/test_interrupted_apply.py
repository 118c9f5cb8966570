"""SIGKILL an apply mid-way: the SQLite registry keeps each project's old objects or its new ones.

Tenant ``fraud`` goes from an old repo (``account_stats`` + ``legacy_stats``) to a new one
(``account_stats`` re-described, ``legacy_stats`` gone, ``merchant_stats`` + its entity and
source added) while ``recsys`` shares the registry. Each kill fires once `feast apply` has
written part of the change (polled in the database it writes). After each kill the live registry
must open and pass SQLite's integrity check, hold fraud's old or new object set (never a mix)
and recsys' rows byte-for-byte; a rerun must converge to an uninterrupted apply's content
(timestamps aside). The first case is Feast's own apply on the live registry, which shows why
featureplane stages: it is left half-applied. `pytest -s` prints the figures.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from featureplane.embedded.redis import EmbeddedRedis
from featureplane.errors import ApplyError
from featureplane.feast_config import close_registry, feast_env, open_registry, template_path
from featureplane.registry.apply import apply_tenant
from featureplane.settings import Settings
from featureplane.tenancy.catalog import TenantCatalog
from featureplane.tenancy.spec import TenantSpec
from tests.support.paths import ROOT

TENANT, OTHER = "fraud", "recsys"
Rows = dict[str, list[tuple[Any, ...]]]
Content = dict[str, list[bytes]]

LEGACY = """
from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Int64

from fraud_definitions import account
from featureplane.sources import parquet_source

legacy_stats = FeatureView(
    name="legacy_stats",
    entities=[account],
    ttl=timedelta(days=7),
    schema=[
        Field(name="account_id", dtype=Int64),
        Field(name="legacy_score", dtype=Int64, description="Retired score."),
    ],
    source=parquet_source("legacy_activity"),
    online=True,
    description="Retired by the new repo.",
    owner="fraud-ml@example.com",
)
"""

MERCHANT = """
from datetime import timedelta

from feast import Entity, FeatureView, Field, ValueType
from feast.types import Int64

from featureplane.sources import parquet_source

merchant = Entity(
    name="merchant",
    join_keys=["merchant_id"],
    value_type=ValueType.INT64,
    description="A merchant.",
    owner="fraud-ml@example.com",
)

merchant_stats = FeatureView(
    name="merchant_stats",
    entities=[merchant],
    ttl=timedelta(days=7),
    schema=[
        Field(name="merchant_id", dtype=Int64),
        Field(name="refunds_7d", dtype=Int64, description="Refunds over 7 days."),
    ],
    source=parquet_source("merchant_activity"),
    online=True,
    description="Added by the new repo.",
    owner="fraud-ml@example.com",
)
"""

ODFV = "feast.protos.feast.core.OnDemandFeatureView_pb2"
# What each table's proto column holds (Feast 0.67's SQL registry).
PROTOS = {
    "projects": "feast.protos.feast.core.Project_pb2.Project",
    "entities": "feast.protos.feast.core.Entity_pb2.Entity",
    "data_sources": "feast.protos.feast.core.DataSource_pb2.DataSource",
    "feature_views": "feast.protos.feast.core.FeatureView_pb2.FeatureView",
    "on_demand_feature_views": f"{ODFV}.OnDemandFeatureView",
    "feature_services": "feast.protos.feast.core.FeatureService_pb2.FeatureService",
    "managed_infra": "feast.protos.feast.core.InfraObject_pb2.Infra",
    "feature_view": "feast.protos.feast.core.FeatureView_pb2.FeatureView",  # version history
    "on_demand_feature_view": f"{ODFV}.OnDemandFeatureView",  # its version history
}


def feast_apply(settings: Settings, spec: TenantSpec) -> subprocess.CompletedProcess[str]:
    """Stock `feast apply` of the tenant's repo, straight into the live registry."""
    feast = Path(sys.executable).with_name("feast")
    repo = settings.feature_repo_path / spec.name
    return subprocess.run(
        [str(feast), "-c", str(repo), "-f", str(template_path(settings)), "apply"],
        env=os.environ | feast_env(settings, spec.feast_project),
        capture_output=True,
        text=True,
        check=False,
    )


def proto_class(table: str) -> type[Message]:
    import importlib

    module, _, name = PROTOS[table].rpartition(".")
    cls: type[Message] = getattr(importlib.import_module(module), name)
    return cls


def read_rows(db: Path, project: str) -> Rows:
    """Every row of ``project`` in every table, raw (retrying while a writer holds the lock).

    Read-write, as any registry reader connects: SQLite rolls back a killed writer's journal."""
    problem = None
    for _ in range(200):
        try:
            with closing(sqlite3.connect(db, timeout=5)) as conn:
                tables = [n for (n,) in conn.execute("SELECT name FROM sqlite_master")]
                rows: Rows = {}
                for table in tables:
                    columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
                    if "project_id" in columns:
                        rows[table] = sorted(
                            conn.execute(
                                f'SELECT * FROM "{table}" WHERE project_id = ?', (project,)
                            )
                        )
                return rows
        except sqlite3.OperationalError as exc:  # a writer holds the lock: retry
            problem = exc
            time.sleep(0.01)
    raise AssertionError(f"{db}: {problem}")


def _strip_times(message: Message) -> None:
    """Clear every Timestamp field, however deep (when an object was written, not what)."""
    for field, value in message.ListFields():
        kind = field.message_type
        if kind is None:
            continue
        if kind.full_name == Timestamp.DESCRIPTOR.full_name:
            message.ClearField(field.name)
        elif isinstance(value, Message):
            _strip_times(value)
        else:  # a repeated field or a map of messages
            items = value.values() if hasattr(value, "values") else value
            for item in items:
                if isinstance(item, Message):
                    _strip_times(item)


def content(db: Path, project: str) -> Content:
    """The project's rows as they mean: protos parsed with every timestamp cleared, the
    columns that only say when or which write (timestamps, random version ids) dropped."""
    out: Content = {}
    with closing(sqlite3.connect(db, timeout=5)) as conn:
        for table, rows in read_rows(db, project).items():
            columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
            items = []
            for row in rows:
                record = dict(zip(columns, row, strict=True))
                if record.get("metadata_key") == "last_updated_timestamp":
                    continue
                kept = []
                for name, value in record.items():
                    if "timestamp" in name or name == "version_id":
                        continue
                    if isinstance(value, bytes) and name.endswith("_proto"):
                        kind = record.get("feature_view_type", table)
                        message = proto_class(str(kind)).FromString(value)
                        _strip_times(message)
                        value = message.SerializeToString(deterministic=True)
                    kept.append((name, value))
                items.append(repr(kept).encode())
            out[table] = sorted(items)
    return out


def object_names(db: Path, project: str) -> set[str]:
    rows = read_rows(db, project)
    return {
        f"{table}:{row[0]}"
        for table in ("entities", "data_sources", "feature_views")
        for row in rows.get(table, [])
    }


def check_consistent(settings: Settings, db: Path, old: Content, new: Content) -> str:
    """The registry opens and holds fraud's old or new objects; which one."""
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    registry = open_registry(settings)
    try:
        projects = {p.name for p in registry.list_projects(allow_cache=False)}
        assert {TENANT, OTHER} <= projects
        registry.list_feature_views(TENANT, allow_cache=False)
    finally:
        close_registry(registry)
    now = content(db, TENANT)
    assert now in (old, new), "fraud is half-applied"
    return "old" if now == old else "new"


def changed(db: Path, old_names: set[str]) -> Callable[[], bool]:
    """True once `feast apply` has written part of the change into ``db``."""
    return lambda: db.exists() and object_names(db, TENANT) != old_names


def staging(registry: Path) -> list[Path]:
    return [p for p in registry.parent.glob(f".{registry.name}.apply-{TENANT}-*.db")]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 90) -> float:
    began = time.perf_counter()
    while not condition():
        if time.perf_counter() - began > timeout:
            raise AssertionError(f"never saw {what}")
        time.sleep(0.002)
    return time.perf_counter() - began


def descendants(parent: int) -> list[int]:
    """Live descendants of ``parent`` (from /proc: no psutil in the dependencies)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [parent]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def gone(pid: int) -> Callable[[], bool]:
    return lambda: not alive(pid)


def new_copy(registry: Path, before: set[Path]) -> Callable[[], bool]:
    return lambda: bool(set(staging(registry)) - before)


def started_child(parent: int) -> int:
    """Wait for the `feast apply` under ``parent`` to start."""
    began = time.perf_counter()
    while (child := feast_child(parent)) is None:
        assert time.perf_counter() - began < 90, "`feast apply` never started"
        time.sleep(0.002)
    return child


def feast_child(parent: int) -> int | None:
    """The `feast apply` process under ``parent``."""
    for pid in descendants(parent):
        try:
            if b"apply" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                return pid
        except OSError:
            continue
    return None


@pytest.mark.chaos
def test_sigkilled_apply_leaves_each_project_old_or_new_and_rerun_converges(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    tenants, repos = tmp_path / "tenants", tmp_path / "feature_repo"
    shutil.copytree(ROOT / "tenants", tenants)
    shutil.copytree(ROOT / "feature_repo", repos)
    fraud_repo = repos / TENANT
    (fraud_repo / "fraud_legacy.py").write_text(LEGACY)

    def with_registry(name: str) -> Settings:
        return Settings(
            redis_url=redis_server.url.replace("/0", "/7"),  # apply deletes removed views' keys
            data_dir=tmp_path / "data",
            tenants_dir=tenants,
            feature_repo_dir=repos,
            registry=str(tmp_path / name),
        )

    catalog = TenantCatalog.load(tenants)
    old_settings = with_registry("old.db")
    for name in (TENANT, OTHER):
        apply_tenant(old_settings, catalog[name])
    old_db = tmp_path / "old.db"
    old = content(old_db, TENANT)
    old_names = object_names(old_db, TENANT)
    other_rows = read_rows(old_db, OTHER)

    # The new repo.
    (fraud_repo / "fraud_legacy.py").unlink()
    (fraud_repo / "fraud_merchants.py").write_text(MERCHANT)
    definitions = fraud_repo / "fraud_definitions.py"
    definitions.write_text(
        definitions.read_text().replace(
            "Rolling transaction statistics per account.", "Rolling statistics per account (v2)."
        )
    )
    shutil.copy(old_db, tmp_path / "reference.db")
    began = time.perf_counter()
    apply_tenant(with_registry("reference.db"), catalog[TENANT])
    uninterrupted = time.perf_counter() - began
    new = content(tmp_path / "reference.db", TENANT)
    new_names = object_names(tmp_path / "reference.db", TENANT)
    assert new != old
    assert new_names != old_names
    figures = [f"uninterrupted apply {uninterrupted:.1f} s; old {len(old_names)} objects, "
               f"new {len(new_names)}"]  # fmt: skip

    # 0. Feast's own apply on the live registry, killed the same way: why featureplane stages.
    bare_db = tmp_path / "bare.db"
    shutil.copy(old_db, bare_db)
    bare = with_registry("bare.db")
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(proc=feast_apply(bare, catalog[TENANT])))
    worker.start()
    wait_for(changed(bare_db, old_names), "Feast writing the live registry")
    child = feast_child(os.getpid())
    if child is not None:
        os.kill(child, signal.SIGKILL)
    worker.join(60)
    bare_names = object_names(bare_db, TENANT)
    half = content(bare_db, TENANT) not in (old, new)
    figures.append(
        f"0 plain `feast apply` SIGKILLed on the live registry: "
        f"{'HALF-APPLIED' if half else 'not caught mid-way'} "
        f"({len(bare_names & (new_names - old_names))}/{len(new_names - old_names)} new objects "
        f"in, {len(old_names - new_names - bare_names)}/{len(old_names - new_names)} removals done)"
    )

    crash_db = tmp_path / "crash.db"
    shutil.copy(old_db, crash_db)
    crash = with_registry("crash.db")

    # 1. The `feast apply` child SIGKILLed once it has written part of the change (its copy).
    errors: list[BaseException] = []

    def apply_in_thread() -> None:
        try:
            apply_tenant(crash, catalog[TENANT])
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=apply_in_thread)
    worker.start()
    at = wait_for(
        lambda: any(changed(p, old_names)() for p in staging(crash_db)), "a partial staged apply"
    )
    child = feast_child(os.getpid())
    assert child is not None
    os.kill(child, signal.SIGKILL)
    worker.join(60)
    assert len(errors) == 1
    assert isinstance(errors[0], ApplyError)
    state = check_consistent(crash, crash_db, old, new)
    assert state == "old"
    assert read_rows(crash_db, OTHER) == other_rows
    assert not staging(crash_db)
    figures.append(f"1 `feast apply` child SIGKILLed {at:.2f} s in, mid-write: registry {state}")

    # 2./3. `featureplane apply` itself SIGKILLed: mid-write, then just after `feast apply` ends
    # (before, during or after the swap).
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATUREPLANE_")} | {
        "FEATUREPLANE_DATA_DIR": str(crash.data_path),
        "FEATUREPLANE_TENANTS_DIR": str(tenants),
        "FEATUREPLANE_FEATURE_REPO_DIR": str(repos),
        "FEATUREPLANE_REGISTRY": str(crash_db),
        "FEATUREPLANE_REDIS_URL": crash.require_redis_url(),
    }
    command = [
        str(Path(sys.executable).with_name("featureplane")),
        "apply",
        TENANT,
        "--allow-breaking",
        "crash test",
    ]
    for case in ("mid-write", "after feast apply exited"):
        before = set(staging(crash_db))  # a killed parent leaves its copy to the next apply
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        began = time.perf_counter()
        wait_for(new_copy(crash_db, before), "the apply's private copy")
        (copy,) = set(staging(crash_db)) - before
        assert not before or all(not p.exists() for p in before)  # swept by this apply
        if case == "mid-write":
            wait_for(changed(copy, old_names), "a partial staged apply")
            child = feast_child(proc.pid)
        else:
            child = started_child(proc.pid)
            wait_for(gone(child), "`feast apply` to exit")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        at = time.perf_counter() - began
        if child is not None:  # dies with its parent (PDEATHSIG), or had exited
            wait_for(gone(child), "`feast apply` to die with its parent", 5)
        state = check_consistent(crash, crash_db, old, new)
        assert read_rows(crash_db, OTHER) == other_rows
        figures.append(f"{2 if case == 'mid-write' else 3} `featureplane apply` SIGKILLed "
                       f"{at:.2f} s in, {case}: registry {state}")  # fmt: skip

    # The rerun converges to what one uninterrupted apply wrote.
    began = time.perf_counter()
    apply_tenant(crash, catalog[TENANT])
    rerun = time.perf_counter() - began
    assert content(crash_db, TENANT) == new
    assert object_names(crash_db, TENANT) == new_names
    assert read_rows(crash_db, OTHER) == other_rows
    assert not staging(crash_db)
    figures.append(f"rerun {rerun:.1f} s: fraud == uninterrupted apply (timestamps aside), "
                   f"recsys rows byte-for-byte untouched")  # fmt: skip
    print("\n" + "\n".join(f"[apply] {line}" for line in figures))
