"""The badge engine: each kind of criterion, levels, windows, hidden badges, awards once, rarity,
manual grants; what members see in their collection."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from server.badges import service as badges
from server.badges.models import MemberBadge
from server.errors import ProblemError
from server.ledger import service as ledger
from server.ledger.models import LedgerEntry
from server.members.schemas import MemberIn
from server.members.service import change_tier, upsert_member
from tests.badges.support import issues_of, points, store_with
from tests.support import unique
from tests.tasks.quest_support import deliver, event, serving

T0 = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)  # a Monday

BADGES = """
badges:
  - id: shopper
    name: Shopper
    criteria: {goal: {event: purchase, count: 1}}
    levels:
      - {name: bronze, target: 2, reward: {points: 1}}
      - {name: silver, target: 4, reward: {points: 2}}
      - {name: gold, target: 6, reward: {points: 3}}
    reward: {points: 100}
  - id: spender
    name: Spender
    criteria: {goal: {event: purchase, sum: amount, target: 50, where: "channel == 'online'"}}
    reward: {points: 7, growth: 1}
  - id: critic
    name: Critic
    criteria: {goal: {event: review_posted, distinct: product_id, target: 2}}
  - id: streaker
    name: Streaker
    criteria: {goal: {event: store_visit, streak: 3}}
  - id: starter
    name: Starter
    criteria: {quest: starter}
  - id: week-streak
    name: A week in a row
    criteria: {streak: 7}
  - id: gold-member
    name: Gold member
    criteria: {tier: gold}
  - id: collector
    name: Collector
    criteria: {badges: {count: 2, of: [spender, critic, starter]}}
    reward: {points: 11}
  - id: secret
    name: Secret
    hidden: true
    criteria: {goal: {event: share, count: 1}}
  - id: winter
    name: Winter
    available: {start: "2026-12-01T00:00:00", end: "2027-01-01T00:00:00", timezone: UTC}
    criteria: {goal: {event: store_visit, count: 1}}
  - id: regular
    name: Regular
    repeatable: true
    criteria: {quest: starter}
    reward: {points: 4}
  - id: founder
    name: Founder
    manual: true
    reward: {points: 50}
  - id: winter-gift
    name: Winter gift
    manual: true
    available: {start: "2026-12-01T00:00:00", end: "2027-01-01T00:00:00", timezone: UTC}
"""


@pytest.fixture
def content(ctx):
    with serving(ctx, store_with(BADGES)) as store:
        yield store


async def held(ctx, member_id: str) -> list[tuple[str, int, int]]:
    async with ctx.db.session() as session:
        rows = await badges.held_badges(session, member_id)
    return sorted((r.badge_id, r.level, r.round) for r in rows)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def test_goal_levels_upgrade_one_by_one_with_their_rewards(ctx, content):
    m = unique("b")
    for i in range(3):
        await deliver(ctx, event(m, "purchase", at(i), amount=1, channel="store"))
    assert [b for b in await held(ctx, m) if b[0] == "shopper"] == [("shopper", 1, 1)]
    await deliver(ctx, *[event(m, "purchase", at(10 + i), amount=1, channel="store") for i in range(3)])
    assert [b for b in await held(ctx, m) if b[0] == "shopper"] == [
        ("shopper", 1, 1),
        ("shopper", 2, 1),
        ("shopper", 3, 1),
    ]
    async with ctx.db.session() as session:
        rows = (
            await session.execute(
                sa.select(LedgerEntry.amount, LedgerEntry.idempotency_key).where(
                    LedgerEntry.member_id == m,
                    LedgerEntry.source == "badge",
                    LedgerEntry.idempotency_key.like("badge:shopper:%"),
                )
            )
        ).all()
    # Each level's reward once; the badge's own reward with the last level.
    assert sorted(rows) == [(1, "badge:shopper:1:1"), (2, "badge:shopper:1:2"), (103, "badge:shopper:1:3")]
    # Finished: more purchases change nothing.
    await deliver(ctx, event(m, "purchase", at(30), amount=1, channel="store"))
    assert [b for b in await held(ctx, m) if b[0] == "shopper"] == [
        ("shopper", 1, 1),
        ("shopper", 2, 1),
        ("shopper", 3, 1),
    ]


async def test_sum_distinct_and_streak_goals(ctx, content):
    m = unique("b")
    await deliver(ctx, event(m, "purchase", at(0), amount=30, channel="online"))
    await deliver(ctx, event(m, "purchase", at(1), amount=40, channel="store"))  # filtered out
    assert "spender" not in {b for b, *_ in await held(ctx, m)}
    await deliver(ctx, event(m, "purchase", at(2), amount=20, channel="online"))
    await deliver(ctx, event(m, "review_posted", at(3), product_id="p1", rating=5))
    await deliver(ctx, event(m, "review_posted", at(4), product_id="p1", rating=4))
    assert "critic" not in {b for b, *_ in await held(ctx, m)}
    await deliver(ctx, event(m, "review_posted", at(5), product_id="p2", rating=4))
    for day in (0, 1, 3, 4):  # a gap on day 2 breaks the run
        await deliver(ctx, event(m, "store_visit", T0 + timedelta(days=day)))
    assert "streaker" not in {b for b, *_ in await held(ctx, m)}
    await deliver(ctx, event(m, "store_visit", T0 + timedelta(days=5)))
    got = {b for b, *_ in await held(ctx, m)}
    assert {"spender", "critic", "streaker"} <= got
    # Two of spender, critic and starter: the collector came with them, and paid.
    assert "collector" in got
    async with ctx.db.session() as session:
        keys = set(
            (
                await session.execute(
                    sa.select(LedgerEntry.idempotency_key).where(
                        LedgerEntry.member_id == m, LedgerEntry.source == "badge"
                    )
                )
            ).scalars()
        )
    assert {"badge:spender:1:1", "badge:collector:1:1"} <= keys


async def test_quest_streak_and_tier_criteria(ctx, content):
    m = unique("b")
    await deliver(ctx, event(m, "purchase", at(0), amount=1), event(m, "purchase", at(1), amount=1))
    got = await held(ctx, m)
    assert ("starter", 1, 1) in got and ("regular", 1, 1) in got
    await deliver(
        ctx, event(m, "checkin.completed", at(2), streak=6, date="2026-11-16", cycle_day=6, chest=False)
    )
    assert "week-streak" not in {b for b, *_ in await held(ctx, m)}
    await deliver(
        ctx, event(m, "checkin.completed", at(3), streak=7, date="2026-11-17", cycle_day=7, chest=True)
    )
    assert "week-streak" in {b for b, *_ in await held(ctx, m)}
    async with ctx.db.transaction() as session:
        await upsert_member(ctx, session, m, MemberIn(display_name="T"))
        await change_tier(ctx, session, m, "silver", "test")
    await ctx.outbox.flush()
    assert "gold-member" not in {b for b, *_ in await held(ctx, m)}
    async with ctx.db.transaction() as session:
        await change_tier(ctx, session, m, "diamond", "test")  # above gold counts too
    await ctx.outbox.flush()
    assert "gold-member" in {b for b, *_ in await held(ctx, m)}


async def test_repeatable_badge_is_earned_each_round(ctx, content):
    m = unique("b")
    quests = """
