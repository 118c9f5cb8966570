"""The shared Feast SQL registry: per-tenant configuration and apply."""

from featureplane.registry.apply import ApplyResult, apply_tenant
from featureplane.registry.feast_config import feast_env, feature_store, repo_config

__all__ = ["ApplyResult", "apply_tenant", "feast_env", "feature_store", "repo_config"]
