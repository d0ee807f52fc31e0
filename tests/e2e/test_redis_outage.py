"""A Redis outage: awards keep working on SQL alone, and the live messages follow once Redis is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from server.config import Settings
from tests.conftest import server_env
from tests.e2e.helpers import (
    LONG_WAIT,
    adjust,
    brand_client,
    close_of,
    create_api_key,
    live,
    member_client,
    metric,
    purchase,
    send_events,
    sockets_open,
    stream_id,
    wait_until,
)
from tests.support import RedisServer, ServerProcess, unique

pytestmark = pytest.mark.e2e


async def _ready_status(proc: ServerProcess) -> int:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        return (await client.get(proc.base_url + "/ready")).status_code


class Rig:
    """A server process whose Redis is one of the test's own (never the machine's), on SQL of its own."""

    def __init__(self, proc: ServerProcess, redis: RedisServer, key: str) -> None:
        self.proc = proc
        self.key = key
        self.redis_servers = [redis]

    async def stop_redis(self) -> None:
        await asyncio.to_thread(self.redis_servers[-1].stop)

    async def restart_redis(self) -> None:
        """On the same port, empty (what it held before is gone, as after a failover)."""
        port = self.redis_servers[-1].port
        self.redis_servers.append(await asyncio.to_thread(lambda: RedisServer(port=port).start()))


@asynccontextmanager
async def outage_rig(own_settings: Settings) -> AsyncIterator[Rig]:
    redis = await asyncio.to_thread(lambda: RedisServer().start())
    rig = None
    try:
        env = server_env(own_settings, ENGAGE_REDIS_URL=redis.url)
        key = await asyncio.to_thread(create_api_key, env)
        rig = Rig(ServerProcess(env), redis, key)
        await asyncio.to_thread(rig.proc.start)
        yield rig
    finally:
        if rig is not None:
            await asyncio.to_thread(rig.proc.stop)
            rig.proc.log_path.unlink(missing_ok=True)
        for server in rig.redis_servers if rig else [redis]:
            await asyncio.to_thread(server.stop)


async def test_redis_outage_awards_still_work_and_missed_messages_arrive(
    own_settings: Settings, token_for
) -> None:
    async with outage_rig(own_settings) as rig:
        await _outage_scenario(rig, token_for)


async def _outage_scenario(rig: Rig, token_for) -> None:
    proc, key = rig.proc, rig.key
    member = unique("m")
    token = token_for(member)
    async with brand_client(proc.base_url, key) as brand, member_client(proc.base_url, token) as app:
        assert (await brand.put(f"/v1/members/{member}", json={})).status_code == 201
        # This socket stays open through the outage; what it hears afterwards is the subject of
        # test_socket_open_through_a_redis_outage_misses_nothing, not of this test.
        async with live(proc.ws_url, token) as sock:
            await sockets_open(proc.base_url, 1)
            await adjust(brand, member, 10, reason="before the outage")
            seen = await sock.next()
            assert await _ready_status(proc) == 200

            await rig.stop_redis()

            async def not_ready() -> bool:
                return await _ready_status(proc) == 503

            await wait_until(not_ready, what="/ready to answer 503 without Redis")
            r = await app.get("/ready")
            assert r.status_code == 503
            assert r.json()["checks"]["sql"] == "ok"
            assert r.json()["checks"]["redis"].startswith("unavailable")

            # The brand keeps awarding; SQL alone decides, so the answers and balances are right.
            during = await adjust(brand, member, 5, reason="during the outage")
            assert during["balance_after"] == 15
            assert (await send_events(brand, purchase(member, 7)))["accepted"] == 1
            me = (await app.get("/v1/me")).json()
            assert (me["points"], me["growth"]) == (22, 7)
            entries = (await app.get("/v1/ledger")).json()["entries"]
            assert [(e["currency"], e["amount"], e["balance_after"]) for e in entries] == [
                ("growth", 7, 7),
                ("points", 7, 22),
                ("points", 5, 15),
                ("points", 10, 10),
            ]

            # The outbox (the rig's own SQL) holds what waits for Redis: the adjustment's live
            # message and weekly-points score (2); the purchase's points, growth, quest progress
            # and badge messages and its weekly-points, weekly-league and monthly-spend scores (7).
            # The purchase's dispatch row, applied on SQL alone, is deleted a moment later.
            async def nine_waiting() -> bool:
                return await asyncio.to_thread(metric, proc.base_url, "engage_outbox_pending") == 9

            await wait_until(nine_waiting, what="the 9 rows that need Redis to wait in the outbox")
            # The boards cannot be read meanwhile, and say so; their scores wait with the rest.
            r = await app.get("/v1/leaderboards/weekly-points")
            assert (r.status_code, r.json()["code"]) == (503, "leaderboards_unavailable")
            # A member app opening its socket now is told to come back later.
            assert await close_of(proc.ws_url, token) == (1013, "live_unavailable")

            # Redis comes back on the same port (empty: the history of before is gone).
            await rig.restart_redis()

            async def ready() -> bool:
                return await _ready_status(proc) == 200

            await wait_until(ready, LONG_WAIT, what="/ready to answer 200 once Redis is back")

            # The member app reconnects from the last id it saw and gets what it missed, once each.
            expected = [("points.awarded", 5, 15), ("points.awarded", 7, 22), ("growth.awarded", 7, 7)]
            deadline = time.monotonic() + LONG_WAIT
            while True:
                async with live(proc.ws_url, token, since=seen["id"]) as again:
                    got = []
                    try:
                        got = await again.take(3, within=3)
                        break
                    except AssertionError:
                        if time.monotonic() > deadline:
                            raise
            assert [(m["type"], m["data"]["amount"], m["data"]["balance_after"]) for m in got] == expected
            assert [m["data"]["entry_id"] for m in got] == [e["entry_id"] for e in reversed(entries[:3])]
            assert [stream_id(m["id"]) for m in got] == sorted({stream_id(m["id"]) for m in got})

        # The new Redis's history holds each missed message exactly once.
        async with live(proc.ws_url, token, since="0-0") as replay:
            history = await replay.take(3)
            assert [m["id"] for m in history] == [m["id"] for m in got]

        async def drained() -> bool:
            return await asyncio.to_thread(metric, proc.base_url, "engage_outbox_pending") == 0

        await wait_until(drained, LONG_WAIT, what="the outbox to drain")

        # And live delivery works again.
        async with live(proc.ws_url, token) as fresh:
            await sockets_open(proc.base_url, 1)
            after = await adjust(brand, member, 1, reason="after the outage")
            msg = await fresh.next()
            assert (msg["data"]["entry_id"], msg["data"]["balance_after"]) == (after["entry_id"], 23)

        # The boards of the empty Redis hold the absolute scores the outbox carried: nothing lost.
        async with member_client(proc.base_url, token) as app:
            week = (await app.get("/v1/leaderboards/weekly-points/me")).json()
            month = (await app.get("/v1/leaderboards/monthly-spend/me")).json()
            assert (week["rank"], week["score"], month["score"]) == (1, 23, 7)


async def test_socket_open_through_a_redis_outage_misses_nothing(own_settings: Settings, token_for) -> None:
    member = unique("m")
    token = token_for(member)
    async with outage_rig(own_settings) as rig, brand_client(rig.proc.base_url, rig.key) as brand:
        assert (await brand.put(f"/v1/members/{member}", json={})).status_code == 201
        async with live(rig.proc.ws_url, token) as sock:
            await adjust(brand, member, 1, reason="before")
            await sock.next()
            early: list[int] = []
            for blip in range(2):
                await rig.stop_redis()

                async def down() -> bool:
                    return await _ready_status(rig.proc) == 503

                await wait_until(down, what="/ready to see Redis gone")
                await rig.restart_redis()
                # The brand awards as soon as Redis is back (each award is published at once).
                early += [
                    (await adjust(brand, member, 1, reason=f"blip {blip}"))["entry_id"] for _ in range(3)
                ]

                # Markers until one arrives, so that the hub has surely re-subscribed by then.
                deadline = time.monotonic() + LONG_WAIT
                while True:
                    marker = (await adjust(brand, member, 1, reason="marker"))["entry_id"]
                    try:
                        await sock.take_until(
                            lambda ms, k=marker: any(m["data"]["entry_id"] == k for m in ms), within=1.0
                        )
                        break
                    except AssertionError:
                        assert time.monotonic() < deadline, "the open socket never heard again"
            heard = {m["data"]["entry_id"] for m in sock.received}
            missed = [entry for entry in early if entry not in heard]
            assert not missed, f"the open socket never received entries {missed} (of {early})"
