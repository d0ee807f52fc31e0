"""Daily check-ins and streaks, fair in every time zone.

Dates are local calendar dates in the member's zone, computed with real calendar arithmetic
(zoneinfo: 23- and 25-hour days, 29 February). Every change to a member's check-ins happens with the
member's streak row locked, so any number of concurrent requests award once per date.

Time-zone changes: a member's new zone takes over at the start of their next local date in the zone
in force (its midnight), never in the middle of a date. Dates never go back: if the new zone's date
is behind the last covered date, the member has already checked in for it. If the switch jumps over
dates (moving east across the date line), those dates are excused: they keep the streak unbroken
without adding to it. Only one switch can happen per local date; a later change before the switch
replaces the pending one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from server.checkins.content import CheckinContent
from server.checkins.models import COUNTED, CheckinDay, StreakState
from server.checkins.schemas import CalendarDay, CalendarOut, CheckinOut, RepairOffer, Reward, StreakOut
from server.content.periods import local_day
from server.db import GroupCommit, utcnow
from server.errors import ProblemError
from server.events.dispatch import DomainEvent, emit
from server.ledger import service as ledger
from server.members.service import Profile, ensure_member, ensure_members, profile, profiles
from server.realtime.hub import send_live

if TYPE_CHECKING:
    from server.context import Context


def rules(ctx: Context) -> CheckinContent:
    return ctx.content.get("checkin")


def next_midnight(zone: str, at: datetime) -> datetime:
    """The instant the next local date begins in `zone` after `at`."""
    tz = ZoneInfo(zone)
    tomorrow = at.astimezone(tz).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), tzinfo=tz).astimezone(UTC)


def days_between(first: date, last: date) -> list[date]:
    """Dates from `first` to `last`, both included."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def repair_until(state: StreakState, content: CheckinContent) -> date:
    """The last local date on which a broken streak can still be repaired."""
    assert state.broken_on is not None
    return state.broken_on + timedelta(days=content.repair.grace_days)


def reward_for_streak(content: CheckinContent, streak: int) -> Reward:
    length = content.cycle.length
    day = (max(streak, 1) - 1) % length + 1
    r = content.cycle.reward_for(day)
    return Reward(cycle_day=day, points=r.points, growth=r.growth, chest=r.chest)


@dataclass
class Upkeep:
    """What settling a member's streak did, so that the caller can tell them."""

    frozen: list[date] = field(default_factory=list)
    excused: list[date] = field(default_factory=list)
    broke: bool = False


async def _lock_state(session: AsyncSession, member_id: str) -> StreakState:
    return (await _lock_states(session, [member_id]))[member_id]


