"""Deterministic synthetic batches for the recsys tenant (used by `featureplane demo` and tests)."""

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

GENRES = ["drama", "comedy", "documentary", "thriller", "animation", "sci-fi"]


def user_ids(rows: int) -> list[str]:
    return [f"u{i:06d}" for i in range(1, rows + 1)]


def item_ids(rows: int) -> list[str]:
    return [f"i{i:05d}" for i in range(1, max(2, rows // 4) + 1)]


def generate(rows: int, now: datetime, seed: int = 11) -> dict[str, pa.Table]:
    rng = np.random.default_rng(seed)
    users = user_ids(rows)
    items = item_ids(rows)
    n = len(users)
    profile = pa.table(
        {
            "user_id": pa.array(users, pa.string()),
            "favourite_genre": pa.array([GENRES[g] for g in rng.integers(0, len(GENRES), n)]),
            "recent_item_ids": pa.array(
                [list(rng.choice(items, size=int(k))) for k in rng.integers(0, 5, n)],
                pa.list_(pa.string()),
            ),
            "taste_embedding": pa.array(
                [list(v) for v in rng.standard_normal((n, 8)).astype(np.float32)],
                pa.list_(pa.float32()),
            ),
            "sessions_7d": pa.array(rng.integers(0, 40, n), pa.int64()),
            "event_timestamp": pa.array(
                [now - timedelta(seconds=int(s)) for s in rng.integers(60, 5 * 86400, n)],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    pairs = 2 * n
    pair_users = rng.choice(users, size=pairs)
    pair_items = rng.choice(items, size=pairs)
    affinity = pa.table(
        {
            "user_id": pa.array(pair_users, pa.string()),
            "item_id": pa.array(pair_items, pa.string()),
            "affinity": pa.array(rng.random(pairs), pa.float64()),
            "clicked": pa.array(rng.random(pairs) < 0.3, pa.bool_()),
            "last_seen": pa.array(
                [now - timedelta(seconds=int(s)) for s in rng.integers(0, 10 * 86400, pairs)],
                pa.timestamp("s", tz="UTC"),
            ),
            "event_timestamp": pa.array(
                [now - timedelta(seconds=int(s)) for s in rng.integers(60, 5 * 86400, pairs)],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    return {"user_activity": profile, "user_item_events": affinity}
