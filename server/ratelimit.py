"""Request rate limits counted in Redis, so that every instance shares one budget per caller."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from redis.exceptions import NoScriptError, RedisError

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


def _key(ctx: Context, scope: str, who: str) -> str:
    return ctx.redis.key("rl", scope, who, int(time.time() // 60))


async def reached(ctx: Context, scope: str, who: str, per_minute: int) -> bool:
    """Whether `who` has already used this minute's `per_minute`, without counting a request (a
    login refused before its password is checked). False when Redis is unreachable."""
    if ctx.redis.client is None or per_minute <= 0:
        return False
    try:
        count = await ctx.redis.client.get(_key(ctx, scope, who))
    except (RedisError, OSError):
        return False
    return count is not None and int(count) >= per_minute


async def hit(ctx: Context, scope: str, who: str, per_minute: int) -> None:
    """Count a request; 429 `rate_limited` past the limit. Fails open when Redis is unreachable."""
    await settle(ctx, start(ctx, scope, who, per_minute))


@dataclass
class Pending:
    """A request counted but not yet answered: Redis's count arrives with the next round trip."""

    scope: str
    per_minute: int
    key: str
    answer: asyncio.Future[Any]


def start(ctx: Context, scope: str, who: str, per_minute: int) -> Pending | None:
    """Count a request without waiting: the count goes to Redis with whatever else this moment
    sends (a read's own script call, if it is made before the caller next waits on anything).
    `settle` must follow; it raises the 429 if the count is past the limit."""
    if per_minute <= 0:
        return None
    key = _key(ctx, scope, who)
    try:
        answer = ctx.redis.auto.call_evalsha(_HIT_SHA, [key], [61])
    except (RedisError, OSError) as exc:
        log.warning("rate_limit_unavailable", error=type(exc).__name__)
        return None
    return Pending(scope, per_minute, key, answer)


async def settle(ctx: Context, pending: Pending | None) -> None:
    """The count of a request started with `start`: 429 `rate_limited` past the limit."""
    if pending is None:
        return
    try:
        try:
            count = int(await pending.answer)
        except NoScriptError:
            count = int(await ctx.redis.auto.evalsha(_HIT_SHA, _HIT, [pending.key], [61]))
    except (RedisError, OSError) as exc:
        log.warning("rate_limit_unavailable", error=type(exc).__name__)
        return
    if count > pending.per_minute:
        RATE_LIMITED.labels(pending.scope).inc()
        retry_after = 60 - int(time.time()) % 60
        raise ProblemError(
            429,
            "rate_limited",
            f"Too many requests: at most {pending.per_minute} a minute. Try again in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )
