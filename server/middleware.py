"""Per-request metrics and a structured access log line (route template, never the query string)."""

from __future__ import annotations

import logging
import time
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from server.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = structlog.get_logger("access")
# The metric series of each (method, route template, status): looked up once, not per request.
_series: dict[tuple[str, Any, int], tuple[Any, Any]] = {}


def observe(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("path_template") or "unmatched"
            elapsed = time.perf_counter() - start
            method = scope["method"]
            series = _series.get((method, route, status))
            if series is None:
                series = _series[(method, route, status)] = (
                    HTTP_REQUESTS.labels(method, route, str(status)),
                    HTTP_LATENCY.labels(method, route),
                )
            series[0].inc()
            series[1].observe(elapsed)
            if status >= 400 or logging.getLogger().isEnabledFor(logging.DEBUG):
                log.info("request", method=method, route=route, status=status, ms=round(elapsed * 1000, 2))

    return middleware


def exact_allow(app: ASGIApp) -> ASGIApp:
    """`Allow` on an OPTIONS answer lists exactly the methods of the path.

    Litestar 2 writes a path's OPTIONS answer when the path's first handler is registered and keeps
    it as more handlers join the path, so it named only the first one's methods (litestar#4169,
    fixed in Litestar 3). OPTIONS is rare: the path's route is looked up when one is asked."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "OPTIONS":
            await app(scope, receive, send)
            return
        template = scope.get("path_template")
        routes = scope["app"].routes
        methods = next(
            (r.methods for r in routes if isinstance(r, HTTPRoute) and r.path_format == template), None
        )

        async def send_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and methods:
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"allow"]
                message["headers"] = [*headers, (b"allow", ", ".join(sorted(methods)).encode())]
            await send(message)

        await app(scope, receive, send_allow)

    return middleware