quests:
  - id: starter
    title: Two orders a day
    period: daily
    goal: {event: purchase, count: 2}
"""
    with serving(ctx, store_with(BADGES, quests=quests)):
        for day in range(3):
            when = T0 + timedelta(days=day)
            await deliver(ctx, event(m, "purchase", when, amount=1), event(m, "purchase", when, amount=1))
    assert [r for r in await held(ctx, m) if r[0] == "regular"] == [
        ("regular", 1, 1),
        ("regular", 1, 2),
        ("regular", 1, 3),
    ]
    async with ctx.db.session() as session:
        rows = (
            await session.execute(
                sa.select(LedgerEntry.amount, LedgerEntry.idempotency_key).where(
                    LedgerEntry.member_id == m,
                    LedgerEntry.source == "badge",
                    LedgerEntry.idempotency_key.like("badge:regular:%"),
                )
            )
        ).all()
    # The badge's reward (4 points) once a round.
    assert sorted(rows) == [(4, "badge:regular:1:1"), (4, "badge:regular:2:1"), (4, "badge:regular:3:1")]
    # Six purchases of 1 (the week's third counts three times: 8), the shopper badge's levels
    # (1 + 2 + 3, and its own 100 with the last) and the three rounds of regular (12).
    assert (await points(ctx, m))["points"] == 8 + 106 + 12


async def test_limited_edition_counts_only_inside_its_window(ctx, content):
    m = unique("b")
    await deliver(ctx, event(m, "store_visit", datetime(2026, 11, 30, 23, 59, tzinfo=UTC)))
    assert "winter" not in {b for b, *_ in await held(ctx, m)}
    await deliver(ctx, event(m, "store_visit", datetime(2027, 1, 1, 0, 0, tzinfo=UTC)))
    assert "winter" not in {b for b, *_ in await held(ctx, m)}
    await deliver(ctx, event(m, "store_visit", datetime(2026, 12, 24, 10, tzinfo=UTC)))
    assert "winter" in {b for b, *_ in await held(ctx, m)}


async def test_hidden_badge_shows_only_once_earned(ctx, content):
    m = unique("b")
    seen = await badges.collection(ctx, m, now=T0)
    assert "secret" not in {b["badge_id"] for b in seen["earned"] + seen["locked"]}
    await deliver(ctx, event(m, "share", at(0), channel="chat"))
    seen = await badges.collection(ctx, m, now=T0)
    earned = {b["badge_id"]: b for b in seen["earned"]}
    assert earned["secret"]["hidden"] is True and earned["secret"]["earned_at"]


async def test_collection_shows_progress_what_is_left_and_levels(ctx, content):
    m = unique("b")
    for i in range(3):
        await deliver(ctx, event(m, "purchase", at(i), amount=10, channel="online"))
    seen = await badges.collection(ctx, m, now=at(10))
    every = {b["badge_id"]: b for b in seen["earned"] + seen["locked"]}
    shopper = every["shopper"]
    assert (shopper["level"], shopper["level_name"], shopper["progress"], shopper["target"]) == (
        1,
        "bronze",
        3,
        4,
    )
    assert shopper["remaining_text"] == "1 more order for silver"
    assert [lv["name"] for lv in shopper["levels"]] == ["bronze", "silver", "gold"]
    assert shopper["levels"][0]["earned_at"] and shopper["levels"][1]["earned_at"] is None
    spender = every["spender"]
    assert (spender["status"], spender["progress"], spender["target"]) == ("in_progress", 30, 50)
    assert every["founder"]["status"] == "locked" and every["founder"]["manual"] is True
    assert every["winter"]["status"] == "upcoming"


async def test_a_badge_is_awarded_once_under_concurrent_events(ctx, content):
    m = unique("b")
    sent = [event(m, "purchase", at(i), amount=1, channel="store") for i in range(8)]
    await asyncio.gather(*(deliver(ctx, e) for e in sent))
    once = [("shopper", 1, 1), ("shopper", 2, 1), ("shopper", 3, 1)]
    assert [r for r in await held(ctx, m) if r[0] == "shopper"] == once
    balance = await points(ctx, m)
    # The same events again (a replayed outbox) change nothing.
    await asyncio.gather(*(deliver(ctx, e) for e in sent))
    assert [r for r in await held(ctx, m) if r[0] == "shopper"] == once
    assert await points(ctx, m) == balance
    report = await ledger.verify(ctx)
    assert not [p for p in report.problems if m in p]


async def test_rarity_is_the_share_of_members_holding_it(ctx, content):
    holders = [unique("r") for _ in range(3)]
    for m in holders:
        await deliver(ctx, event(m, "share", at(0), channel="chat"))
    async with ctx.db.session() as session:
        shares = await badges.rarity(ctx, session)
        members = (await session.execute(sa.text("SELECT count(*) FROM members"))).scalar_one()
        holding = (
            await session.execute(
                sa.select(sa.func.count(sa.distinct(MemberBadge.member_id))).where(
                    MemberBadge.badge_id == "secret"
                )
            )
        ).scalar_one()
    assert holding >= 3
    assert shares["secret"] == pytest.approx(holding / members)


async def test_manual_grants_are_idempotent_and_refused_when_they_should_be(ctx, content):
    m = unique("b")
    async with ctx.db.transaction() as session:
        first = await badges.grant(ctx, session, m, "founder", idempotency_key="k1", reason="early")
    async with ctx.db.transaction() as session:
        again = await badges.grant(ctx, session, m, "founder", idempotency_key="k2")
    assert first.created and not again.created and again.id == first.id
    assert (await points(ctx, m))["points"] == 50
    for badge_id, code in (
        ("nope", "badge_not_found"),
        ("shopper", "badge_not_manual"),
        ("winter-gift", "badge_not_available"),
    ):
        with pytest.raises(ProblemError) as exc:
            async with ctx.db.transaction() as session:
                await badges.grant(ctx, session, m, badge_id, idempotency_key="k3", now=T0)
        assert exc.value.code == code
    assert await held(ctx, m) == [("founder", 1, 1)]
    async with ctx.db.transaction() as session:
        gift = await badges.grant(
            ctx, session, m, "winter-gift", idempotency_key="k4", now=datetime(2026, 12, 5, tzinfo=UTC)
        )
    assert gift.created


async def test_a_quest_can_give_a_manual_badge(ctx, content):
    m = unique("b")
    await deliver(ctx, event(m, "review_posted", at(0), product_id="p", rating=5))
    assert ("founder", 1, 1) in await held(ctx, m)


def test_bad_badge_content_names_file_line_and_field():
    bad = """
