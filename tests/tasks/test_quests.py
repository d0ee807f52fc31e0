"""The quest engine: goals over member events, chains, windows, periods, tiers, replays; what members see."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from server.ledger.models import LedgerEntry
from server.members.schemas import MemberIn
from server.members.service import upsert_member
from server.tasks.quests import member_quests
from tests.support import unique
from tests.tasks.quest_support import deliver, event, serving, store_of

T0 = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)  # a Monday, 12:00 UTC

QUESTS = """
quests:
  - id: online-orders
    title: Three online orders
    goal: {event: purchase, count: 3, where: "channel == 'online' and amount >= 10"}
    reward: {points: 10}
    remaining_text:
      one: 1 more order to unlock the coupon
      other: "{remaining} more orders to unlock the coupon"
  - id: big-spender
    title: Spend 100
    goal: {event: purchase, sum: amount, target: 100, where: {channel: [online, store]}}
    reward: {points: 20, growth: 2}
  - id: explorer
    title: Three departments
    goal: {event: product_viewed, distinct: category, target: 3}
    reward: {points: 30}
  - id: three-in-a-row
    title: Three days in a row
    goal: {event: checkin.completed, streak: 3}
    reward: {points: 40}
  - id: daily-view
    title: One view a day
    period: daily
    goal: {event: product_viewed, count: 1}
    reward: {points: 1}
  - id: weekly-shares
    title: Two shares a week
    period: weekly
    goal: {event: share, count: 2}
    reward: {points: 2}
  - id: monthly-review
    title: Reviews, up to three a month
    period: monthly
    times: 3
    goal: {event: review_posted, count: 1}
    reward: {points: 3}
  - id: chain
    title: A chain
    steps:
      - id: visit
        title: Visit a store
        goal: {event: store_visit, count: 1}
        reward: {points: 5}
      - id: buy
        title: Buy twice
        goal: {event: purchase, count: 2}
        reward: {points: 6}
      - id: share
        title: Share once
        goal: {event: share, count: 1}
        reward: {points: 7}
    reward: {points: 100, growth: 10}
  - id: after-chain
    title: After the chain
    requires: [chain]
    goal: {event: share, count: 1}
    reward: {points: 8}
  - id: winter
    title: Winter event
    available: {start: "2026-12-01T00:00:00", end: "2026-12-08T00:00:00", timezone: Asia/Tokyo}
    goal: {event: store_visit, count: 1}
    reward: {points: 9}
  - id: dailies-week
    title: The daily view on two days of a week
    period: weekly
    goal: {event: quest.completed, count: 2, where: "quest_id == 'daily-view'"}
    reward: {points: 4}
  - id: gold-only
    title: Gold members
    tiers: [gold]
    goal: {event: store_visit, count: 1}
    reward: {points: 11}
