"""Buffered request-path metrics end up exactly where direct updates would."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from featureplane.observability.metrics import (
    LATENCY_BUCKETS,
    BufferedCounter,
    BufferedHistogram,
)


def _exposition(registry: CollectorRegistry) -> list[str]:
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if "_created" not in line]


def test_buffered_updates_equal_direct_ones_after_flush() -> None:
    direct, buffered = CollectorRegistry(), CollectorRegistry()
    hists = [
        Histogram("h", "h", ["t"], buckets=LATENCY_BUCKETS, registry=registry)
        for registry in (direct, buffered)
    ]
    counters = [Counter("c", "c", ["t"], registry=registry) for registry in (direct, buffered)]
    hist, counter = (
        BufferedHistogram(hists[1].labels("a")),
        BufferedCounter(counters[1].labels("a")),
    )
    rng = random.Random(7)
    # Exact bucket bounds too: an observation equal to a bound belongs to that bucket.
    values = [rng.expovariate(500) for _ in range(2000)] + list(LATENCY_BUCKETS) + [99.0]
    for value in values:
        hists[0].labels("a").observe(value)
        hist.observe(value)
        counters[0].labels("a").inc(3)
        counter.inc(3)
    assert _exposition(direct) != _exposition(buffered)  # nothing moved before the flush
    hist.flush()
    counter.flush()
    assert _exposition(direct) == _exposition(buffered)
    hist.flush()  # a second flush adds nothing
    counter.flush()
    assert _exposition(direct) == _exposition(buffered)
