"""Shared fixtures: real servers on free loopback ports, and one deployed platform per session.

Under CI (CI=true) a missing component fails the run loudly; elsewhere it skips with a reason.
The helpers these fixtures use live in tests/support.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from featureplane.embedded.gateway import GatewayProcess
from featureplane.embedded.redis import EmbeddedRedis, redis_server_binary
from featureplane.errors import ConfigError
from tests.support.components import require
from tests.support.deployment import Deployment, deploy
from tests.support.gateway import start_gateway
from tests.support.registry_server import Platform, Rows, apply_both, start_platform
from tests.support.settings import make_settings


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    try:
        redis_server_binary()
    except ConfigError:
        require(False, "redis-server")
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture(scope="session")
def deployment(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """All sample tenants applied to one SQLite registry and materialized into a real Redis."""
    return deploy(make_settings(tmp_path_factory.mktemp("platform"), redis_server.url))


@pytest.fixture(scope="session")
def ownership_platform(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """The registry server of tests/registry/test_ownership.py, started once for the ownership
    and security tests (they only add tokens and are refused everything else)."""
    yield from start_platform(redis_server, tmp_path_factory)


@pytest.fixture(scope="session")
def ownership_applied(ownership_platform: Platform) -> Rows:
    """Both tenants' repos applied through that server, once; B's registry rows."""
    return apply_both(ownership_platform)


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
