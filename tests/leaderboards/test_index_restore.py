"""The boards' index when Redis loses it (a restart without its data, a failover, a flush): each
board period is marked once its index is built from SQL, and when the marker is gone one process
rebuilds the period from SQL, keeping the scores that arrive meanwhile.

Every test here runs twice (see conftest.py): with the boards on the run's Redis, and on a
three-node Redis Cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from server.context import Context
from server.db import utcnow
from server.leaderboards import index, keys
from server.leaderboards.index import IndexLockLost, check, live_periods, rebuild, restore_lost
from server.leaderboards.periods import Span, span_at
from server.leaderboards.service import boards
from tests.leaderboards.conftest import BoardApp
from tests.leaderboards.support import (
    boards_store,
    drop_board_keys,
    mine,
    order,
    put_member,
    score,
    standings,
)
from tests.support import unique
from tests.tasks.quest_support import serving


def board_yaml(board_id: str) -> str:
    return (
        f"boards:\n  - id: {board_id}\n    name: Test board\n"
        "    metric: {event: purchase, value: amount}\n    period: weekly\n    zone: Europe/Paris\n"
        "    scopes: [global, tier, friends]\n    rookie: {days: 30}\n    notify: {every_seconds: 0}\n"
    )


def span_of(ctx: Context, bid: str) -> Span:
    span = span_at(boards(ctx).get(bid), utcnow())
    assert span is not None
    return span


async def marked(ctx: Context, bid: str) -> bool:
    return bool(await ctx.redis.boards.exists(keys.built_key(keys.base(ctx, bid, span_of(ctx, bid).key))))


async def lose(ctx: Context, bid: str) -> None:
    """What a flush does to one board period: every key of it gone, its marker too."""
    period = span_of(ctx, bid).key
    await drop_board_keys(ctx, bid, period)
    await ctx.redis.boards.delete(keys.built_key(keys.base(ctx, bid, period)))


async def restored(ctx: Context, bid: str) -> list[tuple[str, int]]:
    return [(r.board_id, r.members) for r in await restore_lost(ctx, await live_periods(ctx, [bid]))]


async def clean(ctx: Context, bid: str) -> bool:
    return all(d.clean for d in await check(ctx, await live_periods(ctx, [bid])))


async def scored_board(board_app: BoardApp, http: httpx.AsyncClient, bid: str, n: int) -> list[str]:
    """`n` members of several tiers with scores on the board (its index built, then marked)."""
    ctx = board_app.ctx
    members = [unique(f"x{i:02d}") for i in range(n)]
    now = utcnow()
    for i, m in enumerate(members):
        tier = ("regular", "silver", "gold")[i % 3]
        await put_member(http, board_app.brand, m, tier=tier, signed_up_at=now - timedelta(days=20 * (i % 3)))
        await score(ctx, bid, m, (i * 7) % 11 + 1, now - timedelta(seconds=i))
    return members


def during_rebuild(monkeypatch: pytest.MonkeyPatch, action: Callable[[], Awaitable[None]]) -> None:
    """Run `action` once inside the next rebuild, after its SQL rows are read and before its keys
    are swapped in: the moment scores written meanwhile could be lost."""
    write_chunk = index._write_chunk
    pending = [action]

    async def then_act(*args: Any) -> int:
        count = await write_chunk(*args)
        while pending:
            await pending.pop()()
        return count

    monkeypatch.setattr(index, "_write_chunk", then_act)


async def test_a_lost_index_is_restored_from_sql_once(
    board_app: BoardApp, http_to: httpx.AsyncClient
) -> None:
    ctx, bid = board_app.ctx, unique("lost")
    with serving(ctx, boards_store(board_yaml(bid))):
        members = await scored_board(board_app, http_to, bid, 12)
        # Never marked yet (a board new to this Redis): built from SQL once, then left alone.
        assert await restored(ctx, bid) == [(bid, 12)]
        assert await marked(ctx, bid)
        assert await restored(ctx, bid) == []
        headers = board_app.member(members[0])

        async def snapshot() -> list[object]:
            return [
                order(await standings(http_to, headers, bid, scope=s, limit=100))
                for s in ("global", "tier:silver", "tier:gold", "rookie")
            ] + [(await mine(http_to, headers, bid, around=3))["entries"]]

        before = await snapshot()
        await lose(ctx, bid)
        assert (await standings(http_to, headers, bid))["entries"] == []
        assert (await check(ctx, await live_periods(ctx, [bid])))[0].missing == 12

        assert await restored(ctx, bid) == [(bid, 12)]
        assert await snapshot() == before
        assert await clean(ctx, bid)
        assert await restored(ctx, bid) == []


async def test_one_restore_however_many_look_at_once(board_app: BoardApp, http_to: httpx.AsyncClient) -> None:
    ctx, bid = board_app.ctx, unique("many")
    with serving(ctx, boards_store(board_yaml(bid))):
        await scored_board(board_app, http_to, bid, 6)
        await lose(ctx, bid)
        results = await asyncio.gather(*(restored(ctx, bid) for _ in range(6)))
        assert sorted(r for r in results if r) == [[(bid, 6)]]
        assert await clean(ctx, bid)


async def test_scores_written_during_a_restore_are_kept(
    board_app: BoardApp, http_to: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, bid = board_app.ctx, unique("during")
    a, b, c = unique("a"), unique("b"), unique("c")
    with serving(ctx, boards_store(board_yaml(bid))):
        for m in (a, b, c):
            await put_member(http_to, board_app.brand, m)
        now = utcnow()
        await score(ctx, bid, a, 10, now - timedelta(seconds=3))
        await score(ctx, bid, b, 5, now - timedelta(seconds=2))
        await lose(ctx, bid)

        async def meanwhile() -> None:
            await score(ctx, bid, a, 7, utcnow())  # a newer score of a member read already
            await score(ctx, bid, c, 30, utcnow())  # a member the rebuild never read

        during_rebuild(monkeypatch, meanwhile)
        assert await restored(ctx, bid) == [(bid, 2)]
        page = order(await standings(http_to, board_app.member(a), bid))
        assert page == [(1, c, 30), (2, a, 17), (3, b, 5)]
        assert await clean(ctx, bid)


async def test_a_period_without_scores_is_only_marked(board_app: BoardApp) -> None:
    ctx, bid = board_app.ctx, unique("empty")
    with serving(ctx, boards_store(board_yaml(bid))):
        assert not await marked(ctx, bid)
        assert await restored(ctx, bid) == []
        assert await marked(ctx, bid)


async def test_the_next_period_is_marked_before_it_begins(board_app: BoardApp) -> None:
    """A new week's first scores must not look like a lost index: the guard marks it ahead."""
    ctx, bid = board_app.ctx, unique("next")
    with serving(ctx, boards_store(board_yaml(bid))):
        board, current = boards(ctx).get(bid), span_of(ctx, bid)
        assert current.end is not None
        upcoming = span_at(board, current.end)
        assert upcoming is not None and upcoming.key != current.key
        periods = await live_periods(ctx, [bid], with_next=True)
        assert [s.key for _, s in periods] == [current.key, upcoming.key]
        assert await restore_lost(ctx, periods) == []
        assert await ctx.redis.boards.exists(keys.built_key(keys.base(ctx, bid, upcoming.key)))


