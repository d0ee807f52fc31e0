"""Teams: who is in which team, under the rules of its kind (content/teams.yaml).

A member's place in a team is kept by the members service (`placements`, `place`, `unplace`),
so that every domain reads it with the member's profile; this service decides who may join,
leave, lead and invite, and keeps each team's size under its row lock.

Every change of who is in a team takes the member's lock first (`lock_members`), then the rows of
the teams it touches in id order: two joins of one member to two teams of a one-team kind meet on
the member, and joins racing for a team's last place meet on the team's row. A community kind's
one team (id = the kind's id) is every member, kept without a row per member.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from server import audit
from server.db import insert_ignore, lock_members, utcnow
from server.errors import ProblemError, not_found
from server.members import service as members
from server.realtime.hub import send_team_live
from server.teams import invites
from server.teams.content import LEGACY_KIND, TeamKind, teams_content
from server.teams.models import Team, TeamPost, TeamRequest
from server.text import clean_name

if TYPE_CHECKING:
    from server.context import Context

TEAMS = Team.__table__
POSTS = TeamPost.__table__
REQUESTS = TeamRequest.__table__
TEAM_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")
# Paths of the API that a team id must not shadow (`GET /v1/teams/me`).
RESERVED_IDS = frozenset({"me"})
NAME_MAX = 60
DESCRIPTION_MAX = 300
ROSTER_SHOWN = 200  # members shown with a team; its `size` says how many there are in all
MAX_REQUESTS = 100  # pending join requests a team holds at once
_COMMUNITY_SIZE_SECONDS = 10.0
# What a member who leaves a team is owed, settled in the leave's transaction before they go:
# team goals (server.teams.goals, which builds on this module) add theirs when imported.
LEAVING: list[Callable[[Context, AsyncSession, members.Placement], Awaitable[None]]] = []


def check_team_id(team_id: str) -> str:
    if not TEAM_ID_RE.fullmatch(team_id):
        raise ProblemError(
            400,
            "invalid_team_id",
            "A team id is 1 to 64 characters: letters, digits and . _ : @ - (not starting with a symbol).",
        )
    return team_id


def name_key(name: str) -> str:
    """What makes two team names the same: case and runs of spaces do not count."""
    return " ".join(name.casefold().split())


def clean_team_name(name: str) -> str:
    """A team's name as people will see it (400 `invalid_team_name` otherwise)."""
    return clean_name(name, code="invalid_team_name", what="A team's name", max_length=NAME_MAX)


def clean_description(text: str) -> str:
    if not text.strip():
        return ""
    return clean_name(
        text, code="invalid_team_description", what="A team's description", max_length=DESCRIPTION_MAX
    )


def kinds(ctx: Context) -> list[TeamKind]:
    """The kinds of team the content declares."""
    return list(teams_content(ctx).kinds)


def kind_of(ctx: Context, kind_id: str) -> TeamKind:
    """A kind of team the content declares, else 404 `team_kind_not_found`. The kind that team ids
    set through a member's profile had before kinds existed is known without content."""
    kind = teams_content(ctx).kind(kind_id)
    if kind is None and kind_id == LEGACY_KIND:
        kind = TeamKind(id=LEGACY_KIND, name="Teams", policy="assigned", max_members=100_000)
    if kind is None:
        raise not_found("team_kind", kind_id)
    return kind


def kind_of_team(ctx: Context, team: Team) -> TeamKind:
    """The kind a stored team is of. A kind taken out of the content leaves its teams readable,
    held as assigned teams (nobody joins or leaves them by themselves any more)."""
    kind = teams_content(ctx).kind(team.kind)
    if kind is None:
        name = "Teams" if team.kind == LEGACY_KIND else team.kind
        kind = TeamKind(id=team.kind, name=name[:60], policy="assigned", max_members=100_000)
    return kind


def community_kind(ctx: Context, team_id: str) -> TeamKind | None:
    """The community kind whose one team has this id (the kind's own), if any."""
    kind = teams_content(ctx).kind(team_id)
    return kind if kind is not None and kind.community else None


def _community_refusal(kind: TeamKind) -> ProblemError:
    return ProblemError(
        409,
        "community_team",
        f"'{kind.name}' is every member's team: everyone is in it, nobody joins or leaves it.",
    )


async def get_team(session: AsyncSession, team_id: str, *, lock: bool = False) -> Team | None:
    return await session.get(Team, team_id, with_for_update=lock, populate_existing=lock)


async def teams_by_id(session: AsyncSession, team_ids: list[str]) -> dict[str, Team]:
    if not team_ids:
        return {}
    found = await session.execute(sa.select(Team).where(col(Team.id).in_(sorted(set(team_ids)))))
    return {t.id: t for t in found.scalars()}


