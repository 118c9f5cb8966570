"""The shared registry on PostgreSQL: all three projects applied into one database."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from featureplane.embedded.redis import EmbeddedRedis, free_port
from featureplane.registry.apply import apply_tenant
from featureplane.registry.feast_config import close_registry, open_registry
from featureplane.tenancy.catalog import TenantCatalog
from tests.conftest import make_settings, require


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster in a temp dir on a free port (initdb + pg_ctl, ~1 s)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    require(
        initdb is not None and pg_ctl is not None, "PostgreSQL server binaries (initdb, pg_ctl)"
    )
    assert initdb
    assert pg_ctl
    root = Path(tempfile.mkdtemp(prefix="featureplane-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        require(
            shutil.which("runuser") is not None, "runuser (to run PostgreSQL as a non-root user)"
        )
        shutil.chown(root, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-U", "featureplane", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "pg.log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [
                *prefix,
                _pg_bin("createdb") or "createdb",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "featureplane",
                "registry",
            ],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://featureplane@127.0.0.1:{port}/registry"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.postgres
def test_postgres_registry_holds_every_project(
    postgres_url: str, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, redis_server.url, registry=postgres_url)
    assert settings.registry_url.startswith("postgresql+psycopg://")
    catalog = TenantCatalog.load(settings.tenants_path, settings.feature_repo_path)
    for spec in catalog.values():
        apply_tenant(settings, spec)
    registry = open_registry(settings)
    try:
        _check_projects(registry)
    finally:
        close_registry(registry)


def _check_projects(registry: Any) -> None:
    projects = {p.name for p in registry.list_projects(allow_cache=False)}
    assert {"fraud", "recsys", "pricing"} <= projects
    views = {
        p: {fv.name for fv in registry.list_feature_views(p, allow_cache=False)}
        for p in ("fraud", "recsys", "pricing")
    }
    assert views == {
        "fraud": {"account_stats"},
        "recsys": {"user_profile", "user_item_affinity"},
        "pricing": {"product_price", "product_demand"},
    }
    assert [fs.name for fs in registry.list_feature_services("pricing", allow_cache=False)] == [
        "pricing_model_v1"
    ]
