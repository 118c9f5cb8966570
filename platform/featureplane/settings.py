"""The one settings class: every knob, read from ``FEATUREPLANE_*`` environment variables.

Defaults are safe for the embedded demo (local folders, a SQLite registry). Secrets have a
default only in ``development``; any other environment refuses to start without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from featureplane.redact import redact_url

_DEV_TOKEN_PEPPER = "featureplane-development-pepper-not-a-secret"
_MIN_PEPPER_LENGTH = 16
_URL_FIELDS = frozenset({"redis_url", "registry", "otlp_endpoint"})


class Settings(BaseSettings):
    """featureplane configuration: field ``x`` comes from the variable ``FEATUREPLANE_X``."""

    model_config = SettingsConfigDict(env_prefix="FEATUREPLANE_", extra="ignore")

    environment: Literal["development", "production"] = Field(
        default="development",
        description="Anything but `development` refuses to start without the secrets "
        "(FEATUREPLANE_TOKEN_PEPPER).",
    )
    redis_url: str | None = Field(
        default=None,
        description="Online store, e.g. redis://:password@host:6379/0; also holds token digests "
        "(featureplane:cred:*) and run records. Unset: `demo` starts a throwaway redis-server. "
        "With redis_type=redis_cluster: seed nodes, redis://[user:password@]host:port[,host:port…] "
        "(any live node will do; rediss:// for TLS; no database number).",
    )
    redis_type: Literal["redis", "redis_cluster"] = Field(
        default="redis", description="`redis` (standalone) or `redis_cluster` (Redis Cluster)."
    )
    registry: str | None = Field(
        default=None,
        description="Feast SQL registry: a SQLite file path or postgresql://user:pw@host:5432/db "
        "(connect_timeout=5 and tcp_user_timeout=15000 are added unless the URL sets them). "
        "Unset: <data_dir>/registry.db.",
    )
    data_dir: Path = Field(
        default=Path(".featureplane"),
        description="Landing batches, offline Parquet, archive, quarantine, audit, metrics "
        "scratch (`demo`: <data_dir>/demo, reset on each run).",
    )
    tenants_dir: Path = Field(
        default=Path("tenants"), description="Where tenants/<t>/tenant.yaml are discovered."
    )
    feature_repo_dir: Path = Field(
        default=Path("feature_repo"),
        description="Where feature_repo/<t>/ and the shared feature_store.yaml are.",
    )
    token_pepper: SecretStr | None = Field(
        default=None,
        description="HMAC key of stored bearer-token digests. Unset: a public development value; "
        "required outside development (16+ characters, not the development value).",
    )
    plan_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        description="Wall-clock limit of the sandboxed child that imports a tenant's repo and "
        "infers its schemas (`plan`, `apply`); beyond it the child is killed and the command "
        "fails naming the file.",
    )
    plan_memory_mb: int = Field(
        default=2048,
        ge=1024,  # Feast, pandas and pyarrow alone take ~700 MiB of address space
        description="Address-space limit (RLIMIT_AS) of that child, in MiB; an allocation "
        "beyond it fails the command naming the file.",
    )
    registry_refresh_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How often the gateway reloads the registry (it keeps serving the last good "
        "snapshot when a reload fails).",
    )
    redis_timeout_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Online-store socket timeout; beyond it the gateway answers 503.",
    )
    gateway_host: str = Field(default="127.0.0.1", description="`serve`'s default --host.")
    gateway_port: int = Field(default=8080, ge=0, le=65535, description="`serve`'s default --port.")
    gateway_workers: int = Field(default=1, ge=1, description="`serve`'s default --workers.")
    registry_server_host: str = Field(
        default="127.0.0.1", description="`registry-server`'s default --host."
    )
    registry_server_port: int = Field(
        default=6570,
        ge=0,
        le=65535,
        description="`registry-server`'s default --port (Feast's).",
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
    kubernetes_audiences: list[str] = Field(
        default_factory=list, description="Audiences a ServiceAccount token must carry (JSON list)."
    )
    kubernetes_auth_cache_seconds: float = Field(
        default=60.0, ge=0, description="How long a TokenReview answer is reused."
    )
    access_log: bool = Field(default=True, description="One JSON line per request on stderr.")
    feature_log_flush_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often each gateway worker writes the rows it logged for feature services "
        "with a logging_config (one Parquet file per service and write).",
    )
    feature_log_max_rows: int = Field(
        default=50_000,
        ge=0,
        description="Feature-log rows a gateway worker buffers (half full starts a write early); "
        "a request's rows beyond it are dropped and counted "
        "(featureplane_feature_log_dropped_rows_total), never waited for.",
    )
    log_level: str = Field(default="INFO", description="Python logging level.")
    log_json: bool = Field(default=True, description="Logs as JSON lines (else plain text).")
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP endpoint for traces, e.g. http://collector:4318. Unset: "
        "OTEL_EXPORTER_OTLP_ENDPOINT, else tracing is off.",
    )
    service_name: str = Field(
        default="featureplane-gateway", description="service.name of the gateway's traces."
    )
    metrics_dir: Path | None = Field(
        default=None,
        description="PROMETHEUS_MULTIPROC_DIR of the gateway's workers (wiped at start). "
        "Unset: <data_dir>/metrics.",
    )
    cost_prices: Path | None = Field(
        default=None,
        description="Price model YAML of `featureplane cost report` and the cost gauges. "
        "Unset: illustrative defaults.",
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
