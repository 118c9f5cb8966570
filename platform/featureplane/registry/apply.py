"""Applying one tenant's definitions to its project in the shared registry.

Feast's apply logic runs in the sandbox (:mod:`.sandbox`: no platform secret in reach, a time
and a memory limit), against a private SQLite registry holding only the project's current rows
(:mod:`.staging`). The parent then does what Feast's apply would have done outside the registry
(delete the online rows of views the apply removed: the template's online store is Redis, whose
``update`` does only that) and swaps the project's rows into the shared registry in one
transaction (:func:`.staging.transplant`).

Atomicity: Feast's SQL registry writes every object of an apply in its own transaction (and
deletes removed ones one by one), so a killed plain `feast apply` leaves its project half
applied. Here the shared registry is written by one transaction, on SQLite and PostgreSQL: a
kill at any point leaves the project with its old objects or its new ones, never a mix, and
other projects' rows are never written. The child dies with its parent (``PR_SET_PDEATHSIG``).

- On SQLite applies of one project run one at a time (a per-project file lock held from the
  copy to the swap), and a dead apply's staged file is deleted by the next one. Two tenants may
  apply at once (each swaps only its own project).
- On PostgreSQL swaps of one project are serialized (an advisory lock); two applies of one
  project at once each swap a whole, consistent set, and the last one wins.
- A materialization of the same project that finishes during the apply loses its interval
  record (the staged copy predates it); the next incremental run then starts earlier, which
  rewrites nothing.
- Removed views' online rows are deleted before the swap, as Feast does: a kill in between
  leaves removed views registered with their online data gone, until the rerun.
"""

from __future__ import annotations

import fcntl
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featureplane.errors import ApplyError
from featureplane.feast_config import repo_config, sqlite_path
from featureplane.registry.sandbox import run_sandboxed
from featureplane.registry.staging import read_rows, removed_views, stage, transplant
from featureplane.settings import Settings
from featureplane.tenancy.spec import TenantSpec


@dataclass(frozen=True)
class ApplyResult:
    tenant: str
    project: str
    seconds: float
    output: str


@contextmanager
def _project_lock(registry: Path, project: str) -> Iterator[None]:
    """One apply per project at a time; the kernel drops the lock if its holder dies."""
    with registry.with_name(f".{registry.name}.apply-{project}.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _staging_files(registry: Path, project: str) -> list[Path]:
    return list(registry.parent.glob(f".{registry.name}.apply-{project}-*"))


@contextmanager
def _staged_file(settings: Settings, project: str) -> Iterator[Path]:
    """Where the apply stages the project: beside a SQLite registry, under the project's lock
    (sweeping what a killed apply left); for PostgreSQL, in a private temporary folder."""
    registry = sqlite_path(settings)
    if registry is None:
        with tempfile.TemporaryDirectory(prefix=f"featureplane-apply-{project}-") as folder:
            yield Path(folder) / "registry.db"
        return
    registry.parent.mkdir(parents=True, exist_ok=True)
    with _project_lock(registry, project):
        for stale in _staging_files(registry, project):  # an apply killed before its cleanup
            stale.unlink(missing_ok=True)
        staged = registry.with_name(f".{registry.name}.apply-{project}-{uuid.uuid4().hex}.db")
        try:
            yield staged
        finally:
            for leftover in (staged, staged.with_name(staged.name + "-journal")):
                leftover.unlink(missing_ok=True)


@dataclass(frozen=True)
class _RemovedView:
    """What an online store's ``update`` reads of a deleted view, from its stored proto (a
    FeatureView built with ``from_proto`` could import classes the registry names)."""

    name: str
    join_keys: list[str]
    features: list[Any]  # objects with a ``name``
    current_version_number: int | None
    projection: None = field(default=None)

    @classmethod
    def of(cls, proto: Any) -> _RemovedView:
        spec, version = proto.spec, getattr(proto.meta, "current_version_number", 0)
        return cls(
            name=spec.name,
            join_keys=[column.name for column in spec.entity_columns],
            features=list(spec.features),  # FeatureSpecV2 messages: each has a name
            current_version_number=version if version > 0 else None,
        )


def _drop_online_rows(settings: Settings, spec: TenantSpec, views: list[Any]) -> None:
    """Delete removed views' online rows, as Feast's apply does through its provider."""
    from feast.infra.online_stores.helpers import get_online_store_from_config

    config = repo_config(settings, spec)  # the real Redis: ConfigError when it is not set
    store = get_online_store_from_config(config.online_store)
    store.update(
        config=config,
        tables_to_delete=[_RemovedView.of(view) for view in views],
        tables_to_keep=[],
        entities_to_delete=[],
        entities_to_keep=[],
        partial=False,
    )


def apply_tenant(settings: Settings, spec: TenantSpec) -> ApplyResult:
    repo = settings.feature_repo_path / spec.name
    if not repo.is_dir():
        raise ApplyError(f"{repo}: no Feast definitions for tenant {spec.name!r}")
    started = time.perf_counter()
    project = spec.feast_project
    with _staged_file(settings, project) as staged:
        before = stage(settings, project, staged)
        finished = run_sandboxed(settings, spec, "apply", staged, ApplyError)
        removed = removed_views(before, read_rows(f"sqlite:///{staged}", project))
        if removed:
            _drop_online_rows(settings, spec, removed)
        transplant(settings, staged, project)
    seconds = time.perf_counter() - started
    return ApplyResult(spec.name, project, seconds, finished.output)
