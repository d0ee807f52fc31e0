"""Demo members for `make run`: a few profiles in different time zones and tiers, each with a welcome
bonus; the quests, check-ins and the rest come from the demo content in content/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from server.auth import issue_member_token
from server.ledger import service as ledger
from server.members.schemas import MemberIn
from server.members.service import upsert_member
from server.referrals.service import active_code, ensure_code, link_for

if TYPE_CHECKING:
    from server.context import Context

DEMO_MEMBERS = [
    ("demo-alice", "Alice", "Europe/Paris", None),
    ("demo-bao", "Bao", "Asia/Ho_Chi_Minh", "gold"),  # sees the gold-only quest unlocked
    ("demo-carmen", "Carmen", "America/Mexico_City", "silver"),
    ("demo-kiri", "Kiri", "Pacific/Kiritimati", None),
]


async def load_demo(ctx: Context) -> list[str]:
    """Create or refresh the demo members; the bonus is keyed, so running this again awards nothing."""
    signed_up = datetime(2026, 11, 1, tzinfo=UTC)
    async with ctx.db.transaction() as session:
        for member_id, name, zone, tier in DEMO_MEMBERS:
            await upsert_member(
                ctx,
                session,
                member_id,
                MemberIn(display_name=name, timezone=zone, signed_up_at=signed_up, tier=tier),
            )
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
    ]
