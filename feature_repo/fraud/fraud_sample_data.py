"""Deterministic synthetic batches for the fraud tenant (used by `featureplane demo` and tests)."""

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa


def generate(rows: int, now: datetime, seed: int = 7) -> dict[str, pa.Table]:
    """``rows`` accounts (ids 1..rows), some with two observations so the newest must win."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, rows + 1, dtype=np.int64)
    repeat = ids[: max(1, rows // 5)]  # a fifth of the accounts get an older row too
    account_id = np.concatenate([ids, repeat])
    n = len(account_id)
    age_s = rng.integers(60, 3 * 86400, size=n)
    age_s[rows:] += 86400  # the repeated rows are strictly older
    event_ts = [now - timedelta(seconds=int(s)) for s in age_s]
    chargeback = rng.random(n).astype(np.float32) * 0.05
    chargeback_mask = rng.random(n) < 0.05  # some nulls
    table = pa.table(
        {
            "account_id": pa.array(account_id, pa.int64()),
            "txn_count_24h": pa.array(rng.integers(0, 60, size=n), pa.int64()),
            "txn_amount_avg_7d": pa.array(np.round(rng.gamma(2.0, 40.0, size=n), 2), pa.float64()),
            "chargeback_rate": pa.array(chargeback, pa.float32(), mask=chargeback_mask),
            "days_since_signup": pa.array(rng.integers(0, 3650, size=n), pa.int32()),
            "is_flagged": pa.array(rng.random(n) < 0.02, pa.bool_()),
            "event_timestamp": pa.array(event_ts, pa.timestamp("us", tz="UTC")),
        }
    )
    return {"account_activity": table}
