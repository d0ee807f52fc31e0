"""Demo members for `make run`: a few profiles in different time zones and tiers, each with a welcome
bonus; the quests, check-ins and the rest come from the demo content in content/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from server.auth import issue_member_token
from server.errors import ProblemError
from server.ledger import service as ledger
from server.members.schemas import MemberIn
from server.members.service import upsert_member
from server.referrals.service import active_code, ensure_code, link_for
from server.teams import service as teams
from server.teams.content import teams_content

if TYPE_CHECKING:
    from server.context import Context

DEMO_MEMBERS = [
    ("demo-alice", "Alice", "Europe/Paris", None, "store-paris"),
    ("demo-bao", "Bao", "Asia/Ho_Chi_Minh", "gold", "store-saigon"),  # sees the gold-only quest unlocked
    ("demo-carmen", "Carmen", "America/Mexico_City", "silver", "store-paris"),
    ("demo-kiri", "Kiri", "Pacific/Kiritimati", None, "store-saigon"),
]
# Two teams of the first kind members make (the demo content's squads): a captain and a mate each.
DEMO_TEAMS = [("Night Owls", "demo-alice", "demo-bao"), ("Early Birds", "demo-carmen", "demo-kiri")]


async def load_demo(ctx: Context) -> list[str]:
    """Create or refresh the demo members; the bonus is keyed, so running this again awards nothing."""
    signed_up = datetime(2026, 11, 1, tzinfo=UTC)
    async with ctx.db.transaction() as session:
        for member_id, name, zone, tier, store in DEMO_MEMBERS:
            await upsert_member(
                ctx,
                session,
                member_id,
                MemberIn(display_name=name, timezone=zone, signed_up_at=signed_up, tier=tier),
            )
            # The brand's store for the member (its `team_id`): the boards' team scope.
            await teams.place_brand_team(ctx, session, member_id, store)
            await ledger.post(
                ctx,
                session,
                member_id,
                currency="points",
                amount=ctx.settings.demo_welcome_points,
                reason="welcome bonus",
                source="demo",
                idempotency_key="demo:welcome",
            )
        # Alice's referral code, so that her link opens the landing page at once.
        code = active_code(await ensure_code(ctx, session, DEMO_MEMBERS[0][0]))
    made = await _demo_teams(ctx)
    token = issue_member_token(ctx.settings, DEMO_MEMBERS[0][0])
    base = ctx.settings.local_base_url
    return [
        f"demo members: {', '.join(m[0] for m in DEMO_MEMBERS)}",
        f"a member token for {DEMO_MEMBERS[0][0]}, then try:",
        f"  TOKEN={token}",
        f'  curl -H "Authorization: Bearer $TOKEN" {base}/v1/me',
        f'  curl -H "Authorization: Bearer $TOKEN" -X POST {base}/v1/checkins',
        f'  curl -H "Authorization: Bearer $TOKEN" {base}/v1/quests',
        f"Alice's referral link: {link_for(ctx, code.display) if code else '-'}",
        *made,
    ]


async def _demo_teams(ctx: Context) -> list[str]:
    """The demo teams, made by their captains and joined by their mates through the members' own
    service calls; members already in a team of the kind keep it, so a second run changes nothing."""
    kind = next((k for k in teams_content(ctx).kinds if k.policy == "open" and k.member_created), None)
    if kind is None:
        return []
    lines = []
    for name, captain, mate in DEMO_TEAMS:
        try:
            mine = [t.team for t in await teams.my_teams(ctx, captain) if t.team.kind.id == kind.id]
            team = mine[0] if mine else await teams.create_team(ctx, captain, kind.id, name, "")
            await teams.join(ctx, mate, team.id, None)
        except ProblemError as exc:  # a demo member moved on (left, or joined another team): keep it
            lines.append(f"demo team {name!r} left as it is: {exc.detail}")
            continue
        lines.append(f"demo team {team.name!r} ({kind.name}): {captain} (captain), {mate}; id {team.id}")
    return lines
