"""The tier ladder (promotion at once, a drop of one tier after notice, growth in several
dimensions) and the earning rules (multipliers by tier, weekday, frequency and boosts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from server.badges import tiers
from server.badges.models import TierStatus
from server.ledger import service as ledger
from server.ledger.earning import grant_boost
from server.ledger.models import LedgerEntry
from server.members.models import Member
from server.members.schemas import MemberIn
from server.members.service import upsert_member
from tests.badges.support import store_with
from tests.support import unique
from tests.tasks.quest_support import deliver, event, serving

TIERS = """
window_months: 12
reevaluation: {every: monthly, notice_days: 30}
dimensions:
  spend: {weight: 1.0, sources: [purchase]}
  frequency: {weight: 2.0, sources: [checkin]}
  interaction: {weight: 1.0, sources: [quest, badge, event]}
  social: {weight: 3.0, sources: [referral, team]}
tiers:
  - {id: regular, name: Regular, growth: 0}
  - {id: silver, name: Silver, growth: 100}
  - {id: gold, name: Gold, growth: 300}
  - {id: diamond, name: Diamond, growth: 700}
"""

EARNING = """
purchase: {points_per_unit: 1, growth_per_unit: 1}
events:
  - {event: review_posted, points: 10, growth: 4, dimension: interaction}
multipliers:
  - {id: gold-bonus, tiers: [gold], factor: 1.5, events: [purchase]}
  - {id: diamond-wednesday, tiers: [diamond], weekdays: [wednesday], factor: 2}
  - {id: third-of-the-week, frequency: {nth: 3, per: week}, events: [purchase], factor: 3}
