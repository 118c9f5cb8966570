"""Cost per tenant: what it uses, priced by a configurable model.

Measured: requests served and entity rows read (the gateway's own counters, read from its
``/metrics``), rows materialized (run records in Redis), online bytes held in Redis (an
estimate, below) and the CPU/memory quota of tenant.yaml (``kubernetes.requests``/``limits``).

Online bytes: one SCAN of the keyspace (at most ``scan_limit`` keys; beyond that, counts are scaled
by DBSIZE; on a Redis Cluster the SCAN and DBSIZE cover every primary) attributes each feature key
to the tenant whose Feast project name ends it (longest project name first; ``featureplane:*``
control keys are skipped), then ``MEMORY USAGE key SAMPLES 0`` on up to ``sample_size`` keys per
tenant; the sampled mean times the tenant's key count is the estimate. Keys of a tenant are alike
(one hash per entity), so it is close, but it is an estimate, not an accounting. The gateway
recomputes it at most every :data:`REFRESH_SECONDS`, in a thread.

Prices (``FEATUREPLANE_COST_PRICES``: a YAML file; unset, :class:`Prices`' defaults) are
illustrative, not anyone's real rates.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import redis
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from featureplane.errors import ConfigError
from featureplane.observability import runs
from featureplane.tenancy.spec import TenantSpec

if TYPE_CHECKING:
    from featureplane.settings import Settings

CONTROL_PREFIX = b"featureplane:"
REFRESH_SECONDS = 60.0
GIB = 1024**3
_UNITS = {
    "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 1024.0, "Mi": 1024.0**2, "Gi": 1024.0**3, "Ti": 1024.0**4,
}  # fmt: skip


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


def quantity(text: str) -> float:
    """A Kubernetes quantity (``500m``, ``2``, ``4Gi``) as a number (cores, bytes)."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(m|k|Ki|Mi|Gi|Ti|M|G|T)?", text)
    if match is None:
        raise ValueError(f"{text!r} is not a quantity")
    return float(match.group(1)) * _UNITS.get(match.group(2) or "", 1.0)


# -- online bytes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OnlineBytes:
    keys: int
    sampled: int
    bytes: float


def sample_online_bytes(
    client: redis.Redis,
    tenants: Sequence[TenantSpec],
    sample_size: int = 200,
    scan_limit: int = 1_000_000,
) -> dict[str, OnlineBytes]:
    """Estimated bytes of each tenant's online keys (see the module docstring)."""
    suffixes = sorted(
        ((spec.feast_project.encode(), spec.name) for spec in tenants),
        key=lambda pair: -len(pair[0]),
    )
    counts = {spec.name: 0 for spec in tenants}
    samples: dict[str, list[bytes]] = {spec.name: [] for spec in tenants}
    scanned = 0
    for key in client.scan_iter(count=1000):
        scanned += 1
        if not key.startswith(CONTROL_PREFIX):
            for suffix, tenant in suffixes:
                if key.endswith(suffix):
                    counts[tenant] += 1
                    if len(samples[tenant]) < sample_size:
                        samples[tenant].append(key)
                    break
        if scanned >= scan_limit:
            break
    scale = 1.0
    if scanned >= scan_limit:
        scale = max(1.0, float(_dbsize(client)) / scanned)
    pipe = client.pipeline(transaction=False)
    for tenant in counts:
        for key in samples[tenant]:
            pipe.execute_command("MEMORY USAGE", key, "SAMPLES", 0)
    sizes = iter(pipe.execute())
    found: dict[str, OnlineBytes] = {}
    for tenant, count in counts.items():
        measured = [float(next(sizes) or 0) for _ in samples[tenant]]
        mean = sum(measured) / len(measured) if measured else 0.0
        found[tenant] = OnlineBytes(round(count * scale), len(measured), mean * count * scale)
    return found


def _dbsize(client: redis.Redis) -> int:
    """Keys in the store: a cluster client answers for one node, so sum its primaries."""
    if isinstance(client, redis.Redis):
        return int(client.dbsize())
    sizes = client.dbsize(target_nodes="primaries")
    return sum(sizes.values()) if isinstance(sizes, dict) else int(sizes)


