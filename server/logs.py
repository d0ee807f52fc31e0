"""Structured logs (JSON lines on stderr). Tokens and keys never reach them.

Requests are logged by route template, without query strings or headers; and every line, ours or a
library's (uvicorn logs websocket paths with their query string), passes through a mask that
replaces anything shaped like a member token, an API key or a `token=` parameter.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

_SECRET_RE = re.compile(
    r"(ek_[0-9a-f]{12}_[A-Za-z0-9_\-]+"  # API keys
    r"|em_[0-9a-f]+_[A-Za-z0-9_\-]+"  # managers' session tokens
    r"|eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"  # JWTs
    r"|(?<=token=)[^&\s\"']+)"  # any token= query parameter
)
_SECRET_KEYS = {"token", "authorization", "x-api-key", "api_key", "password", "secret"}


def mask(text: str) -> str:
    return _SECRET_RE.sub("[redacted]", text)


def _mask_event(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    for k, v in list(event.items()):
        if k.lower() in _SECRET_KEYS:
            event[k] = "[redacted]"
        elif isinstance(v, str):
            event[k] = mask(v)
    return event


class _MaskRecord(logging.Filter):
    """Masks secrets in records of the standard library's loggers (uvicorn, SQLAlchemy, ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def configure(level: str = "INFO", as_json: bool = True) -> None:
    renderer: Any = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_MaskRecord())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _mask_event, renderer],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "apscheduler.executors.default", "apscheduler.scheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, _mask_event, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
