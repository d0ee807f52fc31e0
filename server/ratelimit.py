"""Request rate limits counted in Redis, so that every instance shares one budget per caller."""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING

import structlog
from redis.exceptions import RedisError

from server.errors import ProblemError
from server.metrics import RATE_LIMITED

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)

# Fixed one-minute windows: INCR and set the expiry on the first hit, in one round trip.
_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""
_HIT_SHA = hashlib.sha1(_HIT.encode()).hexdigest()


async def hit(ctx: Context, scope: str, who: str, per_minute: int) -> None:
    """Count a request; 429 `rate_limited` past the limit. Fails open when Redis is unreachable."""
    if per_minute <= 0:
        return
    window = int(time.time() // 60)
    key = ctx.redis.key("rl", scope, who, window)
    try:
        count = int(await ctx.redis.auto.evalsha(_HIT_SHA, _HIT, [key], [61]))
    except (RedisError, OSError) as exc:
        log.warning("rate_limit_unavailable", error=type(exc).__name__)
        return
    if count > per_minute:
        RATE_LIMITED.labels(scope).inc()
        retry_after = 60 - int(time.time()) % 60
        raise ProblemError(
            429,
            "rate_limited",
            f"Too many requests: at most {per_minute} a minute. Try again in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )
