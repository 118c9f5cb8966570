"""Fraud: card-fraud scoring features per account (int64 ids; float, int and bool features)."""

from datetime import timedelta

import pandas as pd
from feast import Entity, FeatureView, Field, RequestSource, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Bool, Float32, Float64, Int32, Int64

from featureplane import parquet_source

OWNER = "fraud-ml@example.com"

account = Entity(
    name="account",
    join_keys=["account_id"],
    value_type=ValueType.INT64,
    description="A card account.",
    owner=OWNER,
)

account_stats = FeatureView(
    name="account_stats",
    entities=[account],
    ttl=timedelta(days=7),
    schema=[
        Field(name="account_id", dtype=Int64),
        Field(name="txn_count_24h", dtype=Int64, description="Transactions in the last 24 h."),
        Field(name="txn_amount_avg_7d", dtype=Float64, description="Mean amount over 7 days."),
        Field(name="chargeback_rate", dtype=Float32, description="Chargebacks per transaction."),
        Field(name="days_since_signup", dtype=Int32, description="Account age in days."),
        Field(name="is_flagged", dtype=Bool, description="Manually flagged by an analyst."),
    ],
    source=parquet_source("account_activity"),
    online=True,
    description="Rolling transaction statistics per account.",
    owner=OWNER,
    tags={"team": "fraud"},
)

# The amount of the transaction being scored arrives with the request, not from the store.
transaction = RequestSource(
    name="transaction",
    schema=[Field(name="txn_amount", dtype=Float64, description="Amount being authorized.")],
)


# Feast 0.67 refuses ODFV fields with a description (its inferred fields have none).
@on_demand_feature_view(
    sources=[account_stats, transaction],
    schema=[
        Field(name="amount_vs_avg", dtype=Float64),
        Field(name="is_large", dtype=Bool),
    ],
    mode="pandas",
    description="How unusual the amount being authorized is for the account.",
    owner=OWNER,
    tags={"team": "fraud"},
)
def transaction_risk(inputs: pd.DataFrame) -> pd.DataFrame:
    ratio = inputs["txn_amount"] / inputs["txn_amount_avg_7d"]
    return pd.DataFrame({"amount_vs_avg": ratio, "is_large": (ratio > 3).fillna(False)})
