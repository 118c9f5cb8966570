"""The registry server as a real subprocess (`featureplane registry-server`) on a loopback port,
for the tests and local trials; ready once its gRPC health service answers SERVING. With
``tls=(key, cert)`` it serves TLS, and the probe trusts ``cert`` (self-signed in tests)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Self

from featureplane.embedded.gateway import settings_env
from featureplane.embedded.process import LocalServer
from featureplane.settings import Settings


class RegistryServerProcess(LocalServer):
    stop_timeout = 10.0

    def __init__(self, settings: Settings, port: int, tls: tuple[Path, Path] | None = None) -> None:
        super().__init__()
        self.port = port
        self.tls = tls
        self.address = f"127.0.0.1:{port}"
        self.log: Path = settings.data_path / f"registry-server-{port}.log"
        self._env = os.environ | settings_env(settings)
        self._env["FEATUREPLANE_ENVIRONMENT"] = settings.environment
        if settings.token_pepper is not None:
            self._env["FEATUREPLANE_TOKEN_PEPPER"] = settings.token_pepper.get_secret_value()
        self._env["FEATUREPLANE_REGISTRY_REFRESH_SECONDS"] = str(settings.registry_refresh_seconds)

    def start(self, timeout: float = 60.0) -> Self:
        import grpc  # type: ignore[import-untyped]  # no stubs pinned
        from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

        cmd = [sys.executable, "-m", "featureplane.cli", "registry-server"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        if self.tls is not None:
            cmd += ["--tls-key", str(self.tls[0]), "--tls-cert", str(self.tls[1])]
            trust = grpc.ssl_channel_credentials(root_certificates=self.tls[1].read_bytes())
            channel = grpc.secure_channel(self.address, trust)
        else:
            channel = grpc.insecure_channel(self.address)
        with channel:
            probe = health_pb2_grpc.HealthStub(channel)

            def ready() -> bool:
                try:
                    reply = probe.Check(health_pb2.HealthCheckRequest(), timeout=1)
                except grpc.RpcError:
                    return False
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

            return self._spawn("registry server", cmd, self._env, self.log, ready, timeout)
