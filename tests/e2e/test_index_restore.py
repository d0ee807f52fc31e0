"""Redis comes back without the boards' index (restarted empty, or flushed by an operator): the
instances notice on their own and one of them restores the index from SQL while serving, with no
command run. Each rig has a redis-server and SQL of its own (never the machine's Redis)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import redis.asyncio as aioredis

from server.config import Settings
from server.leaderboards.keys import base_key, built_key
from tests.conftest import server_env
from tests.e2e.helpers import LONG_WAIT, adjust, brand_client, create_api_key, member_client, wait_until
from tests.support import ROOT, RedisServer, ServerProcess, unique

BOARD = "weekly-points"  # in the repository's content: points earned this week
RESTORED = "leaderboard_index_restored"


class Rig:
    """Server processes on one redis-server and one SQL database of the test's own."""

    def __init__(self, settings: Settings, redis: RedisServer, procs: list[ServerProcess], key: str) -> None:
        self.settings = settings
        self.redis_servers = [redis]
        self.procs = procs
        self.key = key

    @property
    def url(self) -> str:
        return self.redis_servers[-1].url

    async def restart_redis_empty(self) -> None:
        """Stopped, then started again on the same port with nothing in it."""
        await asyncio.to_thread(self.redis_servers[-1].stop)
        port = self.redis_servers[-1].port
        self.redis_servers.append(await asyncio.to_thread(lambda: RedisServer(port=port).start()))

    async def flushall(self) -> None:
        """What an operator's FLUSHALL does (on the rig's own redis-server only)."""
        client = aioredis.Redis.from_url(self.url)
        try:
            await client.flushall()
        finally:
            await client.aclose()

    async def marked(self, period: str) -> bool:
        client = aioredis.Redis.from_url(self.url)
        try:
            return bool(await client.exists(built_key(base_key(self.settings.redis_prefix, BOARD, period))))
        finally:
            await client.aclose()

    def engage(self, *args: str) -> subprocess.CompletedProcess[str]:
        """An `engage` command on the rig's SQL and Redis, as an operator runs it."""
        return subprocess.run(
            [sys.executable, "-m", "server.cli", *args],
            env={**os.environ, **server_env(self.settings)},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )


@asynccontextmanager
async def rig_of(own_settings: Settings, instances: int) -> AsyncIterator[Rig]:
    redis = await asyncio.to_thread(lambda: RedisServer().start())
    settings = own_settings.model_copy(update={"redis_url": redis.url})
    rig = Rig(settings, redis, [], "")
    try:
        # Each instance looks every half second whether Redis still holds the index.
        env = server_env(settings, ENGAGE_LEADERBOARD_INDEX_CHECK_SECONDS="0.5")
        rig.key = await asyncio.to_thread(create_api_key, env)
        for _ in range(instances):
            proc = ServerProcess(env)
            rig.procs.append(proc)
            await asyncio.to_thread(proc.start)
        yield rig
    finally:
        for proc in rig.procs:
            await asyncio.to_thread(proc.stop)
            proc.log_path.unlink(missing_ok=True)
        for server in rig.redis_servers:
            await asyncio.to_thread(server.stop)


async def award_members(rig: Rig, amounts: list[int]) -> dict[str, int]:
    """Members named by their amounts, each awarded that many points: {display name: points}."""
    totals = {}
    async with brand_client(rig.procs[0].base_url, rig.key) as brand:
        for amount in amounts:
            member, name = unique("m"), f"Saver {amount}"
            assert (await brand.put(f"/v1/members/{member}", json={"display_name": name})).status_code == 201
            await adjust(brand, member, amount, reason="before")
            totals[name] = amount
    return totals


async def board(base_url: str, token: str) -> dict[str, Any]:
    async with member_client(base_url, token) as app:
        r = await app.get(f"/v1/leaderboards/{BOARD}", params={"limit": 50})
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


def standings_of(page: dict[str, Any]) -> list[tuple[int, str, int]]:
    return [(e["rank"], e["display_name"], e["score"]) for e in page["entries"]]


def expected(totals: dict[str, int]) -> list[tuple[int, str, int]]:
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    return [(i, name, points) for i, (name, points) in enumerate(ranked, start=1)]


async def until_standings(base_url: str, token: str, want: list[tuple[int, str, int]]) -> None:
    async def right() -> bool:
        try:
            return standings_of(await board(base_url, token)) == want
        except (AssertionError, httpx.HTTPError):
            return False  # Redis still coming back: the boards answer 503 meanwhile

    await wait_until(right, LONG_WAIT, what=f"the standings of {base_url} to be {want}")


def restores(proc: ServerProcess, since: int = 0) -> list[str]:
    return [line for line in proc.log()[since:].splitlines() if RESTORED in line and BOARD in line]


async def test_redis_back_empty_gets_the_boards_back_without_a_command(
    own_settings: Settings, token_for
) -> None:
    async with rig_of(own_settings, instances=1) as rig:
        proc = rig.procs[0]
        totals = await award_members(rig, [40, 30, 20, 10])
        token = token_for(unique("reader"))
        await until_standings(proc.base_url, token, expected(totals))

        await rig.restart_redis_empty()
        # Awards go on as Redis comes back; they answer 2xx and are stored.
        async with brand_client(proc.base_url, rig.key) as brand:
            late = unique("m")
            assert (await brand.put(f"/v1/members/{late}", json={"display_name": "Late"})).status_code == 201
            await adjust(brand, late, 25, reason="after")
        totals["Late"] = 25

        await until_standings(proc.base_url, token, expected(totals))
        check = await asyncio.to_thread(rig.engage, "leaderboards", "check")
        assert check.returncode == 0, check.stdout + check.stderr
        assert len(restores(proc)) >= 1


async def test_two_instances_restore_a_flushed_index_once(own_settings: Settings, token_for) -> None:
    async with rig_of(own_settings, instances=2) as rig:
        totals = await award_members(rig, [50, 40, 30, 20, 10])
        token = token_for(unique("reader"))
        await until_standings(rig.procs[0].base_url, token, expected(totals))
        period = (await board(rig.procs[0].base_url, token))["period"]["key"]

        async def marked() -> bool:
            return await rig.marked(period)

        await wait_until(marked, LONG_WAIT, what="the index to be known complete")
        seen = [len(proc.log()) for proc in rig.procs]

        await rig.flushall()
        for proc in rig.procs:
            await until_standings(proc.base_url, token, expected(totals))
        await wait_until(marked, LONG_WAIT, what="the index to be marked complete again")
        # Each instance has looked again since (every half second), and found the index whole.
        await asyncio.sleep(2)
        after = [line for proc, since in zip(rig.procs, seen, strict=True) for line in restores(proc, since)]
        assert len(after) == 1, after
        assert period in after[0]
        check = await asyncio.to_thread(rig.engage, "leaderboards", "check")
        assert check.returncode == 0, check.stdout + check.stderr
