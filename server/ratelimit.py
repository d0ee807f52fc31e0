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
# The same, also answering another key's value (a counter the caller watches), so that a request
# learns both in the one script call its count costs anyway.
_HIT_READ = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('GET', KEYS[2])}
"""
_HIT_READ_SHA = hashlib.sha1(_HIT_READ.encode()).hexdigest()


class Unread:
    """What a count was to read is not known: Redis did not answer."""


UNREAD = Unread()


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
    keys: list[str]
    answer: asyncio.Future[Any]


def start(ctx: Context, scope: str, who: str, per_minute: int, *, read: str | None = None) -> Pending | None:
    """Count a request without waiting: the count goes to Redis with whatever else this moment
    sends (a read's own script call, if it is made before the caller next waits on anything).
    `settle` must follow; it raises the 429 if the count is past the limit, and answers the
    value of the key `read` when one is given."""
    if per_minute <= 0:
        return None
    keys = [_key(ctx, scope, who), *([read] if read else [])]
    try:
        answer = ctx.redis.auto.call_evalsha(_HIT_READ_SHA if read else _HIT_SHA, keys, [61])
    except (RedisError, OSError) as exc:
        log.warning("rate_limit_unavailable", error=type(exc).__name__)
        return None
    return Pending(scope, per_minute, keys, answer)


async def settle(ctx: Context, pending: Pending | None) -> Any:
    """The count of a request started with `start`: 429 `rate_limited` past the limit. Answers
    the value of the key it was to `read` (None when absent), or UNREAD when Redis did not answer."""
    if pending is None:
        return UNREAD
    try:
        try:
            answer = await pending.answer
        except NoScriptError:
            script, sha = (_HIT_READ, _HIT_READ_SHA) if len(pending.keys) > 1 else (_HIT, _HIT_SHA)
            answer = await ctx.redis.auto.evalsha(sha, script, pending.keys, [61])
    except (RedisError, OSError) as exc:
        log.warning("rate_limit_unavailable", error=type(exc).__name__)
        return UNREAD
    count, value = (answer[0], answer[1]) if isinstance(answer, list) else (answer, None)
    if int(count) > pending.per_minute:
        raise limited(pending.scope, f"Too many requests: at most {pending.per_minute} a minute.")
    return value


def limited(scope: str, detail: str) -> ProblemError:
    """The 429 `rate_limited` problem for `scope`, telling when the window turns over."""
    RATE_LIMITED.labels(scope).inc()
    retry_after = 60 - int(time.time()) % 60
    return ProblemError(
        429,
        "rate_limited",
        f"{detail} Try again in {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
    )
