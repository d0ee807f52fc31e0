"""The baseline: a bare Litestar app whose award endpoint does exactly one Redis write.

It takes the very request the real server's `POST /v1/members/{id}/points` takes (path, headers,
JSON body), decodes the body the same way (msgspec), does one INCRBY and returns small JSON. What
the real award path costs on top of this is SQL, the ledger, the outbox and the live message.

Served by `python -m uvicorn bench.baseline_app:app --loop uvloop --http httptools --no-access-log`
with BENCH_REDIS_URL and BENCH_REDIS_PREFIX set.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
from litestar import Litestar, get, post
from litestar.datastructures import State
from redis.asyncio import Redis


class PointsIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: int
    reason: str
    idempotency_key: str


class BalanceOut(msgspec.Struct):
    member_id: str
    balance: int


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    # The same client settings as the real server's (server/redis.py).
    client = Redis.from_url(
        os.environ["BENCH_REDIS_URL"],
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=5,
        max_connections=1000,
    )
    app.state.redis = client
    app.state.prefix = os.environ.get("BENCH_REDIS_PREFIX", "bench-baseline:")
    try:
        yield
    finally:
        await client.aclose()


@post("/v1/members/{member_id:str}/points", status_code=200)
async def award(state: State, member_id: str, data: PointsIn) -> BalanceOut:
    balance = await state.redis.incrby(f"{state.prefix}pts:{member_id}", data.amount)
    return BalanceOut(member_id=member_id, balance=int(balance))


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


app = Litestar(route_handlers=[award, health], lifespan=[lifespan], debug=False)