async def _lock_states(session: AsyncSession, member_ids: list[str]) -> dict[str, StreakState]:
    """Create (if need be) and lock the streak rows of these members, in id order, in one
    statement (ON CONFLICT DO UPDATE takes the locks); once per unit of work."""
    locked: dict[str, StreakState] = session.info.setdefault("locked_streaks", {})
    missing = sorted({m for m in member_ids if m not in locked})
    if missing:
        table = StreakState.__table__
        insert = (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(
            StreakState
        )
        found = await session.scalars(
            insert.values([{"member_id": m} for m in missing])
            .on_conflict_do_update(
                index_elements=[table.c.member_id], set_={"member_id": insert.excluded.member_id}
            )
            .returning(StreakState),
            execution_options={"populate_existing": True},
        )
        locked.update({state.member_id: state for state in found})
    return {m: locked[m] for m in member_ids}


async def _cover(session: AsyncSession, member_id: str, day: date, kind: str, streak: int = 0) -> None:
    session.add(CheckinDay(member_id=member_id, day=day, kind=kind, streak=streak, created_at=utcnow()))


def _zone_now(state: StreakState, member: Profile) -> str:
    return state.zone or member.timezone


async def _switch_zone_if_due(
    session: AsyncSession, state: StreakState, member: Profile, now: datetime
) -> Upkeep:
    """Apply a pending zone switch whose time has come; excuse dates the switch jumps over."""
    upkeep = Upkeep()
    if state.zone is None:
        state.zone = member.timezone
    if state.pending_zone is None or state.pending_from is None or now < state.pending_from:
        return upkeep
    old_date = local_day(state.zone, state.pending_from)
    new_date = local_day(state.pending_zone, state.pending_from)
    alive = (
        state.last_date is not None and state.current > 0 and state.last_date >= old_date - timedelta(days=1)
    )
    if new_date > old_date and alive:
        for d in days_between(old_date, new_date - timedelta(days=1)):
            if d > state.last_date:  # type: ignore[operator]
                await _cover(session, state.member_id, d, "excused", state.current)
                upkeep.excused.append(d)
                state.last_date = d
    state.zone, state.pending_zone, state.pending_from = state.pending_zone, None, None
    return upkeep


async def _settle(ctx: Context, session: AsyncSession, state: StreakState, today: date) -> Upkeep:
    """Cover missed dates before `today` with held freezes, or break the streak."""
    upkeep = Upkeep()
    if state.current == 0 or state.last_date is None or state.last_date >= today - timedelta(days=1):
        return upkeep
    for d in days_between(state.last_date + timedelta(days=1), today - timedelta(days=1)):
        if state.freezes_held > 0:
            state.freezes_held -= 1
            await _cover(session, state.member_id, d, "frozen", state.current)
            state.last_date = d
            upkeep.frozen.append(d)
            continue
        state.broken_on = d
        state.broken_streak = state.current
        state.current = 0
        upkeep.broke = True
        break
    if upkeep.frozen:
        send_live(
            ctx,
            session,
            state.member_id,
            "streak.freeze_used",
            {
                "dates": [d.isoformat() for d in upkeep.frozen],
                "freezes_held": state.freezes_held,
                "streak": state.current if not upkeep.broke else state.broken_streak,
            },
        )
    if upkeep.broke:
        content = rules(ctx)
        assert state.broken_on is not None
        send_live(
            ctx,
            session,
            state.member_id,
            "streak.broken",
            {
                "broken_streak": state.broken_streak,
                "repair_price": content.repair.price,
                "repair_until": repair_until(state, content).isoformat(),
            },
        )
    return upkeep


async def _member(ctx: Context, session: AsyncSession, member_id: str) -> Profile:
    member = await profile(ctx, session, member_id)
    if not member.known:
        await ensure_member(session, member_id)
        member = await profile(ctx, session, member_id)
    return member


async def settle(
    ctx: Context, session: AsyncSession, member_id: str, now: datetime
) -> tuple[Profile, StreakState, date, Upkeep]:
    """Lock the member's streak and apply what time has done to it (a due zone switch, held freezes
    covering missed dates, or a break); returns the member, the streak, today's local date and what
    was done. Everything that changes a member's check-ins starts here."""
    member = await _member(ctx, session, member_id)
    state, today, settled = await _settle_member(ctx, session, member, now)
    return member, state, today, settled


async def _settle_member(
    ctx: Context, session: AsyncSession, member: Profile, now: datetime
) -> tuple[StreakState, date, Upkeep]:
    state = await _lock_state(session, member.member_id)
    switched = await _switch_zone_if_due(session, state, member, now)
    today = local_day(_zone_now(state, member), now)
    settled = await _settle(ctx, session, state, today)
    settled.excused = switched.excused
    return state, today, settled


async def _already(
    content: CheckinContent,
    session: AsyncSession,
    state: StreakState,
    today: date,
    zone: str,
    frozen: list[date],
) -> CheckinOut | None:
    """The answer to a repeat: the date is covered already (or behind, after a zone change)."""
    if state.last_date is None or today > state.last_date:
        return None
    row = await session.get(CheckinDay, (state.member_id, min(today, state.last_date)))
    return _repeat_answer(content, state, row, today, zone, frozen)


def _repeat_answer(
    content: CheckinContent, state: Any, row: Any, today: date, zone: str, frozen: list[date]
) -> CheckinOut:
    """A repeat's answer from the streak and the covered date's row: the date's cycle day, and no
    reward, since a repeat awards nothing (what the date's check-in gave is in the ledger)."""
    cycle_day = (
        row.cycle_day if row and row.cycle_day else reward_for_streak(content, state.current).cycle_day
    )
    return CheckinOut(
        date=row.day if row else today,
        already_checked_in=True,
        streak=state.current,
        longest_streak=state.longest,
        cycle_day=cycle_day,
        reward=None,
        freezes_held=state.freezes_held,
        freezes_used=frozen,
        timezone=zone,
    )


async def check_in(ctx: Context, member_id: str, now: datetime | None = None) -> CheckinOut:
    """Today's check-in in the member's zone; a repeat the same date awards nothing and says so.

    Check-ins that arrive while others are being written go together in the next unit of work
    (group commit), each answered as if alone."""
    now = now or utcnow()
    # An app opens many times a day: answer a repeat without taking the member's lock.
    answer = await _repeat(ctx, member_id, now)
    if answer is not None:
        return answer
    units: GroupCommit[tuple[str, datetime], CheckinOut] = GroupCommit.shared(
        ctx, "checkin_units", lambda asks: _check_in_together(ctx, asks)
    )
    return await units.submit((member_id, now))


_S = StreakState.__table__.c
_D = CheckinDay.__table__.c
# A member's streak and the row of its last covered date, in one statement.
_REPEAT = (
    sa.select(
        _S.member_id,
        _S.current,
        _S.longest,
        _S.last_date,
        _S.freezes_held,
        _S.zone,
        _S.pending_from,
        _D.day,
        _D.cycle_day,
    )
    .select_from(
        StreakState.__table__.outerjoin(
            CheckinDay.__table__, sa.and_(_D.member_id == _S.member_id, _D.day == _S.last_date)
        )
    )
    .where(_S.member_id == sa.bindparam("m"))
)


async def _repeat(ctx: Context, member_id: str, now: datetime) -> CheckinOut | None:
    """The answer to a repeat of today's check-in, read without a transaction; None when this is
    not a plain repeat (no check-in yet today, a zone switch due, a date behind after a change)."""
    async with ctx.db.session() as session:
        found = (await (await session.connection()).execute(_REPEAT, {"m": member_id})).first()
    if found is None or found.zone is None or found.last_date is None:
        return None
    if found.pending_from is not None and now >= found.pending_from:
        return None
    today = local_day(found.zone, now)
    if today != found.last_date:
        return None
    row = found if found.day is not None else None
    return _repeat_answer(rules(ctx), found, row, today, found.zone, [])


async def _check_in_together(
    ctx: Context, asks: list[tuple[str, datetime]]
) -> list[CheckinOut | BaseException]:
    async with ctx.db.transaction() as session:
        return list(await check_in_many(ctx, session, asks))


async def check_in_many(
    ctx: Context, session: AsyncSession, asks: list[tuple[str, datetime]]
) -> list[CheckinOut]:
    """Check in these members in the caller's unit of work, a statement per table for all of them:
    their profiles and streaks read and locked together, the days, the ledger postings and the
    events written together."""
    content = rules(ctx)
    members = sorted({m for m, _ in asks})
    found = await profiles(ctx, session, members)
    unknown = [m for m, p in found.items() if not p.known]
    if unknown:
        await ensure_members(session, unknown)
        found = await profiles(ctx, session, members)
    await _lock_states(session, members)
    postings: list[ledger.Posting] = []
    answers = []
    seen: set[str] = set()
    for member_id, now in asks:
        if member_id in seen:
            await session.flush()  # the same member twice in one unit: the second reads the first
        seen.add(member_id)
        answers.append(await _check_in_one(ctx, session, content, found[member_id], now, postings))
    await ledger.post_many(ctx, session, postings)
    return answers


async def _check_in_one(
    ctx: Context,
    session: AsyncSession,
    content: CheckinContent,
    member: Profile,
    now: datetime,
    postings: list[ledger.Posting],
) -> CheckinOut:
    """One member's check-in within a unit of work: the day, the streak, the postings to make."""
    member_id = member.member_id
    state, today, upkeep = await _settle_member(ctx, session, member, now)
    zone = _zone_now(state, member)
    answer = await _already(content, session, state, today, zone, upkeep.frozen)
    if answer is not None:
        return answer
    continues = state.last_date == today - timedelta(days=1) and state.current > 0
    streak = state.current + 1 if continues else 1
    reward = reward_for_streak(content, streak)
    session.add(
        CheckinDay(
            member_id=member_id,
            day=today,
            kind="checked_in",
            streak=streak,
            cycle_day=reward.cycle_day,
            points=reward.points,
            growth=reward.growth,
            created_at=now,
        )
    )
    state.current = streak
    state.longest = max(state.longest, streak)
    state.last_date = today
    postings.extend(_postings(member_id, today, reward))
    payload = {
        "date": today.isoformat(),
        "streak": streak,
        "cycle_day": reward.cycle_day,
        "chest": reward.chest,
        "reward": {"points": reward.points, "growth": reward.growth},
    }
    send_live(ctx, session, member_id, "checkin.completed", payload)
    _streak_updated(ctx, session, state)
    emit(
        ctx,
        session,
        DomainEvent(
            event_id=f"checkin:{member_id}:{today.isoformat()}",
            member_id=member_id,
            type="checkin.completed",
            occurred_at=now,
            properties=payload,
            source="checkin",
        ),
    )
    return CheckinOut(
        date=today,
        already_checked_in=False,
        streak=streak,
        longest_streak=state.longest,
        cycle_day=reward.cycle_day,
        reward=reward,
        freezes_held=state.freezes_held,
        freezes_used=upkeep.frozen,
        timezone=zone,
    )


def _postings(member_id: str, day: date, reward: Reward) -> list[ledger.Posting]:
    reason = "daily check-in" + (" chest" if reward.chest else "")
    key = f"checkin:{member_id}:{day.isoformat()}"
    details = {"date": day.isoformat(), "cycle_day": reward.cycle_day}
    return [
        ledger.Posting(member_id, currency, amount, reason, "checkin", key, details)
        for currency, amount in (("points", reward.points), ("growth", reward.growth))
        if amount
    ]


async def _spend(
    ctx: Context, session: AsyncSession, member_id: str, price: int, reason: str, key: str, what: str
) -> bool:
    """Spend points for a streak service; False if this key was already paid (a retry)."""
    if price <= 0:
        return True
    try:
        posted = await ledger.post(
            ctx,
            session,
            member_id,
            currency="points",
            amount=-price,
            reason=reason,
            source="checkin",
            idempotency_key=key,
        )
    except ProblemError as exc:
        if exc.code == "insufficient_balance":
            raise ProblemError(
                409,
                "insufficient_points",
                f"{what} costs {price} points; the balance is {exc.extra['balance']}.",
                price=price,
                balance=exc.extra["balance"],
            ) from None
        raise
    return posted.created


async def buy_freeze(
    ctx: Context, member_id: str, request_key: str | None = None, now: datetime | None = None
) -> StreakOut:
    """Buy one streak freeze with points, up to the most a member may hold.

    With a request key (the `Idempotency-Key` header) a retry buys nothing more and gets the same
    answer; without one every call is a new purchase.
    """
    content = rules(ctx)
    async with ctx.db.transaction() as session:
        _, state, _, _ = await settle(ctx, session, member_id, now or utcnow())
        if request_key:
            key = f"freeze:{member_id}:request:{request_key}"
            if await ledger.entry_for_key(session, member_id, "points", key) is not None:
                return _streak_out(state, content.freeze.price)
        else:
            key = f"freeze:{member_id}:purchase:{state.freezes_bought + 1}"
        if state.freezes_held >= content.freeze.max_held:
            raise ProblemError(
                409,
                "freeze_limit_reached",
                f"A member holds at most {content.freeze.max_held} freezes.",
                freezes_held=state.freezes_held,
            )
        if await _spend(ctx, session, member_id, content.freeze.price, "streak freeze", key, "A freeze"):
            state.freezes_held += 1
            state.freezes_bought += 1
            _streak_updated(ctx, session, state)
        return _streak_out(state, content.freeze.price)


def _streak_updated(ctx: Context, session: AsyncSession, state: StreakState, **extra: object) -> None:
    send_live(
        ctx,
        session,
        state.member_id,
        "streak.updated",
        {
            "streak": state.current,
            "longest_streak": state.longest,
            "freezes_held": state.freezes_held,
            **extra,
        },
    )


def _streak_out(state: StreakState, spent: int, repaired: list[date] | None = None) -> StreakOut:
    return StreakOut(
        streak=state.current,
        longest_streak=state.longest,
        freezes_held=state.freezes_held,
        points_spent=spent,
        repaired_dates=repaired or [],
    )


async def _recount(session: AsyncSession, state: StreakState, today: date) -> None:
    """Recompute the streak from the covered dates: the unbroken run ending yesterday or today."""
    rows = (
        await session.execute(
            sa.select(col(CheckinDay.day), col(CheckinDay.kind))
            .where(
                col(CheckinDay.member_id) == state.member_id,
                col(CheckinDay.day) <= max(today, state.last_date or today),
            )
            .order_by(col(CheckinDay.day).desc())
        )
    ).all()
    streak, expected, last = 0, None, None
    for day, kind in rows:
        if expected is not None and day != expected:
            break
        if last is None:
            last = day
        if kind in COUNTED:
            streak += 1
        expected = day - timedelta(days=1)
    alive = last is not None and last >= today - timedelta(days=1)
    state.current = streak if alive else 0
    if last is not None:
        state.last_date = max(last, state.last_date or last)
    state.longest = max(state.longest, state.current)


async def repair(ctx: Context, member_id: str, now: datetime | None = None) -> StreakOut:
    """Restore a broken streak within the grace period, for its price."""
    now = now or utcnow()
    content = rules(ctx)
    async with ctx.db.transaction() as session:
        _, state, today, _ = await settle(ctx, session, member_id, now)
        if state.broken_on is None:
            raise ProblemError(409, "nothing_to_repair", "The streak is not broken.")
        until = repair_until(state, content)
        if today > until:
            raise ProblemError(
                409,
                "repair_window_closed",
                f"A streak broken on {state.broken_on} could be repaired until {until}; today is {today}.",
                until=until.isoformat(),
            )
        key = f"repair:{member_id}:{state.broken_on.isoformat()}"
        await _spend(ctx, session, member_id, content.repair.price, "streak repair", key, "A repair")
        covered = set(
            (
                await session.execute(
                    sa.select(col(CheckinDay.day)).where(
                        col(CheckinDay.member_id) == member_id,
                        col(CheckinDay.day) >= state.broken_on,
                        col(CheckinDay.day) < today,
                    )
                )
            ).scalars()
        )
        repaired = [d for d in days_between(state.broken_on, today - timedelta(days=1)) if d not in covered]
        for d in repaired:
            await _cover(session, member_id, d, "repaired")
        await session.flush()
        state.broken_on, state.broken_streak = None, 0
        await _recount(session, state, today)
        _streak_updated(ctx, session, state, repaired=[d.isoformat() for d in repaired])
        return _streak_out(state, content.repair.price, repaired)


async def _makeups_used(session: AsyncSession, member_id: str, today: date) -> int:
    """Make-ups used in the month of `today`."""
    used = await session.execute(
        sa.select(sa.func.count())
        .select_from(CheckinDay)
        .where(
            col(CheckinDay.member_id) == member_id,
            col(CheckinDay.kind) == "made_up",
            col(CheckinDay.day) >= today.replace(day=1),
            col(CheckinDay.day) <= today,
        )
    )
    return int(used.scalar_one())


async def make_up(ctx: Context, member_id: str, day: date, now: datetime | None = None) -> StreakOut:
    """A paid check-in for an earlier missed date of the current month, within the monthly limit."""
    now = now or utcnow()
    content = rules(ctx)
    async with ctx.db.transaction() as session:
        _, state, today, _ = await settle(ctx, session, member_id, now)
        if day >= today:
            raise ProblemError(
                400, "makeup_not_in_past", f"A make-up is for an earlier date; today is {today}."
            )
        if (day.year, day.month) != (today.year, today.month):
            raise ProblemError(
                409,
                "makeup_outside_month",
                f"Make-ups are for missed dates of the current month ({today:%Y-%m}).",
            )
        if await session.get(CheckinDay, (member_id, day)) is not None:
            raise ProblemError(409, "date_already_covered", f"{day} is already covered.")
        if await _makeups_used(session, member_id, today) >= content.makeup.per_month:
            raise ProblemError(
                409,
                "makeup_limit_reached",
                f"At most {content.makeup.per_month} make-ups a month; all are used.",
            )
        key = f"makeup:{member_id}:{day.isoformat()}"
        await _spend(ctx, session, member_id, content.makeup.price, "make-up check-in", key, "A make-up")
        await _cover(session, member_id, day, "made_up")
        await session.flush()
        await _recount(session, state, today)
        if (
            state.broken_on is not None
            and state.current > 0
            and state.last_date
            and state.broken_on <= state.last_date
        ):
            covered = await session.get(CheckinDay, (member_id, state.broken_on))
            if covered is not None:
                state.broken_on, state.broken_streak = None, 0
        _streak_updated(ctx, session, state, made_up=day.isoformat())
        return _streak_out(state, content.makeup.price)


def parse_month(month: str | None, today: date) -> date:
    if month is None:
        return today.replace(day=1)
    try:
        year, mon = month.split("-")
        if len(year) != 4 or len(mon) != 2:
            raise ValueError
        return date(int(year), int(mon), 1)
    except ValueError:
        raise ProblemError(400, "invalid_month", "month is YYYY-MM, for example 2026-11.") from None


async def calendar(
    ctx: Context, member_id: str, month: str | None, now: datetime | None = None
) -> CalendarOut:
    """The month as the member sees it: each date's status, the streak and the next reward."""
    now = now or utcnow()
    content = rules(ctx)
    async with ctx.db.transaction() as session:
        member, state, today, _ = await settle(ctx, session, member_id, now)
        first = parse_month(month, today)
        if first > today:
            raise ProblemError(400, "invalid_month", f"{month} is in the future.")
        last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        rows = {
            r.day: r.kind
            for r in (
                await session.execute(
                    sa.select(CheckinDay).where(
                        col(CheckinDay.member_id) == member_id,
                        col(CheckinDay.day) >= first,
                        col(CheckinDay.day) <= last,
                    )
                )
            ).scalars()
        }
        started = (
            await session.execute(
                sa.select(sa.func.min(CheckinDay.day)).where(col(CheckinDay.member_id) == member_id)
            )
        ).scalar_one()
        days = []
        for d in days_between(first, min(last, today)):
            if d in rows:
                days.append(CalendarDay(d, rows[d]))
            elif started is not None and started < d < today:
                days.append(CalendarDay(d, "missed"))
        made_up = await _makeups_used(session, member_id, today)
        checked_today = rows.get(today) == "checked_in" or (
            state.last_date is not None and state.last_date >= today
        )
        next_streak = (
            state.current
            if checked_today
            else (state.current + 1 if state.last_date == today - timedelta(days=1) else 1)
        )
        repair_offer = None
        if state.broken_on is not None:
            until = repair_until(state, content)
            if today <= until:
                repair_offer = RepairOffer(state.broken_streak, content.repair.price, until)
        return CalendarOut(
            month=f"{first:%Y-%m}",
            today=today,
            timezone=_zone_now(state, member),
            days=days,
            streak=state.current,
            longest_streak=state.longest,
            freezes_held=state.freezes_held,
            makeups_left=max(content.makeup.per_month - made_up, 0),
            next_reward=reward_for_streak(content, next_streak + (1 if checked_today else 0)),
            checked_in_today=checked_today,
            repair=repair_offer,
        )


async def zone_changed(
    ctx: Context, session: AsyncSession, member_id: str, new_zone: str, at: datetime
) -> None:
    """The member's profile zone changed at `at`: it takes over at their next local midnight."""
    member = await profile(ctx, session, member_id)
    if not member.known or member.timezone != new_zone:
        return  # a stale or forged notice: the profile is the truth
    existing = await session.get(StreakState, member_id)
    if existing is None or existing.zone is None:
        return  # no check-in yet: the first one uses the profile's zone
    state = await _lock_state(session, member_id)
    await _switch_zone_if_due(session, state, member, at)  # a switch already due happens first
    if new_zone == state.zone:
        state.pending_zone, state.pending_from = None, None
        return
    state.pending_zone = new_zone
    state.pending_from = next_midnight(state.zone, at)  # type: ignore[arg-type]


async def current_streak(session: AsyncSession, member_id: str, now: datetime | None = None) -> int:
    """The streak as it stands now, without changing anything (held freezes cover missed dates)."""
    state = await session.get(StreakState, member_id)
    if state is None or state.last_date is None or state.zone is None or state.current == 0:
        return 0
    missed = (local_day(state.zone, now or utcnow()) - state.last_date).days - 1
    return state.current if missed <= state.freezes_held else 0
