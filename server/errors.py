"""One problem-details shape (RFC 9457) for every error, each with a stable `code`."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

log = structlog.get_logger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


class ProblemError(Exception):
    """A caller-facing error: HTTP status, a stable machine code and a sentence a person can act on."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or code.replace("_", " ").capitalize()
        self.headers = headers or {}
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": f"https://engage.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }
        if instance:
            out["instance"] = instance
        out.update(self.extra)
        return out


def not_found(what: str, ident: str, code: str | None = None) -> ProblemError:
    return ProblemError(404, code or f"{what}_not_found", f"No {what.replace('_', ' ')} '{ident}'.")


def payload_too_large(limit_bytes: int, what: str = "this endpoint") -> ProblemError:
    return ProblemError(
        413,
        "payload_too_large",
        f"The body is over {limit_bytes:,} bytes, the most {what} takes.",
        limit_bytes=limit_bytes,
    )


def _response(err: ProblemError, request: Request) -> Response[Any]:
    return Response(
        content=err.body(request.url.path),
        status_code=err.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=err.headers,
    )


def problem_handler(request: Request, exc: ProblemError) -> Response[Any]:
    return _response(exc, request)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


# What Litestar raises (a 500) when the connection closes before the whole body arrived.
_DISCONNECTED = "client disconnected prematurely"


def http_exception_handler(request: Request, exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if isinstance(exc, ValidationException):
        errors = exc.extra if isinstance(exc.extra, list) else []
        err = ProblemError(
            400,
            "validation_error",
            "The request does not match the expected shape: see `errors`.",
            errors=[_clean_validation(e) for e in errors],
        )
        return _response(err, request)
    if status == 413:
        limit = request.route_handler.resolve_request_max_body_size()
        if limit is not None:
            return _response(payload_too_large(limit), request)
    if status >= 500 and exc.detail == _DISCONNECTED:
        # The caller went away while sending its body: its mistake, not the server's, and there is
        # no one left to read the answer. Counted as a 4xx, not logged as an error.
        log.info("client_disconnected", path=request.url.path)
        return _response(
            ProblemError(400, "client_disconnected", "The body ended before its length."), request
        )
    if status >= 500:
        log.error("http_error", status=status, path=request.url.path, detail=exc.detail)
        detail = "The server could not complete the request."
    else:
        detail = exc.detail or "Request failed."
    code = _HTTP_CODES.get(status, "http_error" if status < 500 else "internal_error")
    return _response(ProblemError(status, code, detail, headers=exc.headers or None), request)


# Sentences for the patterns of shared field types, keyed by the pattern: the decoder's own message
# ("Expected `str` matching regex '…'") means nothing to a person. Filled by the modules that
# declare those types (server.text).
PATTERN_MESSAGES: dict[str, str] = {}


def _clean_validation(e: Any) -> Any:
    if not isinstance(e, dict):
        return {"message": str(e)}
    out = {k: v for k, v in e.items() if k in ("key", "message", "source")}
    message = out.get("message")
    if isinstance(message, str) and "matching regex" in message:
        for pattern, sentence in PATTERN_MESSAGES.items():
            if repr(pattern) in message or f"'{pattern}'" in message:
                out["message"] = sentence
                break
    return out


def internal_error_handler(request: Request, exc: Exception) -> Response[Any]:
    log.exception("unhandled_error", path=request.url.path, error_type=type(exc).__name__)
    err = ProblemError(
        HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "The server could not complete the request."
    )
    return _response(err, request)


exception_handlers: dict[Any, Any] = {
    ProblemError: problem_handler,
    HTTPException: http_exception_handler,
    Exception: internal_error_handler,
}
