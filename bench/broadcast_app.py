"""The broadcast baseline: a bare Litestar app that writes one message to every socket it holds.

Its sockets (`/ws`) are accepted without a token and kept in one set. `POST /broadcast` takes a
small JSON body and does one Redis PUBLISH; one pub/sub subscriber writes each message it receives
to every socket, one after another. What `team.goal_progress` costs on top of this is the event
(SQL, the goal's count, the outbox) and the hub (the team's channel, each socket's queue).

Served by `python -m uvicorn bench.broadcast_app:app --loop uvloop --http httptools --no-access-log
--ws-per-message-deflate false` with BENCH_REDIS_URL and BENCH_REDIS_PREFIX set, as bench/teams.py
runs it (the same websocket settings as `engage serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
from litestar import Litestar, WebSocket, get, post, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect
from redis.asyncio import Redis

SOCKETS: set[WebSocket] = set()


class BroadcastIn(msgspec.Struct):
    seq: int


async def forward(client: Redis, channel: str) -> None:
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    while True:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if not msg or msg.get("type") != "message":
            continue
        text = msg["data"]
        for socket in list(SOCKETS):
            with contextlib.suppress(Exception):
                await socket.send_text(text)


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    client = Redis.from_url(os.environ["BENCH_REDIS_URL"], decode_responses=True, max_connections=100)
    app.state.redis = client
    app.state.channel = os.environ.get("BENCH_REDIS_PREFIX", "bench-broadcast:") + "broadcast"
    task = asyncio.get_running_loop().create_task(forward(client, app.state.channel))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await client.aclose()


@websocket("/ws")
async def sockets(socket: WebSocket) -> None:
    await socket.accept()
    SOCKETS.add(socket)
    try:
        while True:
            await socket.receive_data(mode="text")
    except WebSocketDisconnect:
        pass
    finally:
        SOCKETS.discard(socket)


@post("/broadcast", status_code=200)
async def broadcast(state: State, data: BroadcastIn) -> dict[str, int]:
    text = msgspec.json.encode({"type": "bench.broadcast", "data": {"seq": data.seq}}).decode()
    await state.redis.publish(state.channel, text)
    return {"seq": data.seq}


@get("/health")
async def health() -> dict[str, int]:
    return {"sockets": len(SOCKETS)}


app = Litestar(route_handlers=[sockets, broadcast, health], lifespan=[lifespan], debug=False)
