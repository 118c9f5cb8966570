"""Throwaway local servers for the embedded demo and the tests."""

from featureplane.embedded.gateway import GatewayProcess, settings_env
from featureplane.embedded.redis import EmbeddedRedis, free_port

__all__ = ["EmbeddedRedis", "GatewayProcess", "free_port", "settings_env"]