async def test_a_restore_under_way_elsewhere_is_left_to_it(
    board_app: BoardApp, http_to: httpx.AsyncClient
) -> None:
    ctx, bid = board_app.ctx, unique("elsewhere")
    with serving(ctx, boards_store(board_yaml(bid))):
        await scored_board(board_app, http_to, bid, 3)
        lock = keys.rebuild_lock_key(keys.base(ctx, bid, span_of(ctx, bid).key))
        await ctx.redis.boards.set(lock, "another-instance", px=30_000)
        assert await restored(ctx, bid) == []
        assert not await marked(ctx, bid)
        # That instance died: its lock lapses, and the next look restores the period.
        await ctx.redis.boards.delete(lock)
        assert await restored(ctx, bid) == [(bid, 3)]
        assert await clean(ctx, bid)


async def test_a_restore_that_lost_its_lock_does_not_mark_the_period(
    board_app: BoardApp, http_to: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, bid = board_app.ctx, unique("flushed-again")
    with serving(ctx, boards_store(board_yaml(bid))):
        await scored_board(board_app, http_to, bid, 4)

        async def flushed_again() -> None:
            await lose(ctx, bid)
            await ctx.redis.boards.delete(keys.rebuild_lock_key(keys.base(ctx, bid, span_of(ctx, bid).key)))

        during_rebuild(monkeypatch, flushed_again)
        with pytest.raises(IndexLockLost):
            await restored(ctx, bid)
        assert not await marked(ctx, bid)
        assert await restored(ctx, bid) == [(bid, 4)]
        assert await clean(ctx, bid)


async def test_an_operators_rebuild_marks_the_period(board_app: BoardApp, http_to: httpx.AsyncClient) -> None:
    ctx, bid = board_app.ctx, unique("operator")
    with serving(ctx, boards_store(board_yaml(bid))):
        await scored_board(board_app, http_to, bid, 3)
        await lose(ctx, bid)
        done = await rebuild(ctx, await live_periods(ctx, [bid]))
        assert [(d.board_id, d.members) for d in done] == [(bid, 3)]
        assert await marked(ctx, bid)
        assert await restored(ctx, bid) == []
