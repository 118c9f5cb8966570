"""Running `feast apply` for one tenant's project in the shared registry.

Each apply runs in its own subprocess: Feast imports every module of the repo by bare name and
adds the repo to ``sys.path``, so two tenants' modules in one process would collide.

Atomicity. Feast's SQL registry writes every object of an apply in its own transaction (and
deletes removed ones one by one), so a `feast apply` killed mid-way leaves its project half
applied. Guarantees here:

- **SQLite (the default): atomic per project.** Under a per-project lock, `feast apply` runs
  against a private copy of the registry (SQLite's online backup: a consistent snapshot); only
  when it succeeds are the project's rows swapped into the live registry in one SQLite
  transaction (:func:`transplant`): delete the project's rows from every table, insert the
  copy's. A kill at any point leaves the live registry with the project's old objects or its
  new ones, never a mix, and other projects' rows are never written. The `feast` child dies
  with its parent (``PR_SET_PDEATHSIG``), and a dead apply's copy is deleted by the next one.
  Two tenants may apply at once (each swaps only its own project). A materialization of the
  same project that finishes during the apply loses its interval record (the copy predates
  it); the next incremental run then starts earlier, which rewrites nothing.
- **PostgreSQL: not atomic.** `feast apply` runs against the live database as Feast does it. A
  killed apply can leave the project with some objects new and some old (other projects are
  never touched: every statement is scoped to the project). Rerunning the same apply converges
  (apply is a full sync), so after an interrupted apply, rerun it. The same holds for applies
  through the registry server (``registry_type: remote``), which are Feast's own.
- Either way Feast updates the online store (deleting removed views' keys) before the registry
  swap: a kill in between leaves removed views registered with their online data gone, until
  the rerun.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from featureplane.errors import ApplyError
from featureplane.feast_config import feast_env, sqlite_path, template_path
from featureplane.settings import Settings
from featureplane.tenancy.spec import TenantSpec


@dataclass(frozen=True)
class ApplyResult:
    tenant: str
    project: str
    seconds: float
    output: str


def feast_command(settings: Settings, spec: TenantSpec, *args: str) -> list[str]:
    """A `feast` CLI invocation on the tenant's repo with the shared template."""
    feast = Path(sys.executable).with_name("feast")
    launcher = [str(feast)] if feast.exists() else [sys.executable, "-m", "feast.cli.cli"]
    repo = settings.feature_repo_path / spec.name
    return [*launcher, "-c", str(repo), "-f", str(template_path(settings)), *args]


def _libc_prctl() -> Callable[..., int] | None:
    # Looked up once here: the child between fork and exec must not dlopen (loader locks).
    with suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
    return None


_PRCTL = _libc_prctl()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGKILL this child when the thread that started it dies (apply runs feast from
    the CLI's main thread), so no orphaned `feast apply` keeps writing after featureplane was
    killed."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_feast(
    settings: Settings, spec: TenantSpec, *args: str, registry_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = os.environ | feast_env(settings, spec.feast_project)
    if registry_url is not None:
        env["FEATUREPLANE_REGISTRY_URL"] = registry_url
    return subprocess.run(
        feast_command(settings, spec, *args),
        env=env,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=_die_with_parent if _PRCTL is not None else None,
    )


@contextmanager
def _project_lock(registry: Path, project: str) -> Iterator[None]:
    """One apply per project at a time; the kernel drops the lock if its holder dies."""
    with registry.with_name(f".{registry.name}.apply-{project}.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _staging_files(registry: Path, project: str) -> list[Path]:
    return list(registry.parent.glob(f".{registry.name}.apply-{project}-*"))


def _copy_registry(registry: Path, to: Path) -> None:
    """A consistent snapshot of the live registry (readers and other writers go on)."""
    with closing(sqlite3.connect(registry)) as src, closing(sqlite3.connect(to)) as dst:
        src.backup(dst)


def transplant(registry: Path, staged: Path, project: str) -> None:
    """Replace ``project``'s rows of every registry table with ``staged``'s, in one transaction.

    Tables and indexes the staged copy has and the live one lacks (a first apply) are created in
    the same transaction. Rows are copied by column name, so a live table with extra columns
    keeps working. Tables without a ``project_id`` column (none in Feast 0.67) are left alone.
    """
    with closing(sqlite3.connect(registry, isolation_level=None, timeout=30)) as db:
        db.execute("ATTACH DATABASE ? AS staged", (str(staged),))
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                _swap_rows(db, project)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.execute("DETACH DATABASE staged")


def _swap_rows(db: sqlite3.Connection, project: str) -> None:
    live = {name for (name,) in db.execute("SELECT name FROM main.sqlite_master")}
    schema = db.execute(
        "SELECT type, name, sql FROM staged.sqlite_master WHERE sql IS NOT NULL "
        "ORDER BY type = 'index'"  # tables before their indexes
    ).fetchall()
    for _kind, name, sql in schema:
        if name not in live:
            db.execute(sql)  # unqualified CREATE: goes to main
    for kind, name, _sql in schema:
        if kind != "table":
            continue
        columns = [row[1] for row in db.execute(f'PRAGMA staged.table_info("{name}")')]
        if "project_id" not in columns:
            continue
        listed = ", ".join(f'"{c}"' for c in columns)
        db.execute(f'DELETE FROM main."{name}" WHERE project_id = ?', (project,))
        db.execute(
            f'INSERT INTO main."{name}" ({listed}) '
            f'SELECT {listed} FROM staged."{name}" WHERE project_id = ?',
            (project,),
        )


def _apply_staged(
    settings: Settings, spec: TenantSpec, registry: Path
) -> subprocess.CompletedProcess[str]:
    """`feast apply` into a private copy of the SQLite registry, then an atomic swap of the
    project's rows into the live one (see the module docstring)."""
    project = spec.feast_project
    registry.parent.mkdir(parents=True, exist_ok=True)
    with _project_lock(registry, project):
        for stale in _staging_files(registry, project):  # an apply killed before its cleanup
            stale.unlink(missing_ok=True)
        staged = registry.with_name(f".{registry.name}.apply-{project}-{uuid.uuid4().hex}.db")
        try:
            _copy_registry(registry, staged)
            proc = run_feast(settings, spec, "apply", registry_url=f"sqlite:///{staged}")
            if proc.returncode == 0:
                transplant(registry, staged, project)
            return proc
        finally:
            for leftover in (staged, staged.with_name(staged.name + "-journal")):
                leftover.unlink(missing_ok=True)


def apply_tenant(settings: Settings, spec: TenantSpec) -> ApplyResult:
    repo = settings.feature_repo_path / spec.name
    if not repo.is_dir():
        raise ApplyError(f"{repo}: no Feast definitions for tenant {spec.name!r}")
    started = time.perf_counter()
    registry = sqlite_path(settings)
    # PostgreSQL: Feast's own apply, not atomic (see the module docstring).
    proc = (
        _apply_staged(settings, spec, registry) if registry else run_feast(settings, spec, "apply")
    )
    seconds = time.perf_counter() - started
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-15:])
        raise ApplyError(f"feast apply failed for tenant {spec.name!r} ({repo}):\n{tail}")
    return ApplyResult(spec.name, spec.feast_project, seconds, output)
