"""Invite links to a team (`/t/{code}`): made by the captain, good until they expire for a number
of joins, and the public page a link opens (the referral landing page's `share_page`, so that a
team invite looks and previews like every other link a member shares).

A code is 10 characters drawn from 30 that cannot be misread (about 49 random bits): short enough
to type from a screenshot, too many to guess. Its uses are counted in the joining member's
transaction, under the team's row lock, by a conditional update: 20 joins at once on an invite
of 3 uses make 3 members.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import execute_counting, insert_ignore, utcnow
from server.errors import ProblemError
from server.members import service as members
from server.referrals.content import program
from server.referrals.landing import missing_page, share_page
from server.teams.content import teams_content
from server.teams.models import Team, TeamInvite

if TYPE_CHECKING:
    from server.context import Context

ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"  # no 0/O, 1/I/L or U/V look-alikes to misread
CODE_LENGTH = 10
_INVITES = TeamInvite.__table__
_I = _INVITES.c


def link_for(ctx: Context, code: str) -> str:
    return f"{ctx.settings.public_base_url.rstrip('/')}/t/{code}"


def normal_code(code: str) -> str | None:
    """A code as stored (upper case, without the spaces or dashes a person may type), or None
    when it cannot be one: nothing is looked up for it."""
    code = code.strip().upper().replace("-", "").replace(" ", "")
    if len(code) != CODE_LENGTH or not set(code) <= set(ALPHABET):
        return None
    return code


@dataclass(frozen=True)
class Invite:
    code: str
    team_id: str
    expires_at: datetime
    uses_left: int


async def create(
    ctx: Context, session: AsyncSession, team_id: str, created_by: str, *, days: int | None, uses: int | None
) -> Invite:
    """A new invite link to a team, in the caller's transaction (the content's defaults for what
    is not given)."""
    defaults = teams_content(ctx).invites
    now = utcnow()
    expires_at = now + timedelta(days=days or defaults.days)
    max_uses = uses or defaults.uses
    for _ in range(10):
        code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
        made = await session.execute(
            insert_ignore(session, _INVITES)
            .values(
                code=code,
                team_id=team_id,
                created_by=created_by,
                created_at=now,
                expires_at=expires_at,
                max_uses=max_uses,
                uses=0,
            )
            .returning(_I.code)
        )
        if made.first() is not None:
            return Invite(code, team_id, expires_at, max_uses)
    raise ProblemError(503, "code_space_exhausted", "No free invite code was found; try again.")


def _refusal(invite: TeamInvite | None, now: datetime) -> ProblemError | None:
    if invite is None:
        return ProblemError(404, "invite_not_found", "No team invite has that code; check the link.")
    if invite.expires_at <= now:
        return ProblemError(
            410, "invite_expired", "This team invite has expired; ask the captain for a new one."
        )
    if invite.uses >= invite.max_uses:
        return ProblemError(
            410, "invite_used_up", "This team invite has been used as often as it allows; ask for a new one."
        )
    return None


async def use(session: AsyncSession, code: str, team_id: str) -> None:
    """Count one join on an invite, in the joining member's transaction; refuses an unknown code
    (404 `invite_not_found`), one for another team (400 `invite_for_another_team`), an expired one
    (410 `invite_expired`) and one used up (410 `invite_used_up`)."""
    now = utcnow()
    stored = normal_code(code)
    invite = await session.get(TeamInvite, stored, populate_existing=True) if stored else None
    refused = _refusal(invite, now)
    if refused is not None:
        raise refused
    assert invite is not None
    if invite.team_id != team_id:
        raise ProblemError(
            400, "invite_for_another_team", "This invite is for another team: join that team with it."
        )
    counted = await execute_counting(
        session,
        sa.update(_INVITES)
        .where(_I.code == invite.code, _I.uses < _I.max_uses, _I.expires_at > now)
        .values(uses=_I.uses + 1),
    )
    if not counted:  # used up by a join that committed since it was read
        raise ProblemError(
            410, "invite_used_up", "This team invite has been used as often as it allows; ask for a new one."
        )


async def find(session: AsyncSession, code: str) -> TeamInvite | None:
    stored = normal_code(code)
    return await session.get(TeamInvite, stored) if stored else None


async def lookup(ctx: Context, code: str) -> Invite:
    """An invite that works, for the app to show which team it opens before joining; refused
    like a join with it would be (404 `invite_not_found`, 410 `invite_expired`, `invite_used_up`)."""
    async with ctx.db.session() as session:
        invite = await find(session, code)
    refused = _refusal(invite, utcnow())
    if refused is not None:
        raise refused
    assert invite is not None
    return Invite(invite.code, invite.team_id, invite.expires_at, invite.max_uses - invite.uses)


@dataclass(frozen=True)
class Page:
    status: int
    html: str


async def invite_page(ctx: Context, code: str) -> Page:
    """The page an invite link opens: the preview card, who invites to which team, the code and
    the way into the app (its deep link keeps the invite through the app's sign-up); a friendly
    page with 404 (unknown code) or 410 (expired, used up) otherwise."""
    texts = teams_content(ctx).invites
    async with ctx.db.session() as session:
        invite = await find(session, code)
        team = await session.get(Team, invite.team_id) if invite is not None else None
        refused = _refusal(invite, utcnow()) if team is not None else _refusal(None, utcnow())
        if refused is not None:
            title = {
                "invite_expired": texts.expired_title,
                "invite_used_up": texts.used_up_title,
            }.get(refused.code, texts.not_found_title)
            return Page(refused.status, missing_page(ctx, title))
        assert invite is not None and team is not None
        inviter = await members.profile(ctx, session, invite.created_by)
    kind = teams_content(ctx).kind(team.kind)
    fields = {
        "team": team.name,
        "kind": kind.name if kind is not None else team.kind,
        "size": str(team.size),
        "inviter": inviter.display_name or program(ctx).landing.anonymous_name,
        "code": invite.code,
    }
    html = share_page(
        ctx,
        title=texts.title.format(**fields),
        description=texts.description.format(**fields),
        heading=texts.title.format(**fields),
        body=texts.body.format(**fields),
        url=link_for(ctx, invite.code),
        code=invite.code,
        open_url=(texts.deep_link or "").format(code=invite.code, team_id=team.id),
        open_label=texts.open_label,
    )
    return Page(200, html)