max_factor: 5
"""

MONDAY = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
WEDNESDAY = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


@pytest.fixture
def content(ctx):
    with serving(ctx, store_with(None, quests="quests: []\n", tiers=TIERS, earning=EARNING)) as store:
        yield store


async def member(ctx, tier: str | None = None, zone: str = "UTC") -> str:
    m = unique("t")
    async with ctx.db.transaction() as session:
        await upsert_member(ctx, session, m, MemberIn(display_name="T", timezone=zone, tier=tier))
    return m


async def tier_of(ctx, m: str) -> str | None:
    async with ctx.db.session() as session:
        return (await session.get(Member, m, populate_existing=True)).tier


async def grow(ctx, m: str, amount: int, source: str, key: str | None = None) -> None:
    async with ctx.db.transaction() as session:
        await ledger.post(
            ctx,
            session,
            m,
            currency="growth",
            amount=amount,
            reason="test",
            source=source,
            idempotency_key=key or unique("g"),
        )
    await ctx.outbox.flush()


async def entries(ctx, m: str, currency: str = "points") -> list[LedgerEntry]:
    async with ctx.db.session() as session:
        return list(
            (
                await session.execute(
                    sa.select(LedgerEntry)
                    .where(LedgerEntry.member_id == m, LedgerEntry.currency == currency)
                    .order_by(LedgerEntry.seq)
                )
            ).scalars()
        )


async def test_growth_in_several_dimensions_promotes_at_once(ctx, content):
    m = await member(ctx)
    await grow(ctx, m, 40, "purchase")  # spend x1 = 40
    await grow(ctx, m, 20, "checkin")  # frequency x2 = 40
    # 80 qualifies for the lowest rung only: a member without a tier is not moved onto it.
    assert await tier_of(ctx, m) is None
    await grow(ctx, m, 10, "referral")  # social x3 = 30: 110 qualifies for silver
    assert await tier_of(ctx, m) == "silver"
    await grow(ctx, m, 70, "team")  # +210 = 320: gold
    assert await tier_of(ctx, m) == "gold"
    seen = await tiers.member_tiers(ctx, m)
    me = seen["member"]
    assert me["tier"] == "gold" and me["qualifying_growth"] == 320
    by = {d["dimension"]: (d["growth"], d["counted"]) for d in me["growth_by_dimension"]}
    assert by["spend"] == (40, 40) and by["frequency"] == (20, 40) and by["social"] == (80, 240)
    assert me["next_tier"] == {"tier": "diamond", "name": "Diamond", "growth": 700, "growth_to_next": 380}
    assert [t["tier"] for t in seen["tiers"]] == ["regular", "silver", "gold", "diamond"]


async def test_a_drop_is_one_tier_after_notice_and_once_per_period(ctx, content):
    m = await member(ctx, tier="diamond")  # set by the brand, with no growth behind it
    now = datetime.now(UTC)
    first = await tiers.review_tiers(ctx, now)
    assert first.noticed >= 1 and await tier_of(ctx, m) == "diamond"
    async with ctx.db.session() as session:
        status = await session.get(TierStatus, m)
    assert status.notice_tier == "gold" and status.drop_on > now
    # Evaluated once in the period: a second run the same day changes nothing.
    await tiers.review_tiers(ctx, now + timedelta(hours=1))
    assert await tier_of(ctx, m) == "diamond"
    async with ctx.db.session() as session:
        after = await session.get(TierStatus, m, populate_existing=True)
    assert (after.notice_given_at, after.drop_on) == (status.notice_given_at, status.drop_on)
    # The notice runs out: one tier down, not three.
    await tiers.review_tiers(ctx, now + timedelta(days=31))
    assert await tier_of(ctx, m) == "gold"
    async with ctx.db.session() as session:
        status = await session.get(TierStatus, m, populate_existing=True)
    assert status.notice_tier is None
    # The next period notices again before the next step down.
    await tiers.review_tiers(ctx, now + timedelta(days=62))
    assert await tier_of(ctx, m) == "gold"


async def test_qualifying_again_cancels_the_notice(ctx, content):
    m = await member(ctx, tier="silver")
    now = datetime.now(UTC)
    await tiers.review_tiers(ctx, now)
    async with ctx.db.session() as session:
        assert (await session.get(TierStatus, m)).notice_tier == "regular"
    await grow(ctx, m, 150, "purchase")
    await tiers.review_tiers(ctx, now + timedelta(days=31))
    assert await tier_of(ctx, m) == "silver"
    async with ctx.db.session() as session:
        assert (await session.get(TierStatus, m, populate_existing=True)).notice_tier is None


async def test_tier_and_weekday_multipliers_and_their_combination(ctx, content):
    gold = await member(ctx, tier="gold")
    await deliver(ctx, event(gold, "purchase", MONDAY, amount=10))
    [entry] = await entries(ctx, gold)
    assert entry.amount == 15
    assert entry.details["base"] == 10 and entry.details["factor"] == 1.5
    assert [(x["id"], x["kind"]) for x in entry.details["multipliers"]] == [("gold-bonus", "tier")]

    diamond = await member(ctx, tier="diamond")
    await deliver(ctx, event(diamond, "purchase", MONDAY, amount=10))
    await deliver(ctx, event(diamond, "review_posted", WEDNESDAY, product_id="p", rating=5))
    first, second = await entries(ctx, diamond)
    assert first.amount == 10 and first.details["multipliers"] == []
    assert second.amount == 20 and second.details["rule"] == "earning.event:review_posted"
    assert second.details["multipliers"][0]["kind"] == "weekday"
    # Growth is not multiplied unless a multiplier names it; it counts in its dimension.
    [growth] = [e for e in await entries(ctx, diamond, "growth") if e.source == "event"]
    assert growth.amount == 4 and growth.details["dimension"] == "interaction"


async def test_wednesday_is_the_members_local_wednesday(ctx, content):
    m = await member(ctx, tier="diamond", zone="Pacific/Auckland")
    tuesday_utc = datetime(2026, 11, 17, 12, 0, tzinfo=UTC)  # already Wednesday in Auckland
    await deliver(ctx, event(m, "review_posted", tuesday_utc, product_id="p", rating=5))
    [entry] = await entries(ctx, m)
    assert entry.amount == 20 and entry.details["local_weekday"] == "wednesday"


async def test_the_third_purchase_of_the_week_and_a_boost_combine(ctx, content):
    m = await member(ctx)
    async with ctx.db.transaction() as session:
        boost = await grant_boost(
            ctx,
            session,
            m,
            key="referral:abc",
            factor=2,
            duration=timedelta(days=30),
            source="referral",
            reason="a friend joined",
            starts_at=MONDAY - timedelta(days=1),
        )
        again = await grant_boost(
            ctx, session, m, key="referral:abc", factor=3, duration=timedelta(days=1), source="x", reason="y"
        )
    assert again.id == boost.id and again.factor == 2
    for i in range(4):
        await deliver(ctx, event(m, "purchase", MONDAY + timedelta(hours=i), amount=10))
    # Next week starts counting again.
    await deliver(ctx, event(m, "purchase", MONDAY + timedelta(days=7), amount=10))
    got = [(e.amount, [x["kind"] for x in e.details["multipliers"]]) for e in await entries(ctx, m)]
    assert got == [
        (20, ["boost"]),
        (20, ["boost"]),
        (50, ["frequency", "boost"]),  # 10 x 3 x 2 = 60, held to max_factor 5
        (20, ["boost"]),
        (20, ["boost"]),
    ]
    third = (await entries(ctx, m))[2]
    assert third.details["factor"] == 5.0


async def test_a_replayed_event_is_not_counted_twice_for_frequency(ctx, content):
    m = await member(ctx)
    first = event(m, "purchase", MONDAY, amount=10)
    await deliver(ctx, first)
    await deliver(ctx, first)  # a second delivery of the same event
    await deliver(ctx, event(m, "purchase", MONDAY + timedelta(hours=1), amount=10))
    await deliver(ctx, event(m, "purchase", MONDAY + timedelta(hours=2), amount=10))
    assert [e.amount for e in await entries(ctx, m)] == [10, 10, 30]
    report = await ledger.verify(ctx)
    assert not [p for p in report.problems if m in p]


def test_thresholds_must_be_progressive():
    from tests.badges.support import issues_of

    flat = TIERS.replace("growth: 700", "growth: 400")  # steps 100, 200, 100
    found = issues_of(None, quests="quests: []\n", tiers=flat)
    assert any("progressive" in msg for *_, msg in found)
