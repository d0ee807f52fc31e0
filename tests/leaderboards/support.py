"""Boards of a test's own, scores written through the real service, and Redis as the app sees it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from server.content.loader import ContentStore, read_files, validate_files
from server.context import Context
from server.leaderboards import keys
from server.leaderboards.service import Observation, boards, record
from server.members.service import ensure_member, profile
from tests.support import ROOT

# The members these helpers made, by handle: boards show other members by handle only.
MEMBER_OF_HANDLE: dict[str, str] = {}


def boards_store(boards_yaml: str, **others: str) -> ContentStore:
    """The repository's content with the boards replaced (and other files replaced); the referral
    program then runs without its board (the demo's names a demo board)."""
    files = read_files(ROOT / "content")
    files["leaderboards.yaml"] = boards_yaml
    files["referrals.yaml"] = _without_board(files["referrals.yaml"])
    files.update(others)
    store, issues = validate_files(files, "test")
    assert not issues, "\n".join(map(str, issues))
    return store


def _without_board(referrals_yaml: str) -> str:
    return "\n".join(line for line in referrals_yaml.splitlines() if not line.startswith("board:"))


async def score(
    ctx: Context, board_id: str, member_id: str, amount: float, at: datetime, now: datetime | None = None
) -> None:
    """One amount counted on a board, in a transaction of its own (the index follows after commit),
    for a member made first if need be (scores are only ever members')."""
    board = boards(ctx).get(board_id)
    assert board is not None
    await make_members(ctx, [member_id])
    async with ctx.db.transaction() as session:
        await record(ctx, session, [Observation(board, member_id, amount, at)], now=now)


async def make_members(ctx: Context, member_ids: list[str]) -> None:
    """Bare members, as a member's first token makes them, whose handles these helpers know."""
    async with ctx.db.transaction() as session:
        for member_id in member_ids:
            await ensure_member(session, member_id)
            handle = (await profile(ctx, session, member_id)).handle
            assert handle is not None
            MEMBER_OF_HANDLE[handle] = member_id


async def put_member(http: httpx.AsyncClient, brand: dict[str, str], member_id: str, **fields: Any) -> None:
    body = {"display_name": member_id.upper(), **fields}
    for k, v in list(body.items()):
        if isinstance(v, datetime):
            body[k] = v.isoformat()
    r = await http.put(f"/v1/members/{member_id}", json=body, headers=brand)
    assert r.status_code in (200, 201), r.text
    MEMBER_OF_HANDLE[r.json()["handle"]] = member_id


async def standings(
    http: httpx.AsyncClient, headers: dict[str, str], board_id: str, **params: Any
) -> dict[str, Any]:
    r = await http.get(f"/v1/leaderboards/{board_id}", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def mine(
    http: httpx.AsyncClient, headers: dict[str, str], board_id: str, **params: Any
) -> dict[str, Any]:
    r = await http.get(f"/v1/leaderboards/{board_id}/me", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def who(entry: dict[str, Any]) -> str:
    """The member of a row: the caller's own names them; another's by a handle these helpers saw."""
    if entry["is_me"]:
        return entry["member_id"]  # type: ignore[no-any-return]
    assert "member_id" not in entry, entry
    return MEMBER_OF_HANDLE.get(entry["handle"], f"handle:{entry['handle']}")


def who_handle(handle: str) -> str:
    """The member of a handle these helpers saw."""
    return MEMBER_OF_HANDLE.get(handle, f"handle:{handle}")


def order(page: dict[str, Any]) -> list[tuple[int, str, int]]:
    return [(e["rank"], who(e), e["score"]) for e in page["entries"]]


async def redis_board(ctx: Context, board_id: str, period: str) -> list[tuple[str, float]]:
    """The global sorted set of a board period, from the top."""
    b = keys.base(ctx, board_id, period)
    return [(m, s) for m, s in await ctx.redis.boards.zrevrange(b + ":g", 0, -1, withscores=True)]


async def drop_board_keys(ctx: Context, board_id: str, period: str) -> None:
    """What a Redis flush does to one board period: every key of it gone."""
    b = keys.base(ctx, board_id, period)
    client = ctx.redis.boards
    scopes = await client.smembers(b + ":k")
    for k in [b + ":g", b + ":m", b + ":rj", b + ":k", *(f"{b}:{s}" for s in scopes)]:
        await client.delete(k)
