"""Per-request telemetry as one pure ASGI middleware (no BaseHTTPMiddleware: cheap and
streaming-safe): request id, the server span, the latency histogram and the access log line.

The request id is the caller's ``X-Request-ID`` when it is sane, else the W3C ``traceparent``
trace id, else a new one (a random per-process prefix and a counter: unique, and cheaper than a
UUID per request); it is returned in ``X-Request-ID``. The tenant label is what
authentication stored in ``scope["state"]``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from featureplane.observability import tracing
from featureplane.observability.logging import ACCESS_LOGGER
from featureplane.observability.metrics import (
    REQUEST_DURATION,
    UNAUTHENTICATED,
    buffered_histogram,
)

# A caller's id is echoed and logged: never one that is a bearer token (sent there by mistake).
_REQUEST_ID = re.compile(r"^(?!fpt_)[A-Za-z0-9._:-]{1,128}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
access_log = logging.getLogger(ACCESS_LOGGER)
_UNTRACED = contextlib.nullcontext()
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count()


def request_id(given: str, traceparent: str) -> str:
    if given and _REQUEST_ID.match(given):
        return given
    match = _TRACEPARENT.match(traceparent) if traceparent else None
    if match and match.group(1) != "0" * 32:
        return match.group(1)
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


class RequestTelemetryMiddleware:
    def __init__(self, app: ASGIApp, access_log_enabled: bool = True) -> None:
        self.app = app
        self.access_log_enabled = access_log_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = traceparent = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value.decode("latin-1")
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
        rid = request_id(given, traceparent)
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        status = 500
        rid_header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        traced = (
            tracing.server_span(
                f"{scope['method']} request",
                {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
                **{"http.request_id": rid},
            )
            if tracing.enabled()
            else _UNTRACED
        )
        with traced as span:
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                template = getattr(scope.get("route"), "path", "unmatched")
                tenant = state.get("tenant", UNAUTHENTICATED)
                labels = (tenant, template, f"{status // 100}xx")
                buffered_histogram(REQUEST_DURATION, *labels).observe(elapsed)
                if span is not None:
                    span.update_name(f"{scope['method']} {template}")
                    span.set_attributes(
                        {
                            "http.route": template,
                            "http.status_code": status,
                            "featureplane.tenant": tenant,
                        }
                    )
                if self.access_log_enabled:
                    access_log.info(
                        "request",
                        extra={
                            "fields": {
                                "request_id": rid,
                                "tenant": tenant,
                                "method": scope["method"],
                                "route": template,
                                "status": status,
                                "latency_ms": round(elapsed * 1000, 3),
                            }
                        },
                    )
