"""Daily check-ins and streaks: local dates in every zone, freezes, repairs, make-ups, the cycle."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from server.checkins import service as checkins
from server.checkins.jobs import streak_upkeep, streaks_at_risk
from server.checkins.models import StreakState
from server.errors import ProblemError
from server.ledger import service as ledger
from server.ledger.models import LedgerEntry
from server.members.models import Member
from server.members.schemas import MemberIn
from server.members.service import upsert_member
from tests.support import unique

# Balances here are the check-ins' own: no quest rewards for the check-ins made.
pytestmark = pytest.mark.usefixtures("no_quests")


def at(zone: str, y: int, m: int, d: int, hh: int = 12, mm: int = 0, fold: int = 0) -> datetime:
    """A local wall-clock time in `zone`, as a UTC instant."""
    return datetime(y, m, d, hh, mm, tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)


async def new_member(ctx, zone: str = "UTC", points: int = 0) -> str:
    member_id = unique("ci")
    async with ctx.db.transaction() as session:
        await upsert_member(ctx, session, member_id, MemberIn(display_name="Checker", timezone=zone))
    if points:
        await ledger.award(
            ctx, member_id, amounts={"points": points}, reason="seed", source="test", idempotency_key="seed"
        )
    return member_id


async def test_many_concurrent_check_ins_award_once(ctx):
    member_id = await new_member(ctx, "Europe/Paris")
    now = at("Europe/Paris", 2026, 11, 20, 9)
    results = await asyncio.gather(*(checkins.check_in(ctx, member_id, now) for _ in range(30)))
    assert sum(not r.already_checked_in for r in results) == 1
    assert {r.date for r in results} == {date(2026, 11, 20)}
    assert all(r.streak == 1 for r in results)
    async with ctx.db.session() as session:
        entries = (
            (
                await session.execute(
                    sa.select(LedgerEntry).where(
                        LedgerEntry.member_id == member_id, LedgerEntry.source == "checkin"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert sorted(e.currency for e in entries) == ["growth", "points"]


async def test_members_checking_in_together_share_a_unit_and_each_get_their_day(ctx):
    """Check-ins arriving together are written in one unit of work (group commit); each member
    gets their own date in their own zone, their own reward once, and a repeat inside the same
    unit is answered as a repeat."""
    zones = ["Europe/Paris", "Asia/Tokyo", "America/New_York", "Pacific/Kiritimati", "UTC"]
    members = [await new_member(ctx, zones[i % len(zones)]) for i in range(25)]
    now = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
    asks = [*members, members[0], members[7]]  # two members twice at once
    results = await asyncio.gather(*(checkins.check_in(ctx, m, now) for m in asks))
    firsts = [r for r in results if not r.already_checked_in]
    assert len(firsts) == 25
    for member_id, result in zip(asks, results, strict=True):
        zone = zones[members.index(member_id) % len(zones)]
        assert result.date == now.astimezone(ZoneInfo(zone)).date() and result.timezone == zone
        assert result.streak == 1
    async with ctx.db.session() as session:
        entries = (
            await session.execute(
                sa.select(LedgerEntry.member_id, LedgerEntry.currency, LedgerEntry.amount).where(
                    LedgerEntry.member_id.in_(members), LedgerEntry.source == "checkin"
                )
            )
        ).all()
    reward = firsts[0].reward
    assert sorted(entries) == sorted(
        [(m, "points", reward.points) for m in members] + [(m, "growth", reward.growth) for m in members]
    )
    assert (await ledger.verify(ctx)).problems == []


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kathmandu"])
async def test_day_boundary_in_extreme_zones(ctx, zone):
    member_id = await new_member(ctx, zone)
    before = at(zone, 2026, 11, 20, 23, 59)
    after = at(zone, 2026, 11, 21, 0, 0)
    assert after - before == timedelta(minutes=1)
    first = await checkins.check_in(ctx, member_id, before)
    again = await checkins.check_in(ctx, member_id, before + timedelta(seconds=30))
    second = await checkins.check_in(ctx, member_id, after)
    assert (first.date, first.already_checked_in) == (date(2026, 11, 20), False)
    assert again.already_checked_in and again.date == date(2026, 11, 20)
    assert (second.date, second.streak, second.already_checked_in) == (date(2026, 11, 21), 2, False)


@pytest.mark.parametrize(
    ("zone", "short_day", "long_day"),
    [
        ("America/New_York", date(2026, 3, 8), date(2026, 11, 1)),
        ("Europe/Berlin", date(2026, 3, 29), date(2026, 10, 25)),
    ],
)
async def test_daylight_saving_days(ctx, zone, short_day, long_day):
    member_id = await new_member(ctx, zone)
    # The 23-hour day: just after midnight and just before the next are the same date.
    start = at(zone, short_day.year, short_day.month, short_day.day, 0, 30)
    end = at(zone, short_day.year, short_day.month, short_day.day, 23, 30)
    assert end - start == timedelta(hours=22)
    assert (await checkins.check_in(ctx, member_id, start)).date == short_day
    assert (await checkins.check_in(ctx, member_id, end)).already_checked_in
    nxt = await checkins.check_in(ctx, member_id, end + timedelta(hours=1))
    assert nxt.date == short_day + timedelta(days=1) and nxt.streak == 2

    # The 25-hour day: the repeated hour is still the same date, twice.
    other = await new_member(ctx, zone)
    hour = 1 if zone == "America/New_York" else 2
    first = at(zone, long_day.year, long_day.month, long_day.day, hour, 30, fold=0)
    repeat = at(zone, long_day.year, long_day.month, long_day.day, hour, 30, fold=1)
    assert repeat - first == timedelta(hours=1)
    assert (await checkins.check_in(ctx, other, first)).date == long_day
    assert (await checkins.check_in(ctx, other, repeat)).already_checked_in
    late = at(zone, long_day.year, long_day.month, long_day.day, 23, 59)
    assert (await checkins.check_in(ctx, other, late)).already_checked_in
    assert (await checkins.check_in(ctx, other, late + timedelta(minutes=2))).streak == 2


async def test_29_february(ctx):
    member_id = await new_member(ctx, "Asia/Tokyo")
    days = [(2028, 2, 28), (2028, 2, 29), (2028, 3, 1)]
    results = [await checkins.check_in(ctx, member_id, at("Asia/Tokyo", *d, 20)) for d in days]
    assert [r.date for r in results] == [date(*d) for d in days]
    assert [r.streak for r in results] == [1, 2, 3]


async def test_cycle_chest_and_wrap_around(ctx):
    member_id = await new_member(ctx, "UTC")
    content = checkins.rules(ctx)
    results = [
        await checkins.check_in(ctx, member_id, at("UTC", 2026, 11, 1, 10) + timedelta(days=i))
        for i in range(9)
    ]
    assert [r.cycle_day for r in results] == [1, 2, 3, 4, 5, 6, 7, 1, 2]
    chest = results[6]
    assert chest.reward.chest and chest.reward.points == content.cycle.reward_for(7).points
    assert not results[7].reward.chest and results[7].streak == 8
    me_points = sum(r.reward.points for r in results)
    async with ctx.db.session() as session:
        assert (await ledger.balances(session, member_id))["points"] == me_points


async def test_missed_day_breaks_and_restarts(ctx):
    member_id = await new_member(ctx, "UTC")
    await checkins.check_in(ctx, member_id, at("UTC", 2026, 11, 1))
    await checkins.check_in(ctx, member_id, at("UTC", 2026, 11, 2))
    r = await checkins.check_in(ctx, member_id, at("UTC", 2026, 11, 4))
    assert (r.streak, r.longest_streak, r.freezes_used) == (1, 2, [])


async def test_held_freeze_covers_a_missed_day(ctx):
    content = checkins.rules(ctx)
    member_id = await new_member(ctx, "UTC", points=content.freeze.price * 3)
    await checkins.check_in(ctx, member_id, at("UTC", 2026, 11, 1))
    bought = await checkins.buy_freeze(ctx, member_id, now=at("UTC", 2026, 11, 1, 13))
    assert bought.freezes_held == 1 and bought.points_spent == content.freeze.price
    await checkins.check_in(ctx, member_id, at("UTC", 2026, 11, 2))
    r = await checkins.check_in(ctx, member_id, at("UTC", 2026, 11, 4))  # the 3rd was missed
    assert r.freezes_used == [date(2026, 11, 3)]
    assert (r.streak, r.freezes_held) == (3, 0)  # a frozen date keeps the streak without adding to it
    cal = await checkins.calendar(ctx, member_id, "2026-11", at("UTC", 2026, 11, 4, 13))
    assert [(d.date.day, d.status) for d in cal.days] == [
        (1, "checked_in"),
        (2, "checked_in"),
        (3, "frozen"),
        (4, "checked_in"),
    ]


async def test_freeze_limits_and_price(ctx):
    content = checkins.rules(ctx)
    poor = await new_member(ctx, "UTC", points=content.freeze.price - 1)
    with pytest.raises(ProblemError) as exc:
        await checkins.buy_freeze(ctx, poor)
    assert exc.value.code == "insufficient_points" and exc.value.status == 409
    rich = await new_member(ctx, "UTC", points=content.freeze.price * (content.freeze.max_held + 1))
    for _ in range(content.freeze.max_held):
        await checkins.buy_freeze(ctx, rich)
    with pytest.raises(ProblemError) as exc:
        await checkins.buy_freeze(ctx, rich)
    assert exc.value.code == "freeze_limit_reached"
    async with ctx.db.session() as session:
        assert (await ledger.balances(session, rich))["points"] == content.freeze.price
    # A request key never collides with the keys of purchases made without one.
    mixed = await new_member(ctx, "UTC", points=content.freeze.price * 2)
    await checkins.buy_freeze(ctx, mixed)
    first = await checkins.buy_freeze(ctx, mixed, "1")
    assert first.freezes_held == 2
    async with ctx.db.session() as session:
        assert (await ledger.balances(session, mixed))["points"] == 0
    # A retry with the same Idempotency-Key buys nothing more.
    other = await new_member(ctx, "UTC", points=content.freeze.price * 2)
    one = await checkins.buy_freeze(ctx, other, "req-1")
    two = await checkins.buy_freeze(ctx, other, "req-1")
    assert one.freezes_held == two.freezes_held == 1


async def test_repair_inside_and_outside_the_grace(ctx):
    content = checkins.rules(ctx)
    grace = content.repair.grace_days
    member_id = await new_member(ctx, "UTC", points=content.repair.price * 2)
    for day in (1, 2, 3):
        await checkins.check_in(ctx, member_id, at("UTC", 2026, 11, day))
    # Missed the 4th; on the 5th (inside the grace) the member repairs, then checks in.
    fixed = await checkins.repair(ctx, member_id, at("UTC", 2026, 11, 5, 8))
    assert fixed.repaired_dates == [date(2026, 11, 4)] and fixed.points_spent == content.repair.price
    r = await checkins.check_in(ctx, member_id, at("UTC", 2026, 11, 5, 9))
    assert r.streak == 5  # 1, 2, 3, the repaired 4th, the 5th
    with pytest.raises(ProblemError) as exc:
        await checkins.repair(ctx, member_id, at("UTC", 2026, 11, 5, 10))
    assert exc.value.code == "nothing_to_repair"

    late = await new_member(ctx, "UTC", points=content.repair.price)
    await checkins.check_in(ctx, late, at("UTC", 2026, 11, 1))
    too_late = at("UTC", 2026, 11, 2 + grace + 1)  # first missed date the 2nd
    with pytest.raises(ProblemError) as exc:
        await checkins.repair(ctx, late, too_late)
    assert exc.value.code == "repair_window_closed"
    async with ctx.db.session() as session:
        assert (await ledger.balances(session, late))["points"] == content.repair.price + 5  # nothing spent


async def test_repair_after_checking_in_again_joins_both_runs(ctx):
    content = checkins.rules(ctx)
    member_id = await new_member(ctx, "UTC", points=content.repair.price)
    for day in (1, 2):
        await checkins.check_in(ctx, member_id, at("UTC", 2026, 11, day))
    restarted = await checkins.check_in(ctx, member_id, at("UTC", 2026, 11, 4))  # missed the 3rd
    assert restarted.streak == 1
    fixed = await checkins.repair(ctx, member_id, at("UTC", 2026, 11, 4, 18))
    assert fixed.repaired_dates == [date(2026, 11, 3)] and fixed.streak == 4


async def test_make_up_rules(ctx):
    content = checkins.rules(ctx)
    member_id = await new_member(ctx, "UTC", points=content.makeup.price * 5)
    for day in (1, 3, 5, 7):
        await checkins.check_in(ctx, member_id, at("UTC", 2026, 11, day))
    now = at("UTC", 2026, 11, 8)
    for bad_day, code in [
        (date(2026, 11, 8), "makeup_not_in_past"),
        (date(2026, 11, 9), "makeup_not_in_past"),
        (date(2026, 10, 31), "makeup_outside_month"),
        (date(2026, 11, 3), "date_already_covered"),
    ]:
        with pytest.raises(ProblemError) as exc:
            await checkins.make_up(ctx, member_id, bad_day, now)
        assert exc.value.code == code
    await checkins.make_up(ctx, member_id, date(2026, 11, 6), now)
    out = await checkins.make_up(ctx, member_id, date(2026, 11, 4), now)
    assert out.streak == 5  # 3, made-up 4, 5, made-up 6, 7
    with pytest.raises(ProblemError) as exc:
        await checkins.make_up(ctx, member_id, date(2026, 11, 2), now)
    assert exc.value.code == "makeup_limit_reached"
    cal = await checkins.calendar(ctx, member_id, "2026-11", now)
    assert cal.makeups_left == 0
    assert {d.date.day: d.status for d in cal.days}[2] == "missed"
    async with ctx.db.session() as session:
        balance = (await ledger.balances(session, member_id))["points"]
    earned = 4 * content.cycle.reward_for(1).points  # four check-ins, each starting a new streak
    assert balance == content.makeup.price * 5 + earned - 2 * content.makeup.price


async def _set_zone(ctx, member_id: str, zone: str, when: datetime) -> None:
    async with ctx.db.transaction() as session:
        member = await session.get(Member, member_id)
        member.timezone = zone
        await checkins.zone_changed(ctx, session, member_id, zone, when)


async def test_zone_change_westward_cannot_check_in_twice_for_a_date(ctx):
    # Auckland (UTC+13 in November) to Honolulu (UTC-10): the same UTC instant is a day earlier there.
    member_id = await new_member(ctx, "Pacific/Auckland")
    first = await checkins.check_in(ctx, member_id, at("Pacific/Auckland", 2026, 11, 20, 8))
    assert first.date == date(2026, 11, 20)
    await _set_zone(ctx, member_id, "Pacific/Honolulu", at("Pacific/Auckland", 2026, 11, 20, 9))
    # Still the 20th in Auckland: the old zone holds until its midnight.
    assert (
        await checkins.check_in(ctx, member_id, at("Pacific/Auckland", 2026, 11, 20, 23))
    ).already_checked_in
    # After Auckland's midnight Honolulu says the 20th again: already checked in, nothing awarded.
    again = await checkins.check_in(ctx, member_id, at("Pacific/Auckland", 2026, 11, 21, 1))
    assert (
        again.already_checked_in and again.date == date(2026, 11, 20) and again.timezone == "Pacific/Honolulu"
    )
    nxt = await checkins.check_in(ctx, member_id, at("Pacific/Honolulu", 2026, 11, 21, 0, 5))
    assert (nxt.date, nxt.streak, nxt.already_checked_in) == (date(2026, 11, 21), 2, False)


async def test_zone_change_eastward_does_not_skip_a_date(ctx):
    # Honolulu (UTC-10) to Kiritimati (UTC+14): a full day ahead; the jumped date is excused.
    member_id = await new_member(ctx, "Pacific/Honolulu")
    await checkins.check_in(ctx, member_id, at("Pacific/Honolulu", 2026, 11, 20, 20))
    await _set_zone(ctx, member_id, "Pacific/Kiritimati", at("Pacific/Honolulu", 2026, 11, 20, 21))
    r = await checkins.check_in(ctx, member_id, at("Pacific/Honolulu", 2026, 11, 21, 0, 30))
    # At Honolulu's midnight it is already the 22nd in Kiritimati: the 21st is excused.
    assert r.date == date(2026, 11, 22) and r.streak == 2 and not r.already_checked_in
    cal = await checkins.calendar(ctx, member_id, "2026-11", at("Pacific/Kiritimati", 2026, 11, 22, 12))
    assert {d.date.day: d.status for d in cal.days}[21] == "excused"


async def test_zone_change_before_first_check_in_applies_at_once(ctx):
    member_id = await new_member(ctx, "UTC")
    async with ctx.db.transaction() as session:
        await upsert_member(ctx, session, member_id, MemberIn(timezone="Asia/Kolkata"))
    r = await checkins.check_in(ctx, member_id, at("Asia/Kolkata", 2026, 11, 20, 0, 10))
    assert r.date == date(2026, 11, 20) and r.timezone == "Asia/Kolkata"


async def test_upkeep_job_settles_members_who_do_not_come_back(ctx):
    content = checkins.rules(ctx)
    keeper = await new_member(ctx, "UTC", points=content.freeze.price)
    leaver = await new_member(ctx, "UTC")
    today = datetime.now(UTC)
    for m in (keeper, leaver):
        await checkins.check_in(ctx, m, today - timedelta(days=2))
    await checkins.buy_freeze(ctx, keeper, now=today - timedelta(days=2))
    await streak_upkeep(ctx, "test")
    async with ctx.db.session() as session:
        kept = await session.get(StreakState, keeper)
        lost = await session.get(StreakState, leaver)
    assert (kept.current, kept.freezes_held) == (1, 0)
    assert (lost.current, lost.broken_streak, lost.broken_on) == (0, 1, (today - timedelta(days=1)).date())


async def test_at_risk_message_once_per_day(ctx):
    member_id = await new_member(ctx, "UTC")
    now = datetime.now(UTC)
    await checkins.check_in(ctx, member_id, now - timedelta(days=1))
    # Put the member in a zone where the day ends within the window now, checked in yesterday only.
    hour_now = now.hour
    zone = next(
        f"Etc/GMT{'-' if off > 0 else '+'}{abs(off)}" if off else "UTC"
        for off in range(-12, 15)
        if (hour_now + off) % 24 >= 22
    )
    local_today = now.astimezone(ZoneInfo(zone)).date()
    async with ctx.db.transaction() as session:
        await session.execute(
            sa.update(StreakState)
            .where(StreakState.member_id == member_id)
            .values(zone=zone, last_date=local_today - timedelta(days=1), current=4)
        )
    await streaks_at_risk(ctx, "a")
    await streaks_at_risk(ctx, "b")
    history = [m for _, m in await ctx.hub.history(member_id, "0-0") if '"streak.at_risk"' in m]
    assert len(history) == 1


async def test_a_stale_zone_notice_changes_nothing(ctx):
    member_id = await new_member(ctx, "Europe/Paris")
    await checkins.check_in(ctx, member_id, at("Europe/Paris", 2026, 11, 20))
    async with ctx.db.transaction() as session:
        # The profile still says Paris: a notice for another zone is stale (or forged).
        await checkins.zone_changed(
            ctx, session, member_id, "Asia/Tokyo", at("Europe/Paris", 2026, 11, 20, 13)
        )
    async with ctx.db.session() as session:
        state = await session.get(StreakState, member_id)
    assert (state.zone, state.pending_zone) == ("Europe/Paris", None)
