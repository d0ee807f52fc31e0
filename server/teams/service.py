"""Teams: who is in which team, under the rules of its kind (content/teams.yaml).

A member's place in a team is kept by the members service (`placements`, `place`, `unplace`),
so that every domain reads it with the member's profile; this service decides who may join,
leave, lead and invite, and keeps each team's size under its row lock.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import utcnow
from server.errors import ProblemError, not_found
from server.members import service as members
from server.teams.content import LEGACY_KIND, TeamKind, teams_content
from server.teams.models import Team, TeamPost

if TYPE_CHECKING:
    from datetime import datetime

    from server.context import Context

TEAMS = Team.__table__
POSTS = TeamPost.__table__
TEAM_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")


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


def kind_of(ctx: Context, kind_id: str) -> TeamKind:
    """A kind of team the content declares, else 404 `team_kind_not_found`. The kind that team ids
    set through a member's profile had before kinds existed is known without content."""
    kind = teams_content(ctx).kind(kind_id)
    if kind is None and kind_id == LEGACY_KIND:
        kind = TeamKind(id=LEGACY_KIND, name="Teams", policy="assigned", max_members=100_000)
    if kind is None:
        raise not_found("team_kind", kind_id)
    return kind


async def get_team(session: AsyncSession, team_id: str, *, lock: bool = False) -> Team | None:
    return await session.get(Team, team_id, with_for_update=lock, populate_existing=lock)


async def brand_team_of(ctx: Context, session: AsyncSession, member_id: str) -> str | None:
    """The member's team of the brand's kind (what their profile's `team_id` shows)."""
    kind = teams_content(ctx).brand_kind_id
    found = (await members.placements(session, [member_id]))[member_id]
    return next((p.team_id for p in found if p.kind == kind), None)


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


async def add_member(
    ctx: Context, session: AsyncSession, team: Team, kind: TeamKind, member_id: str, role: str = "member"
) -> bool:
    """Put a member in a team whose row the caller holds locked; False when already in it.

    Refused when the team is full (409 `team_full`) or, for a one-team kind, when the member is
    in another team of the kind (409 `already_in_a_team`): the caller decides whether to move them.
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
            f"You are in team '{other.team_id}' of this kind already; leave it before joining another.",
        )
    if team.size >= kind.max_members:
        raise ProblemError(409, "team_full", f"Team '{team.name}' is full ({kind.max_members} members).")
    await members.place(ctx, session, member_id, team.id, kind.id, role, now)
    team.size += 1
    team.updated_at = now
    session.add(team)
    post(session, team.id, "member_joined", member_id, {}, now)
    return True


async def remove_member(ctx: Context, session: AsyncSession, team: Team, member_id: str) -> bool:
    """Take a member out of a team whose row the caller holds locked; False when not in it.

    A captain who leaves hands the captaincy to the member longest in the team."""
    gone = await members.unplace(ctx, session, member_id, team.id)
    if gone is None:
        return False
    now = utcnow()
    team.size = max(0, team.size - 1)
    team.updated_at = now
    if team.captain_id == member_id:
        roster = await members.team_roster(session, team.id, limit=1)
        team.captain_id = roster[0].member_id if roster else None
        if team.captain_id is not None:
            await members.set_role(session, team.captain_id, team.id, "captain")
            post(session, team.id, "captain_changed", team.captain_id, {"previous": member_id}, now)
    session.add(team)
    post(session, team.id, "member_left", member_id, {}, now)
    return True


async def place_brand_team(ctx: Context, session: AsyncSession, member_id: str, team_id: str) -> None:
    """The brand's `team_id` for a member (`PUT /v1/members/{id}`): the member's team of the
    content's `brand_kind`, made as an assigned team when the id is new; "" takes them out."""
    kind = kind_of(ctx, teams_content(ctx).brand_kind_id)
    if team_id:
        check_team_id(team_id)
    current = await brand_team_of(ctx, session, member_id)
    if current == (team_id or None):
        return
    team: Team | None = None
    if team_id:
        team = await get_team(session, team_id, lock=True)
        if team is None:
            team = await create_assigned(session, team_id, kind, name=team_id, created_by="brand")
        elif team.kind != kind.id:
            raise ProblemError(
                409,
                "team_kind_mismatch",
                f"Team '{team_id}' is a team of kind '{team.kind}', not of '{kind.id}' (the brand's kind).",
            )
    if current is not None:
        old = await get_team(session, current, lock=True)
        if old is not None:
            await remove_member(ctx, session, old, member_id)
    if team is not None:
        await add_member(ctx, session, team, kind, member_id)


async def create_assigned(
    session: AsyncSession, team_id: str, kind: TeamKind, *, name: str, created_by: str, description: str = ""
) -> Team:
    """A new team of an assigned kind, under the brand's own id."""
    now = utcnow()
    team = Team(
        id=team_id,
        kind=kind.id,
        name=name,
        name_key=name_key(name),
        description=description,
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    session.add(team)
    await session.flush()
    return team


async def teams_by_id(session: AsyncSession, team_ids: list[str]) -> dict[str, Team]:
    if not team_ids:
        return {}
    found = await session.execute(sa.select(Team).where(Team.id.in_(sorted(set(team_ids)))))  # type: ignore[attr-defined]
    return {t.id: t for t in found.scalars()}
