"""The shared Feast SQL registry: per-tenant configuration and apply."""

from featureplane.feast_config import (
    close_registry,
    feast_env,
    feature_store,
    open_registry,
    repo_config,
)
from featureplane.registry.apply import ApplyResult, apply_tenant

__all__ = [
    "ApplyResult",
    "apply_tenant",
    "close_registry",
    "feast_env",
    "feature_store",
    "open_registry",
    "repo_config",
]
