"""What every request passes through: per-request metrics and a structured access log line (route
template, never the query string), and the checks that turn bytes no handler can use into a 400
before any work: a path or query with control characters, a body that is not JSON."""

from __future__ import annotations

import logging
import re
import time
from typing import Any
from urllib.parse import unquote_to_bytes

import litestar
import msgspec
import structlog
from litestar.enums import ScopeType
from litestar.exceptions import SerializationException
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import ProblemError, payload_too_large
from server.metrics import HTTP_LATENCY, HTTP_REQUESTS
from server.text import CONTROL_RE

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


# Every route's body limit but a few that set their own (a batch of events): far above any body
# the API takes, far below what would strain a process.
BODY_MAX_BYTES = 1024 * 1024
# Deeper than any body the API takes; deeper still would exhaust the decoder's recursion (a 500).
MAX_JSON_DEPTH = 32
# A query string's control characters once unescaped; C1 controls arrive as their UTF-8 bytes.
_CONTROL_BYTES = re.compile(rb"[\x00-\x1f\x7f]|\xc2[\x80-\x9f]")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_FORMS = (b"application/x-www-form-urlencoded", b"multipart/form-data")


async def check_request(request: litestar.Request[Any, Any, Any]) -> None:
    """Before any handler, guard or dependency: a path or query holding a control character is a
    400 (such an id or filter matches nothing anyway, and PostgreSQL refuses NUL outright), and so
    is a body that is not JSON, on a route that takes none too. A handler's `data` is decoded by
    `Request.json` before its dependencies anyway; routes that set no body limit read their own
    body (with a limit from settings), and forms are left to the handlers that take them."""
    scope = request.scope
    if CONTROL_RE.search(scope["path"]):
        raise ProblemError(400, "control_character", "The path holds a control character.")
    query = scope["query_string"]
    if query and _CONTROL_BYTES.search(unquote_to_bytes(query)):
        raise ProblemError(400, "control_character", "The query string holds a control character.")
    if scope["method"] in _BODY_METHODS and _reads_no_data(request) and _announces_json_body(scope):
        await request.json()


def _announces_json_body(scope: Scope) -> bool:
    body = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            body = body or value != b"0"
        elif name == b"transfer-encoding":
            body = True
        elif name == b"content-type" and value.startswith(_FORMS):
            return False
    return body


# Per route handler: whether it takes neither `data` nor its own body (no Litestar limit).
_no_data: dict[Any, bool] = {}


def _reads_no_data(request: litestar.Request[Any, Any, Any]) -> bool:
    handler = request.route_handler
    found = _no_data.get(handler)
    if found is None:
        found = _no_data[handler] = (
            "data" not in handler.parsed_fn_signature.parameters
            and handler.resolve_request_max_body_size() is not None
        )
    return found


def _too_deep(value: Any) -> bool:
    """Whether decoded JSON nests deeper than MAX_JSON_DEPTH, without recursion."""
    if type(value) is not dict and type(value) is not list:
        return False
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        for child in node.values() if type(node) is dict else node:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    return False


def decode_json(body: bytes) -> Any:
    """A request body as JSON; 400 `invalid_json` when it is not JSON in UTF-8, 400 `json_too_deep`
    when it nests deeper than MAX_JSON_DEPTH."""
    try:
        value = msgspec.json.decode(body)
    except RecursionError:
        raise _json_too_deep() from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise _invalid_json(exc) from None
    _check_depth(body, value)
    return value


def _check_depth(body: bytes, value: Any) -> None:
    # Nesting takes an opening bracket per level: a body with few of them needs no walk.
    if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH and _too_deep(value):
        raise _json_too_deep()


def _invalid_json(exc: Exception) -> ProblemError:
    return ProblemError(400, "invalid_json", f"The body is not JSON in UTF-8: {exc}.", title="Invalid JSON")


def _json_too_deep() -> ProblemError:
    return ProblemError(
        400, "json_too_deep", f"The body nests deeper than {MAX_JSON_DEPTH} levels.", title="JSON too deep"
    )


async def read_body(request: litestar.Request[Any, Any, Any], limit: int, what: str) -> bytes:
    """The body of a route whose limit comes from settings (its handler sets no
    `request_max_body_size`); 413 `payload_too_large` past `limit` bytes, before reading on."""
    announced = request.content_length
    if announced is not None and announced > limit:
        raise payload_too_large(limit, what)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise payload_too_large(limit, what)
        chunks.append(chunk)
    return b"".join(chunks)


class Request(litestar.Request[Any, Any, Any]):
    """Litestar's request, whose JSON body is decoded by `decode_json`'s rules. Litestar turns
    msgspec's own decode errors into a 400 but lets invalid UTF-8 and deep nesting escape as 500s,
    and it decodes a handler's `data` before the handler's guards run."""

    async def json(self) -> Any:
        try:
            value = await super().json()
        except RecursionError:
            raise _json_too_deep() from None
        except (SerializationException, UnicodeDecodeError) as exc:
            raise _invalid_json(exc) from None
        _check_depth(await self.body(), value)
        return value


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
