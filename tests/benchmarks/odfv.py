"""The on-demand feature view part of `make bench` (run by :mod:`tests.benchmarks.serving`).

Against stock `feast serve` (tuned flags, one server per Feast project, as Feast serves) over the
same registry and Redis, with the same requests, and the featureplane gateway (2 processes, auth,
quotas and metrics on, each sample tenant's default ``transforms``: 1 worker per gateway process):

- ``python_singleton_1``: pricing's ``checkout_price:final_price`` (python mode, singleton, over
  ``product_price``), 1 random stored (store_id, sku) per request, wrk at 8 and 32 connections;
- ``plain_1``: the same entities asking ``product_price:price`` and ``:discount_pct`` (the view
  the ODFV reads), for the cost of the transformation;
- ``paced_1``: raw p50 / p99 (hey, 1 connection, paced at :data:`PACED_RATE` req/s) of one
  entity's ODFV request and of its plain request: the p50 the ODFV adds;
- ``pandas_100``: fraud's ``transaction_risk:amount_vs_avg`` and ``:is_large`` (pandas mode,
  over ``account_stats`` and the request field ``txn_amount``), 100 random stored accounts with
  a ``txn_amount`` each, wrk at 8 and 32 connections.

One request of each ODFV scenario is sent to both servers and their computed values compared
(``agree``: equal and not all null). Each scenario warms up until it answers no error (at most
:data:`WARM_UPS` times); one still failing is measured all the same, its first error quoted, and
a cell with errors misses its target whatever its ratio (fast errors are no throughput).
"""

from __future__ import annotations

import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

from tests.benchmarks.loadtools import hey, wrk_bodies

PRICING, FRAUD = "pricing", "fraud"
SINGLETON = ["checkout_price:final_price"]
PLAIN = ["product_price:price", "product_price:discount_pct"]
PANDAS = ["transaction_risk:amount_vs_avg", "transaction_risk:is_large"]
CONNECTIONS = (8, 32)
PACED_RATE = 200  # req/s, 1 connection: well under either server's maximum
BODIES = 64  # distinct bodies per scenario, drawn at random by wrk
UNLIMITED = {
    "requests_per_second": 1_000_000, "burst": 1_000_000, "max_concurrent_requests": 10_000,
}  # fmt: skip
SCENARIOS = {  # key -> (tenant, label)
    "python_singleton_1": (PRICING, "checkout_price (python, singleton), 1 entity"),
    "plain_1": (PRICING, "product_price:price,discount_pct (no ODFV), 1 entity"),
    "pandas_100": (FRAUD, "transaction_risk (pandas, request data), 100 entities"),
}
WIDTH = 30  # of a table cell
WARM_UPS = 5  # 3 s each
TARGET_RATIO = 4.0
TARGET_ADDED_P50_MS = 1.0


def bodies(tables: dict[str, dict[str, pa.Table]]) -> dict[str, list[dict[str, Any]]]:
    """The requests of each scenario, over entities stored by the sample deployment."""
    rng = random.Random(20261207)
    prices = tables[PRICING]["price_updates"].select(["store_id", "sku"]).to_pylist()
    keys = sorted({(r["store_id"], r["sku"]) for r in prices})
    picked = rng.sample(keys, BODIES)

    def one(features: list[str], key: tuple[int, str]) -> dict[str, Any]:
        return {"features": features, "entities": {"store_id": [key[0]], "sku": [key[1]]}}

    accounts = sorted(set(tables[FRAUD]["account_activity"].column("account_id").to_pylist()))
    batches = []
    for _ in range(BODIES):
        ids = rng.sample(accounts, 100)
        amounts = [round(rng.uniform(1.0, 2000.0), 2) for _ in ids]
        batches.append({"features": PANDAS, "entities": {"account_id": ids, "txn_amount": amounts}})
    return {
        "python_singleton_1": [one(SINGLETON, k) for k in picked],
        "plain_1": [one(PLAIN, k) for k in picked],
        "pandas_100": batches,
    }


def feast_serve_cmd(feast: Path, repo: Path, config: Path, port: int) -> list[str]:
    """Stock `feast serve` with the tuned flags of the reference baseline."""
    return [str(feast), "-c", str(repo), "-f", str(config), "serve", "-h", "127.0.0.1",
            "-p", str(port), "-w", "2", "--no-access-log", "--max-requests", "0"]  # fmt: skip


def _columns(answer: dict[str, Any]) -> dict[str, list[Any]]:
    names = answer["metadata"]["feature_names"]
    return {n: r["values"] for n, r in zip(names, answer["results"], strict=True)}


