"""Throwaway local servers for the embedded demo and the tests."""

from featureplane.embedded.gateway import GatewayProcess, settings_env
from featureplane.embedded.redis import EmbeddedRedis, EmbeddedRedisCluster, free_port
from featureplane.embedded.registry_server import RegistryServerProcess

__all__ = [
    "EmbeddedRedis",
    "EmbeddedRedisCluster",
    "GatewayProcess",
    "RegistryServerProcess",
    "free_port",
    "settings_env",
]
