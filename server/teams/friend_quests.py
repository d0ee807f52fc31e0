"""Friend quests: two friends take on a shared goal for a period (content/teams.yaml
`friend_quests`), see one progress bar, and both get the same reward when it completes.

A member invites a friend (one of their friends by id, any member by handle, or whoever has the
invitation's id); the friend accepts. A member is in one pairing per friend quest and period,
as the inviter or the friend. From the acceptance on, both members' events that the goal counts
add to one total, on the event path: a unit of work reads its pairings in one statement and
writes them in one. When the total reaches the target, both members are paid the quest's reward
through the ledger, each under a key naming the pairing: nothing twice under any replay.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from server.content.goals import advance, number, remaining_text
from server.content.periods import local_day, period_end, period_key
from server.db import lock_members, utcnow
from server.errors import ProblemError
from server.events.dispatch import DomainEvent
from server.ledger import service as ledger
from server.members import service as members
from server.realtime.hub import send_live
from server.teams.assist_content import FriendQuest
from server.teams.assist_schemas import (
    FriendOut,
    FriendQuestOfferOut,
    FriendQuestOut,
    FriendQuestsOut,
    HelpRewardOut,
)
from server.teams.content import teams_content
from server.teams.models import FriendQuestPair, FriendQuestSeat

if TYPE_CHECKING:
    from server.context import Context

SOURCE = "friend_quest"
PAIRS = FriendQuestPair.__table__
SEATS = FriendQuestSeat.__table__


def quest_of(ctx: Context, quest_id: str) -> FriendQuest:
    found = next((q for q in teams_content(ctx).friend_quests if q.id == quest_id), None)
    if found is None:
        raise ProblemError(404, "friend_quest_not_found", f"There is no friend quest '{quest_id}'.")
    return found


def period_of(quest: FriendQuest, at: datetime) -> str:
    """The quest's period `at` falls in, in the quest's zone."""
    return period_key(quest.period, local_day(quest.zone, at))


def _ends_at(quest: FriendQuest, period: str, now: datetime) -> datetime | None:
    return (
        period_end(quest.period, local_day(quest.zone, now), quest.zone)
        if period == period_of(quest, now)
        else None
    )


def _pair_not_found(pair_id: str) -> ProblemError:
    return ProblemError(
        404, "friend_quest_not_found", f"There is no friend quest invitation '{pair_id[:24]}'."
    )


# --- pairing ------------------------------------------------------------------------------------


async def _invited(
    ctx: Context, session: AsyncSession, member_id: str, friend_id: str | None, handle: str | None
) -> str | None:
    """Who is invited: one of the member's friends (by id), any member (by handle), or nobody
    named (an open invitation)."""
    if friend_id is not None and handle is not None:
        raise ProblemError(400, "invalid_friend", "Name the friend by `friend_id` or by `handle`, not both.")
    if friend_id is not None:
        members.check_member_id(friend_id)
        if friend_id not in (await members.friend_lists(session, [member_id]))[member_id]:
            raise ProblemError(
                403, "not_a_friend", "You can invite your friends by id; invite anyone else by their handle."
            )
        return friend_id
    if handle is not None:
        found = await members.member_by_handle(session, handle)
        if found is None:
            raise ProblemError(404, "member_not_found", f"No member has the handle '{handle}'.")
        return found
    return None


async def _seat_taken(session: AsyncSession, member_id: str, quest_id: str, period: str) -> str | None:
    found = await session.execute(
        sa.select(SEATS.c.pair_id).where(
            SEATS.c.member_id == member_id, SEATS.c.quest_id == quest_id, SEATS.c.period == period
        )
    )
    return found.scalar()


def _already_paired(pair_id: str) -> ProblemError:
    return ProblemError(
        409,
        "already_paired",
        "You are paired on this friend quest already this period; one pairing per quest at a time.",
        pair_id=pair_id,
    )


async def invite(
    ctx: Context,
    member_id: str,
    quest_id: str,
    *,
    friend_id: str | None = None,
    handle: str | None = None,
    now: datetime | None = None,
) -> FriendQuestOut:
    """Invite a friend to a friend quest for its current period (one pairing per quest and
    period per member: 409 `already_paired`)."""
    quest = quest_of(ctx, quest_id)
    now = now or utcnow()
    period = period_of(quest, now)
    async with ctx.db.transaction() as session:
        invited = await _invited(ctx, session, member_id, friend_id, handle)
        if invited == member_id:
            raise ProblemError(400, "cannot_pair_with_yourself", "Invite a friend: a friend quest takes two.")
        await lock_members(session, [member_id])
        taken = await _seat_taken(session, member_id, quest.id, period)
        if taken is not None:
            raise _already_paired(taken)
        pair = FriendQuestPair(
            id=secrets.token_urlsafe(12),
            quest_id=quest.id,
            period=period,
            inviter_id=member_id,
            invited_id=invited,
            status="invited",
            created_at=now,
        )
        session.add(pair)
        session.add(FriendQuestSeat(member_id=member_id, quest_id=quest.id, period=period, pair_id=pair.id))
        people = await members.profiles(ctx, session, [member_id, *([invited] if invited else [])])
        if invited is not None:
            send_live(
                ctx,
                session,
                invited,
                "friend_quest.invited",
                {
                    "pair_id": pair.id,
                    "quest_id": quest.id,
                    "name": quest.name,
                    "inviter": people[member_id].handle,
                },
                at=now,
            )
    return _out(ctx, quest, pair, people, member_id, now)


async def _locked_pair(session: AsyncSession, pair_id: str, member_id: str) -> FriendQuestPair:
    pair = await session.get(FriendQuestPair, pair_id)
    if pair is None:
        raise _pair_not_found(pair_id)
    await lock_members(session, sorted({pair.inviter_id, member_id}))
    found = await session.get(FriendQuestPair, pair_id, with_for_update=True, populate_existing=True)
    assert found is not None
    return found


async def accept(ctx: Context, member_id: str, pair_id: str, now: datetime | None = None) -> FriendQuestOut:
    """The friend accepts an invitation: from now on both members' events count to one total."""
    now = now or utcnow()
    async with ctx.db.transaction() as session:
        pair = await _locked_pair(session, pair_id, member_id)
        quest = quest_of(ctx, pair.quest_id)
        if pair.inviter_id == member_id:
            raise ProblemError(
                403, "cannot_pair_with_yourself", "This is your own invitation: share it with a friend."
            )
        if pair.invited_id is not None and pair.invited_id != member_id:
            raise ProblemError(403, "not_invited", "This invitation is for another member.")
        if pair.status != "invited":
            raise ProblemError(409, "invitation_closed", f"This invitation is {pair.status} already.")
        if pair.period != period_of(quest, now):
            raise ProblemError(410, "invitation_expired", "This invitation was for a period that is over.")
        taken = await _seat_taken(session, member_id, quest.id, pair.period)
        if taken is not None:
            raise _already_paired(taken)
        session.add(
            FriendQuestSeat(member_id=member_id, quest_id=quest.id, period=pair.period, pair_id=pair.id)
        )
        pair.friend_id, pair.status, pair.accepted_at = member_id, "active", now
        session.add(pair)
        people = await members.profiles(ctx, session, [pair.inviter_id, member_id])
        send_live(
            ctx,
            session,
            pair.inviter_id,
            "friend_quest.accepted",
            {
                "pair_id": pair.id,
                "quest_id": quest.id,
                "name": quest.name,
                "friend": people[member_id].handle,
            },
            at=now,
        )
    return _out(ctx, quest, pair, people, member_id, now)


