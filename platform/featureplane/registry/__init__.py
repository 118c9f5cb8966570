"""The shared Feast SQL registry: per-tenant configuration and apply."""

from featureplane.registry.apply import ApplyResult, apply_tenant
from featureplane.registry.feast_config import (
    close_registry,
    feast_env,
    feature_store,
    open_registry,
    repo_config,
)

__all__ = [
    "ApplyResult",
    "apply_tenant",
    "close_registry",
    "feast_env",
    "feature_store",
    "open_registry",
    "repo_config",
]
