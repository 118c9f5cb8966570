"""The multi-tenant online feature gateway: :mod:`.app` (the app factory and its lifespan),
:mod:`.features` (the hot route, plain ASGI), :mod:`.lookup` (a request against the read plans),
:mod:`.plans` (read plans compiled from the registry, and grants), :mod:`.reader` (the online
store read), :mod:`.logplans` and :mod:`.featurelog` (feature logging: what a feature service
with a ``logging_config`` served, in Feast's format), :mod:`.auth`, :mod:`.quotas`, :mod:`.ops`
(health, readiness, metrics), :mod:`.models` (the documented shapes) and :mod:`.state` (what
the lifespan owns)."""

__all__: list[str] = []
