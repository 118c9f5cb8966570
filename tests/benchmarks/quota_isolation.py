"""Quota benchmark (not a test; `make bench-quotas`).

On one machine, in one run: tenant B's raw latency alone and while tenant A floods the gateway
at many times its quota, and the gateway's throughput with quotas on and off. Prints a table and
writes JSON. Everything runs on loopback: a throwaway Redis, a SQLite registry, the real gateway
(`featureplane serve`, 2 workers), wrk and hey.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from featureplane.demo import deploy_samples
from featureplane.embedded import EmbeddedRedis, GatewayProcess, free_port
from featureplane.settings import Settings
from featureplane.tenancy.catalog import TenantCatalog
from tests.benchmarks.loadtools import hey, publish, wrk
from tests.support.tenants import tenants_with_quotas

ROOT = Path(__file__).resolve().parents[2]
A, B = "fraud", "recsys"
A_RATE = 100
A_BODY = {"features": ["account_stats:txn_count_24h"], "entities": {"account_id": [1]}}
B_BODY = {
    "features": ["user_profile:favourite_genre", "user_profile:sessions_7d"],
    "entities": {"user_id": ["u000004"]},
}


def _tenants(tmp: Path) -> Path:
    return tenants_with_quotas(
        tmp,
        {
            A: {"requests_per_second": A_RATE, "burst": A_RATE},
            B: {"requests_per_second": 1e6, "burst": 1_000_000},
        },
    )


def run(seconds: float, b_rate: int) -> dict[str, Any]:
    results: dict[str, Any] = {"a_quota_rps": A_RATE, "b_rate_rps": b_rate, "seconds": seconds}
    with tempfile.TemporaryDirectory(prefix="fp-bench-") as tmp, EmbeddedRedis() as redis_server:
        settings = Settings(
            redis_url=redis_server.url,
            data_dir=Path(tmp) / "data",
            tenants_dir=_tenants(Path(tmp)),
            feature_repo_dir=ROOT / "feature_repo",
        )
        catalog = TenantCatalog.load(settings.tenants_path, settings.feature_repo_path)
        tokens = deploy_samples(settings, catalog, 1000, datetime.now(UTC)).tokens

        with GatewayProcess(settings, free_port(), workers=2) as gw:
            url = f"{gw.base}/get-online-features"
            wrk(url, tokens[B], B_BODY, 8, 3)  # warm-up
            results["b_alone"] = hey(url, tokens[B], B_BODY, b_rate, seconds).__dict__
            # A at 10x its quota (hey, paced), then A as fast as the gateway answers (wrk, c=64).
            floods: dict[str, Callable[[], Any]] = {
                "10x": partial(hey, url, tokens[A], A_BODY, 10 * A_RATE, seconds + 4, 8),
                "unbounded": partial(wrk, url, tokens[A], A_BODY, 64, seconds + 4),
            }
            for name, flood in floods.items():
                with ThreadPoolExecutor(1) as pool:
                    outcome = pool.submit(flood)
                    time.sleep(2)
                    crowded = hey(url, tokens[B], B_BODY, b_rate, seconds)
                    results[f"b_under_{name}_flood"] = crowded.__dict__
                    results[f"a_{name}_flood"] = outcome.result().__dict__
            results["throughput_quotas_on"] = wrk(url, tokens[B], B_BODY, 32, seconds).__dict__
        off = settings.model_copy(update={"quotas_enabled": False})
        with GatewayProcess(off, free_port(), workers=2) as gw:
            url = f"{gw.base}/get-online-features"
            wrk(url, tokens[B], B_BODY, 8, 3)
            results["throughput_quotas_off"] = wrk(url, tokens[B], B_BODY, 32, seconds).__dict__
    return results


def table(r: dict[str, Any]) -> str:
    def lat(key: str) -> str:
        return f"{r[key]['p50_ms']:.2f} / {r[key]['p99_ms']:.2f} ms, statuses {r[key]['statuses']}"

    paced, unbounded = r["a_10x_flood"], r["a_unbounded_flood"]
    on, off = r["throughput_quotas_on"]["rps"], r["throughput_quotas_off"]["rps"]
    paced_ok = paced["statuses"].get(200, 0)
    paced_all = sum(paced["statuses"].values())
    rows = [
        (f"B p50 / p99 alone ({r['b_rate_rps']} req/s, hey)", lat("b_alone")),
        (
            f"A paced at 10x its {r['a_quota_rps']} req/s quota",
            f"{paced_ok} of {paced_all} admitted",
        ),
        ("B p50 / p99 under the 10x flood", lat("b_under_10x_flood")),
        (
            "A unbounded (wrk, c=64)",
            f"{unbounded['rps']:.0f} req/s = {unbounded['rps'] / r['a_quota_rps']:.0f}x its quota, "
            f"{unbounded['non_2xx']} of {unbounded['requests']} refused",
        ),
        ("B p50 / p99 under the unbounded flood", lat("b_under_unbounded_flood")),
        ("throughput, quotas on (wrk c=32)", f"{on:.0f} req/s"),
        ("throughput, quotas off (wrk c=32)", f"{off:.0f} req/s"),
        ("quotas on / off", f"{on / off:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--b-rate", type=int, default=100, help="B's requests/s")
    parser.add_argument("--out", type=Path, default=Path(".featureplane/bench/quotas.json"))
    args = parser.parse_args()
    results = run(args.seconds, args.b_rate)
    publish(results, args.out, table(results))


if __name__ == "__main__":
    main()
