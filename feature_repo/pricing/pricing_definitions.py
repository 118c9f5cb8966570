"""Pricing: store x product prices and demand (two feature views on one compound entity)."""

from datetime import timedelta
from typing import Any

from feast import Entity, FeatureService, FeatureView, Field, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Array, Bool, Float32, Float64, Int64, String

from featureplane import parquet_source

OWNER = "pricing@example.com"

store = Entity(
    name="store",
    join_keys=["store_id"],
    value_type=ValueType.INT64,
    description="A physical store.",
    owner=OWNER,
)

product = Entity(
    name="product",
    join_keys=["sku"],
    value_type=ValueType.STRING,
    description="A product by stock-keeping unit.",
    owner=OWNER,
)

product_price = FeatureView(
    name="product_price",
    entities=[store, product],
    ttl=timedelta(days=2),
    schema=[
        Field(name="store_id", dtype=Int64),
        Field(name="sku", dtype=String),
        Field(name="price", dtype=Float64, description="Shelf price."),
        Field(name="discount_pct", dtype=Float32, description="Active discount, percent."),
        Field(name="in_stock", dtype=Bool, description="On the shelf now."),
    ],
    source=parquet_source("price_updates"),
    description="Current price of a product in a store.",
    owner=OWNER,
    tags={"team": "pricing"},
)

product_demand = FeatureView(
    name="product_demand",
    entities=[store, product],
    ttl=timedelta(days=7),
    schema=[
        Field(name="store_id", dtype=Int64),
        Field(name="sku", dtype=String),
        Field(name="units_sold_7d", dtype=Int64, description="Units sold over 7 days."),
        Field(name="demand_forecast", dtype=Float64, description="Units expected tomorrow."),
        Field(name="price_history", dtype=Array(Float64), description="Last 7 daily prices."),
    ],
    source=parquet_source("demand_daily"),
    description="Demand statistics and forecast per store and product.",
    owner=OWNER,
    tags={"team": "pricing"},
)

pricing_model_v1 = FeatureService(
    name="pricing_model_v1",
    features=[
        product_price[["price", "discount_pct"]],
        product_demand[["demand_forecast", "units_sold_7d"]],
    ],
    description="Inputs of the pricing model, version 1.",
    owner=OWNER,
)


# Feast 0.67 refuses ODFV fields with a description (its inferred fields have none).
@on_demand_feature_view(
    sources=[product_price],
    schema=[Field(name="final_price", dtype=Float64)],
    mode="python",
    singleton=True,
    description="What the customer pays now (one row at a time).",
    owner=OWNER,
    tags={"team": "pricing"},
)
def checkout_price(inputs: dict[str, Any]) -> dict[str, Any]:
    price, discount = inputs["price"], inputs["discount_pct"]
    if price is None or discount is None:
        return {"final_price": None}
    return {"final_price": round(price * (1 - discount / 100), 2)}