async def decline(ctx: Context, member_id: str, pair_id: str, now: datetime | None = None) -> FriendQuestOut:
    """The invited friend declines, or the inviter withdraws, an invitation not accepted yet; the
    inviter may then invite someone else this period."""
    now = now or utcnow()
    async with ctx.db.transaction() as session:
        pair = await _locked_pair(session, pair_id, member_id)
        quest = quest_of(ctx, pair.quest_id)
        if member_id not in (pair.inviter_id, pair.invited_id):
            raise ProblemError(403, "not_invited", "Only the invited friend or the inviter can decline.")
        if pair.status != "invited":
            raise ProblemError(409, "invitation_closed", f"This invitation is {pair.status} already.")
        pair.status = "declined"
        session.add(pair)
        await session.execute(sa.delete(SEATS).where(SEATS.c.pair_id == pair.id))
        people = await members.profiles(ctx, session, [pair.inviter_id])
    return _out(ctx, quest, pair, people, member_id, now)


# --- reading ------------------------------------------------------------------------------------


def _out(
    ctx: Context,
    quest: FriendQuest,
    pair: FriendQuestPair,
    people: dict[str, members.Profile],
    viewer: str,
    now: datetime,
) -> FriendQuestOut:
    target = quest.goal.goal_target
    total = pair.inviter_progress + pair.friend_progress
    shown = min(total, target)
    sides = [(pair.inviter_id, pair.inviter_progress)]
    if pair.friend_id is not None:
        sides.append((pair.friend_id, pair.friend_progress))
    reward = quest.reward
    return FriendQuestOut(
        pair_id=pair.id,
        quest_id=quest.id,
        name=quest.name,
        description=quest.description,
        status=pair.status,  # type: ignore[arg-type]
        period=pair.period,
        ends_at=_ends_at(quest, pair.period, now),
        progress=number(shown),
        target=number(target),
        remaining_text=remaining_text(ctx.content.get("events"), quest.goal, None, total),
        members=[
            FriendOut(
                handle=people[m].handle if m in people else None,
                display_name=people[m].display_name if m in people else None,
                contribution=number(amount),
                is_me=m == viewer,
            )
            for m, amount in sides
        ],
        reward=HelpRewardOut(reward.points, reward.growth),
        invited_by_me=pair.inviter_id == viewer,
        created_at=pair.created_at,
        accepted_at=pair.accepted_at,
        completed_at=pair.completed_at,
    )


