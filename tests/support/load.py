"""A small paced HTTP load generator for the quota tests (asyncio + aiohttp, bounded in time).

aiohttp rather than httpx: its client costs a fraction of the CPU per request, and the load
generator shares two cores with the gateways it measures.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class LoadResult:
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + len(self.errors)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def paced(
    bases: list[str],
    token: str,
    body: dict[str, Any],
    rate: float,
    seconds: float,
    concurrency: int = 64,
) -> LoadResult:
    """Send ``rate`` requests/s for ``seconds``, round-robin over ``bases`` (open loop, capped)."""
    result = LoadResult()
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    gate = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(url: str) -> None:
            async with gate:
                started = time.perf_counter()
                try:
                    async with session.post(url, json=body, headers=headers) as resp:
                        await resp.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    result.errors.append(type(exc).__name__)
                    return
                result.latencies.append(time.perf_counter() - started)
                result.statuses[resp.status] += 1

        total = int(rate * seconds)
        start = time.perf_counter()
        tasks = []
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            url = f"{bases[i % len(bases)]}/get-online-features"
            tasks.append(asyncio.create_task(one(url)))
        await asyncio.gather(*tasks)
        result.seconds = time.perf_counter() - start
    return result
