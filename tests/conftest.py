"""Shared fixtures: real servers on free loopback ports, and one deployed platform per session.

Under CI (CI=true) a missing component fails the run loudly; elsewhere it skips with a reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from featureplane.embedded.gateway import GatewayProcess
from featureplane.embedded.redis import EmbeddedRedis, free_port, redis_server_binary
from featureplane.errors import ConfigError
from featureplane.feast_config import close_registry, open_registry
from featureplane.settings import Settings
from featureplane.tenancy.catalog import TenantCatalog

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_ROWS = 300
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, what: str) -> None:
    """Skip when a component is missing, except in CI where that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but missing", pytrace=False)
    pytest.skip(f"{what} not available")


def require_binary(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"the {name} binary")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    try:
        redis_server_binary()
    except ConfigError:
        require(False, "redis-server")
    with EmbeddedRedis() as server:
        yield server


def make_settings(data_dir: Path, redis_url: str, **overrides: object) -> Settings:
    return Settings(
        redis_url=redis_url,
        data_dir=data_dir,
        tenants_dir=ROOT / "tenants",
        feature_repo_dir=ROOT / "feature_repo",
        **overrides,  # type: ignore[arg-type]
    )


@dataclass
class Deployment:
    settings: Settings
    catalog: TenantCatalog
    tables: dict[str, dict[str, pa.Table]]  # tenant -> source -> the sample batch
    tokens: dict[str, str]
    now: datetime


def deploy(settings: Settings) -> Deployment:
    """All sample tenants applied to ``settings``' registry and materialized into its store."""
    from featureplane.demo import deploy_samples

    catalog = TenantCatalog.load(settings.tenants_path, settings.feature_repo_path)
    now = datetime.now(UTC).replace(microsecond=0)
    deployed = deploy_samples(settings, catalog, SAMPLE_ROWS, now)
    return Deployment(settings, catalog, deployed.tables, deployed.tokens, now)


@pytest.fixture(scope="session")
def deployment(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """All sample tenants applied to one SQLite registry and materialized into a real Redis."""
    return deploy(make_settings(tmp_path_factory.mktemp("platform"), redis_server.url))


@pytest.fixture(scope="session")
def ownership_platform(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The registry server of tests/registry/test_ownership.py, started once for the ownership
    and security tests (they only add tokens and are refused everything else)."""
    from tests.registry.test_ownership import start_platform

    yield from start_platform(redis_server, tmp_path_factory)


@pytest.fixture(scope="session")
def ownership_applied(ownership_platform: Any) -> Any:
    """Both tenants' repos applied through that server, once; B's registry rows."""
    from tests.registry.test_ownership import apply_both

    return apply_both(ownership_platform)


def start_gateway(settings: Settings, workers: int = 2) -> GatewayProcess:
    """The real gateway: `featureplane serve` in a subprocess on a free port."""
    return GatewayProcess(settings, free_port(), workers).start()


@pytest.fixture(scope="session")
def gateway(deployment: Deployment) -> Iterator[GatewayProcess]:
    gw = start_gateway(deployment.settings, workers=2)
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def http(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base, timeout=10) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def columns_by_name(answer: dict[str, Any]) -> dict[str, list[Any]]:
    """A get-online-features answer's values, by feature name."""
    return {
        name: col["values"]
        for name, col in zip(answer["metadata"]["feature_names"], answer["results"], strict=True)
    }


def feature_views(deployment: Deployment, tenant: str) -> list[Any]:
    """The tenant's feature views, as the registry holds them."""
    registry = open_registry(deployment.settings)
    try:
        return list(registry.list_feature_views(deployment.catalog[tenant].feast_project))
    finally:
        close_registry(registry)


def run_cli(
    *args: str, env: Mapping[str, str], cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The real `featureplane` command in a subprocess, seeing ``env`` and none of this process's
    FEATUREPLANE_* (Feast exports some) nor its PROMETHEUS_MULTIPROC_DIR (Feast sets it)."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FEATUREPLANE_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    return subprocess.run(
        [sys.executable, "-m", "featureplane.cli", *args],
        cwd=cwd,
        env=inherited | {"COLUMNS": "250"} | dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
