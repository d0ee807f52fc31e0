"""Points expiry: the oldest points expire first, each expiry is an entry of its own, nothing expires
twice, and the chains still verify.

Entries are hashed with the moment they were posted, so no test backdates a row: each reads back
when its points were earned and applies the rule at a moment a year after that instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from server.content.loader import ContentStore, validate_files
from server.context import Context
from server.ledger import expiry
from server.ledger import service as ledger
from server.ledger.expiry import ExpiryReport, expire_points
from server.ledger.models import LedgerEntry, PointsExpiryNotice
from server.members.service import ensure_member
from tests.conftest import server_env
from tests.support import ROOT, pinned, unique

YEAR = timedelta(days=365)
TICK = timedelta(microseconds=1)


def _store(ctx: Context, after_days: int | None, warn_days: int) -> ContentStore:
    """The content serving, with the expiry rule replaced."""
    files = dict(ctx.content.files)
    earning = yaml.safe_load(files.get("earning.yaml") or "") or {}
    earning["expiry"] = {"after_days": after_days, "warn_days": warn_days}
    files["earning.yaml"] = yaml.safe_dump(earning)
    store, issues = validate_files(files, "test")
    assert not issues, "\n".join(map(str, issues))
    return store


@contextlib.contextmanager
def _rule(ctx: Context, after_days: int | None = 365, warn_days: int = 30) -> Iterator[None]:
    before = ctx.content
    ctx.content = pinned(ctx, _store(ctx, after_days, warn_days))
    try:
        yield
    finally:
        ctx.content = before


@pytest.fixture
def a_year(ctx: Context) -> Iterator[None]:
    """Points expire 365 days after they were earned, with a warning 30 days ahead."""
    with _rule(ctx):
        yield


async def earn(ctx: Context, member_id: str, amount: int, key: str) -> LedgerEntry:
    async with ctx.db.transaction() as session:
        await ensure_member(session, member_id)
        posted = await ledger.post(
            ctx,
            session,
            member_id,
            currency="points",
            amount=amount,
            reason="earn",
            source="test",
            idempotency_key=key,
        )
    # Apart in time from whatever is posted next, so that a cutoff can fall between the two.
    await asyncio.sleep(0.005)
    return posted.entry


async def spend(ctx: Context, member_id: str, amount: int, key: str) -> LedgerEntry:
    async with ctx.db.transaction() as session:
        posted = await ledger.post(
            ctx,
            session,
            member_id,
            currency="points",
            amount=-amount,
            reason="redeem",
            source="rewards",
            idempotency_key=key,
        )
    return posted.entry


async def reverse(ctx: Context, member_id: str, entry: LedgerEntry) -> LedgerEntry:
    assert entry.id is not None
    async with ctx.db.transaction() as session:
        posted = await ledger.reverse(ctx, session, member_id, entry.id, "correction")
    return posted.entry


async def expire(ctx: Context, member_id: str, now: datetime) -> ExpiryReport:
    return await expire_points(ctx, now, member_ids=[member_id])


async def points(ctx: Context, member_id: str) -> int:
    async with ctx.db.session() as session:
        return (await ledger.balances(session, member_id))["points"]


async def expiries(ctx: Context, member_id: str) -> list[LedgerEntry]:
    async with ctx.db.session() as session:
        return list(
            (
                await session.execute(
                    sa.select(LedgerEntry)
                    .where(LedgerEntry.member_id == member_id, LedgerEntry.source == "expiry")
                    .order_by(LedgerEntry.seq)  # type: ignore[arg-type]
                )
            ).scalars()
        )


async def warnings(ctx: Context, member_id: str) -> list[dict[str, Any]]:
    history = [json.loads(m) for _, m in await ctx.hub.history(member_id, "0-0")]
    return [m["data"] for m in history if m["type"] == "points.expiring_soon"]


async def notices(ctx: Context, member_id: str) -> list[Any]:
    async with ctx.db.session() as session:
        return list(
            (
                await session.execute(
                    sa.select(PointsExpiryNotice.expires_on).where(PointsExpiryNotice.member_id == member_id)
                )
            ).scalars()
        )


async def assert_verified(ctx: Context, *member_ids: str) -> None:
    problems = (await ledger.verify(ctx)).problems
    assert not [p for p in problems if any(m in p for m in member_ids)]


def midway(a: LedgerEntry, b: LedgerEntry) -> datetime:
    return a.created_at + (b.created_at - a.created_at) / 2


async def test_points_expire_in_full_a_year_after_they_were_earned(ctx, a_year, http, as_member):
    m = unique("exp")
    earned = await earn(ctx, m, 100, "e1")
    report = await expire(ctx, m, earned.created_at + YEAR - TICK)
    assert report.expired_points == 0 and await points(ctx, m) == 100

    report = await expire(ctx, m, earned.created_at + YEAR)
    assert (report.members, report.expired_members, report.expired_points) == (1, 1, 100)
    assert await points(ctx, m) == 0
    [entry] = await expiries(ctx, m)
    assert (entry.amount, entry.balance_after, entry.reason) == (-100, 0, "points_expired")
    assert entry.idempotency_key == "expiry:100:0"
    assert entry.details == {
        "rule": "earning.expiry",
        "after_days": 365,
        "expired_earned_before": earned.created_at.isoformat(),
    }
    # The member sees it in their ledger, as an entry of its own.
    page = (await http.get("/v1/ledger", headers=as_member(m))).json()
    newest = page["entries"][0]
    assert (newest["source"], newest["amount"], newest["balance_after"]) == ("expiry", -100, 0)
    assert [e["amount"] for e in page["entries"]] == [-100, 100]
    expired_message = [
        json.loads(raw)["data"]
        for _, raw in await ctx.hub.history(m, "0-0")
        if json.loads(raw)["data"].get("source") == "expiry"
    ]
    assert [(d["amount"], d["balance_after"], d["reason"]) for d in expired_message] == [
        (-100, 0, "points_expired")
    ]
    await assert_verified(ctx, m)


async def test_spends_use_the_oldest_points_first_and_expiry_follows_that_order(ctx, a_year):
    m = unique("exp")
    first = await earn(ctx, m, 100, "e1")
    second = await earn(ctx, m, 50, "e2")
    await spend(ctx, m, 80, "s1")  # 80 of the first 100

    # A year after the first points: the 20 of them left expire, the 50 earned later do not.
    report = await expire(ctx, m, midway(first, second) + YEAR)
    assert report.expired_points == 20 and await points(ctx, m) == 50
    assert (await expire(ctx, m, midway(first, second) + YEAR)).expired_points == 0

    await earn(ctx, m, 30, "e3")
    # A year after the second points: they expire too; the 30 earned since stay.
    report = await expire(ctx, m, second.created_at + YEAR)
    assert report.expired_points == 50 and await points(ctx, m) == 30

    entries = await expiries(ctx, m)
    assert [e.amount for e in entries] == [-20, -50]
    assert [e.idempotency_key for e in entries] == ["expiry:100:0", "expiry:150:20"]
    assert [e.details["expired_earned_before"] for e in entries] == [
        (midway(first, second)).isoformat(),
        second.created_at.isoformat(),
    ]
    await assert_verified(ctx, m)


async def test_a_partial_spend_leaves_part_of_the_oldest_points_to_expire(ctx, a_year):
    m = unique("exp")
    first = await earn(ctx, m, 100, "e1")
    await spend(ctx, m, 30, "s1")
    later = await earn(ctx, m, 40, "e2")
    report = await expire(ctx, m, midway(first, later) + YEAR)
    assert report.expired_points == 70 and await points(ctx, m) == 40
    await assert_verified(ctx, m)


async def test_reruns_and_concurrent_runs_expire_and_warn_once(ctx, a_year):
    m = unique("exp")
    first = await earn(ctx, m, 100, "e1")
    second = await earn(ctx, m, 40, "e2")
    await spend(ctx, m, 10, "s1")
    now = midway(first, second) + YEAR

    reports = await asyncio.gather(*(expire(ctx, m, now) for _ in range(4)))
    assert sum(r.expired_points for r in reports) == 90
    assert sum(r.warned for r in reports) == 1
    again = await expire(ctx, m, now)
    assert (again.expired_points, again.warned) == (0, 0)

    assert [e.amount for e in await expiries(ctx, m)] == [-90]
    assert await points(ctx, m) == 40
    assert await warnings(ctx, m) == [
        {"amount": 40, "expires_at": (second.created_at + YEAR).isoformat(), "balance": 40}
    ]
    assert await notices(ctx, m) == [(second.created_at + YEAR).date()]
    await assert_verified(ctx, m)


async def test_a_reversed_credit_expires_nothing_and_a_refund_gives_back_the_oldest_points(ctx, a_year):
    # A reversed credit: those very points are gone, not the oldest of what is left.
    m = unique("exp")
    first = await earn(ctx, m, 100, "e1")
    second = await earn(ctx, m, 50, "e2")
    await reverse(ctx, m, first)
    assert (await expire(ctx, m, midway(first, second) + YEAR)).expired_points == 0
    assert await points(ctx, m) == 50
    assert (await expire(ctx, m, second.created_at + YEAR)).expired_points == 50
    assert await points(ctx, m) == 0

    # A refunded spend: the points it took were the oldest, and they are due already.
    r = unique("exp")
    earned = await earn(ctx, r, 100, "e1")
    spent = await spend(ctx, r, 30, "s1")
    now = earned.created_at + YEAR
    assert (await expire(ctx, r, now)).expired_points == 70
    await reverse(ctx, r, spent)
    assert await points(ctx, r) == 30
    assert (await expire(ctx, r, now)).expired_points == 30
    assert await points(ctx, r) == 0
    assert [e.idempotency_key for e in await expiries(ctx, r)] == ["expiry:100:0", "expiry:100:70"]
    await assert_verified(ctx, m, r)


async def test_points_given_back_after_an_expiry_count_as_earned_again(ctx, a_year):
    m = unique("exp")
    earned = await earn(ctx, m, 100, "e1")
    now = earned.created_at + YEAR
    assert (await expire(ctx, m, now)).expired_points == 100
    [expired] = await expiries(ctx, m)
    restored = await reverse(ctx, m, expired)
    assert await points(ctx, m) == 100
    # Not taken again at once: they run for a year from when they were given back.
    assert (await expire(ctx, m, now)).expired_points == 0
    assert (await expire(ctx, m, restored.created_at + YEAR - TICK)).expired_points == 0
    assert (await expire(ctx, m, restored.created_at + YEAR)).expired_points == 100
    assert await points(ctx, m) == 0
    assert [e.idempotency_key for e in await expiries(ctx, m)] == ["expiry:100:0", "expiry:200:100"]
    await assert_verified(ctx, m)


async def test_expiring_soon_is_sent_once_per_expiry_date(ctx, a_year):
    m = unique("exp")
    first = await earn(ctx, m, 100, "e1")
    second = await earn(ctx, m, 50, "e2")
    await spend(ctx, m, 80, "s1")

    early = first.created_at + YEAR - timedelta(days=10)
    report = await expire(ctx, m, early)
    assert (report.expired_points, report.warned) == (0, 1)
    # The 20 left of the first points and the 50 after them fall due within 30 days, the oldest first.
    assert await warnings(ctx, m) == [
        {"amount": 70, "expires_at": (first.created_at + YEAR).isoformat(), "balance": 70}
    ]
    assert (await expire(ctx, m, early + timedelta(hours=1))).warned == 0
    assert await notices(ctx, m) == [(first.created_at + YEAR).date()]

    # Once the first points expired, the next ones are warned about if they fall on another date.
    report = await expire(ctx, m, midway(first, second) + YEAR)
    assert report.expired_points == 20
    dates = {(first.created_at + YEAR).date(), (second.created_at + YEAR).date()}
    assert len(await warnings(ctx, m)) == len(dates)
    assert sorted(await notices(ctx, m)) == sorted(dates)
    await assert_verified(ctx, m)


async def test_no_warning_when_nothing_is_due_within_the_window(ctx):
    m = unique("exp")
    with _rule(ctx, after_days=365, warn_days=0):
        earned = await earn(ctx, m, 100, "e1")
        report = await expire(ctx, m, earned.created_at + YEAR - TICK)
    assert (report.members, report.expired_points, report.warned) == (0, 0, 0)
    assert await warnings(ctx, m) == []


async def test_points_never_expire_without_an_expiry_rule(ctx):
    m = unique("exp")
    with _rule(ctx, after_days=None):
        earned = await earn(ctx, m, 100, "e1")
        report = await expire(ctx, m, earned.created_at + 10 * YEAR)
    assert report == ExpiryReport()
    assert await points(ctx, m) == 100 and await expiries(ctx, m) == []


async def test_a_member_the_ledger_refuses_is_reported_and_the_others_expire(ctx, a_year):
    taken, other = unique("exp"), unique("exp")
    earned = await earn(ctx, taken, 100, "e1")
    await earn(ctx, other, 100, "e1")
    # A movement of the brand's that happens to use the key the expiry would take.
    await spend(ctx, taken, 1, "expiry:100:0")
    report = await expire_points(
        ctx, earned.created_at + timedelta(seconds=5) + YEAR, member_ids=[taken, other]
    )
    assert (report.expired_members, report.expired_points) == (1, 100)
    assert len(report.refused) == 1 and report.refused[0].startswith(f"{taken}: ")
    assert (await points(ctx, taken), await points(ctx, other)) == (99, 0)
    await assert_verified(ctx, taken, other)


@pytest.fixture
async def own_ctx(ctx: Context, own_settings) -> AsyncIterator[Context]:
    """A context on a database of the test's own: a run over every member of it touches no other test's."""
    from server.db import Database
    from server.outbox import Outbox
    from server.realtime.hub import Hub
    from server.redis import RedisHandle

    redis = RedisHandle(own_settings)
    redis.start()
    own = Context(settings=own_settings, db=Database(own_settings), redis=redis)
    own.content = _store(ctx, 365, 30)
    own.outbox = Outbox(own)
    own.hub = Hub(own)
    await own.hub.start()
    try:
        yield own
    finally:
        await own.hub.stop()
        await own.outbox.close()
        await own.db.dispose()
        await redis.close()


async def test_a_run_pages_through_every_member_holding_points(own_ctx, own_settings, monkeypatch):
    ctx = own_ctx
    monkeypatch.setattr(expiry, "BATCH", 2)
    due = [unique("exp") for _ in range(5)]
    earned = [await earn(ctx, m, 100, "e1") for m in due]
    cutoff = max(e.created_at for e in earned)
    soon = unique("exp")
    await earn(ctx, soon, 60, "e1")  # after the cutoff, within the warning window
    spent = unique("exp")
    await earn(ctx, spent, 100, "e1")
    await spend(ctx, spent, 100, "s1")  # nothing left to expire

    report = await expire_points(ctx, cutoff + YEAR)
    assert (report.members, report.expired_members, report.expired_points, report.warned) == (6, 5, 500, 1)
    assert report.refused == []
    for m in due:
        assert await points(ctx, m) == 0
    assert await points(ctx, soon) == 60
    assert [e["amount"] for e in await warnings(ctx, soon)] == [60]
    assert await expiries(ctx, spent) == []
    assert (await ledger.verify(ctx)).problems == []

    # The scheduled job, as an instance runs it now: nothing is a year old yet.
    job = ctx.pipeline.jobs["ledger.expire_points"]
    assert job.seconds(ctx) == own_settings.points_expiry_seconds
    await job.func(ctx, "now")
    assert await points(ctx, soon) == 60

    # The operator's command, on the same database.
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "server.cli", "ledger", "expire"],
        env={**os.environ, **server_env(own_settings)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "checked 0 members: 0 points expired from 0 members" in result.stdout
