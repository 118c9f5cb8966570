"""Recsys: user profiles and user x item affinities (string ids; string and list features)."""

from datetime import timedelta

from feast import Entity, FeatureView, Field, ValueType
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
