"""One ``feature_repo/feature_store.yaml`` for every tenant, expanded per tenant.

The template uses ``${FEATUREPLANE_*}`` variables. Feast's own CLI expands them from the
environment (``os.path.expandvars``), so the same file serves `feast apply` subprocesses (given
:func:`feast_env`) and in-process stores (:func:`repo_config`).
"""

from __future__ import annotations

import os
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

import yaml

from featureplane.errors import ConfigError
from featureplane.settings import Settings
from featureplane.tenancy.spec import TenantSpec

if TYPE_CHECKING:
    from feast import FeatureStore, RepoConfig
    from feast.infra.registry.base_registry import BaseRegistry

TEMPLATE_NAME = "feature_store.yaml"


def template_path(settings: Settings) -> Path:
    return settings.feature_repo_path / TEMPLATE_NAME


def feast_env(settings: Settings, project: str) -> dict[str, str]:
    """The variables the template expands, for the given Feast project."""
    if settings.registry_url.startswith("sqlite:///"):  # SQLite creates the file, not its folder
        Path(settings.registry_url.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    return {
        "FEATUREPLANE_PROJECT": project,
        "FEATUREPLANE_REGISTRY_URL": settings.registry_url,
        "FEATUREPLANE_REDIS_TYPE": settings.redis_type,
        "FEATUREPLANE_REDIS_CONNECTION": settings.feast_redis_connection,
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

    # Definitions read FEATUREPLANE_DATA_DIR/PROJECT only when Feast imports the repo, which an
    # in-process store never does; the environment is set anyway so both paths agree.
    os.environ.update(feast_env(settings, spec.feast_project))
    return FeatureStore(config=repo_config(settings, spec))


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