"""


@pytest.fixture(scope="module")
def quests_store():
    return store_of(QUESTS)


@pytest.fixture
def content(ctx, quests_store):
    with serving(ctx, quests_store):
        yield quests_store


async def rewards(ctx, member_id: str) -> list[tuple[str, str, int]]:
    """Quest rewards in the ledger: (idempotency key, currency, amount), in order."""
    async with ctx.db.session() as session:
        rows = await session.execute(
            sa.select(LedgerEntry.idempotency_key, LedgerEntry.currency, LedgerEntry.amount)
            .where(LedgerEntry.member_id == member_id, LedgerEntry.source == "quest")
            .order_by(LedgerEntry.id)
        )
        return [tuple(r) for r in rows]


async def quest(ctx, member_id: str, quest_id: str, now: datetime = T0):
    return (await member_quests(ctx, member_id, now=now, only=quest_id))[0]


async def make_member(ctx, timezone: str = "UTC", tier: str | None = None) -> str:
    member_id = unique("q")
    async with ctx.db.transaction() as session:
        await upsert_member(ctx, session, member_id, MemberIn(timezone=timezone, tier=tier))
    return member_id


async def messages(ctx, member_id: str) -> list[dict]:
    return [json.loads(m) for _, m in await ctx.hub.history(member_id, "0-0")]


async def test_count_with_a_filter(ctx, content):
    m = await make_member(ctx)
    await deliver(ctx, event(m, "purchase", T0, amount=50, channel="store"))  # filtered out
    await deliver(ctx, event(m, "purchase", T0, amount=5, channel="online"))  # too small
    await deliver(ctx, event(m, "purchase", T0, amount=10, channel="online"))
    q = await quest(ctx, m, "online-orders")
    assert (q.status, q.progress, q.target) == ("active", 1, 3)
    assert q.remaining_text == "2 more orders to unlock the coupon"
    await deliver(ctx, event(m, "purchase", T0, amount=12, channel="online"))
    assert (await quest(ctx, m, "online-orders")).remaining_text == "1 more order to unlock the coupon"
    await deliver(ctx, event(m, "purchase", T0, amount=99, channel="online"))
    q = await quest(ctx, m, "online-orders")
    assert (q.status, q.progress, q.completions) == ("completed", 3, 1)
    assert ("quest:online-orders:all:1", "points", 10) in await rewards(ctx, m)
    # Done once: more orders change nothing.
    await deliver(ctx, event(m, "purchase", T0, amount=99, channel="online"))
    assert [r for r in await rewards(ctx, m) if r[0].startswith("quest:online-orders")] == [
        ("quest:online-orders:all:1", "points", 10)
    ]


async def test_sum_of_a_property(ctx, content):
    m = await make_member(ctx)
    await deliver(ctx, event(m, "purchase", T0, amount=40.5, channel="online"))
    await deliver(ctx, event(m, "purchase", T0, amount=1000, channel="app"))  # not in the list
    q = await quest(ctx, m, "big-spender")
    assert (q.progress, q.remaining_text) == (40.5, "59.5 more in spend")
    await deliver(ctx, event(m, "purchase", T0, amount=59.5, channel="store"))
    assert (await quest(ctx, m, "big-spender")).status == "completed"
    keys = {(k, c, a) for k, c, a in await rewards(ctx, m)}
    assert {("quest:big-spender:all:1", "points", 20), ("quest:big-spender:all:1", "growth", 2)} <= keys


async def test_distinct_values(ctx, content):
    m = await make_member(ctx)
    for category in ("shoes", "shoes", "bags", "shoes", "hats"):
        await deliver(ctx, event(m, "product_viewed", T0, category=category))
        if category == "bags":
            q = await quest(ctx, m, "explorer")
            assert (q.progress, q.remaining_text) == (2, "1 more different department")
    assert (await quest(ctx, m, "explorer")).status == "completed"


async def test_streak_of_local_days(ctx, content):
    m = await make_member(ctx, "America/New_York")
    # 03:00 UTC on the 17th is still the 16th in New York: these two are one local day.
    await deliver(ctx, event(m, "checkin.completed", T0, streak=1))
    await deliver(ctx, event(m, "checkin.completed", T0 + timedelta(hours=15), streak=1))
    q = await quest(ctx, m, "three-in-a-row", now=T0 + timedelta(hours=15))
    assert q.progress == 1
    await deliver(ctx, event(m, "checkin.completed", T0 + timedelta(days=1), streak=2))
    # A day missed: the run starts again.
    await deliver(ctx, event(m, "checkin.completed", T0 + timedelta(days=3), streak=1))
    q = await quest(ctx, m, "three-in-a-row", now=T0 + timedelta(days=3))
    assert (q.progress, q.status) == (1, "active")
    assert q.remaining_text == "2 more days in a row"
    # Shown as broken once a local day passes without one.
    assert (await quest(ctx, m, "three-in-a-row", now=T0 + timedelta(days=5))).progress == 0
    await deliver(ctx, event(m, "checkin.completed", T0 + timedelta(days=4), streak=2))
    await deliver(ctx, event(m, "checkin.completed", T0 + timedelta(days=5), streak=3))
    assert (await quest(ctx, m, "three-in-a-row", now=T0 + timedelta(days=5))).status == "completed"


async def test_chain_unlocks_in_order_with_step_and_chain_rewards(ctx, content):
    m = await make_member(ctx)
    q = await quest(ctx, m, "chain")
    assert [s.status for s in q.steps] == ["active", "locked", "locked"]
    assert q.steps[1].remaining_text == "Unlocks after: Visit a store"
    # A purchase before its step is unlocked does not count.
    await deliver(ctx, event(m, "purchase", T0, amount=1))
    assert (await quest(ctx, m, "chain")).steps[1].progress == 0
    await deliver(ctx, event(m, "store_visit", T0, store_id="s1"))
    q = await quest(ctx, m, "chain")
    assert [s.status for s in q.steps] == ["completed", "active", "locked"]
    assert (q.progress, q.target) == (1, 3)
    await deliver(ctx, event(m, "purchase", T0, amount=1), event(m, "purchase", T0, amount=2))
    # The share unlocks the chain's last step... and also counts for `after-chain`, still locked:
    await deliver(ctx, event(m, "share", T0, network="x"))
    q = await quest(ctx, m, "chain")
    assert q.status == "completed" and [s.status for s in q.steps] == ["completed"] * 3
    assert await rewards(ctx, m) == [
        ("quest:chain:all:1:visit", "points", 5),
        ("quest:chain:all:1:buy", "points", 6),
        ("quest:chain:all:1:share", "points", 7),
        ("quest:chain:all:1", "points", 100),
        ("quest:chain:all:1", "growth", 10),
    ]
    after = await quest(ctx, m, "after-chain")
    assert (after.status, after.progress) == ("active", 0)  # the share came before it unlocked
    await deliver(ctx, event(m, "share", T0, network="x"))
    assert (await quest(ctx, m, "after-chain")).status == "completed"
    # What the app heard.
    got = [(x["type"], x["data"].get("step_id")) for x in await messages(ctx, m)]
    assert ("quest.completed", "visit") in got and ("quest.completed", None) in got
    moved = [q for x in await messages(ctx, m) if x["type"] == "quest.progress" for q in x["data"]["quests"]]
    assert ("chain", "buy", 2) in [(q["quest_id"], q["step_id"], q["progress"]) for q in moved]


async def test_one_event_counts_once_per_quest(ctx, content):
    """Two purchases complete `buy`; a third purchase in the same run must not spill into `share`."""
    m = await make_member(ctx)
    await deliver(ctx, event(m, "store_visit", T0, store_id="s1"))
    await deliver(ctx, *[event(m, "purchase", T0 + timedelta(seconds=i), amount=1) for i in range(3)])
    q = await quest(ctx, m, "chain")
    assert [s.progress for s in q.steps] == [1, 2, 0]


async def test_prerequisite_locks_a_quest(ctx, content):
    m = await make_member(ctx)
    q = await quest(ctx, m, "after-chain")
    assert (q.status, q.locked_reason, q.remaining_text) == ("locked", "requires", "Complete first: A chain")
    await deliver(ctx, event(m, "share", T0))
    assert (await quest(ctx, m, "after-chain")).progress == 0


async def test_windows_open_and_close_in_their_zone(ctx, content):
    m = await make_member(ctx)
    start = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)  # midnight of Dec 1 in Tokyo
    before = await quest(ctx, m, "winter", now=start - timedelta(seconds=1))
    assert (before.status, before.locked_reason) == ("locked", "not_started")
    assert before.available_from == start
    await deliver(ctx, event(m, "store_visit", start - timedelta(seconds=1), store_id="s"))
    assert (await quest(ctx, m, "winter", now=start)).progress == 0
    end = start + timedelta(days=7)
    late = unique("q")
    await deliver(ctx, event(late, "store_visit", end, store_id="s"))  # on the closing instant
    assert (await quest(ctx, late, "winter", now=end)).status == "expired"
    await deliver(ctx, event(m, "store_visit", end - timedelta(seconds=1), store_id="s"))
    assert (await quest(ctx, m, "winter", now=end + timedelta(days=30))).status == "completed"


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "UTC", "Pacific/Pago_Pago"])
async def test_periods_reset_in_the_members_zone(ctx, content, zone):
    m = await make_member(ctx, zone)
    # The member's local midnight after T0.
    from zoneinfo import ZoneInfo

    local = T0.astimezone(ZoneInfo(zone))
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), ZoneInfo(zone))
    await deliver(ctx, event(m, "product_viewed", midnight - timedelta(minutes=1), category="a"))
    q = await quest(ctx, m, "daily-view", now=midnight - timedelta(seconds=1))
    assert (q.status, q.period_key, q.resets_at) == ("completed", local.date().isoformat(), midnight)
    fresh = await quest(ctx, m, "daily-view", now=midnight)
    assert (fresh.status, fresh.progress) == ("active", 0)
    await deliver(ctx, event(m, "product_viewed", midnight, category="a"))
    assert (await quest(ctx, m, "daily-view", now=midnight)).status == "completed"
    days = [k for k, _, _ in await rewards(ctx, m) if k.startswith("quest:daily-view")]
    assert days == [
        f"quest:daily-view:{local.date().isoformat()}:1",
        f"quest:daily-view:{midnight.date().isoformat()}:1",
    ]


async def test_weekly_period_turns_on_the_local_monday(ctx, content):
    m = await make_member(ctx, "Asia/Tokyo")
    sunday_night = datetime(2026, 11, 22, 14, 30, tzinfo=UTC)  # Sunday 23:30 in Tokyo
    await deliver(ctx, event(m, "share", sunday_night), event(m, "share", sunday_night + timedelta(hours=1)))
    q = await quest(ctx, m, "weekly-shares", now=sunday_night + timedelta(hours=1))
    assert (q.period_key, q.progress) == ("2026-W48", 1)  # Monday 00:30 in Tokyo: a new week
    assert (await quest(ctx, m, "weekly-shares", now=sunday_night)).period_key == "2026-W47"


async def test_repeatable_n_times_per_period(ctx, content):
    m = await make_member(ctx)
    for i in range(5):
        await deliver(ctx, event(m, "review_posted", T0 + timedelta(minutes=i), rating=5))
    q = await quest(ctx, m, "monthly-review")
    assert (q.status, q.completions, q.times) == ("completed", 3, 3)
    assert [k for k, _, _ in await rewards(ctx, m)] == [
        "quest:monthly-review:2026-11:1",
        "quest:monthly-review:2026-11:2",
        "quest:monthly-review:2026-11:3",
    ]
    await deliver(ctx, event(m, "review_posted", T0 + timedelta(days=20), rating=5))  # December
    assert (await quest(ctx, m, "monthly-review", now=T0 + timedelta(days=20))).completions == 1


async def test_quests_count_completed_quests(ctx, content):
    m = await make_member(ctx)
    await deliver(ctx, event(m, "product_viewed", T0, category="a"))
    await deliver(ctx, event(m, "product_viewed", T0 + timedelta(hours=1), category="b"))  # same day
    assert (await quest(ctx, m, "dailies-week")).progress == 1
    await deliver(ctx, event(m, "product_viewed", T0 + timedelta(days=2), category="c"))
    q = await quest(ctx, m, "dailies-week", now=T0 + timedelta(days=2))
    assert (q.status, q.period_key) == ("completed", "2026-W47")
    assert ("quest:dailies-week:2026-W47:1", "points", 4) in await rewards(ctx, m)


async def test_tier_gating(ctx, content):
    regular = await make_member(ctx)
    gold = await make_member(ctx, tier="gold")
    q = await quest(ctx, regular, "gold-only")
    assert (q.status, q.locked_reason, q.remaining_text) == ("locked", "tier", "For gold members")
    for m in (regular, gold):
        await deliver(ctx, event(m, "store_visit", T0, store_id="s"))
    assert (await quest(ctx, regular, "gold-only")).progress == 0
    assert (await quest(ctx, gold, "gold-only")).status == "completed"


async def test_replayed_and_concurrent_deliveries_count_once(ctx, content):
    m = await make_member(ctx)
    events = [event(m, "purchase", T0, event_id=unique("dup"), amount=10, channel="online") for _ in range(2)]
    await deliver(ctx, *events)
    await deliver(ctx, *events)  # replayed, e.g. an outbox row applied again after a crash
    await asyncio.gather(*(deliver(ctx, *events) for _ in range(5)))  # and by several at once
    fresh = event(m, "purchase", T0, event_id=unique("dup"), amount=10, channel="online")
    await asyncio.gather(*(deliver(ctx, fresh) for _ in range(5)))
    q = await quest(ctx, m, "online-orders")
    assert (q.status, q.progress) == ("completed", 3)
    assert [k for k, _, _ in await rewards(ctx, m) if "online-orders" in k] == ["quest:online-orders:all:1"]


async def test_concurrent_distinct_events_for_one_member_all_count(ctx, content):
    m = await make_member(ctx)
    await asyncio.gather(*(deliver(ctx, event(m, "product_viewed", T0, category=f"c{i}")) for i in range(3)))
    assert (await quest(ctx, m, "explorer")).status == "completed"
    assert [k for k, _, _ in await rewards(ctx, m) if "explorer" in k] == ["quest:explorer:all:1"]


async def test_progress_and_completion_messages(ctx, content):
    m = await make_member(ctx)
    await deliver(ctx, event(m, "product_viewed", T0, category="a"))
    got = await messages(ctx, m)
    progress = [x["data"] for x in got if x["type"] == "quest.progress"]
    # One message for everything the event moved; then one for what the completed daily moved.
    assert [[q["quest_id"] for q in p["quests"]] for p in progress] == [
        ["explorer", "daily-view"],
        ["dailies-week"],
    ]
    assert [q for q in progress[0]["quests"] if q["quest_id"] == "explorer"] == [
        {
            "quest_id": "explorer",
            "period": "all",
            "round": 1,
            "step_id": "explorer",
            "title": "Three departments",
            "progress": 1.0,
            "target": 3.0,
            "steps_done": 0,
            "steps": 1,
            "remaining_text": "2 more different departments",
        }
    ]
    done = [x["data"] for x in got if x["type"] == "quest.completed"]
    assert [(d["quest_id"], d["reward"]["points"]) for d in done] == [("daily-view", 1)]


async def test_quests_over_http(http, as_member, as_brand, member_id):
    """The repository's demo content, played through the API."""
    r = await http.get("/v1/quests", headers=as_member(member_id))
    assert r.status_code == 200, r.text
    by_id = {q["quest_id"]: q for q in r.json()["quests"]}
    assert {"first-week", "daily-check-in", "weekly-spend", "explorer", "holiday-2026"} <= set(by_id)
    chain = by_id["first-week"]
    assert [s["status"] for s in chain["steps"]] == ["active", "locked", "locked"]
    assert chain["steps"][0]["remaining_text"] == "3 more check-ins to go"
    assert by_id["regular-shopper"]["status"] == "locked"
    assert by_id["gold-lounge"]["locked_reason"] == "tier"

    now = datetime.now(UTC).isoformat()
    r = await http.post(
        "/v1/events",
        json={
            "events": [
                {
                    "event_id": unique("ev"),
                    "member_id": member_id,
                    "type": "product_viewed",
                    "occurred_at": now,
                    "properties": {"category": "shoes"},
                }
            ]
        },
        headers=as_brand,
    )
    assert r.json()["accepted"] == 1, r.text
    q = (await http.get("/v1/quests/explorer", headers=as_member(member_id))).json()
    assert (q["progress"], q["target"], q["remaining_text"]) == (1, 5, "4 more departments to discover")
    missing = await http.get("/v1/quests/nope", headers=as_member(member_id))
    assert missing.status_code == 404 and missing.json()["code"] == "quest_not_found"
    assert (await http.get("/v1/quests")).status_code == 401


