"""Soak (not a test; `make soak`): two tenants at half the gateway's maximum rate for 10 minutes.

On one machine, in one run: a throwaway Redis, a SQLite registry, the real gateway
(`featureplane serve`, 2 workers, auth, quotas, metrics and the access log on). wrk first finds
the maximum rate with both tenants calling at once; then hey paces each tenant at a quarter of it
(half in all), one minute at a time, while the gateway's processes' RSS is sampled every 5 s.

Pass: no answer other than 200, RSS growth under 10 % from the end of the first minute to the
end, every minute's p99 within twice the median minute's, and the same worker processes at the
end as at the start (none died and was replaced). Prints a table, writes JSON, exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from featureplane.demo import deploy_samples
from featureplane.embedded import EmbeddedRedis, GatewayProcess, free_port
from featureplane.settings import Settings
from featureplane.tenancy.catalog import TenantCatalog
from tests.benchmarks.loadtools import hey, publish, wrk
from tests.support.tenants import tenants_with_quotas

ROOT = Path(__file__).resolve().parents[2]
BODIES = {
    "fraud": {
        "features": ["account_stats:txn_count_24h", "account_stats:txn_amount_avg_7d"],
        "entities": {"account_id": [1, 2, 3]},
    },
    "recsys": {
        "features": ["user_profile:favourite_genre", "user_profile:sessions_7d"],
        "entities": {"user_id": ["u000004"]},
    },
}
CONNECTIONS = 8  # per tenant, for hey
SAMPLE_SECONDS = 5.0


class RssSampler(threading.Thread):
    """The summed RSS of a process tree, every ``SAMPLE_SECONDS``, and the PIDs seen."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def pids(self) -> set[int]:
        return {self.root.pid} | {p.pid for p in self.root.children(recursive=True)}

    def rss(self) -> int:
        procs = [self.root, *self.root.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs)

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop.wait(SAMPLE_SECONDS):
            self.samples.append((time.monotonic() - start, self.rss()))

    def at(self, seconds: float) -> int:
        """The last sample taken at or before ``seconds`` into the run."""
        return [rss for t, rss in self.samples if t <= seconds][-1]


def _both(call: Any, *args: Any) -> dict[str, Any]:
    """``call(url, token, body, *args)`` for both tenants at once."""
    with ThreadPoolExecutor(len(BODIES)) as pool:
        futures = {t: pool.submit(call, t, *args) for t in BODIES}
        return {t: f.result() for t, f in futures.items()}


def run(minutes: int, fraction: float) -> dict[str, Any]:
    results: dict[str, Any] = {"minutes": minutes, "fraction_of_max": fraction}
    with tempfile.TemporaryDirectory(prefix="fp-soak-") as tmp, EmbeddedRedis() as redis_server:
        unlimited = {
            "requests_per_second": 1e6,
            "burst": 1_000_000,
            "max_concurrent_requests": 10_000,
        }
        settings = Settings(
            redis_url=redis_server.url,
            data_dir=Path(tmp) / "data",
            tenants_dir=tenants_with_quotas(Path(tmp), dict.fromkeys(BODIES, unlimited)),
            feature_repo_dir=ROOT / "feature_repo",
        )
        catalog = TenantCatalog.load(settings.tenants_path, settings.feature_repo_path)
        tokens = deploy_samples(settings, catalog, 1000, datetime.now(UTC)).tokens

        with GatewayProcess(settings, free_port(), workers=2) as gw:
            url = f"{gw.base}/get-online-features"

            def wrk_tenant(tenant: str, seconds: float) -> Any:
                return wrk(url, tokens[tenant], BODIES[tenant], 16, seconds)

            def hey_tenant(tenant: str, rate: int) -> Any:
                return hey(url, tokens[tenant], BODIES[tenant], rate, 60, CONNECTIONS)

            _both(wrk_tenant, 3)  # warm-up
            peak = _both(wrk_tenant, 15)
            max_rps = sum(r.rps for r in peak.values())
            per_tenant = int(max_rps * fraction / len(BODIES))
            results |= {"max_rps": round(max_rps), "rate_per_tenant": per_tenant}

            assert gw._proc is not None
            sampler = RssSampler(gw._proc.pid)
            pids_before = sampler.pids()
            sampler.start()
            results["minutes_table"] = []
            try:
                for minute in range(1, minutes + 1):
                    outcome = _both(hey_tenant, per_tenant)
                    row = {t: r.__dict__ for t, r in outcome.items()}
                    results["minutes_table"].append(row)
                    print(f"minute {minute}: " + _minute_line(row), flush=True)
            finally:
                sampler.stop.set()
                sampler.join()
            results["rss_samples"] = sampler.samples
            results["rss_after_first_minute_mb"] = sampler.at(60) / 2**20
            results["rss_end_mb"] = sampler.samples[-1][1] / 2**20
            results["same_processes"] = sampler.pids() == pids_before
    return results


def _minute_line(row: dict[str, Any]) -> str:
    return ", ".join(
        f"{t} p50/p99 {r['p50_ms']:.2f}/{r['p99_ms']:.2f} ms {r['statuses']}"
        for t, r in row.items()
    )


def verdicts(r: dict[str, Any]) -> list[tuple[str, str, bool]]:
    rows = r["minutes_table"]
    answered = sum(sum(s.values()) for row in rows for s in (x["statuses"] for x in row.values()))
    ok = sum(x["statuses"].get(200, 0) for row in rows for x in row.values())
    growth = r["rss_end_mb"] / r["rss_after_first_minute_mb"] - 1
    p99s = {t: [row[t]["p99_ms"] for row in rows] for t in BODIES}
    stable = all(max(v) <= 2 * statistics.median(v) for v in p99s.values())
    spread = "; ".join(
        f"{t} {min(v):.2f}-{max(v):.2f} ms (median {statistics.median(v):.2f})"
        for t, v in p99s.items()
    )
    return [
        ("answers that were not 200", f"{answered - ok} of {answered}", answered == ok),
        (
            "RSS, end of minute 1 -> end",
            f"{r['rss_after_first_minute_mb']:.0f} -> {r['rss_end_mb']:.0f} MB ({growth:+.1%})",
            growth < 0.10,
        ),
        ("per-minute p99 (max <= 2x median)", spread, stable),
        (
            "worker processes replaced",
            "none" if r["same_processes"] else "yes",
            r["same_processes"],
        ),
    ]


def table(r: dict[str, Any]) -> str:
    lines = [
        f"max (wrk, both tenants, c=16 each): {r['max_rps']} req/s; soak at "
        f"{r['fraction_of_max']:.0%} = {r['rate_per_tenant']} req/s per tenant for {r['minutes']} min",
    ]
    lines += [
        f"{label:36}  {value}  {'ok' if good else 'MISS'}" for label, value, good in verdicts(r)
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--fraction", type=float, default=0.5, help="of the measured max rate")
    parser.add_argument("--out", type=Path, default=Path(".featureplane/bench/soak.json"))
    args = parser.parse_args()
    results = run(args.minutes, args.fraction)
    publish(results, args.out, table(results))
    if not all(good for _, _, good in verdicts(results)):
        sys.exit(1)


if __name__ == "__main__":
    main()
