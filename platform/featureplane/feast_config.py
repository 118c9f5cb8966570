"""One ``feature_repo/feature_store.yaml`` for every tenant, expanded per tenant.

The template uses ``${FEATUREPLANE_*}`` variables. Feast's own CLI expands them from the
environment (``os.path.expandvars``), so the same file serves `feast apply` subprocesses (given
:func:`feast_env`) and in-process stores (:func:`repo_config`).

A PostgreSQL registry URL gets libpq timeouts unless it sets its own (:func:`feast_registry_url`):
Feast's SQL registry and SQLAlchemy set none, so against a blackholed server a connect waits for
the kernel's SYN retries (~2 min) and a query on an established connection for TCP's
retransmission timeout (~15 min). A stopped server refuses at once either way.
:func:`check_registry` is the quick probe commands run first, so an unreachable registry is one
clear line (``registry postgresql://host:port/db is unreachable: <cause>``), never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import yaml

from featureplane.errors import ConfigError, RegistryError
from featureplane.online.clients import feast_connection_string
from featureplane.settings import Settings
from featureplane.tenancy.spec import TenantSpec

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView, RepoConfig
    from feast.infra.registry.base_registry import BaseRegistry

TEMPLATE_NAME = "feature_store.yaml"
# libpq parameters added to a PostgreSQL registry URL that does not set them: give up a connect
# after 5 s, and a connection whose sent data goes unacknowledged for 15 s (a dead peer).
REGISTRY_CONNECT_TIMEOUTS = {"connect_timeout": "5", "tcp_user_timeout": "15000"}


def template_path(settings: Settings) -> Path:
    return settings.feature_repo_path / TEMPLATE_NAME


def feast_registry_url(settings: Settings) -> str:
    """The registry URL Feast gets: :attr:`Settings.registry_url`, plus, for PostgreSQL, the
    timeouts of :data:`REGISTRY_CONNECT_TIMEOUTS` the URL does not set itself."""
    url = settings.registry_url
    if not url.startswith("postgresql"):
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {key for key, _ in query}
    query += [(k, v) for k, v in REGISTRY_CONNECT_TIMEOUTS.items() if k not in present]
    return urlunsplit(parts._replace(query=urlencode(query)))


_UNREACHABLE = ("connect", "refused", "timeout", "timed out", "resolve", "no route", "unreachable")


def sqlite_path(settings: Settings) -> Path | None:
    """The registry's file when it is SQLite, else None."""
    url = settings.registry_url
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def describe_registry(settings: Settings) -> str:
    """The registry for messages and logs: ``postgresql://user@host:port/db`` (never the
    password or query), or the SQLite file."""
    url, sqlite = settings.registry_url, sqlite_path(settings)
    if sqlite is not None:
        return f"sqlite {sqlite}"
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme.split('+')[0]}://{user}{parts.hostname or ''}{port}{parts.path}"


def registry_failure(settings: Settings, exc: BaseException, doing: str = "read") -> str:
    """``registry <where> is unreachable: <cause>`` (or ``cannot be <doing>: <error>`` when the
    database answered, e.g. ``written``) — one line, no password, no traceback."""
    cause = exc
    while getattr(cause, "orig", None) is not None:  # SQLAlchemy wraps the driver's error
        cause = cause.orig  # type: ignore[attr-defined]
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    text = lines[0] if lines else type(cause).__name__
    # An OperationalError is also a refused password or a locked SQLite file: "unreachable"
    # only when the driver says it could not get through.
    reachable = type(exc).__name__ not in {"OperationalError", "InterfaceError"} or not any(
        word in text.lower() for word in _UNREACHABLE
    )
    text = text.rsplit(" failed: ", 1)[-1]  # libpq: 'connection to server at … failed: <why>'
    password = urlsplit(settings.registry_url).password
    if password:
        text = text.replace(password, "***")
    if reachable:
        return (
            f"registry {describe_registry(settings)} cannot be {doing}: "
            f"{type(cause).__name__}: {text}"
        )
    return f"registry {describe_registry(settings)} is unreachable: {text}"


def check_registry(settings: Settings) -> None:
    """Connect to the registry database once (PostgreSQL: within ``connect_timeout``); raise
    :class:`RegistryError` with :func:`registry_failure`'s one line when that fails."""
    if sqlite_path(settings) is not None:
        return  # a local file: nothing to reach (SQLite creates it)
    url = feast_registry_url(settings)
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise RegistryError(registry_failure(settings, exc)) from None
    finally:
        engine.dispose()


def feast_env(settings: Settings, project: str) -> dict[str, str]:
    """The variables the template expands, for the given Feast project."""
    sqlite = sqlite_path(settings)
    if sqlite is not None:  # SQLite creates the file, not its folder
        sqlite.parent.mkdir(parents=True, exist_ok=True)
    return {
        "FEATUREPLANE_PROJECT": project,
        "FEATUREPLANE_REGISTRY_URL": feast_registry_url(settings),
        "FEATUREPLANE_REDIS_TYPE": settings.redis_type,
        "FEATUREPLANE_REDIS_CONNECTION": feast_connection_string(settings),
        "FEATUREPLANE_DATA_DIR": str(settings.data_path),
    }


def render(settings: Settings, project: str) -> dict[str, Any]:
    path = template_path(settings)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from exc
    try:
        expanded = Template(text).substitute(feast_env(settings, project))
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"{path}: unknown or malformed variable {exc}") from exc
    loaded = yaml.safe_load(expanded)
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: must be a YAML mapping")
    return loaded


def repo_config(settings: Settings, spec: TenantSpec) -> RepoConfig:
    from feast import RepoConfig

    config = RepoConfig(**render(settings, spec.feast_project))
    config.repo_path = settings.feature_repo_path / spec.name
    return config


def feature_store(settings: Settings, spec: TenantSpec) -> FeatureStore:
    """An in-process Feast store for the tenant's project (the SDK path, used for materialization
    and as the reference the gateway's answers are checked against)."""
    from feast import FeatureStore

    # The config is expanded here, explicitly; nothing goes through os.environ. (Definitions read
    # FEATUREPLANE_DATA_DIR/PROJECT only when Feast imports the repo, which an in-process store
    # never does: `feast apply` runs in a subprocess given feast_env().)
    return FeatureStore(config=repo_config(settings, spec))


def tenant_views(registry: BaseRegistry, project: str) -> list[FeatureView]:
    """``project``'s feature views as the platform's processes read them: skip_udf, so a batch
    feature view's transformation (tenant code) stays the bytes it was applied as (Feast would
    rebuild it by ``exec``ing its source) and is never run here."""
    views: list[FeatureView] = registry.list_feature_views(
        project, allow_cache=False, skip_udf=True
    )
    return views


def has_transformation(view: FeatureView) -> bool:
    """A batch feature view computed by a UDF, which featureplane does not materialize."""
    return getattr(view, "_raw_feature_transformation_proto", None) is not None


def open_registry(settings: Settings) -> BaseRegistry:
    """The shared SQL registry itself (every project), for readers such as the gateway."""
    from feast import RepoConfig
    from feast.infra.registry.sql import SqlRegistry

    config = RepoConfig(**render(settings, "featureplane"))
    return SqlRegistry(config.registry, config.project, None)


def close_registry(registry: BaseRegistry) -> None:
    """Release the registry's pooled database connections (Feast offers no close())."""
    for name in ("read_engine", "write_engine"):  # the same engine when there is no replica
        engine = getattr(registry, name, None)
        if engine is not None:
            engine.dispose()
