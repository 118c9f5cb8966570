"""Recsys: user profiles and user x item affinities (string ids; string and list features)."""

from datetime import timedelta
from typing import Any

from feast import Entity, FeatureView, Field, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Array, Bool, Float32, Float64, Int64, String, UnixTimestamp

from featureplane import parquet_source

OWNER = "recsys@example.com"

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A signed-in user.",
    owner=OWNER,
)

item = Entity(
    name="item",
    join_keys=["item_id"],
    value_type=ValueType.STRING,
    description="A catalogue item.",
    owner=OWNER,
)

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=timedelta(days=30),
    schema=[
        Field(name="user_id", dtype=String),
        Field(name="favourite_genre", dtype=String, description="Most watched genre."),
        Field(name="recent_item_ids", dtype=Array(String), description="Last items viewed."),
        Field(name="taste_embedding", dtype=Array(Float32), description="8-d taste vector."),
        Field(name="sessions_7d", dtype=Int64, description="Sessions in the last 7 days."),
    ],
    source=parquet_source("user_activity"),
    description="Slowly changing profile of each user.",
    owner=OWNER,
    tags={"team": "recsys"},
)

user_item_affinity = FeatureView(
    name="user_item_affinity",
    entities=[user, item],
    ttl=timedelta(days=14),
    schema=[
        Field(name="user_id", dtype=String),
        Field(name="item_id", dtype=String),
        Field(name="affinity", dtype=Float64, description="Predicted affinity in [0, 1]."),
        Field(name="clicked", dtype=Bool, description="Clicked in the last 14 days."),
        Field(name="last_seen", dtype=UnixTimestamp, description="Last impression."),
    ],
    source=parquet_source("user_item_events"),
    description="Affinity of a user for an item (compound entity).",
    owner=OWNER,
    tags={"team": "recsys"},
)


# Feast 0.67 refuses ODFV fields with a description (its inferred fields have none).
@on_demand_feature_view(
    sources=[user_item_affinity],
    schema=[
        Field(name="affinity_pct", dtype=Float64),
        Field(name="worth_showing", dtype=Bool),
    ],
    mode="python",
    description="Ranking hints derived from the affinity (a batch of rows at a time).",
    owner=OWNER,
    tags={"team": "recsys"},
)
def ranking_hints(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    pairs = zip(inputs["affinity"], inputs["clicked"], strict=True)
    return {
        "affinity_pct": [None if a is None else a * 100 for a in inputs["affinity"]],
        "worth_showing": [a is not None and a > 0.5 and not c for a, c in pairs],
    }
