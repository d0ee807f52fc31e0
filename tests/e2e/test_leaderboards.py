"""Boards as a member app and an operator meet them: a real server process, its websocket, and the
`engage leaderboards` commands on the same SQL and Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import redis.asyncio as aioredis

from server.config import Settings
from server.leaderboards.keys import base_key
from tests.conftest import server_env
from tests.e2e.helpers import brand_client, live, member_client
from tests.support import ROOT, ServerProcess, unique

BOARD = "weekly-points"  # in the repository's content: points earned this week


def engage(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        env={**os.environ, **server_env(settings)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


async def test_a_member_who_takes_the_lead_is_told_live(
    server: ServerProcess, brand_key: str, token_for
) -> None:
    member = unique("leader")
    token = token_for(member)
    async with brand_client(server.base_url, brand_key) as brand:
        assert (await brand.put(f"/v1/members/{member}", json={"display_name": "Leader"})).status_code == 201
        async with live(server.ws_url, token, ranks=True, ignore=("points.", "growth.", "quest.")) as sock:
            r = await brand.post(
                f"/v1/members/{member}/points",
                json={"amount": 500_000_000, "reason": "grand prize", "idempotency_key": unique("k")},
            )
            assert r.status_code in (200, 201), r.text
            told = await sock.take_until(lambda ms: any(m["data"].get("board_id") == BOARD for m in ms))
    message = next(m for m in told if m["data"]["board_id"] == BOARD)
    assert message["type"] == "leaderboard.rank_changed"
    assert message["data"]["reason"] == "entered_top" and message["data"]["rank"] == 1
    async with member_client(server.base_url, token) as app:
        me = (await app.get(f"/v1/leaderboards/{BOARD}/me", params={"around": 1})).json()
        assert me["rank"] == 1 and me["score"] == 500_000_000
        assert me["entries"][0] == {
            "rank": 1,
            "handle": me["handle"],
            "display_name": "Leader",
            "score": 500_000_000,
            "is_me": True,
            "member_id": member,
        }


async def test_operator_checks_drift_and_rebuilds_the_index(
    server: ServerProcess, brand_key: str, settings: Settings, token_for
) -> None:
    members = [unique("op") for _ in range(5)]
    async with brand_client(server.base_url, brand_key) as brand:
        for i, m in enumerate(members):
            assert (await brand.put(f"/v1/members/{m}", json={"display_name": f"Op {i}"})).status_code == 201
            r = await brand.post(
                f"/v1/members/{m}/points",
                json={"amount": 10 + i, "reason": "ops", "idempotency_key": unique("k")},
            )
            assert r.status_code in (200, 201)
    token = token_for(members[0])

    async def view() -> dict[str, object]:
        async with member_client(server.base_url, token) as app:
            return (await app.get(f"/v1/leaderboards/{BOARD}/me", params={"around": 2})).json()  # type: ignore[no-any-return]

    before = await view()
    ok = await asyncio.to_thread(engage, settings, "leaderboards", "check", BOARD)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK" in ok.stdout
    # Redis loses the board (a flush, a failover without persistence).
    period = before["period"]["key"]  # type: ignore[index]
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        b = base_key(settings.redis_prefix, BOARD, period)
        scopes = await client.smembers(b + ":k")
        await client.delete(b + ":g", b + ":m", b + ":k", b + ":rj", *(f"{b}:{s}" for s in scopes))
    finally:
        await client.aclose()
    assert (await view())["rank"] is None
    drift = await asyncio.to_thread(engage, settings, "leaderboards", "check", BOARD)
    assert drift.returncode == 1 and "DRIFT" in drift.stdout, drift.stdout + drift.stderr
    rebuilt = await asyncio.to_thread(engage, settings, "leaderboards", "rebuild", BOARD)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert f"{BOARD} {period}:" in rebuilt.stdout
    assert await view() == before
    again = await asyncio.to_thread(engage, settings, "leaderboards", "check")
    assert again.returncode == 0, again.stdout + again.stderr
    unknown = await asyncio.to_thread(engage, settings, "leaderboards", "rebuild", "no-such-board")
    assert unknown.returncode == 2 and "no board" in unknown.stderr


async def test_board_reads_need_a_member(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as anonymous:
        r = await anonymous.get(f"/v1/leaderboards/{BOARD}")
        assert r.status_code == 401
