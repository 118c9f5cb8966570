"""The registry server: Feast's own gRPC registry service in front of the shared SQL registry,
with per-tenant ownership enforced.

Tenants' CI points plain `feast plan`/`feast apply` at it (``registry_type: remote``; see
:mod:`featureplane.registry.client_config`) and never holds the database credentials. The
service is Feast's unchanged (``feast.registry_server.RegistryServer`` and its interceptors);
featureplane only fills Feast's plug-in points, as ``feast serve_registry`` would with its own
auth types:

- the auth manager's token parser is
  :class:`~featureplane.registry.token_parser.FeatureplaneTokenParser`;
- the security manager is :class:`~featureplane.registry.permissions.OwnershipSecurityManager`;
- Feast's ``AuthInterceptor`` is wrapped so a refused token is answered ``UNAUTHENTICATED``
  (Feast lets the parser's exception escape, which gRPC reports as ``UNKNOWN``) and so the
  standard health service answers without a token (for probes).

Nothing in the process rebuilds a tenant's UDF (:mod:`featureplane.registry.udfs`): Feast's
server would ``exec`` its source on ``ApplyFeatureView``.

The servicer gets no ``FeatureStore``: Feast uses it only for the dataset RPCs, which run
offline retrievals and read or write arbitrary paths with the server's own credentials.
"""

from __future__ import annotations

import logging
import os
import signal
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import grpc  # type: ignore[import-untyped]  # no stubs pinned
from feast.grpc_error_interceptor import ErrorInterceptor
from feast.permissions.auth.auth_manager import AuthManager, set_auth_manager
from feast.permissions.security_manager import set_security_manager
from feast.permissions.server.grpc import AuthInterceptor
from feast.permissions.server.grpc_token_extractor import GrpcTokenExtractor
from feast.protos.feast.registry import RegistryServer_pb2_grpc
from feast.registry_server import RegistryServer
from grpc_health.v1 import (  # type: ignore[import-untyped]
    health,
    health_pb2,
    health_pb2_grpc,
)
from starlette.authentication import AuthenticationError as MissingCredentialsError

from featureplane.errors import AuthenticationError, ConfigError, StoreUnavailableError
from featureplane.feast_config import close_registry, open_registry
from featureplane.online.clients import redis_client
from featureplane.registry.permissions import OwnershipPolicy, OwnershipSecurityManager
from featureplane.registry.token_parser import FeatureplaneTokenParser
from featureplane.registry.udfs import keep_udfs_inert
from featureplane.settings import Settings
from featureplane.tenancy.catalog import TenantCatalog

log = logging.getLogger(__name__)

_HEALTH_PREFIX = "/grpc.health.v1.Health/"
_WORKERS = 10  # Feast's own registry server uses 10 threads


def _refusal(handler: Any, code: grpc.StatusCode, message: str) -> Any:
    """A handler of the same kind as ``handler`` that only aborts with ``code``."""

    def abort(request: Any, context: grpc.ServicerContext) -> None:
        context.abort(code, message)

    kind = (
        grpc.unary_unary_rpc_method_handler
        if handler.unary_unary
        else grpc.unary_stream_rpc_method_handler
        if handler.unary_stream
        else grpc.stream_unary_rpc_method_handler
        if handler.stream_unary
        else grpc.stream_stream_rpc_method_handler
    )
    return kind(
        abort,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class AuthenticatingInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Feast's ``AuthInterceptor`` with proper status codes for refused credentials."""

    def __init__(self, feast_interceptor: grpc.ServerInterceptor) -> None:
        self._feast = feast_interceptor

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        if details.method.startswith(_HEALTH_PREFIX):
            return continuation(details)
        try:
            return self._feast.intercept_service(continuation, details)
        except (AuthenticationError, MissingCredentialsError) as exc:
            code, message = grpc.StatusCode.UNAUTHENTICATED, str(exc)
        except StoreUnavailableError as exc:
            code, message = grpc.StatusCode.UNAVAILABLE, str(exc)
        handler = continuation(details)
        return None if handler is None else _refusal(handler, code, message)


@dataclass(frozen=True)
class TlsFiles:
    key: Path
    cert: Path


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    registry: Any  # feast BaseRegistry


def start(settings: Settings, host: str, port: int, tls: TlsFiles | None = None) -> RunningServer:
    """Start the registry server on ``host:port`` (0: a free port); returns once it listens."""
    # Feast exempts a user named like this variable from every check; no featureplane user
    # may ever match it.
    os.environ.pop("INTRA_COMMUNICATION_BASE64", None)
    keep_udfs_inert()  # this process holds every tenant's registry: no tenant's code runs here
    tenants_path = settings.tenants_path
    policy = OwnershipPolicy(
        lambda: TenantCatalog.load(tenants_path), settings.registry_refresh_seconds
    )
    token_store = redis_client(settings, socket_timeout=settings.redis_timeout_seconds)
    registry = open_registry(settings)
    set_security_manager(OwnershipSecurityManager(policy, registry))
    set_auth_manager(
        AuthManager(
            token_parser=FeatureplaneTokenParser(token_store, settings.pepper, policy),
            token_extractor=GrpcTokenExtractor(),
        )
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=_WORKERS),
        interceptors=[AuthenticatingInterceptor(AuthInterceptor()), ErrorInterceptor()],
        options=[("grpc.so_reuseport", 0)],  # a port in use is an error, not a shared port
    )
    RegistryServer_pb2_grpc.add_RegistryServerServicer_to_server(
        RegistryServer(registry, store=None), server
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    address = f"{host}:{port}"
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            pair = (tls.key.read_bytes(), tls.cert.read_bytes())
            bound = server.add_secure_port(address, grpc.ssl_server_credentials([pair]))
    except OSError as exc:
        raise ConfigError(f"TLS key or certificate cannot be read: {exc}") from exc
    except RuntimeError as exc:  # grpc: "Failed to bind"
        raise ConfigError(f"the registry server cannot listen on {address}: {exc}") from exc
    if bound == 0:
        raise ConfigError(f"the registry server cannot listen on {address}")
    server.start()
    log.info("registry server listening on %s:%d (tls=%s)", host, bound, tls is not None)
    return RunningServer(server, bound, registry)


def serve(settings: Settings, host: str, port: int, tls: TlsFiles | None = None) -> None:
    """Run until SIGTERM or SIGINT, then finish in-flight calls (5 s at most)."""
    # Feast's matcher logs every permission it weighs at INFO; denials stay (ERROR).
    logging.getLogger("feast.permissions").setLevel(logging.WARNING)
    running = start(settings, host, port, tls)

    def shutdown(signum: int, frame: FrameType | None) -> None:
        running.server.stop(5.0)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    print(f"registry server listening on {host}:{running.port}", flush=True)
    running.server.wait_for_termination()
    close_registry(running.registry)
