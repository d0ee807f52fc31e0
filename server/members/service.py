"""Member profiles: created by the brand's systems, or bare on a member's first valid token."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from server.content.ladder import tier_names
from server.db import GroupCommit, after_commit, insert_ignore, utcnow
from server.errors import ProblemError, not_found
from server.events.dispatch import DomainEvent, emit
from server.members.models import Member, MemberFriend, MemberTeam, new_handle
from server.members.schemas import MEMBER_ID_PATTERN, MemberIn, MemberOut
from server.realtime.hub import send_live, team_membership_changed
from server.text import clean_name

if TYPE_CHECKING:
    from server.context import Context

MEMBER_ID_RE = re.compile(MEMBER_ID_PATTERN)
MAX_FRIENDS = 1000
_ZONES: set[str] | None = None


def check_member_id(member_id: str) -> str:
    if not MEMBER_ID_RE.fullmatch(member_id):
        raise ProblemError(
            400,
            "invalid_member_id",
            "A member id is 1 to 64 characters: letters, digits and . _ : @ - (not starting with a symbol).",
        )
    return member_id


def check_timezone(name: str) -> str:
    """An IANA zone name such as Europe/Paris; abbreviations and offsets are refused."""
    global _ZONES
    if _ZONES is None:
        _ZONES = available_timezones()
    if name not in _ZONES:
        raise ProblemError(
            400, "invalid_timezone", f"'{name}' is not an IANA time zone (for example Europe/Paris)."
        )
    try:
        ZoneInfo(name)
    except ZoneInfoNotFoundError as exc:  # pragma: no cover - listed zones load
        raise ProblemError(400, "invalid_timezone", f"'{name}' is not an IANA time zone.") from exc
    return name


def tier_ladder(ctx: Context) -> list[str]:
    """The tiers, lowest first: from content once it names a ladder, else the default one."""
    return tier_names(getattr(ctx, "content", None))  # a CLI command may run without content


@dataclass(frozen=True, slots=True)
class Profile:
    """What other domains read of a member: how to name them, their zone, tier and teams. A member
    without a tier is on the first of the ladder; one not known yet has a profile of defaults."""

    member_id: str
    display_name: str | None
    timezone: str
    tier: str
    # The member's team of each kind they are placed in (for a kind that allows several teams,
    # the one joined first). Community teams are nobody's placement: every member is in them.
    teams: dict[str, str]
    signed_up_at: datetime | None
    created_at: datetime | None  # None: not a member yet
    handle: str | None = None  # what other members see instead of the id; None: not a member yet

    @property
    def known(self) -> bool:
        return self.created_at is not None

    @property
    def joined_at(self) -> datetime | None:
        """When the member joined the brand's program: their sign-up, else their first appearance."""
        return self.signed_up_at or self.created_at


