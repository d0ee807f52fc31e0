"""Operations: liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from litestar import Response, get
from prometheus_client import generate_latest

from server.context import Context
from server.metrics import CONTENT_TYPE, OUTBOX_PENDING, REGISTRY


@get("/health", operation_id="health", tags=["ops"], exclude_from_auth=True)
async def health() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@get("/ready", operation_id="ready", tags=["ops"])
async def ready(ctx: Context) -> Response[dict[str, object]]:
    """SQL and Redis both answer; 503 otherwise, naming which does not."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(ctx.db.ping(), 3)
        checks["sql"] = "ok"
    except Exception as exc:
        checks["sql"] = f"unavailable: {type(exc).__name__}"
    try:
        await asyncio.wait_for(ctx.redis.ping(), 3)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return Response(
        {
            "status": "ready" if ok else "unavailable",
            "checks": checks,
            "content": {"version": ctx.content.version, "digest": ctx.content.digest[:12]},
        },
        status_code=200 if ok else 503,
    )


@get("/metrics", operation_id="metrics", tags=["ops"], media_type=CONTENT_TYPE)
async def metrics(ctx: Context) -> Response[bytes]:
    """Prometheus text format."""
    try:
        OUTBOX_PENDING.set(await ctx.outbox.pending())
    except Exception:  # SQL down: the other metrics are still worth scraping
        pass
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE)