async def test_steps_dropped_from_the_content_do_not_finish_a_chain(ctx, content):
    m = await make_member(ctx)
    await deliver(ctx, event(m, "store_visit", T0, store_id="s"))  # `visit` done
    renamed = store_of(
        QUESTS.replace("      - id: visit\n", "      - id: visit-again\n").replace(
            "title: Visit a store", "title: Visit a store again"
        )
    )
    with serving(ctx, renamed):
        q = await quest(ctx, m, "chain")
        assert [s.status for s in q.steps] == ["active", "locked", "locked"]
        await deliver(ctx, event(m, "store_visit", T0, store_id="s"))
        await deliver(ctx, event(m, "purchase", T0, amount=1), event(m, "purchase", T0, amount=1))
        q = await quest(ctx, m, "chain")
        assert (q.status, [s.status for s in q.steps]) == ("active", ["completed", "completed", "active"])
    assert not [k for k, _, _ in await rewards(ctx, m) if k == "quest:chain:all:1"]


async def test_a_large_run_of_events_across_many_members(ctx, content):
    """A full batch whose events touch thousands of runs (more than one statement's worth)."""
    members = [unique("bulk") for _ in range(1000)]
    await deliver(ctx, *[event(m, "purchase", T0, amount=40, channel="online") for m in members])
    for m in members[:3]:
        assert (await quest(ctx, m, "online-orders")).progress == 1
        assert (await quest(ctx, m, "big-spender")).progress == 40