async def my_friend_quests(ctx: Context, member_id: str, now: datetime | None = None) -> FriendQuestsOut:
    """The friend quests of the content, the member's pairings of their current periods, and the
    invitations addressed to them."""
    now = now or utcnow()
    quests = {q.id: q for q in teams_content(ctx).friend_quests}
    current = {(q.id, period_of(q, now)) for q in quests.values()}
    pairs: list[FriendQuestPair] = []
    async with ctx.db.session() as session:
        if current:
            seat_pairs = sa.select(SEATS.c.pair_id).where(
                SEATS.c.member_id == member_id,
                sa.tuple_(SEATS.c.quest_id, SEATS.c.period).in_(sorted(current)),
            )
            found = await session.execute(
                sa.select(FriendQuestPair)
                .where(
                    sa.or_(
                        PAIRS.c.id.in_(seat_pairs),
                        sa.and_(PAIRS.c.invited_id == member_id, PAIRS.c.status == "invited"),
                    ),
                    sa.tuple_(PAIRS.c.quest_id, PAIRS.c.period).in_(sorted(current)),
                )
                .order_by(PAIRS.c.created_at, PAIRS.c.id)
            )
            pairs = list(found.scalars())
        ids = sorted({m for p in pairs for m in (p.inviter_id, p.friend_id) if m is not None})
        people = await members.profiles(ctx, session, ids)
    seated = {
        p.quest_id for p in pairs if member_id in (p.inviter_id, p.friend_id) and p.status != "declined"
    }
    return FriendQuestsOut(
        pairs=[_out(ctx, quests[p.quest_id], p, people, member_id, now) for p in pairs],
        quests=[
            FriendQuestOfferOut(
                quest_id=q.id,
                name=q.name,
                description=q.description,
                target=number(q.goal.goal_target),
                period=period_of(q, now),
                ends_at=_ends_at(q, period_of(q, now), now),
                reward=HelpRewardOut(q.reward.points, q.reward.growth),
                paired=q.id in seated,
            )
            for q in quests.values()
        ],
    )


# --- counting on the event path -----------------------------------------------------------------


def wants(ctx: Context, event_type: str) -> bool:
    return any(q.goal.event == event_type for q in teams_content(ctx).friend_quests)


@dataclass
class _Counted:
    event: DomainEvent
    quest: FriendQuest
    period: str
    amount: float


def _counted(ctx: Context, events: list[DomainEvent]) -> list[_Counted]:
    """What each event would add to the friend quests that count it (before any pairing is read)."""
    out: list[_Counted] = []
    quests = teams_content(ctx).friend_quests
    for event in events:
        for quest in quests:
            if not quest.goal.accepts(event.type, event.properties):
                continue
            day = local_day(quest.zone, event.occurred_at)
            st: dict[str, Any] = {}
            advance(quest.goal, st, event.properties, day)
            amount = float(st.get("n", 0))
            if amount > 0:
                out.append(_Counted(event, quest, period_key(quest.period, day), amount))
    return out


def _seated(keys: set[tuple[str, str, str]]) -> Any:
    """The ids of the pairings of these (member, quest, period) seats."""
    return sa.select(SEATS.c.pair_id).where(
        sa.tuple_(SEATS.c.member_id, SEATS.c.quest_id, SEATS.c.period).in_(sorted(keys))
    )


