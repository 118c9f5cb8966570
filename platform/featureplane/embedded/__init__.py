"""Throwaway local servers for the embedded demo and the tests."""

from featureplane.embedded.redis import EmbeddedRedis, free_port

__all__ = ["EmbeddedRedis", "free_port"]