async def test_concurrent_runs_mixing_members_and_kinds_of_work(ctx, content):
    """Runs that lock ledger accounts and quest runs of the same members in different orders."""
    import random

    members = [await make_member(ctx) for _ in range(4)]
    rng = random.Random(7)

    def run() -> list:
        out = []
        for m in rng.sample(members, len(members)):
            out.append(event(m, rng.choice(["purchase", "store_visit"]), T0, amount=12, store_id="s"))
            out.append(event(m, "checkin.completed", T0, streak=1))
        return out

    await asyncio.gather(*(deliver(ctx, *run()) for _ in range(8)))
    for m in members:
        assert (await quest(ctx, m, "chain")).steps[0].status == "completed"


async def test_a_long_cascade_of_completions_all_counts(ctx):
    """Quests counting the completion of the one before: handled in the same transaction up to a
    number of rounds, and the rest after it commits."""
    depth = 12
    quests = ["quests:", "  - id: level-0", "    title: Level 0", "    goal: {event: share, count: 1}"]
    for n in range(1, depth):
        quests += [
            f"  - id: level-{n}",
            f"    title: Level {n}",
            f"    goal: {{event: quest.completed, count: 1, where: \"quest_id == 'level-{n - 1}'\"}}",
            "    reward: {points: 1}",
        ]
    with serving(ctx, store_of("\n".join(quests) + "\n")):
        m = await make_member(ctx)
        await deliver(ctx, event(m, "share", T0))
        statuses = [(await quest(ctx, m, f"level-{n}")).status for n in range(depth)]
    assert statuses == ["completed"] * depth
    assert len(await rewards(ctx, m)) == depth - 1
