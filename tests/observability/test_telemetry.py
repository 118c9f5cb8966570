"""Request ids, structured access logs and OpenTelemetry spans of the request path."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from featureplane.embedded.gateway import GatewayProcess
from featureplane.gateway.app import create_app
from featureplane.observability import tracing
from tests.support.deployment import Deployment
from tests.support.gateway import bearer

BODY = {"features": ["account_stats:txn_count_24h"], "entities": {"account_id": [1]}}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def test_request_ids_are_kept_derived_or_made(deployment: Deployment, http: httpx.Client) -> None:
    auth = bearer(deployment.tokens["fraud"])
    given = http.post("/get-online-features", json=BODY, headers=auth | {"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    traced = http.post(
        "/get-online-features", json=BODY, headers=auth | {"traceparent": TRACEPARENT}
    )
    assert traced.headers["x-request-id"] == TRACE_ID
    made = http.post(
        "/get-online-features", json=BODY, headers=auth | {"X-Request-ID": "bad id\t!"}
    )
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert http.get("/health").headers["x-request-id"]


def test_access_log_is_one_json_object_per_request(
    deployment: Deployment, gateway: GatewayProcess, http: httpx.Client
) -> None:
    http.post(
        "/get-online-features",
        json=BODY,
        headers=bearer(deployment.tokens["fraud"]) | {"X-Request-ID": "log-check-1"},
    )
    http.post("/get-online-features", json=BODY, headers={"X-Request-ID": "log-check-2"})
    by_id: dict[str, dict[str, object]] = {}
    deadline = time.monotonic() + 5
    while not {"log-check-1", "log-check-2"} <= by_id.keys() and time.monotonic() < deadline:
        time.sleep(0.05)  # each line is written once its response has gone out
        lines = [x for x in gateway.log.read_text().splitlines() if x.startswith("{")]
        by_id = {entry.get("request_id"): entry for entry in map(json.loads, lines)}
    ok, refused = by_id["log-check-1"], by_id["log-check-2"]
    assert ok["tenant"] == "fraud"
    assert ok["route"] == "/get-online-features"
    assert ok["status"] == 200
    assert isinstance(ok["latency_ms"], float)
    assert ok["latency_ms"] > 0
    assert ok["level"] == "info"
    assert refused["status"] == 401
    assert refused["tenant"] == "-"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    tracing.configure_tracing("featureplane-gateway")  # off again for the rest of the session


def test_request_path_is_traced_under_the_callers_trace(
    deployment: Deployment, spans: InMemorySpanExporter
) -> None:
    app = create_app(deployment.settings, span_exporter=spans)

    async def call() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                headers = bearer(deployment.tokens["fraud"]) | {"traceparent": TRACEPARENT}
                return await client.post("/get-online-features", json=BODY, headers=headers)

    assert asyncio.run(call()).status_code == 200
    finished = {s.name: s for s in spans.get_finished_spans()}
    assert {"auth", "quota", "store.read", "encode", "POST /get-online-features"} <= set(finished)
    root = finished["POST /get-online-features"]
    assert root.context is not None
    assert root.parent is not None
    assert root.attributes is not None
    assert format(root.context.trace_id, "032x") == TRACE_ID
    assert format(root.parent.span_id, "016x") == "00f067aa0ba902b7"  # the caller's span
    for name in ("auth", "quota", "store.read", "encode"):
        child = finished[name]
        assert child.context is not None
        assert child.parent is not None
        assert child.context.trace_id == root.context.trace_id
        assert child.parent.span_id == root.context.span_id
    assert root.attributes["featureplane.tenant"] == "fraud"
    assert root.attributes["http.status_code"] == 200


def test_tracing_off_costs_nothing() -> None:
    tracing.configure_tracing("featureplane-gateway")
    assert not tracing.enabled()
    assert tracing.span("auth") is tracing.span("store.read")  # one shared no-op, nothing created
