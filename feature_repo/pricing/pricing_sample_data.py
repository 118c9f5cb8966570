"""Deterministic synthetic batches for the pricing tenant (for `featureplane demo` and tests)."""

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa


def keys(rows: int) -> tuple[list[int], list[str]]:
    """``rows`` (store_id, sku) pairs over 10 stores."""
    stores = [1 + i % 10 for i in range(rows)]
    skus = [f"sku-{i // 10:05d}" for i in range(rows)]
    return stores, skus


def generate(rows: int, now: datetime, seed: int = 13) -> dict[str, pa.Table]:
    rng = np.random.default_rng(seed)
    stores, skus = keys(rows)
    price = np.round(rng.uniform(0.5, 200.0, rows), 2)
    prices = pa.table(
        {
            "store_id": pa.array(stores, pa.int64()),
            "sku": pa.array(skus, pa.string()),
            "price": pa.array(price, pa.float64()),
            "discount_pct": pa.array(rng.choice([0, 5, 10, 25], rows).astype(np.float32)),
            "in_stock": pa.array(rng.random(rows) > 0.1, pa.bool_()),
            "event_timestamp": pa.array(
                [now - timedelta(seconds=int(s)) for s in rng.integers(60, 3600, rows)],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    history = [list(np.round(p * rng.uniform(0.9, 1.1, 7), 2)) for p in price]
    demand = pa.table(
        {
            "store_id": pa.array(stores, pa.int64()),
            "sku": pa.array(skus, pa.string()),
            "units_sold_7d": pa.array(rng.integers(0, 500, rows), pa.int64()),
            "demand_forecast": pa.array(rng.gamma(3.0, 10.0, rows), pa.float64()),
            "price_history": pa.array(history, pa.list_(pa.float64())),
            "event_timestamp": pa.array(
                [now - timedelta(seconds=int(s)) for s in rng.integers(3600, 86400, rows)],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    return {"price_updates": prices, "demand_daily": demand}