_M = Member.__table__.c
_PROFILES = sa.select(
    _M.id, _M.display_name, _M.timezone, _M.tier, _M.signed_up_at, _M.created_at, _M.handle
).where(_M.id.in_(sa.bindparam("ids", expanding=True)))
_T = MemberTeam.__table__.c
_PLACEMENTS = (
    sa.select(_T.member_id, _T.team_id, _T.kind, _T.role, _T.joined_at)
    .where(_T.member_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(_T.member_id, _T.joined_at, _T.team_id)
)


def _read(session: AsyncSession) -> dict[str, Profile]:
    """The profiles this unit of work has read: each domain of the pipeline asks for the same
    members, and one statement answers them all. Every write to a member here forgets them."""
    read: dict[str, Profile] = session.info.setdefault("member_profiles", {})
    return read


def _forget(session: AsyncSession) -> None:
    session.info.pop("member_profiles", None)


async def profiles(ctx: Context, session: AsyncSession, member_ids: list[str]) -> dict[str, Profile]:
    """The profiles of many members in one statement, in the caller's transaction (for each id
    asked, known or not). Every domain reads members through this, never the table itself."""
    if session.dirty or session.new:
        await session.flush()  # what this transaction changed of a profile is read back
        _forget(session)
    read = _read(session)
    missing = [m for m in member_ids if m not in read]
    if missing:
        first_tier = tier_ladder(ctx)[0]
        # A Core statement on the session's connection: the same transaction, without the ORM's work.
        connection = await session.connection()
        rows = await connection.execute(_PROFILES, {"ids": missing})
        teams: dict[str, dict[str, str]] = {}
        for p in await connection.execute(_PLACEMENTS, {"ids": missing}):
            teams.setdefault(p.member_id, {}).setdefault(p.kind, p.team_id)
        for r in rows:
            read[r.id] = Profile(
                r.id,
                r.display_name,
                r.timezone,
                r.tier or first_tier,
                teams.get(r.id, {}),
                r.signed_up_at,
                r.created_at,
                r.handle,
            )
        for m in missing:
            if m not in read:
                read[m] = Profile(m, None, "UTC", first_tier, {}, None, None)
    return {m: read[m] for m in member_ids}


async def profile(ctx: Context, session: AsyncSession, member_id: str) -> Profile:
    """One member's profile (see `profiles`)."""
    return (await profiles(ctx, session, [member_id]))[member_id]


async def handles(ctx: Context, member_ids: list[str]) -> dict[str, str]:
    """The public handles of these members (those known), for showing them to other members.

    A handle never changes, so each process keeps those it has read: a board page read again
    costs no statement."""
    kept: dict[str, str] = ctx.extras.setdefault("member_handles", {})
    missing = sorted({m for m in member_ids if m not in kept})
    if missing:
        if len(kept) > 500_000:
            kept.clear()
        async with ctx.db.session() as session:
            found = await session.execute(sa.select(_M.id, _M.handle).where(_M.id.in_(missing)))
        kept.update({member_id: handle for member_id, handle in found})
    return {m: kept[m] for m in member_ids if m in kept}


async def member_by_handle(session: AsyncSession, handle: str) -> str | None:
    """The member whose public handle this is (for members naming each other), or None."""
    found = await session.execute(sa.select(_M.id).where(_M.handle == handle))
    return found.scalar()


async def member_ids_after(session: AsyncSession, after: str, limit: int) -> list[str]:
    """The next `limit` member ids after `after`, in id order: for jobs that visit every member."""
    found = await session.execute(sa.select(_M.id).where(_M.id > after).order_by(_M.id).limit(limit))
    return list(found.scalars())


async def member_count(session: AsyncSession) -> int:
    """How many members there are (bare ones too)."""
    return int((await session.execute(sa.select(sa.func.count()).select_from(Member.__table__))).scalar_one())


async def friend_lists(session: AsyncSession, member_ids: list[str]) -> dict[str, list[str]]:
    """The friend lists of many members in one statement (sorted; empty without one)."""
    table = MemberFriend.__table__
    found = await session.execute(
        sa.select(table.c.member_id, table.c.friend_id).where(table.c.member_id.in_(sorted(set(member_ids))))
    )
    lists: dict[str, list[str]] = {m: [] for m in member_ids}
    for member_id, friend_id in found:
        lists[member_id].append(friend_id)
    return {m: sorted(f) for m, f in lists.items()}


def tier_of(ctx: Context, m: Member) -> str:
    """The member's tier as every route shows it: a member without one is on the ladder's first."""
    return m.tier or tier_ladder(ctx)[0]


def to_out(ctx: Context, m: Member, team_id: str | None = None) -> MemberOut:
    return MemberOut(
        member_id=m.id,
        handle=m.handle,
        display_name=m.display_name,
        timezone=m.timezone,
        tier=tier_of(ctx, m),
        team_id=team_id,
        birthday=m.birthday,
        signed_up_at=m.signed_up_at,
        created_at=m.created_at,
        updated_at=m.updated_at,
    )


async def ensure_member(session: AsyncSession, member_id: str) -> bool:
    """Create a bare member if none exists: for a member app's first valid token, and under
    `upsert_member`. Nothing else creates members (an event or an award for an unknown one is
    refused).

    Returns True when this call created it.
    """
    check_member_id(member_id)
    return member_id in await _insert_bare(session, [member_id])


async def ensure_members(session: AsyncSession, member_ids: list[str]) -> None:
    """`ensure_member` for many members in one statement."""
    if member_ids:
        await _insert_bare(session, member_ids)


_HANDLE_DRAWS = 5


async def _insert_bare(session: AsyncSession, member_ids: list[str]) -> set[str]:
    """Insert the members not there yet, each with a new handle; returns those inserted.

    A handle drawn twice (about once in 2^60 draws) makes its insert a silent no-op: a member
    neither inserted nor found was refused for that, and is drawn a new handle."""
    _forget(session)
    todo = sorted(set(member_ids))
    made: set[str] = set()
    for _ in range(_HANDLE_DRAWS):
        now = utcnow()
        rows = [dict(id=m, handle=new_handle(), timezone="UTC", created_at=now, updated_at=now) for m in todo]
        inserted = await session.execute(insert_ignore(session, Member.__table__).returning(_M.id), rows)
        made.update(inserted.scalars())
        todo = [m for m in todo if m not in made]
        if not todo:
            return made
        there = await session.execute(sa.select(_M.id).where(_M.id.in_(todo)))
        todo = sorted(set(todo).difference(there.scalars()))
        if not todo:
            return made
    raise RuntimeError(f"no free handle for {len(todo)} member(s) in {_HANDLE_DRAWS} draws")


def _known(ctx: Context) -> set[str]:
    """Members this process has seen exist. Members are never deleted (erasure keeps the row,
    pseudonymised), so a member once seen stays known; the set is bounded by clearing it."""
    known: set[str] = ctx.extras.setdefault("known_members", set())
    if len(known) > 200_000:
        known.clear()
    return known


def remember_member(ctx: Context, member_id: str) -> None:
    _known(ctx).add(member_id)


async def member_exists(ctx: Context, member_id: str) -> bool:
    if member_id in _known(ctx):
        return True
    async with ctx.db.session() as session:
        found = await session.execute(sa.select(_M.id).where(_M.id == member_id))
    if found.first() is None:
        return False
    remember_member(ctx, member_id)
    return True


async def ensure_known(ctx: Context, member_id: str) -> None:
    """A bare member for the valid token of a member not known yet. Members first seen at the
    same time are created together, in one unit of work (group commit)."""
    if await member_exists(ctx, member_id):
        return
    check_member_id(member_id)
    units: GroupCommit[str, None] = GroupCommit.shared(
        ctx, "member_units", lambda ids: _create_together(ctx, ids)
    )
    await units.submit(member_id)
    remember_member(ctx, member_id)


async def _create_together(ctx: Context, member_ids: list[str]) -> list[BaseException | None]:
    async with ctx.db.transaction() as session:
        await ensure_members(session, member_ids)
    return [None] * len(member_ids)


async def get_member(session: AsyncSession, member_id: str) -> Member | None:
    return await session.get(Member, member_id)


async def upsert_member(
    ctx: Context, session: AsyncSession, member_id: str, data: MemberIn
) -> tuple[Member, bool]:
    """Create or update a profile; fields not given keep their value. Returns (member, created).

    A change of time zone is announced as a
    `member.timezone_changed` event: domains that count local dates (check-ins) decide when the
    new zone takes over.
    """
    check_member_id(member_id)
    if data.timezone is not None:
        check_timezone(data.timezone)
    display_name = (
        None
        if data.display_name is None
        else clean_name(data.display_name, code="invalid_display_name", what="A display name")
    )
    if data.signed_up_at is not None and data.signed_up_at.tzinfo is None:
        raise ProblemError(400, "invalid_signed_up_at", "signed_up_at needs a UTC offset (ISO 8601).")
    if data.tier is not None:
        ladder = tier_ladder(ctx)
        if data.tier not in ladder:
            raise ProblemError(
                400, "invalid_tier", f"'{data.tier}' is not a tier; the ladder is {', '.join(ladder)}."
            )
    created = await ensure_member(session, member_id)
    member = await session.get(Member, member_id, with_for_update=True, populate_existing=True)
    assert member is not None
    shown = (member.display_name, member.tier, member.signed_up_at)
    if display_name is not None:
        member.display_name = display_name
    if data.timezone is not None and data.timezone != member.timezone:
        now = utcnow()
        emit(
            ctx,
            session,
            DomainEvent(
                event_id=f"timezone:{member_id}:{now.isoformat()}",
                member_id=member_id,
                type="member.timezone_changed",
                occurred_at=now,
                properties={"timezone": data.timezone, "previous": member.timezone},
                source="members",
            ),
        )
        member.timezone = data.timezone
    if data.tier is not None and data.tier != (member.tier or tier_ladder(ctx)[0]):
        announce_tier(ctx, session, member_id, data.tier, member.tier, "brand")
    if data.tier is not None:
        member.tier = data.tier
    if data.birthday is not None:
        member.birthday = data.birthday
    if data.signed_up_at is not None:
        member.signed_up_at = data.signed_up_at.astimezone(UTC)
    member.updated_at = utcnow()
    session.add(member)
    await session.flush()
    _forget(session)
    if not created and shown != (member.display_name, member.tier, member.signed_up_at):
        profile_changed(ctx, session, member_id)

    async def remember() -> None:  # the brand's next award for this member needs no look-up
        remember_member(ctx, member_id)

    after_commit(session, remember)
    return member, created


def profile_changed(ctx: Context, session: AsyncSession, member_id: str) -> None:
    """Tell the domains that a member's name, tier, team or sign-up date changed (the boards move
    the member's live scores), after this transaction commits, or inline within a dispatch run."""
    now = utcnow()
    emit(
        ctx,
        session,
        DomainEvent(
            event_id=f"profile:{member_id}:{now.isoformat()}",
            member_id=member_id,
            type="member.profile_changed",
            occurred_at=now,
            properties={},
            source="members",
        ),
    )


def announce_tier(
    ctx: Context, session: AsyncSession, member_id: str, tier: str, previous: str | None, why: str
) -> None:
    """A `tier.changed` event for what counts tiers (badges), and the live message for the app."""
    now = utcnow()
    ladder = tier_ladder(ctx)
    before = previous or ladder[0]
    up = tier in ladder and before in ladder and ladder.index(tier) > ladder.index(before)
    data = {"tier": tier, "previous": before, "direction": "up" if up else "down", "reason": why}
    emit(
        ctx,
        session,
        DomainEvent(
            event_id=f"tier:{member_id}:{tier}:{now.isoformat()}",
            member_id=member_id,
            type="tier.changed",
            occurred_at=now,
            properties=data,
            source="members",
        ),
    )
    send_live(ctx, session, member_id, "tier.changed", data, at=now)


async def change_tier(ctx: Context, session: AsyncSession, member_id: str, tier: str, why: str) -> str | None:
    """Move a member to `tier` (the tier ladder's promotions and drops); returns the tier before.

    Announced like any tier change, and as a profile change (the boards move the member's scores)."""
    return (await change_tiers(ctx, session, {member_id: tier}, why))[member_id]


async def change_tiers(
    ctx: Context, session: AsyncSession, moves: dict[str, str], why: str
) -> dict[str, str | None]:
    """`change_tier` for many members in two statements; returns each one's tier before."""
    if not moves:
        return {}
    table = Member.__table__
    members = sorted(moves)
    _forget(session)
    previous: dict[str, str | None] = dict.fromkeys(members)
    rows = await session.execute(
        sa.select(table.c.id, table.c.tier)
        .where(table.c.id.in_(members))
        .order_by(table.c.id)
        .with_for_update()
    )
    previous.update({r.id: r.tier for r in rows})
    await session.execute(
        sa.update(table)
        .where(table.c.id.in_(members))
        .values(tier=sa.case(moves, value=table.c.id), updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    for member_id in members:
        announce_tier(ctx, session, member_id, moves[member_id], previous[member_id], why)
        profile_changed(ctx, session, member_id)
    return previous


def check_friends(member_id: str, friend_ids: list[str]) -> list[str]:
    """The list to store: distinct valid member ids, sorted, not the member, at most MAX_FRIENDS."""
    friends = sorted(set(friend_ids))
    if len(friends) > MAX_FRIENDS:
        raise ProblemError(
            400,
            "too_many_friends",
            f"A friend list holds at most {MAX_FRIENDS} members; this one names {len(friends)}.",
        )
    for friend_id in friends:
        if not MEMBER_ID_RE.fullmatch(friend_id):
            raise ProblemError(
                400,
                "invalid_member_id",
                f"'{friend_id}' in friends is not a member id: 1 to 64 characters, letters, digits"
                " and . _ : @ - (not starting with a symbol).",
            )
    if member_id in friends:
        raise ProblemError(
            400, "invalid_friends", f"A member is not their own friend: take '{member_id}' out of friends."
        )
    return friends


async def set_friends(
    ctx: Context, session: AsyncSession, member_id: str, friend_ids: list[str]
) -> list[str]:
    """Replace a member's friend list (brand systems); returns it sorted.

    The member must exist (404 `member_not_found`); friends need not be members yet. Duplicates count once.
    Friends kept from the previous list keep their `created_at`.
    """
    check_member_id(member_id)
    friends = check_friends(member_id, friend_ids)
    # The member's row serializes replacements of one list (SQLite's writers are serialized already).
    locked = await session.execute(sa.select(_M.id).where(_M.id == member_id).with_for_update())
    if locked.first() is None:
        raise not_found("member", member_id)
    table = MemberFriend.__table__
    found = await session.execute(sa.select(table.c.friend_id).where(table.c.member_id == member_id))
    before = set(found.scalars())
    gone = before.difference(friends)
    if gone:
        await session.execute(
            sa.delete(table).where(table.c.member_id == member_id, table.c.friend_id.in_(sorted(gone)))
        )
    now = utcnow()
    added = [dict(member_id=member_id, friend_id=f, created_at=now) for f in friends if f not in before]
    if added:
        await session.execute(sa.insert(table), added)

    async def remember() -> None:
        remember_member(ctx, member_id)

    after_commit(session, remember)
    return friends


async def friends_of(session: AsyncSession, member_id: str) -> list[str]:
    """A member's friend list, sorted (empty for a member without one, or unknown)."""
    table = MemberFriend.__table__
    found = await session.execute(sa.select(table.c.friend_id).where(table.c.member_id == member_id))
    return sorted(found.scalars())


# --- teams: a member's placements (server.teams keeps the teams and their rules) -------------


@dataclass(frozen=True, slots=True)
class Placement:
    """A member's place in a team."""

    member_id: str
    team_id: str
    kind: str
    role: str  # captain | member
    joined_at: datetime


def _placement(r: Any) -> Placement:
    return Placement(r.member_id, r.team_id, r.kind, r.role, r.joined_at)


async def placements(session: AsyncSession, member_ids: list[str]) -> dict[str, list[Placement]]:
    """The teams of many members in one statement, each member's oldest first."""
    found: dict[str, list[Placement]] = {m: [] for m in member_ids}
    if member_ids:
        rows = await (await session.connection()).execute(_PLACEMENTS, {"ids": sorted(set(member_ids))})
        for r in rows:
            found[r.member_id].append(_placement(r))
    return found


async def team_roster(session: AsyncSession, team_id: str, *, limit: int | None = None) -> list[Placement]:
    """A team's members, longest in the team first."""
    statement = (
        sa.select(_T.member_id, _T.team_id, _T.kind, _T.role, _T.joined_at)
        .where(_T.team_id == team_id)
        .order_by(_T.joined_at, _T.member_id)
    )
    if limit is not None:
        statement = statement.limit(limit)
    return [_placement(r) for r in await session.execute(statement)]


async def team_members_after(session: AsyncSession, team_id: str, after: str, limit: int) -> list[Placement]:
    """The next `limit` members of a team after the member id `after`, in id order: for jobs that
    visit a whole team in batches."""
    found = await session.execute(
        sa.select(_T.member_id, _T.team_id, _T.kind, _T.role, _T.joined_at)
        .where(_T.team_id == team_id, _T.member_id > after)
        .order_by(_T.member_id)
        .limit(limit)
    )
    return [_placement(r) for r in found]


async def rosters(session: AsyncSession, team_ids: list[str]) -> dict[str, list[Placement]]:
    """The members of many teams in one statement, each team's longest in the team first."""
    found: dict[str, list[Placement]] = {t: [] for t in team_ids}
    if team_ids:
        rows = await session.execute(
            sa.select(_T.member_id, _T.team_id, _T.kind, _T.role, _T.joined_at)
            .where(_T.team_id.in_(sorted(set(team_ids))))
            .order_by(_T.team_id, _T.joined_at, _T.member_id)
        )
        for r in rows:
            found[r.team_id].append(_placement(r))
    return found


async def roster_size(session: AsyncSession, team_id: str) -> int:
    found = await session.execute(
        sa.select(sa.func.count()).select_from(MemberTeam.__table__).where(_T.team_id == team_id)
    )
    return int(found.scalar_one())


async def place(
    ctx: Context, session: AsyncSession, member_id: str, team_id: str, kind: str, role: str, at: datetime
) -> bool:
    """Put a member in a team (the teams service checks its rules first). False when already there.

    The boards that scope by team move the member's live scores (a profile change)."""
    _forget(session)
    inserted = await session.execute(
        insert_ignore(session, MemberTeam.__table__).returning(_T.member_id),
        [dict(member_id=member_id, team_id=team_id, kind=kind, role=role, joined_at=at)],
    )
    if inserted.first() is None:
        return False
    profile_changed(ctx, session, member_id)
    team_membership_changed(ctx, session, member_id)  # the member's open sockets hear the team
    return True


async def unplace(ctx: Context, session: AsyncSession, member_id: str, team_id: str) -> Placement | None:
    """Take a member out of a team; returns the placement they had, None if they were not in it."""
    _forget(session)
    table = MemberTeam.__table__
    gone = await session.execute(
        sa.delete(table)
        .where(_T.member_id == member_id, _T.team_id == team_id)
        .returning(_T.member_id, _T.team_id, _T.kind, _T.role, _T.joined_at)
    )
    row = gone.first()
    if row is None:
        return None
    profile_changed(ctx, session, member_id)
    team_membership_changed(ctx, session, member_id)
    return _placement(row)


async def set_role(session: AsyncSession, member_id: str, team_id: str, role: str) -> bool:
    """A member's role in a team (captain or member); False when they are not in it."""
    done = await session.execute(
        sa.update(MemberTeam.__table__)
        .where(_T.member_id == member_id, _T.team_id == team_id)
        .values(role=role)
        .returning(_T.member_id)
    )
    return done.first() is not None
