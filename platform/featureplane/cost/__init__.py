"""Cost per tenant and cost centre: usage read from Redis and the gateway, priced by a model.

- :mod:`~featureplane.cost.prices`: the price model (``FEATUREPLANE_COST_PRICES``).
- :mod:`~featureplane.cost.usage`: what a tenant uses (served counts, quota of tenant.yaml).
- :mod:`~featureplane.cost.online`: the online-bytes estimate, sampled from Redis.
- :mod:`~featureplane.cost.report`: the report of `featureplane cost report`.
- :mod:`~featureplane.cost.sampler`: what the gateway's ``/metrics`` prices, owned by its
  lifespan.
"""

from featureplane.cost.online import OnlineBytes, sample_online_bytes
from featureplane.cost.prices import Prices, load_prices, monthly_holdings
from featureplane.cost.sampler import CostSampler
from featureplane.cost.usage import quantity, quota

__all__ = [
    "CostSampler",
    "OnlineBytes",
    "Prices",
    "load_prices",
    "monthly_holdings",
    "quantity",
    "quota",
    "sample_online_bytes",
]
