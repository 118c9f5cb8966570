"""Pure ASGI middleware recording every request's latency (no BaseHTTPMiddleware: cheap and
streaming-safe). The tenant label is what authentication stored in ``scope["state"]``."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from featureplane.observability.metrics import REQUEST_DURATION, UNAUTHENTICATED


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            tenant = scope.get("state", {}).get("tenant", UNAUTHENTICATED)
            labels = (tenant, template, f"{status // 100}xx")
            child = self._children.get(labels)
            if child is None:
                child = self._children[labels] = REQUEST_DURATION.labels(*labels)
            child.observe(time.perf_counter() - started)