async def partners(ctx: Context, session: AsyncSession, events: list[DomainEvent]) -> set[str]:
    """The other members of the pairings these events may move: held with the events' own
    members, in one order, before the unit of work writes (a completion pays both)."""
    keys = {(c.event.member_id, c.quest.id, c.period) for c in _counted(ctx, events)}
    if not keys:
        return set()
    found = await session.execute(
        sa.select(PAIRS.c.inviter_id, PAIRS.c.friend_id).where(
            PAIRS.c.id.in_(_seated(keys)), PAIRS.c.status == "active"
        )
    )
    others = {m for row in found for m in row if m is not None}
    if not others:
        # No pairing to move: the handler need not look again. One accepted since would not
        # count these events anyway (they happened before its acceptance).
        session.info.setdefault("friend_quests_idle", set()).update(keys)
    return others


_SAVE = (
    sa.update(PAIRS)
    .where(PAIRS.c.id == sa.bindparam("i"))
    .values(
        inviter_progress=sa.bindparam("a"),
        friend_progress=sa.bindparam("b"),
        status=sa.bindparam("s"),
        completed_at=sa.bindparam("t"),
    )
    .execution_options(synchronize_session=False)
)


async def count_friend_quests(ctx: Context, session: AsyncSession, events: list[DomainEvent]) -> None:
    """Add a run of member events to the pairings they count for: one read of the pairings (under
    their row locks), one write; both members paid when a pairing reaches its target."""
    counted = _counted(ctx, events)
    if not counted:
        return
    keys = {(c.event.member_id, c.quest.id, c.period) for c in counted}
    if keys <= session.info.get("friend_quests_idle", set()):
        return
    found = await session.execute(
        sa.select(FriendQuestPair)
        .where(PAIRS.c.id.in_(_seated(keys)), PAIRS.c.status == "active")
        .order_by(PAIRS.c.id)
        .with_for_update()
    )
    pairs = {p.id: p for p in found.scalars()}
    if not pairs:
        return
    seat = {
        (m, p.quest_id, p.period): p
        for p in pairs.values()
        for m in (p.inviter_id, p.friend_id)
        if m is not None
    }
    moved: dict[str, FriendQuestPair] = {}
    done: list[tuple[FriendQuestPair, FriendQuest]] = []
    now = utcnow()
    for c in counted:
        pair = seat.get((c.event.member_id, c.quest.id, c.period))
        if (
            pair is None
            or pair.status != "active"
            or pair.accepted_at is None
            or c.event.occurred_at < pair.accepted_at
        ):
            continue
        if c.event.member_id == pair.inviter_id:
            pair.inviter_progress += c.amount
        else:
            pair.friend_progress += c.amount
        moved[pair.id] = pair
        if pair.inviter_progress + pair.friend_progress >= c.quest.goal.goal_target:
            pair.status, pair.completed_at = "completed", now
            done.append((pair, c.quest))
    if not moved:
        return
    await session.execute(
        _SAVE,
        [
            {"i": p.id, "a": p.inviter_progress, "b": p.friend_progress, "s": p.status, "t": p.completed_at}
            for p in sorted(moved.values(), key=lambda p: p.id)
        ],
    )
    postings: list[ledger.Posting] = []
    for pair, quest in done:
        for member in (pair.inviter_id, pair.friend_id):
            assert member is not None
            for currency, amount in (("points", quest.reward.points), ("growth", quest.reward.growth)):
                if amount:
                    postings.append(
                        ledger.Posting(
                            member,
                            currency,
                            amount,
                            "friend quest completed",
                            SOURCE,
                            f"friend_quest:{pair.id}",
                            {"quest_id": quest.id, "period": pair.period, "pair_id": pair.id},
                        )
                    )
    await ledger.post_many(ctx, session, postings)
    quests = {q.id: q for q in teams_content(ctx).friend_quests}
    for pair in moved.values():
        quest = quests[pair.quest_id]
        total = pair.inviter_progress + pair.friend_progress
        data = {
            "pair_id": pair.id,
            "quest_id": quest.id,
            "progress": number(min(total, quest.goal.goal_target)),
            "target": number(quest.goal.goal_target),
            "status": pair.status,
        }
        for member in (pair.inviter_id, pair.friend_id):
            assert member is not None
            send_live(ctx, session, member, "friend_quest.progress", data, at=now)
            if pair.status == "completed" and any(p is pair for p, _ in done):
                send_live(
                    ctx,
                    session,
                    member,
                    "friend_quest.completed",
                    {
                        **data,
                        "name": quest.name,
                        "reward": {"points": quest.reward.points, "growth": quest.reward.growth},
                    },
                    at=now,
                )
