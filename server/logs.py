"""Structured logs (JSON lines). Tokens and keys never reach them: requests are logged by route
template, without query strings or headers, and a processor masks anything that looks like a secret."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_SECRET_RE = re.compile(
    r"(ek_[0-9a-f]{12}_[A-Za-z0-9_\-]+|eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*)"
)
_SECRET_KEYS = {"token", "authorization", "x-api-key", "api_key", "password", "secret"}


def _mask(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    for k, v in list(event.items()):
        if k.lower() in _SECRET_KEYS:
            event[k] = "[redacted]"
        elif isinstance(v, str):
            event[k] = _SECRET_RE.sub("[redacted]", v)
    return event


def configure(level: str = "INFO", as_json: bool = True) -> None:
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format="%(message)s", force=True)
    for noisy in ("uvicorn.access", "apscheduler.executors.default", "apscheduler.scheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    renderer: Any = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _mask,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
