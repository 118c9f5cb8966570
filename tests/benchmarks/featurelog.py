"""The feature logging part of `make bench` (scenario ``logging``, run by
:mod:`tests.benchmarks.serving`).

Twin feature services of the sample tenant pricing read the same three features of
``product_price``: ``bench_logged`` has a ``logging_config`` (sample rate 1.0, Feast's file
destination), ``bench_unlogged`` has none. The gateway (2 processes, auth, quotas and metrics
on) answers both; wrk at 8 connections alternates between them, :data:`PAIRS` phases each, for 1
and for 100 stored (store_id, sku) per request, so drift on a shared machine hits both alike.
The ratio is the logged phases' total rate over the unlogged ones'. After the run, the rows
found in the log folder (Feast's logged-features Parquet) are counted against the rows the
logged phases answered: what was logged, not merely what was served (a few more are logged
than wrk counts: the requests in flight when a phase ends are answered, and logged, after it).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from tests.benchmarks.loadtools import wrk_bodies

TENANT = "pricing"
LOGGED, UNLOGGED = "bench_logged", "bench_unlogged"
LOG_FOLDER = "logs/bench"  # relative: in the tenant's repo folder, as Feast resolves it
ROWS = (1, 100)
PAIRS = 3
CONNECTIONS = 8
BODIES = 32
TARGET_RATIO = 0.9

# Appended to the copy of the tenant's definitions the benchmark deploys.
TWINS = f'''

_BENCH_FEATURES = [product_price[["price", "discount_pct", "in_stock"]]]
{LOGGED} = FeatureService(
    name="{LOGGED}",
    features=_BENCH_FEATURES,
    logging_config=LoggingConfig(
        destination=FileLoggingDestination(path="{LOG_FOLDER}"), sample_rate=1.0
    ),
    description="Benchmark: three features of product_price, logged.",
    owner=OWNER,
)
{UNLOGGED} = FeatureService(
    name="{UNLOGGED}",
    features=_BENCH_FEATURES,
    description="Benchmark: the same features, not logged.",
    owner=OWNER,
)
'''
IMPORTS = (
    "from feast.feature_logging import LoggingConfig\n"
    "from feast.infra.offline_stores.file_source import FileLoggingDestination\n"
)


def add_twins(repo: Path) -> None:
    """The twin services, in the copy of the tenant's repo at ``repo``."""
    definitions = repo / f"{TENANT}_definitions.py"
    definitions.write_text(IMPORTS + definitions.read_text() + TWINS)


def bodies(tables: dict[str, dict[str, pa.Table]]) -> dict[int, list[list[list[Any]]]]:
    """Per entity-row count, :data:`BODIES` random sets of stored (store_id, sku)."""
    rng = random.Random(20261208)
    prices = tables[TENANT]["price_updates"].select(["store_id", "sku"]).to_pylist()
    keys = sorted({(r["store_id"], r["sku"]) for r in prices})
    return {
        rows: [[list(k) for k in rng.sample(keys, rows)] for _ in range(BODIES)] for rows in ROWS
    }


def _requests(service: str, entity_sets: list[list[list[Any]]]) -> list[dict[str, Any]]:
    return [
        {
            "feature_service": service,
            "entities": {"store_id": [k[0] for k in keys], "sku": [k[1] for k in keys]},
        }
        for keys in entity_sets
    ]


def measure(
    base: str, token: str, entity_sets: dict[int, list[list[list[Any]]]], seconds: float
) -> dict[str, Any]:
    """wrk phases, alternating logged and unlogged, per entity-row count."""
    out: dict[str, Any] = {}
    for rows, sets in entity_sets.items():
        logged, unlogged = _requests(LOGGED, sets), _requests(UNLOGGED, sets)
        wrk_bodies(base, token, unlogged, CONNECTIONS, 3)  # warm-up
        phases: dict[str, list[dict[str, Any]]] = {LOGGED: [], UNLOGGED: []}
        for _ in range(PAIRS):
            for service, requests in ((LOGGED, logged), (UNLOGGED, unlogged)):
                phases[service].append(wrk_bodies(base, token, requests, CONNECTIONS, seconds))
        out[str(rows)] = phases
    return out


def logged_rows(repo: Path) -> int:
    """Rows in the log folder (Feast's logged-features Parquet files)."""
    folder = repo / LOG_FOLDER
    files = [str(p) for p in folder.rglob("*.parquet") if not p.parent.name.startswith(".")]
    return ds.dataset(files, format="parquet").count_rows() if files else 0


def _rate(phases: list[dict[str, Any]]) -> float:
    """Requests over time across ``phases`` (each measured ``requests`` at ``rps``)."""
    seconds = sum(p["requests"] / p["rps"] for p in phases if p["rps"])
    return sum(p["requests"] for p in phases) / seconds if seconds else 0.0


def summary(r: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per entity-row count: each service's rate, the ratio, and its errors."""
    out = {}
    for rows, phases in r["phases"].items():
        logged, unlogged = _rate(phases[LOGGED]), _rate(phases[UNLOGGED])
        errors = sum(p["errors"] for side in phases.values() for p in side)
        out[rows] = {"logged": logged, "unlogged": unlogged, "ratio": logged / unlogged,
                     "errors": errors}  # fmt: skip
    return out


def answered_rows(r: dict[str, Any]) -> int:
    """Entity rows the logged phases were answered (2xx) for."""
    return sum(
        int(rows) * (p["requests"] - p["errors"])
        for rows, phases in r["phases"].items()
        for p in phases[LOGGED]
    )


def targets(r: dict[str, Any]) -> list[tuple[str, float, float, bool]]:
    checks = []
    for rows, s in summary(r).items():
        clean = s["errors"] == 0
        name = f"logging on / off, {rows} entity rows{'' if clean else ' (ERRORS)'}"
        checks.append((name, s["ratio"], TARGET_RATIO, clean and s["ratio"] >= TARGET_RATIO))
    share = r["logged_rows"] / max(answered_rows(r), 1)
    checks.append(("logging: rows logged / rows answered", share, 1.0, share >= 0.999))
    return checks


def table(r: dict[str, Any]) -> list[str]:
    lines = [
        f"feature logging (wrk c{CONNECTIONS}, {PAIRS} alternating phases each, sample rate 1.0, "
        "3 features), req/s"
    ]
    for rows, s in summary(r).items():
        lines.append(
            f"  {rows:>3} entity rows: logged {s['logged']:8.0f}  unlogged {s['unlogged']:8.0f}"
            f"  ratio {s['ratio']:.2f}" + (f"  ERRORS {s['errors']}" if s["errors"] else "")
        )
    lines.append(f"  rows in the log folder {r['logged_rows']:,} of {answered_rows(r):,} answered")
    return lines