badges:
  - id: a
    name: A
    criteria: {quest: missing}
  - id: b
    name: B
    criteria: {tier: platinum}
  - id: c
    name: C
    criteria: {goal: {event: nothing, count: 1}}
  - id: d
    name: D
    criteria: {badges: {count: 9}}
  - id: a
    name: Again
    manual: true
"""
    found = issues_of(bad)
    fields = {(line, field) for _, line, field, _ in found}
    assert (5, "badges.0.criteria.quest") in fields
    assert (8, "badges.1.criteria.tier") in fields
    assert (11, "badges.2.criteria.goal.event") in fields
    assert (14, "badges.3.criteria.badges.count") in fields
    assert any("already used" in msg for *_, msg in found)
    shapes = """
badges:
  - id: e
    name: E
    manual: true
    criteria: {streak: 3}
  - id: f
    name: F
    criteria: {streak: 3}
    levels: [{name: x, target: 5}, {name: y, target: 4}]
"""
    found = issues_of(shapes)
    assert {line for _, line, _, _ in found} == {3, 7}
    assert any("not both" in msg for *_, msg in found)
    assert any("above the one before" in msg for *_, msg in found)
    quest_gives_earned = """
quests:
  - id: q
    title: Q
    goal: {event: purchase, count: 1}
    reward: {badge: shopper}
"""
    found = issues_of(BADGES, quests=quest_gives_earned)
    assert any("quest gives only manual badges" in msg for *_, msg in found)