async def _lock_teams(session: AsyncSession, team_ids: list[str]) -> dict[str, Team]:
    """The rows of these teams, locked in id order (one order everywhere: no deadlocks)."""
    if not team_ids:
        return {}
    found = await session.execute(
        sa.select(Team)
        .where(col(Team.id).in_(sorted(set(team_ids))))
        .order_by(col(Team.id))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {t.id: t for t in found.scalars()}


async def _lock_team(session: AsyncSession, team_id: str) -> Team:
    team = (await _lock_teams(session, [team_id])).get(team_id)
    if team is None:
        raise not_found("team", team_id)
    return team


# --- what a team looks like to callers --------------------------------------------------------


@dataclass(frozen=True)
class TeamView:
    """A team as the API shows it: a stored team, or a community kind's team of every member."""

    id: str
    kind: TeamKind
    name: str
    description: str
    size: int
    captain_id: str | None
    created_at: datetime | None

    @property
    def community(self) -> bool:
        return self.kind.community

    @property
    def max_members(self) -> int | None:
        return None if self.community else self.kind.max_members

    @property
    def full(self) -> bool:
        return not self.community and self.size >= self.kind.max_members


def view_of(ctx: Context, team: Team) -> TeamView:
    return TeamView(
        team.id,
        kind_of_team(ctx, team),
        team.name,
        team.description,
        team.size,
        team.captain_id,
        team.created_at,
    )


async def community_view(ctx: Context, session: AsyncSession, kind: TeamKind) -> TeamView:
    """A community kind's one team: its size is the number of members (counted at most every few
    seconds per process: at a million members a count is not free)."""
    now = time.monotonic()
    kept: tuple[float, int] | None = ctx.extras.get("community_size")
    if kept is None or kept[0] < now:
        kept = (now + _COMMUNITY_SIZE_SECONDS, await members.member_count(session))
        ctx.extras["community_size"] = kept
    return TeamView(kind.id, kind, kind.name, kind.description, kept[1], None, None)


async def read_team(ctx: Context, session: AsyncSession, team_id: str) -> TeamView:
    """A team by id, a community kind's too; 404 `team_not_found`."""
    check_team_id(team_id)
    kind = community_kind(ctx, team_id)
    if kind is not None:
        return await community_view(ctx, session, kind)
    team = await get_team(session, team_id)
    if team is None:
        raise not_found("team", team_id)
    return view_of(ctx, team)


@dataclass(frozen=True)
class Person:
    """A member as other members see them: never by id (the brand's, maybe an e-mail address)."""

    member_id: str
    handle: str | None
    display_name: str | None


async def people(ctx: Context, session: AsyncSession, member_ids: list[str]) -> dict[str, Person]:
    found = await members.profiles(ctx, session, sorted(set(member_ids)))
    return {m: Person(m, p.handle, p.display_name) for m, p in found.items()}


@dataclass(frozen=True)
class RosterRow:
    person: Person
    role: str
    joined_at: datetime


@dataclass(frozen=True)
class TeamDetail:
    team: TeamView
    roster: list[RosterRow] | None  # None: a community team (every member)
    my_role: str | None  # the caller's role; None when not in the team (or a brand system)


async def team_detail(ctx: Context, team_id: str, viewer: str | None) -> TeamDetail:
    """A team with its members, longest in the team first (the first `ROSTER_SHOWN`)."""
    async with ctx.db.session() as session:
        team = await read_team(ctx, session, team_id)
        if team.community:
            return TeamDetail(team, None, "member" if viewer is not None else None)
        placed = await members.team_roster(session, team_id, limit=ROSTER_SHOWN)
        shown = await people(ctx, session, [p.member_id for p in placed])
        my_role = next((p.role for p in placed if p.member_id == viewer), None)
        if viewer is not None and my_role is None and len(placed) >= ROSTER_SHOWN:
            mine = (await members.placements(session, [viewer]))[viewer]
            my_role = next((p.role for p in mine if p.team_id == team_id), None)
    roster = [RosterRow(shown[p.member_id], p.role, p.joined_at) for p in placed]
    return TeamDetail(team, roster, my_role)


@dataclass(frozen=True)
class MyTeam:
    team: TeamView
    role: str
    joined_at: datetime | None


async def my_teams(ctx: Context, member_id: str) -> list[MyTeam]:
    """The member's teams, oldest first, then the community teams every member is in."""
    async with ctx.db.session() as session:
        placed = (await members.placements(session, [member_id]))[member_id]
        stored = await teams_by_id(session, [p.team_id for p in placed])
        mine = [
            MyTeam(view_of(ctx, stored[p.team_id]), p.role, p.joined_at)
            for p in placed
            if p.team_id in stored
        ]
        community = [k for k in kinds(ctx) if k.community]
        if community:
            joined = (await members.profile(ctx, session, member_id)).joined_at
            for kind in community:
                mine.append(MyTeam(await community_view(ctx, session, kind), "member", joined))
    return mine


def listed_kinds(ctx: Context) -> list[TeamKind]:
    """The kinds whose teams members find and join by themselves."""
    return [k for k in kinds(ctx) if k.policy in ("open", "invite")]


def _cursor(key: str, team_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([key, team_id]).encode()).decode().rstrip("=")


def _after(cursor: str) -> tuple[str, str]:
    try:
        key, team_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(key, str) and isinstance(team_id, str):
            return key, team_id
    except (ValueError, TypeError):
        pass
    raise ProblemError(400, "invalid_cursor", "The cursor is not one this list gave; start again without it.")


async def list_teams(
    ctx: Context, *, kind_id: str | None, q: str | None, limit: int, cursor: str | None
) -> tuple[list[TeamView], str | None]:
    """Teams members may join (open and invite-only kinds), by name; `q` finds a part of the name
    whatever its case. Answers a page and the cursor of the next one."""
    listed = listed_kinds(ctx)
    if kind_id is not None:
        kind = kind_of(ctx, kind_id)
        if kind not in listed:
            raise ProblemError(
                400,
                "team_kind_not_listed",
                f"Teams of '{kind.id}' ({kind.policy}) are not joined by members themselves: "
                "only open and invite-only kinds are listed.",
            )
        listed = [kind]
    if not listed:
        return [], None
    statement = sa.select(Team).where(col(Team.kind).in_([k.id for k in listed]))
    key = name_key(q or "")
    if key:
        escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(col(Team.name_key).like(f"%{escaped}%", escape="\\"))
    if cursor:
        after_key, after_id = _after(cursor)
        statement = statement.where(
            sa.or_(
                col(Team.name_key) > after_key,
                sa.and_(col(Team.name_key) == after_key, col(Team.id) > after_id),
            )
        )
    statement = statement.order_by(col(Team.name_key), col(Team.id)).limit(limit + 1)
    async with ctx.db.session() as session:
        found = list((await session.execute(statement)).scalars())
    page = found[:limit]
    following = _cursor(page[-1].name_key, page[-1].id) if len(found) > limit else None
    return [view_of(ctx, t) for t in page], following


# --- the feed and live messages ---------------------------------------------------------------


def post(
    session: AsyncSession,
    team_id: str,
    type_: str,
    member_id: str | None,
    data: dict[str, Any],
    at: datetime | None = None,
) -> None:
    """Add a system post to a team's feed, in the caller's transaction."""
    session.add(TeamPost(team_id=team_id, at=at or utcnow(), type=type_, member_id=member_id, data=data))


def send_to_team(
    ctx: Context, session: AsyncSession, team_id: str, type_: str, data: dict[str, Any], at: datetime
) -> None:
    """A live message to every member of a team, published once after commit (server.realtime)."""
    send_team_live(ctx, session, team_id, type_, data, at=at)


def _person_data(person: Person) -> dict[str, Any]:
    return {"handle": person.handle, "display_name": person.display_name}


async def feed(
    ctx: Context, team_id: str, viewer: str | None, *, before: int | None, limit: int
) -> tuple[list[tuple[TeamPost, Person | None]], int | None]:
    """A team's posts, newest first, for its members (403 `not_in_team` for others; a community
    team's feed is every member's); a brand system (`viewer` None) reads any."""
    async with ctx.db.session() as session:
        team = await read_team(ctx, session, team_id)
        if viewer is not None and not team.community:
            placed = (await members.placements(session, [viewer]))[viewer]
            if not any(p.team_id == team_id for p in placed):
                raise ProblemError(403, "not_in_team", "Only the team's members read its feed.")
        statement = sa.select(TeamPost).where(col(TeamPost.team_id) == team_id)
        if before is not None:
            statement = statement.where(col(TeamPost.id) < before)
        statement = statement.order_by(col(TeamPost.id).desc()).limit(limit + 1)
        found = list((await session.execute(statement)).scalars())
        page = found[:limit]
        who = await people(ctx, session, [p.member_id for p in page if p.member_id])
    following = page[-1].id if len(found) > limit else None
    return [(p, who.get(p.member_id) if p.member_id else None) for p in page], following


# --- joining and leaving ----------------------------------------------------------------------


async def add_member(
    ctx: Context, session: AsyncSession, team: Team, kind: TeamKind, member_id: str, role: str = "member"
) -> bool:
    """Put a member in a team whose row the caller holds locked (and the member's lock, taken
    first); False when already in it.

    Refused when the team is full (409 `team_full`) or, for a one-team kind, when the member is
    in another team of the kind (409 `already_in_a_team`): the caller decides whether to move them.
    The first member of a captainless team of a kind members make becomes its captain.
    """
    now = utcnow()
    found = (await members.placements(session, [member_id]))[member_id]
    if any(p.team_id == team.id for p in found):
        return False
    other = next((p for p in found if p.kind == kind.id), None)
    if other is not None and not kind.several:
        raise ProblemError(
            409,
            "already_in_a_team",
            f"You are in another team of '{kind.name}' already: leave it before joining another.",
        )
    if team.size >= kind.max_members:
        raise ProblemError(409, "team_full", f"Team '{team.name}' is full ({kind.max_members} members).")
    if team.captain_id is None and kind.member_created:
        role = "captain"
    await members.place(ctx, session, member_id, team.id, kind.id, role, now)
    if role == "captain":
        team.captain_id = member_id
    team.size += 1
    team.updated_at = now
    session.add(team)
    post(session, team.id, "member_joined", member_id, {"role": role}, now)
    who = (await people(ctx, session, [member_id]))[member_id]
    send_to_team(
        ctx,
        session,
        team.id,
        "team.member_joined",
        {"team_id": team.id, **_person_data(who), "role": role},
        now,
    )
    return True


async def remove_member(
    ctx: Context, session: AsyncSession, team: Team, member_id: str, *, removed_by: str | None = None
) -> bool:
    """Take a member out of a team whose row the caller holds locked; False when not in it.

    A captain who leaves hands the captaincy to the member longest in the team. What the team's
    milestones still being paid owe the member is paid before they go (they keep what they earned)."""
    placed = next(
        (p for p in (await members.placements(session, [member_id]))[member_id] if p.team_id == team.id), None
    )
    if placed is None:
        return False
    for settle in LEAVING:
        await settle(ctx, session, placed)
    gone = await members.unplace(ctx, session, member_id, team.id)
    if gone is None:
        return False
    now = utcnow()
    team.size = max(0, team.size - 1)
    team.updated_at = now
    session.add(team)
    who = (await people(ctx, session, [member_id]))[member_id]
    post(session, team.id, "member_left", member_id, {"removed": removed_by is not None}, now)
    send_to_team(
        ctx,
        session,
        team.id,
        "team.member_left",
        {"team_id": team.id, **_person_data(who), "removed": removed_by is not None},
        now,
    )
    if team.captain_id == member_id:
        roster = await members.team_roster(session, team.id, limit=1)
        team.captain_id = roster[0].member_id if roster else None
        if team.captain_id is not None:
            await members.set_role(session, team.captain_id, team.id, "captain")
            post(session, team.id, "captain_changed", team.captain_id, {}, now)
    return True


@dataclass(frozen=True)
class Joined:
    team: TeamView
    status: str  # joined | requested | already_member
    role: str | None


async def join(ctx: Context, member_id: str, team_id: str, invite: str | None) -> Joined:
    """A member joins a team: an open team at once; an invite-only team with an invite code, or
    else by asking its captain (status `requested`). Refused: an assigned team (403
    `team_assigned`), a community team (409 `community_team`), a full team (409 `team_full`), a
    second team of a one-team kind (409 `already_in_a_team`), an invite that does not work (404,
    400, 410 `invite_...`)."""
    check_team_id(team_id)
    community = community_kind(ctx, team_id)
    if community is not None:
        raise _community_refusal(community)
    async with ctx.db.transaction() as session:
        await lock_members(session, [member_id])
        team = await _lock_team(session, team_id)
        kind = kind_of_team(ctx, team)
        placed = (await members.placements(session, [member_id]))[member_id]
        mine = next((p for p in placed if p.team_id == team_id), None)
        if mine is not None:
            return Joined(view_of(ctx, team), "already_member", mine.role)
        if kind.policy == "assigned":
            raise ProblemError(
                403, "team_assigned", f"Members of '{kind.name}' are placed by the brand; nobody joins one."
            )
        if invite is not None:
            await invites.use(session, invite, team.id)
        elif kind.policy == "invite":
            return await _ask(ctx, session, team, kind, member_id, placed)
        await add_member(ctx, session, team, kind, member_id)
        await session.execute(
            sa.delete(REQUESTS).where(REQUESTS.c.team_id == team.id, REQUESTS.c.member_id == member_id)
        )
        role = "captain" if team.captain_id == member_id else "member"
        return Joined(view_of(ctx, team), "joined", role)


async def _ask(
    ctx: Context,
    session: AsyncSession,
    team: Team,
    kind: TeamKind,
    member_id: str,
    placed: list[members.Placement],
) -> Joined:
    """A request to join an invite-only team, for its captain to answer (the same request again
    changes nothing); refused at once when it could not be accepted."""
    if not kind.several and any(p.kind == kind.id for p in placed):
        raise ProblemError(
            409,
            "already_in_a_team",
            f"You are in another team of '{kind.name}' already: leave it before asking to join another.",
        )
    if team.size >= kind.max_members:
        raise ProblemError(409, "team_full", f"Team '{team.name}' is full ({kind.max_members} members).")
    asked = await session.execute(
        sa.select(REQUESTS.c.member_id).where(
            REQUESTS.c.team_id == team.id, REQUESTS.c.member_id == member_id
        )
    )
    if asked.first() is not None:
        return Joined(view_of(ctx, team), "requested", None)
    pending = (
        await session.execute(
            sa.select(sa.func.count()).select_from(REQUESTS).where(REQUESTS.c.team_id == team.id)
        )
    ).scalar_one()
    if pending >= MAX_REQUESTS:
        raise ProblemError(
            409,
            "team_requests_full",
            f"Team '{team.name}' has {MAX_REQUESTS} requests waiting; try again later.",
        )
    await session.execute(
        insert_ignore(session, REQUESTS).values(team_id=team.id, member_id=member_id, created_at=utcnow())
    )
    return Joined(view_of(ctx, team), "requested", None)


async def leave(ctx: Context, member_id: str, team_id: str) -> TeamView:
    """A member leaves a team (a captain hands over to the member longest in it). Refused: not in
    it (409 `not_in_team`), an assigned team (403 `team_assigned`), a community team (409)."""
    check_team_id(team_id)
    community = community_kind(ctx, team_id)
    if community is not None:
        raise _community_refusal(community)
    async with ctx.db.transaction() as session:
        await lock_members(session, [member_id])
        team = await _lock_team(session, team_id)
        kind = kind_of_team(ctx, team)
        placed = (await members.placements(session, [member_id]))[member_id]
        if not any(p.team_id == team_id for p in placed):
            raise ProblemError(409, "not_in_team", f"You are not in team '{team.name}'.")
        if kind.policy == "assigned":
            raise ProblemError(
                403, "team_assigned", f"Members of '{kind.name}' are placed by the brand; nobody leaves one."
            )
        await remove_member(ctx, session, team, member_id)
        return view_of(ctx, team)


async def create_team(ctx: Context, member_id: str, kind_id: str, name: str, description: str) -> TeamView:
    """A member makes a team of a kind that allows it and is its captain. Refused: a kind members
    do not make (403 `team_kind_closed`), a name a team of the kind has (409 `team_name_taken`,
    whatever the case or spacing), a member in a team of a one-team kind (409 `already_in_a_team`)."""
    kind = kind_of(ctx, kind_id)
    if not kind.member_created:
        raise ProblemError(403, "team_kind_closed", f"Members do not make teams of '{kind.name}'.")
    name = clean_team_name(name)
    description = clean_description(description)
    async with ctx.db.transaction() as session:
        await lock_members(session, [member_id])
        placed = (await members.placements(session, [member_id]))[member_id]
        if not kind.several and any(p.kind == kind.id for p in placed):
            raise ProblemError(
                409,
                "already_in_a_team",
                f"You are in a team of '{kind.name}' already: leave it before making another.",
            )
        team_id = await _insert_team(session, None, kind, name, description, f"member:{member_id}"[:80])
        if team_id is None:
            raise _name_taken(kind, name)
        team = await _lock_team(session, team_id)
        await add_member(ctx, session, team, kind, member_id, "captain")
        return view_of(ctx, team)


def _name_taken(kind: TeamKind, name: str) -> ProblemError:
    return ProblemError(409, "team_name_taken", f"A team of '{kind.name}' is called '{name}' already.")


async def _insert_team(
    session: AsyncSession, team_id: str | None, kind: TeamKind, name: str, description: str, created_by: str
) -> str | None:
    """Insert a team (under a new random id when `team_id` is None); None when its id or its name
    is taken, also by a transaction committing at the same time (no unique-index error)."""
    now = utcnow()
    for _ in range(5):
        new_id = team_id or f"t_{secrets.token_hex(8)}"
        made = await session.execute(
            insert_ignore(session, TEAMS)
            .values(
                id=new_id,
                kind=kind.id,
                name=name,
                name_key=name_key(name),
                description=description,
                created_by=created_by,
                captain_id=None,
                size=0,
                created_at=now,
                updated_at=now,
            )
            .returning(TEAMS.c.id)
        )
        if made.first() is not None:
            return new_id
        if team_id is not None or await _name_used(session, kind.id, name):
            return None
    return None


async def _name_used(session: AsyncSession, kind_id: str, name: str, but: str | None = None) -> bool:
    statement = sa.select(TEAMS.c.id).where(TEAMS.c.kind == kind_id, TEAMS.c.name_key == name_key(name))
    if but is not None:
        statement = statement.where(TEAMS.c.id != but)
    return (await session.execute(statement.limit(1))).first() is not None


# --- the captain's work -----------------------------------------------------------------------


async def _captained(session: AsyncSession, captain_id: str, team_id: str) -> Team:
    team = await _lock_team(session, team_id)
    if team.captain_id != captain_id:
        raise ProblemError(403, "not_captain", f"Only the captain of '{team.name}' does this.")
    return team


def _check_captain_team(ctx: Context, team_id: str) -> None:
    check_team_id(team_id)
    community = community_kind(ctx, team_id)
    if community is not None:
        raise ProblemError(
            403, "not_captain", f"'{community.name}' has no captain: it is every member's team."
        )


async def new_invite(
    ctx: Context, captain_id: str, team_id: str, *, days: int | None, uses: int | None
) -> invites.Invite:
    """An invite link to the captain's team (403 `not_captain` for anyone else)."""
    _check_captain_team(ctx, team_id)
    async with ctx.db.transaction() as session:
        team = await _captained(session, captain_id, team_id)
        return await invites.create(ctx, session, team.id, captain_id, days=days, uses=uses)


async def invite_of(ctx: Context, code: str) -> tuple[invites.Invite, TeamView]:
    """An invite that works and the team it opens."""
    found = await invites.lookup(ctx, code)
    async with ctx.db.session() as session:
        return found, await read_team(ctx, session, found.team_id)


@dataclass(frozen=True)
class JoinRequest:
    person: Person
    requested_at: datetime


async def join_requests(ctx: Context, captain_id: str, team_id: str) -> list[JoinRequest]:
    """The requests waiting for the captain's answer, oldest first."""
    _check_captain_team(ctx, team_id)
    async with ctx.db.session() as session:
        team = await get_team(session, team_id)
        if team is None:
            raise not_found("team", team_id)
        if team.captain_id != captain_id:
            raise ProblemError(403, "not_captain", f"Only the captain of '{team.name}' does this.")
        return await _requests(ctx, session, team_id)


async def _requests(ctx: Context, session: AsyncSession, team_id: str) -> list[JoinRequest]:
    rows = list(
        await session.execute(
            sa.select(REQUESTS.c.member_id, REQUESTS.c.created_at)
            .where(REQUESTS.c.team_id == team_id)
            .order_by(REQUESTS.c.created_at, REQUESTS.c.member_id)
        )
    )
    who = await people(ctx, session, [r.member_id for r in rows])
    return [JoinRequest(who[r.member_id], r.created_at) for r in rows]


async def _member_by_handle(
    ctx: Context, session: AsyncSession, member_ids: list[str], handle: str
) -> str | None:
    who = await people(ctx, session, member_ids)
    return next((p.member_id for p in who.values() if p.handle == handle.strip().lower()), None)


async def answer_request(ctx: Context, captain_id: str, team_id: str, handle: str, *, accept: bool) -> Joined:
    """The captain accepts (the member joins) or declines a request to join, named by the
    member's handle; 404 `request_not_found` when there is none. An accepted request that cannot
    be met (a full team, the member now in another team of the kind) is refused and kept."""
    _check_captain_team(ctx, team_id)
    async with ctx.db.transaction() as session:
        asked = await session.execute(sa.select(REQUESTS.c.member_id).where(REQUESTS.c.team_id == team_id))
        member_id = await _member_by_handle(ctx, session, list(asked.scalars()), handle)
        if member_id is not None:
            await lock_members(session, [member_id])
        team = await _captained(session, captain_id, team_id)
        gone = await session.execute(
            sa.delete(REQUESTS)
            .where(REQUESTS.c.team_id == team_id, REQUESTS.c.member_id == (member_id or ""))
            .returning(REQUESTS.c.member_id)
        )
        if member_id is None or gone.first() is None:
            raise ProblemError(404, "request_not_found", f"No request to join '{team.name}' from '{handle}'.")
        if not accept:
            return Joined(view_of(ctx, team), "declined", None)
        await add_member(ctx, session, team, kind_of_team(ctx, team), member_id)
        return Joined(view_of(ctx, team), "joined", "captain" if team.captain_id == member_id else "member")


async def remove_from_team(ctx: Context, captain_id: str, team_id: str, handle: str) -> TeamView:
    """The captain takes a member (by handle) out of the team; 404 `team_member_not_found` when
    no member of the team has it, 409 `cannot_remove_self` for the captain (who leaves instead)."""
    _check_captain_team(ctx, team_id)
    async with ctx.db.transaction() as session:
        member_id = await _roster_member(ctx, session, team_id, handle)
        await lock_members(session, [captain_id, member_id])
        team = await _captained(session, captain_id, team_id)
        if member_id == captain_id:
            raise ProblemError(
                409, "cannot_remove_self", "A captain leaves the team instead of removing themselves."
            )
        if not await remove_member(ctx, session, team, member_id, removed_by=captain_id):
            raise ProblemError(404, "team_member_not_found", f"No member of '{team.name}' is '{handle}'.")
        return view_of(ctx, team)


async def _roster_member(ctx: Context, session: AsyncSession, team_id: str, handle: str) -> str:
    roster = await members.team_roster(session, team_id)
    member_id = await _member_by_handle(ctx, session, [p.member_id for p in roster], handle)
    if member_id is None:
        team = await get_team(session, team_id)
        if team is None:
            raise not_found("team", team_id)
        raise ProblemError(404, "team_member_not_found", f"No member of '{team.name}' is '{handle}'.")
    return member_id


async def hand_over(ctx: Context, captain_id: str, team_id: str, handle: str) -> TeamView:
    """The captain makes another member (by handle) the captain, and is a member again."""
    _check_captain_team(ctx, team_id)
    async with ctx.db.transaction() as session:
        member_id = await _roster_member(ctx, session, team_id, handle)
        team = await _captained(session, captain_id, team_id)
        if member_id == captain_id:
            raise ProblemError(409, "already_captain", "You are the captain already.")
        if not await members.set_role(session, member_id, team_id, "captain"):
            raise ProblemError(404, "team_member_not_found", f"No member of '{team.name}' is '{handle}'.")
        await members.set_role(session, captain_id, team_id, "member")
        now = utcnow()
        team.captain_id = member_id
        team.updated_at = now
        session.add(team)
        post(session, team.id, "captain_changed", member_id, {}, now)
        return view_of(ctx, team)


# --- the brand's systems and managers ---------------------------------------------------------


def _check_new_id(ctx: Context, team_id: str) -> None:
    check_team_id(team_id)
    if team_id in RESERVED_IDS or community_kind(ctx, team_id) is not None:
        raise ProblemError(
            409,
            "team_id_reserved",
            f"'{team_id}' names every member's team or a path of the API; give the team another id.",
        )


async def put_team(
    ctx: Context, team_id: str, kind_id: str, name: str, description: str, *, actor: str
) -> tuple[TeamView, bool]:
    """Create (True) or update an assigned team under the brand's own id, audited as
    `team.create` / `team.update` by `actor`. Refused: a kind that is not assigned (409
    `team_kind_not_assigned`), a team of another kind under that id (409 `team_kind_mismatch`),
    a name another team of the kind has (409 `team_name_taken`)."""
    kind = kind_of(ctx, kind_id)
    if kind.policy != "assigned":
        raise ProblemError(
            409,
            "team_kind_not_assigned",
            f"Teams of '{kind.name}' are {kind.policy}: the brand makes teams of assigned kinds only.",
        )
    _check_new_id(ctx, team_id)
    name = clean_team_name(name)
    description = clean_description(description)
    async with ctx.db.transaction() as session:
        team = await get_team(session, team_id, lock=True)
        created = False
        if team is None:
            created = await _insert_team(session, team_id, kind, name, description, actor[:80]) is not None
            # Not made: the name is taken, or another request made the team at the same moment.
            team = await get_team(session, team_id, lock=True)
            if team is None:
                raise _name_taken(kind, name)
        if team.kind != kind.id:
            raise ProblemError(
                409, "team_kind_mismatch", f"Team '{team_id}' is a team of '{team.kind}', not of '{kind.id}'."
            )
        if not created:
            if await _name_used(session, kind.id, name, but=team_id):
                raise _name_taken(kind, name)
            team.name, team.name_key, team.description = name, name_key(name), description
            team.updated_at = utcnow()
            session.add(team)
            try:
                async with session.begin_nested():
                    await session.flush()
            except IntegrityError:  # the name taken by a team committed since the check
                raise _name_taken(kind, name) from None
        audit.record(
            session,
            actor=actor,
            action="team.create" if created else "team.update",
            target=f"team:{team_id}",
            details={"kind": kind.id, "name": name},
        )
        return view_of(ctx, team), created


async def _known_member(session: AsyncSession, member_id: str) -> None:
    members.check_member_id(member_id)
    if await members.get_member(session, member_id) is None:
        raise not_found("member", member_id)


def _placed_kind(ctx: Context, kind_id: str) -> TeamKind:
    kind = kind_of(ctx, kind_id)
    if kind.community:
        raise _community_refusal(kind)
    return kind


@dataclass(frozen=True)
class Placed:
    member_id: str
    kind: str
    team_id: str | None
    role: str | None
    joined_at: datetime | None
    moved_from: list[str]


async def place_member(ctx: Context, member_id: str, kind_id: str, team_id: str, *, actor: str) -> Placed:
    """The brand or a manager puts a member in a team of a kind, out of their team of that kind
    (a one-team kind), audited as `team.place`. Refused: an unknown member (404
    `member_not_found`), kind or team (404), a team of another kind (409 `team_kind_mismatch`),
    a full team (409 `team_full`)."""
    kind = _placed_kind(ctx, kind_id)
    check_team_id(team_id)
    async with ctx.db.transaction() as session:
        await _known_member(session, member_id)
        await lock_members(session, [member_id])
        placed = (await members.placements(session, [member_id]))[member_id]
        of_kind = [p.team_id for p in placed if p.kind == kind.id]
        locked = await _lock_teams(session, [team_id, *([] if kind.several else of_kind)])
        team = locked.get(team_id)
        if team is None:
            raise not_found("team", team_id)
        if team.kind != kind.id:
            raise ProblemError(
                409, "team_kind_mismatch", f"Team '{team_id}' is a team of '{team.kind}', not of '{kind.id}'."
            )
        moved: list[str] = []
        if team_id not in of_kind:
            if not kind.several:
                for other in of_kind:
                    if other in locked:
                        await remove_member(ctx, session, locked[other], member_id)
                    else:  # its team row is gone: only the placement is left
                        await members.unplace(ctx, session, member_id, other)
                    moved.append(other)
            await add_member(ctx, session, team, kind, member_id)
            audit.record(
                session,
                actor=actor,
                action="team.place",
                target=f"member:{member_id}",
                details={"kind": kind.id, "team_id": team_id, "moved_from": moved},
            )
        mine = next(
            p for p in (await members.placements(session, [member_id]))[member_id] if p.team_id == team_id
        )
        return Placed(member_id, kind.id, team_id, mine.role, mine.joined_at, moved)


async def unplace_member(
    ctx: Context, member_id: str, kind_id: str, team_id: str | None, *, actor: str
) -> list[str]:
    """The brand or a manager takes a member out of their team(s) of a kind (only `team_id` if
    given), audited as `team.unplace`; answers the teams they left (none: nothing changed)."""
    kind = _placed_kind(ctx, kind_id)
    if team_id is not None:
        check_team_id(team_id)
    async with ctx.db.transaction() as session:
        await _known_member(session, member_id)
        await lock_members(session, [member_id])
        placed = (await members.placements(session, [member_id]))[member_id]
        leaving = [p.team_id for p in placed if p.kind == kind.id and team_id in (None, p.team_id)]
        locked = await _lock_teams(session, leaving)
        for other in leaving:
            if other in locked:
                await remove_member(ctx, session, locked[other], member_id)
            else:
                await members.unplace(ctx, session, member_id, other)
        if leaving:
            audit.record(
                session,
                actor=actor,
                action="team.unplace",
                target=f"member:{member_id}",
                details={"kind": kind.id, "teams": leaving},
            )
        return leaving


async def brand_team_of(ctx: Context, session: AsyncSession, member_id: str) -> str | None:
    """The member's team of the brand's kind (what their profile's `team_id` shows)."""
    kind = teams_content(ctx).brand_kind_id
    found = (await members.placements(session, [member_id]))[member_id]
    return next((p.team_id for p in found if p.kind == kind), None)


async def place_brand_team(ctx: Context, session: AsyncSession, member_id: str, team_id: str) -> None:
    """The brand's `team_id` for a member (`PUT /v1/members/{id}`): the member's team of the
    content's `brand_kind`, made as an assigned team when the id is new; "" takes them out."""
    kind = kind_of(ctx, teams_content(ctx).brand_kind_id)
    if team_id:
        check_team_id(team_id)
    await lock_members(session, [member_id])
    current = await brand_team_of(ctx, session, member_id)
    if current == (team_id or None):
        return
    if team_id and await get_team(session, team_id) is None:
        _check_new_id(ctx, team_id)
        await create_assigned(session, team_id, kind, name=team_id, created_by="brand")
    locked = await _lock_teams(session, [t for t in (team_id, current) if t])
    team = locked.get(team_id) if team_id else None
    if team is not None and team.kind != kind.id:
        raise ProblemError(
            409,
            "team_kind_mismatch",
            f"Team '{team_id}' is a team of kind '{team.kind}', not of '{kind.id}' (the brand's kind).",
        )
    if current is not None:
        if current in locked:
            await remove_member(ctx, session, locked[current], member_id)
        else:
            await members.unplace(ctx, session, member_id, current)
    if team is not None:
        await add_member(ctx, session, team, kind, member_id)


async def create_assigned(
    session: AsyncSession,
    team_id: str,
    kind: TeamKind,
    *,
    name: str,
    created_by: str,
    description: str = "",
) -> Team:
    """A team of an assigned kind under the brand's own id, or the one made under it meanwhile.

    Named after its id when no name is given; a name another team of the kind has (another id in
    other letter case) is numbered: the brand renames it with `PUT /v1/teams/{id}`."""
    base = name[:NAME_MAX]
    for n in range(1, 50):
        candidate = base if n == 1 else f"{base[: NAME_MAX - 6]} ({n})"
        if await _insert_team(session, team_id, kind, candidate, description, created_by) is not None:
            break
        if await get_team(session, team_id) is not None:
            break
    team = await get_team(session, team_id, lock=True)
    if team is None:
        raise ProblemError(409, "team_name_taken", f"No free name was found for team '{team_id}'.")
    return team
