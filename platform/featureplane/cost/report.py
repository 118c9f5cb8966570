"""The cost report: each tenant's usage, priced, one line per item, with totals.

What each quantity is measured from: :mod:`featureplane.cost.usage`; the prices:
:mod:`featureplane.cost.prices`. `featureplane cost report` prints it as a table, CSV or JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from featureplane.cost.online import OnlineBytes, sample_online_bytes
from featureplane.cost.prices import GIB, Prices
from featureplane.cost.usage import Usage, fetch_counts, usage
from featureplane.observability import runs
from featureplane.tenancy.spec import TenantSpec


@dataclass(frozen=True)
class Line:
    tenant: str
    cost_centre: str
    item: str
    quantity: float | None
    unit: str  # of the quantity
    unit_price: float
    price_per: str  # what unit_price buys: 1M (of the unit), GiB-month, core-month
    cost: float | None


def lines(usage: Usage, prices: Prices) -> list[Line]:
    """One line per priced item. Quotas are priced on requests (what is reserved), per month;
    bytes are shown in GiB."""

    def line(item: str, amount: float | None, unit: str, price: float, per: str) -> Line:
        scale = 1e6 if per == "1M" else 1.0
        cost = None if amount is None else amount / scale * price
        return Line(usage.tenant, usage.cost_centre, item, amount, unit, price, per, cost)

    return [
        line("requests", usage.requests, "requests", prices.per_million_requests, "1M"),
        line("entity_rows", usage.entity_rows, "rows", prices.per_million_entity_rows, "1M"),
        line(
            "rows_materialized",
            usage.rows_materialized,
            "rows",
            prices.per_million_rows_materialized,
            "1M",
        ),
        line(
            "online_storage",
            usage.online_bytes / GIB,
            "GiB",
            prices.per_gib_month_online,
            "GiB-month",
        ),
        line(
            "cpu_quota", usage.cpu_request_cores, "cores", prices.per_cpu_core_month, "core-month"
        ),
        line(
            "memory_quota",
            usage.memory_request_bytes / GIB,
            "GiB",
            prices.per_gib_month_memory,
            "GiB-month",
        ),
    ]


@dataclass(frozen=True)
class Report:
    currency: str
    lines: list[Line]
    online: dict[str, OnlineBytes]
    gateway: str | None
    note: str | None  # why requests / entity rows are missing

    @property
    def total(self) -> float:
        return sum(line.cost or 0.0 for line in self.lines)

    def totals(self) -> dict[str, float]:
        """Per tenant."""
        found: dict[str, float] = {}
        for line in self.lines:
            found[line.tenant] = found.get(line.tenant, 0.0) + (line.cost or 0.0)
        return found


def report(
    specs: Sequence[TenantSpec],
    client: redis.Redis,
    prices: Prices,
    gateway: str | None,
    sample_size: int = 200,
) -> Report:
    """The cost report: Redis (online bytes, run records), tenant.yaml, and the gateway."""
    served: dict[str, tuple[float, float]] | None = None
    note = None
    if gateway is None:
        note = "requests and entity rows need a running gateway: pass --gateway URL"
    else:
        try:
            served = fetch_counts(gateway)
        except Exception as exc:  # any failure to read it leaves those lines unmeasured
            note = f"gateway {gateway} unreachable ({type(exc).__name__}): requests and entity "
            note += "rows need a running gateway: pass --gateway URL"
    materialized: dict[str, float] = {}
    for spec in specs:
        recorded = runs.parse(client.hgetall(runs.runs_key(spec.name)))
        materialized[spec.name] = float(sum(view.rows for view in recorded.views.values()))
    online = sample_online_bytes(client, specs, sample_size)
    found = [
        line
        for entry in usage(specs, materialized, online, served)
        for line in lines(entry, prices)
    ]
    return Report(prices.currency, found, online, gateway if served is not None else None, note)


COLUMNS = (
    "tenant", "cost_centre", "item", "quantity", "unit", "unit_price", "price_per", "cost",
)  # fmt: skip


def rows(result: Report) -> list[dict[str, object]]:
    """One dict per line, then one total per tenant and a grand total (item ``total``)."""
    found: list[dict[str, object]] = []
    centres = {line.tenant: line.cost_centre for line in result.lines}
    totals = result.totals()
    for tenant in totals:
        for line in result.lines:
            if line.tenant == tenant:
                found.append(
                    {
                        "tenant": line.tenant,
                        "cost_centre": line.cost_centre,
                        "item": line.item,
                        "quantity": line.quantity,
                        "unit": line.unit,
                        "unit_price": line.unit_price,
                        "price_per": line.price_per,
                        "cost": line.cost,
                    }
                )
        found.append(_total(tenant, centres[tenant], totals[tenant]))
    found.append(_total("*", "*", result.total))
    return found


def _total(tenant: str, centre: str, cost: float) -> dict[str, object]:
    return {
        "tenant": tenant,
        "cost_centre": centre,
        "item": "total",
        "quantity": None,
        "unit": "",
        "unit_price": None,
        "price_per": "",
        "cost": cost,
    }


def to_csv(result: Report) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows(result):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def to_json(result: Report) -> str:
    import json

    return json.dumps(
        {
            "currency": result.currency,
            "gateway": result.gateway,
            "note": result.note,
            "lines": rows(result),
            "online_keys": {
                t: {"keys": o.keys, "sampled": o.sampled} for t, o in result.online.items()
            },
            "total": result.total,
        },
        indent=2,
    )
