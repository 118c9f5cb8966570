"""The price model: what each unit of usage costs.

Prices (``FEATUREPLANE_COST_PRICES``: a YAML file; unset, :class:`Prices`' defaults) are
illustrative, not anyone's real rates.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from featureplane.cost.usage import quota
from featureplane.errors import ConfigError
from featureplane.tenancy.spec import TenantSpec

GIB = 1024**3


class Prices(BaseModel):
    """The price model. Defaults are illustrative only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: str = "USD"
    per_million_requests: float = Field(default=0.40, ge=0)
    per_million_entity_rows: float = Field(default=0.10, ge=0)
    per_million_rows_materialized: float = Field(default=0.25, ge=0)
    per_gib_month_online: float = Field(default=12.0, ge=0)
    per_cpu_core_month: float = Field(default=25.0, ge=0)
    per_gib_month_memory: float = Field(default=3.5, ge=0)


def load_prices(path: Path | None) -> Prices:
    """The price model of ``path`` (YAML), or the defaults; errors name the file and field."""
    if path is None:
        return Prices()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the price model: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the price model must be a mapping of field: price")
    try:
        return Prices.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{path}: {field}: {first['msg']}") from exc


def monthly_holdings(
    spec: TenantSpec, online_bytes: float | None, prices: Prices
) -> dict[str, float]:
    """Cost per month of what the tenant holds now (the gateway's scrape-time gauges): its CPU
    and memory quota requests, and its online bytes when sampled (``None``: not yet)."""
    cpu, _, memory, _ = quota(spec)
    held = {
        "cpu_quota": cpu * prices.per_cpu_core_month,
        "memory_quota": memory / GIB * prices.per_gib_month_memory,
    }
    if online_bytes is not None:
        held["online_storage"] = online_bytes / GIB * prices.per_gib_month_online
    return held