def computed(base: str, token: str | None, body: dict[str, Any]) -> dict[str, list[Any]]:
    """One answer's ODFV columns (by short feature name)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = httpx.post(f"{base}/get-online-features", json=body, headers=headers, timeout=30)
    if resp.status_code != 200:
        raise RuntimeError(f"{base}: HTTP {resp.status_code}: {resp.text[:500]}")
    wanted = {f.split(":")[1] for f in body["features"]}
    return {k: v for k, v in _columns(resp.json()).items() if k in wanted}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def agree(ours: dict[str, list[Any]], theirs: dict[str, list[Any]]) -> bool:
    """Same columns, same values, and not all null (a benchmark of nulls measures nothing)."""
    if sorted(ours) != sorted(theirs):
        return False
    pairs = [(a, b) for k in ours for a, b in zip(ours[k], theirs[k], strict=True)]
    return all(_same(a, b) for a, b in pairs) and any(a is not None for a, _ in pairs)


def agrees(base: str, token: str, body: dict[str, Any], theirs: dict[str, list[Any]]) -> bool:
    """Whether the gateway computes ``theirs`` for ``body``; an error answer is a no (quoted)."""
    try:
        ours = computed(base, token, body)
    except RuntimeError as exc:
        print(f"ODFV answer check: {exc}", file=sys.stderr)
        return False
    return agree(ours, theirs)


def measure(
    base: str, token: str | None, scenarios: dict[str, list[dict[str, Any]]], seconds: float
) -> dict[str, Any]:
    """wrk cells per scenario and connection count, then the paced latency pair, on one server.

    ``scenarios`` holds only what this server serves (feast serve: one project)."""
    out: dict[str, Any] = {}
    for key, requests in scenarios.items():
        for _ in range(WARM_UPS):  # a server answering non-2xx may not be warm yet
            warm = wrk_bodies(base, token or "none", requests, 8, 3, capture=True)
            if warm["errors"] == 0:
                break
            time.sleep(2)
        else:  # measured all the same: the cells count the errors and the table quotes one
            out.setdefault("failures", {})[key] = warm.get("failure", "socket errors or timeouts")
        out[key] = {
            f"c{c}": wrk_bodies(base, token or "none", requests, c, seconds) for c in CONNECTIONS
        }
    if "python_singleton_1" in scenarios:
        url = f"{base}/get-online-features"
        paced = {}
        for key in ("plain_1", "python_singleton_1"):
            result = hey(url, token or "none", scenarios[key][0], PACED_RATE, seconds)
            paced[key] = result.__dict__
        out["paced_1"] = paced
    return out


def targets(r: dict[str, Any]) -> list[tuple[str, float, float, bool]]:
    """(name, measured, target, met), as :func:`tests.benchmarks.serving.targets`."""
    feast, ours = r["feast serve"], r["gateway"]
    checks: list[tuple[str, float, float, bool]] = []
    for key, what in (("python_singleton_1", "python singleton, 1 ent"),
                      ("pandas_100", "pandas, 100 ent")):  # fmt: skip
        for cell in ours[key]:
            ratio = ours[key][cell]["rps"] / feast[key][cell]["rps"]
            # fast errors are no throughput: a cell with any is a miss whatever its ratio
            clean = ours[key][cell]["errors"] == 0 and feast[key][cell]["errors"] == 0
            name = f"ODFV gateway / feast, {what}, {cell}{'' if clean else ' (ERRORS)'}"
            checks.append((name, ratio, TARGET_RATIO, clean and ratio >= TARGET_RATIO))
    paced = ours["paced_1"]
    added = paced["python_singleton_1"]["p50_ms"] - paced["plain_1"]["p50_ms"]
    checks.append(("ODFV p50 added by the gateway, ms", added, TARGET_ADDED_P50_MS,
                   added <= TARGET_ADDED_P50_MS))  # fmt: skip
    errors = sum(
        cell["errors"] for side in (feast, ours) for key in SCENARIOS for cell in side[key].values()
    )
    checks.append(("ODFV cells' errors (non-2xx, timeouts)", errors, 0, errors == 0))
    checks.append(("ODFV answers equal feast serve's", float(all(r["agree"].values())), 1,
                   all(r["agree"].values())))  # fmt: skip
    return checks


def _cell(m: dict[str, Any]) -> str:
    text = f"{m['rps']:7.0f} {m['p50_ms']:5.2f}/{m['p99_ms']:<5.1f}"
    if m["errors"]:  # the share of answers that were errors, not features
        text += f" ERR {m['errors'] / max(m['requests'], 1):.0%}"
    return text.ljust(WIDTH)


def table(r: dict[str, Any]) -> list[str]:
    feast, ours = r["feast serve"], r["gateway"]
    cells = [f"c{c}" for c in CONNECTIONS]
    header = "".join(f"{c:>7}".ljust(WIDTH) for c in cells)
    lines = [
        f"{'on-demand feature views (wrk, random stored entities), req/s p50/p99 ms':<76}{header}"
    ]
    for key, (tenant, label) in SCENARIOS.items():
        lines.append(f"  {label}")
        for name, side in ((f"feast serve (tuned, w=2, project {tenant})", feast),
                           ("featureplane gateway (w=2)", ours)):  # fmt: skip
            row = "".join(_cell(side[key][c]) for c in cells)
            lines.append(f"    {name:<72}{row}")
        ratios = "".join(
            f"{ours[key][c]['rps'] / feast[key][c]['rps']:7.2f}".ljust(WIDTH) for c in cells
        )
        lines.append(f"    {'gateway / feast serve':<72}{ratios}")
    lines.append(
        f"ODFV raw p50 / p99 ms (hey, 1 connection at {r['paced_rate']} req/s), 1 entity: "
        "plain -> checkout_price (added p50)"
    )
    for name, side in (("feast serve", feast), ("featureplane gateway", ours)):
        plain, odfv = side["paced_1"]["plain_1"], side["paced_1"]["python_singleton_1"]
        lines.append(
            f"  {name:<22} {plain['p50_ms']:.2f} / {plain['p99_ms']:.2f} -> "
            f"{odfv['p50_ms']:.2f} / {odfv['p99_ms']:.2f}  (+{odfv['p50_ms'] - plain['p50_ms']:.2f})"
        )
    lines.append(
        "ODFV answers equal feast serve's: "
        + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in r["agree"].items())
    )
    for name, side in (("feast serve", feast), ("featureplane gateway", ours)):
        for key, failure in side.get("failures", {}).items():
            lines.append(f"  {name}, {key}: still failing after {WARM_UPS} warm-ups: {failure}")
    return [line.rstrip() for line in lines]
