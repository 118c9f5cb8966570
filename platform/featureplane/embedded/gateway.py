"""The gateway as a real subprocess (`featureplane serve`) on a loopback port: what the demo,
the integration tests and the benchmarks run."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Self

import httpx

from featureplane.embedded.process import LocalServer
from featureplane.settings import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a subprocess see the same deployment as ``settings``."""
    return {
        "FEATUREPLANE_REDIS_URL": settings.require_redis_url(),
        "FEATUREPLANE_REDIS_TYPE": settings.redis_type,
        "FEATUREPLANE_REGISTRY": settings.registry_url,
        "FEATUREPLANE_DATA_DIR": str(settings.data_path),
        "FEATUREPLANE_TENANTS_DIR": str(settings.tenants_path),
        "FEATUREPLANE_FEATURE_REPO_DIR": str(settings.feature_repo_path),
        "FEATUREPLANE_QUOTAS_ENABLED": str(settings.quotas_enabled).lower(),
    }


class GatewayProcess(LocalServer):
    stop_signal = signal.SIGINT  # uvicorn's graceful shutdown, workers included
    stop_timeout = 15.0

    def __init__(self, settings: Settings, port: int, workers: int = 2) -> None:
        super().__init__()
        self.port = port
        self.workers = workers
        self.base = f"http://127.0.0.1:{port}"
        self.metrics_dir = settings.data_path / f"metrics-{port}"
        self.log: Path = settings.data_path / f"gateway-{port}.log"
        self._env = os.environ | settings_env(settings)
        self._env["FEATUREPLANE_METRICS_DIR"] = str(self.metrics_dir)
        self._env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the gateway owns it, never Feast's

    def start(self, timeout: float = 60.0) -> Self:
        cmd = [sys.executable, "-m", "featureplane.cli", "serve", "--port", str(self.port)]
        cmd += ["--workers", str(self.workers)]

        def ready() -> bool:
            try:
                return httpx.get(f"{self.base}/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        return self._spawn("gateway", cmd, self._env, self.log, ready, timeout)
