"""The one settings class: every knob, read from ``FEATUREPLANE_*`` environment variables.

Defaults are safe for the embedded demo (local folders, a SQLite registry). Secrets have a
default only in ``development``; any other environment refuses to start without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from featureplane.redact import redact_url

if TYPE_CHECKING:
    import redis
    import redis.asyncio as aioredis

_DEV_TOKEN_PEPPER = "featureplane-development-pepper-not-a-secret"
_MIN_PEPPER_LENGTH = 16
_URL_FIELDS = frozenset({"redis_url", "registry", "otlp_endpoint"})


class Settings(BaseSettings):
    """featureplane configuration: field ``x`` comes from the variable ``FEATUREPLANE_X``."""

    model_config = SettingsConfigDict(env_prefix="FEATUREPLANE_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    redis_url: str | None = Field(
        default=None,
        description="Online store, e.g. redis://127.0.0.1:6379/0. Unset: `demo` starts its own. "
        "With redis_type=redis_cluster: seed nodes, redis://[user:password@]host:port[,host:port…] "
        "(any live node will do; rediss:// for TLS; no database number).",
    )
    redis_type: Literal["redis", "redis_cluster"] = Field(
        default="redis", description="`redis` (standalone) or `redis_cluster` (Redis Cluster)."
    )
    registry: str | None = Field(
        default=None,
        description="Feast SQL registry: a SQLite file path or a postgresql:// URL. "
        "Unset: <data_dir>/registry.db.",
    )
    data_dir: Path = Field(
        default=Path(".featureplane"),
        description="Landing batches, offline Parquet, quarantine, metrics scratch.",
    )
    tenants_dir: Path = Path("tenants")
    feature_repo_dir: Path = Path("feature_repo")
    token_pepper: SecretStr | None = Field(
        default=None,
        description="HMAC key for stored bearer-token digests. Required outside development.",
    )
    registry_refresh_seconds: float = Field(default=10.0, gt=0)
    redis_timeout_seconds: float = Field(default=1.0, gt=0)
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=0, le=65535)
    gateway_workers: int = Field(default=1, ge=1)
    registry_server_host: str = "127.0.0.1"
    registry_server_port: int = Field(
        default=6570, ge=0, le=65535, description="`registry-server` default (Feast's port)."
    )
    quotas_enabled: bool = Field(
        default=True,
        description="Enforce rate and concurrency quotas (size quotas always apply).",
    )
    quota_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long a crashed worker's quota reservation (in-flight slots) lingers.",
    )
    kubernetes_auth: bool = Field(
        default=False,
        description="Also accept ServiceAccount tokens (TokenReview; namespace -> tenant).",
    )
    kubernetes_audiences: list[str] = Field(default_factory=list)
    kubernetes_auth_cache_seconds: float = Field(default=60.0, ge=0)
    access_log: bool = Field(default=True, description="One JSON line per request on stderr.")
    log_level: str = "INFO"
    log_json: bool = True
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP endpoint for traces, e.g. http://collector:4318 (unset: off).",
    )
    service_name: str = "featureplane-gateway"
    metrics_dir: Path | None = Field(
        default=None,
        description="prometheus_client multi-process directory. Unset: <data_dir>/metrics.",
    )
    cost_prices: Path | None = Field(
        default=None,
        description="Price model YAML of `featureplane cost report`. Unset: illustrative defaults.",
    )

    @model_validator(mode="after")
    def _secrets_outside_development(self) -> Settings:
        if self.environment == "development":
            return self
        pepper = self.token_pepper.get_secret_value() if self.token_pepper else None
        if pepper is None:
            raise ValueError(
                "FEATUREPLANE_TOKEN_PEPPER must be set when FEATUREPLANE_ENVIRONMENT is "
                f"{self.environment!r}: the development default is public"
            )
        if len(pepper.strip()) < _MIN_PEPPER_LENGTH or pepper == _DEV_TOKEN_PEPPER:
            raise ValueError(
                f"FEATUREPLANE_TOKEN_PEPPER must be a secret of at least {_MIN_PEPPER_LENGTH} "
                f"characters when FEATUREPLANE_ENVIRONMENT is {self.environment!r} (not empty, "
                "not the public development value): e.g. `openssl rand -hex 32`"
            )
        return self

    def __repr_args__(self) -> Any:
        # Connection URLs may carry passwords (redis://:pw@…, postgresql://user:pw@…): keep
        # them out of reprs, logs and tracebacks (the pepper is a SecretStr already).
        for name, value in super().__repr_args__():
            if name in _URL_FIELDS and isinstance(value, str):
                yield name, redact_url(value)
            else:
                yield name, value

    # Derived values. Paths are made absolute so subprocesses and workers agree on them.

    @property
    def data_path(self) -> Path:
        return self.data_dir.resolve()

    @property
    def tenants_path(self) -> Path:
        return self.tenants_dir.resolve()

    @property
    def feature_repo_path(self) -> Path:
        return self.feature_repo_dir.resolve()

    @property
    def metrics_path(self) -> Path:
        return (self.metrics_dir or self.data_path / "metrics").resolve()

    @property
    def pepper(self) -> bytes:
        secret = self.token_pepper.get_secret_value() if self.token_pepper else _DEV_TOKEN_PEPPER
        return secret.encode()

    @property
    def registry_url(self) -> str:
        """The registry as a SQLAlchemy URL, as Feast's SQL registry wants it."""
        raw = self.registry or str(self.data_path / "registry.db")
        if raw.startswith(("postgresql://", "postgres://")):
            # psycopg 3 is the driver feast[postgres] installs.
            return "postgresql+psycopg://" + raw.split("://", 1)[1]
        if "://" in raw:
            return raw
        return f"sqlite:///{Path(raw).resolve()}"

    def require_redis_url(self) -> str:
        if not self.redis_url:
            from featureplane.errors import ConfigError

            raise ConfigError("FEATUREPLANE_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0)")
        return self.redis_url

    def redis_client(self, **kwargs: Any) -> redis.Redis:
        """The control plane's client of the online store: ``redis.Redis``, or a cluster client
        with the same commands (see :mod:`featureplane.online.clients`). ``kwargs`` go to it
        (socket_timeout, …)."""
        from featureplane.online.clients import sync_client

        return sync_client(self.require_redis_url(), self.redis_type == "redis_cluster", **kwargs)

    def redis_async_client(self, **kwargs: Any) -> aioredis.Redis:
        """:meth:`redis_client` for asyncio (the gateway's ops routes)."""
        from featureplane.online.clients import async_client

        return async_client(self.require_redis_url(), self.redis_type == "redis_cluster", **kwargs)

    @property
    def feast_redis_connection(self) -> str:
        """FEATUREPLANE_REDIS_URL in Feast's ``host:port,db=N,password=…,ssl=true`` form (for a
        cluster, ``host:port,host:port,…,password=…``)."""
        if self.redis_type == "redis_cluster":
            from featureplane.online.clients import ClusterUrl

            cluster = ClusterUrl(self.require_redis_url())
            nodes = [f"{host}:{port}" for host, port in cluster.nodes]
            if cluster.username and cluster.username != "default":
                nodes.append(f"username={cluster.username}")
            if cluster.password:
                nodes.append(f"password={cluster.password}")
            if cluster.tls:
                nodes.append("ssl=true")
            return ",".join(nodes)
        url = urlsplit(self.require_redis_url())
        parts = [f"{url.hostname or '127.0.0.1'}:{url.port or 6379}"]
        db = url.path.lstrip("/")
        if db:
            parts.append(f"db={db}")
        if url.username and url.username != "default":
            parts.append(f"username={unquote(url.username)}")
        if url.password:
            parts.append(f"password={unquote(url.password)}")
        if url.scheme == "rediss":
            parts.append("ssl=true")
        return ",".join(parts)