class OnlineBytesCache:
    """The gateway's cached estimate: recomputed in a thread at most every ``max_age``."""

    def __init__(self, client: redis.Redis, max_age: float = REFRESH_SECONDS) -> None:
        self._client = client
        self._max_age = max_age
        self._value: dict[str, OnlineBytes] | None = None
        self._at = 0.0
        self._task: asyncio.Task[dict[str, OnlineBytes]] | None = None

    async def get(self, tenants: Sequence[TenantSpec]) -> dict[str, OnlineBytes] | None:
        """The latest estimate; the first call waits for one, later ones never do."""
        if self._task is None and time.monotonic() - self._at >= self._max_age:
            self._task = asyncio.create_task(
                asyncio.to_thread(sample_online_bytes, self._client, list(tenants))
            )
            self._task.add_done_callback(self._done)
        if self._value is None and self._task is not None:
            await asyncio.wait([self._task])
        return self._value

    def _done(self, task: asyncio.Task[dict[str, OnlineBytes]]) -> None:
        self._task = None
        self._at = time.monotonic()
        if not task.cancelled() and task.exception() is None:
            self._value = task.result()


# -- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """What one tenant used; ``None``: not measured (no gateway reachable)."""

    tenant: str
    cost_centre: str
    requests: float | None
    entity_rows: float | None
    rows_materialized: float
    online_bytes: float
    cpu_request_cores: float
    cpu_limit_cores: float
    memory_request_bytes: float
    memory_limit_bytes: float


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


def quota(spec: TenantSpec) -> tuple[float, float, float, float]:
    """CPU requests, CPU limits (cores), memory requests, memory limits (bytes)."""
    k8s = spec.kubernetes
    return (
        quantity(k8s.requests.cpu),
        quantity(k8s.limits.cpu),
        quantity(k8s.requests.memory),
        quantity(k8s.limits.memory),
    )


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


def monthly_holdings(
    spec: TenantSpec, online_bytes: float | None, prices: Prices
) -> dict[str, float]:
    """Cost per month of what the tenant holds now (scrape-time gauges)."""
    cpu, _, memory, _ = quota(spec)
    held = {
        "cpu_quota": cpu * prices.per_cpu_core_month,
        "memory_quota": memory / GIB * prices.per_gib_month_memory,
    }
    if online_bytes is not None:
        held["online_storage"] = online_bytes / GIB * prices.per_gib_month_online
    return held


def gateway_counts(metrics_text: str) -> dict[str, tuple[float, float]]:
    """Requests and entity rows per tenant, from a gateway's ``/metrics`` text."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            tenant = sample.labels.get("tenant", "-")
            if tenant == "-":
                continue
            if sample.name == "featureplane_request_duration_seconds_count":
                found.setdefault(tenant, [0.0, 0.0])[0] += sample.value
            elif sample.name == "featureplane_entity_rows_total":
                found.setdefault(tenant, [0.0, 0.0])[1] += sample.value
    return {tenant: (pair[0], pair[1]) for tenant, pair in found.items()}


def usage(
    specs: Sequence[TenantSpec],
    rows_materialized: Mapping[str, float],
    online: Mapping[str, OnlineBytes],
    served: Mapping[str, tuple[float, float]] | None,
) -> list[Usage]:
    """``served`` is None when no gateway answered: requests and entity rows are unknown."""
    found = []
    for spec in specs:
        cpu, cpu_limit, memory, memory_limit = quota(spec)
        counts = None if served is None else served.get(spec.name, (0.0, 0.0))
        found.append(
            Usage(
                spec.name,
                spec.cost_centre,
                None if counts is None else counts[0],
                None if counts is None else counts[1],
                rows_materialized.get(spec.name, 0.0),
                online[spec.name].bytes if spec.name in online else 0.0,
                cpu,
                cpu_limit,
                memory,
                memory_limit,
            )
        )
    return found


_GATEWAY: dict[str, tuple[OnlineBytesCache, Prices]] = {}


def for_gateway(settings: Settings, prices_path: Path | None) -> tuple[OnlineBytesCache, Prices]:
    """This worker's online-bytes cache and price model (loaded once; a bad file fails the
    scrape loudly rather than pricing with defaults nobody chose)."""
    key = f"{settings.redis_type}|{settings.redis_url}|{prices_path}"
    if key not in _GATEWAY:
        client = settings.redis_client(socket_timeout=5.0)
        _GATEWAY[key] = (OnlineBytesCache(client), load_prices(prices_path))
    return _GATEWAY[key]


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


def fetch_counts(gateway: str) -> dict[str, tuple[float, float]]:
    """Requests and entity rows per tenant since the gateway started, from its /metrics."""
    import httpx

    answer = httpx.get(gateway.rstrip("/") + "/metrics", timeout=5.0)
    answer.raise_for_status()
    return gateway_counts(answer.text)


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
