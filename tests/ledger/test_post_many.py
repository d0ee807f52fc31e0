"""A run of postings in one go: the same answers as one by one, and the chains stay whole."""

from __future__ import annotations

import asyncio

import pytest

from server.errors import ProblemError
from server.ledger import service as ledger
from server.ledger.service import Posting
from tests.support import unique


async def post_run(ctx, postings: list[Posting]) -> list[ledger.Posted]:
    async with ctx.db.transaction() as session:
        return await ledger.post_many(ctx, session, postings)


async def balances(ctx, member_id: str) -> dict[str, int]:
    async with ctx.db.session() as session:
        return await ledger.balances(session, member_id)


async def test_a_run_over_several_members_replays_and_chains(ctx):
    a, b = unique("pm"), unique("pm")
    run = [
        Posting(a, "points", 10, "r", "test", "k1"),
        Posting(b, "points", 5, "r", "test", "k1"),
        Posting(a, "growth", 2, "r", "test", "k1"),
        Posting(a, "points", 7, "r", "test", "k2"),
        Posting(a, "points", 7, "r", "test", "k2"),  # the same key twice in one run
    ]
    first = await post_run(ctx, run)
    assert [p.created for p in first] == [True, True, True, True, False]
    assert [p.entry.balance_after for p in first] == [10, 5, 2, 17, 17]
    assert first[3].entry.seq == first[0].entry.seq + 2  # one chain per member, across currencies
    again = await post_run(ctx, run)
    assert [p.created for p in again] == [False] * 5
    assert [p.entry.id for p in again] == [p.entry.id for p in first]
    assert await balances(ctx, a) == {"points": 17, "growth": 2, "tickets": 0}
    report = await ledger.verify(ctx)
    assert not [p for p in report.problems if a in str(p) or b in str(p)]


async def test_a_key_reused_for_another_amount_or_an_overdraft_refuses_the_run(ctx):
    m = unique("pm")
    await post_run(ctx, [Posting(m, "points", 10, "r", "test", "k")])
    with pytest.raises(ProblemError) as exc:
        await post_run(
            ctx, [Posting(m, "points", 3, "r", "test", "fresh"), Posting(m, "points", 11, "r", "test", "k")]
        )
    assert exc.value.code == "idempotency_key_reused"
    with pytest.raises(ProblemError) as exc:
        await post_run(
            ctx, [Posting(m, "points", 3, "r", "test", "a"), Posting(m, "points", -20, "r", "test", "b")]
        )
    assert exc.value.code == "insufficient_balance"
    assert await balances(ctx, m) == {"points": 10, "growth": 0, "tickets": 0}


async def test_concurrent_runs_on_the_same_members(ctx):
    members = [unique("pm") for _ in range(3)]
    runs = [
        [Posting(m, "points", 1, "r", "test", f"k{i}") for m in (members if i % 2 else members[::-1])]
        for i in range(8)
    ]
    await asyncio.gather(*(post_run(ctx, r) for r in runs), *(post_run(ctx, r) for r in runs))
    for m in members:
        assert (await balances(ctx, m))["points"] == 8
    report = await ledger.verify(ctx)
    assert not [p for p in report.problems if any(m in str(p) for m in members)]
