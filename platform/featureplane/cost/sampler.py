"""The gateway's cost sampler: what its ``/metrics`` needs for the ``featureplane_cost_*`` gauges.

The gateway app's lifespan makes one per worker and closes it at shutdown, which closes its
Redis client.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from featureplane.cost.online import OnlineBytes, OnlineBytesCache
from featureplane.cost.prices import Prices, load_prices
from featureplane.online.clients import redis_client
from featureplane.settings import Settings
from featureplane.tenancy.spec import TenantSpec


class CostSampler:
    """The online-bytes estimate (cached, recomputed in a thread) and the price model.

    The price model is read at the first scrape and kept. A bad file fails that scrape loudly
    (:class:`~featureplane.errors.ConfigError` naming the file and field), and every later one
    until it is fixed, rather than pricing with defaults nobody chose; it never stops the gateway
    from starting.
    """

    def __init__(self, online: OnlineBytesCache, prices_path: Path | None) -> None:
        self._online = online
        self._prices_path = prices_path
        self._prices: Prices | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> CostSampler:
        """Sampling the store of ``settings`` (a client of its own, made on first use), priced
        by ``FEATUREPLANE_COST_PRICES``."""
        return cls(
            OnlineBytesCache(lambda: redis_client(settings, socket_timeout=5.0)),
            settings.cost_prices,
        )

    def prices(self) -> Prices:
        if self._prices is None:
            self._prices = load_prices(self._prices_path)
        return self._prices

    async def online_bytes(self, tenants: Sequence[TenantSpec]) -> dict[str, OnlineBytes] | None:
        """The latest estimate (see :meth:`OnlineBytesCache.get`)."""
        return await self._online.get(tenants)

    async def aclose(self) -> None:
        await self._online.aclose()
