"""Throwaway local servers for the embedded demo and the tests: :mod:`.redis` (a Redis, a Redis
Cluster), :mod:`.postgres`, :mod:`.gateway` and :mod:`.registry_server` (featureplane's own
servers as subprocesses), all on :mod:`.process`'s spawn-and-wait-until-ready loop."""

from featureplane.embedded.gateway import GatewayProcess
from featureplane.embedded.redis import EmbeddedRedis, free_port

__all__ = ["EmbeddedRedis", "GatewayProcess", "free_port"]
