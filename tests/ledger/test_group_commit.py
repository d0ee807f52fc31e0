"""Awards that arrive together share a unit of work, and each is still answered as if alone."""

from __future__ import annotations

import asyncio

from server.context import Context
from server.db import GroupCommit
from server.errors import ProblemError
from server.ledger import service as ledger
from tests.support import unique


async def award(ctx: Context, member_id: str, amount: int, key: str) -> ledger.Posted | ProblemError:
    try:
        return await ledger.post_alone(
            ctx,
            member_id,
            currency="points",
            amount=amount,
            reason="together",
            source="adjustment",
            idempotency_key=key,
        )
    except ProblemError as problem:
        return problem


async def test_concurrent_awards_share_units_and_answer_each_alone(ctx: Context) -> None:
    members = [unique("m") for _ in range(20)]
    # Everyone starts with 10 points, in one unit of work of their own.
    for m in members:
        await award(ctx, m, 10, f"{m}:start")
    asks: list[tuple[str, int, str]] = []
    for m in members:
        asks += [
            (m, 5, f"{m}:a"),
            (m, 5, f"{m}:a"),  # the same request twice at once: one entry, one replay
            (m, -100, f"{m}:too-much"),  # more than the balance: refused alone
            (m, 7, f"{m}:start"),  # a key used before for another amount: refused alone
            (m, -3, f"{m}:spend"),
        ]
    answers = await asyncio.gather(*(award(ctx, m, amount, key) for m, amount, key in asks))

    by_member: dict[str, list[ledger.Posted | ProblemError]] = {}
    for (m, _, _), answer in zip(asks, answers, strict=True):
        by_member.setdefault(m, []).append(answer)
    for m, (first, again, too_much, reused, spend) in by_member.items():
        assert isinstance(first, ledger.Posted) and isinstance(again, ledger.Posted)
        assert first.entry.id == again.entry.id and {first.created, again.created} == {True, False}
        assert isinstance(too_much, ProblemError) and too_much.code == "insufficient_balance"
        assert isinstance(reused, ProblemError) and reused.code == "idempotency_key_reused"
        assert isinstance(spend, ledger.Posted) and spend.created
        async with ctx.db.session() as session:
            assert (await ledger.balances(session, m))["points"] == 10 + 5 - 3, m
    assert (await ledger.verify(ctx)).problems == []


async def test_a_unit_that_fails_as_a_whole_answers_each_request() -> None:
    units_seen: list[list[int]] = []

    async def run(items: list[int]) -> list[int | BaseException]:
        units_seen.append(items)
        await asyncio.sleep(0.01)
        if 13 in items:
            raise RuntimeError("unlucky unit")
        return [i * 2 for i in items]

    commit: GroupCommit[int, int] = GroupCommit(run, in_flight=1)
    assert await commit.submit(4) == 8  # alone: a unit of one
    # Requests that arrive while a unit is being written wait and go together in the next.
    first = asyncio.ensure_future(commit.submit(1))
    await asyncio.sleep(0)
    answers = await asyncio.gather(*(commit.submit(i) for i in range(10, 20)), return_exceptions=True)
    assert await first == 2
    assert units_seen == [[4], [1], list(range(10, 20))]
    # That unit failed as a whole (13 was in it): each of its requests hears why.
    assert all(isinstance(a, RuntimeError) for a in answers)
    assert await commit.submit(12) == 24


async def test_a_shared_unit_that_fails_is_written_again_one_request_at_a_time() -> None:
    async def run(items: list[int]) -> list[int | BaseException]:
        await asyncio.sleep(0.01)
        if 13 in items:
            raise RuntimeError("unlucky unit")
        return [i * 2 for i in items]

    commit: GroupCommit[int, int] = GroupCommit(run, in_flight=1, alone_on_failure="test")
    first = asyncio.ensure_future(commit.submit(1))
    await asyncio.sleep(0)
    answers = await asyncio.gather(*(commit.submit(i) for i in range(10, 20)), return_exceptions=True)
    assert await first == 2
    # Only the request that broke the unit fails; the others are written alone and answered.
    assert [a if isinstance(a, int) else "failed" for a in answers] == [
        *(i * 2 for i in range(10, 13)),
        "failed",
        *(i * 2 for i in range(14, 20)),
    ]
