"""Shared fixtures: real servers on free loopback ports, and one deployed platform per session.

Under CI (CI=true) a missing component fails the run loudly; elsewhere it skips with a reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
import redis

from featureplane.embedded.redis import EmbeddedRedis, free_port, redis_server_binary
from featureplane.errors import ConfigError
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


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a subprocess see the same deployment."""
    return {
        "FEATUREPLANE_REDIS_URL": settings.require_redis_url(),
        "FEATUREPLANE_REGISTRY": settings.registry_url,
        "FEATUREPLANE_DATA_DIR": str(settings.data_path),
        "FEATUREPLANE_TENANTS_DIR": str(settings.tenants_path),
        "FEATUREPLANE_FEATURE_REPO_DIR": str(settings.feature_repo_path),
    }


@dataclass
class Deployment:
    settings: Settings
    catalog: TenantCatalog
    tables: dict[str, dict[str, pa.Table]]  # tenant -> source -> the sample batch
    tokens: dict[str, str]
    now: datetime


@pytest.fixture(scope="session")
def deployment(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """All sample tenants applied to one SQLite registry and materialized into a real Redis."""
    from featureplane.materialize.runner import materialize_tenant
    from featureplane.registry.apply import apply_tenant
    from featureplane.samples import generate, land_samples
    from featureplane.tenancy.credentials import CredentialStore

    settings = make_settings(tmp_path_factory.mktemp("platform"), redis_server.url)
    catalog = TenantCatalog.load(settings.tenants_path, settings.feature_repo_path)
    now = datetime.now(UTC).replace(microsecond=0)
    tables = {}
    for spec in catalog.values():
        tables[spec.name] = generate(settings, spec, SAMPLE_ROWS, now)
        land_samples(settings, spec, SAMPLE_ROWS, now)
        apply_tenant(settings, spec)
        materialize_tenant(settings, spec)
    with redis.Redis.from_url(redis_server.url) as client:
        creds = CredentialStore(client, settings.pepper)
        tokens = {name: creds.issue(name).token for name in catalog}
    return Deployment(settings, catalog, tables, tokens, now)


class Gateway:
    def __init__(self, settings: Settings, workers: int = 2) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.settings = settings
        self.metrics_dir = settings.data_path / f"metrics-{self.port}"
        env = (
            os.environ
            | settings_env(settings)
            | {"FEATUREPLANE_METRICS_DIR": str(self.metrics_dir)}
        )
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the gateway must own it, not inherit Feast's
        self.log = settings.data_path / f"gateway-{self.port}.log"
        self._log_fh = self.log.open("wb")
        cmd = [
            sys.executable,
            "-m",
            "featureplane.cli",
            "serve",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log_fh, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway not ready in {timeout} s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_fh.close()


@pytest.fixture(scope="session")
def gateway(deployment: Deployment) -> Iterator[Gateway]:
    """The real gateway: `featureplane serve` with two uvicorn workers."""
    gw = Gateway(deployment.settings, workers=2)
    try:
        gw.wait_ready()
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base, timeout=10) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
