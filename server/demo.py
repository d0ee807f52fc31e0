"""Demo members for `make run`: a few profiles in different time zones, each with a welcome bonus."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from server.auth import issue_member_token
from server.ledger import service as ledger
from server.members.schemas import MemberIn
from server.members.service import upsert_member

if TYPE_CHECKING:
    from server.context import Context

DEMO_MEMBERS = [
    ("demo-alice", "Alice", "Europe/Paris"),
    ("demo-bao", "Bao", "Asia/Ho_Chi_Minh"),
    ("demo-carmen", "Carmen", "America/Mexico_City"),
    ("demo-kiri", "Kiri", "Pacific/Kiritimati"),
]


async def load_demo(ctx: Context) -> list[str]:
    """Create or refresh the demo members; the bonus is keyed, so running this again awards nothing."""
    signed_up = datetime(2026, 11, 1, tzinfo=UTC)
    async with ctx.db.transaction() as session:
        for member_id, name, zone in DEMO_MEMBERS:
            await upsert_member(
                ctx, session, member_id, MemberIn(display_name=name, timezone=zone, signed_up_at=signed_up)
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
    token = issue_member_token(ctx.settings, DEMO_MEMBERS[0][0])
    return [
        f"demo members: {', '.join(m[0] for m in DEMO_MEMBERS)}",
        f"try: curl -H 'Authorization: Bearer {token}' http://{ctx.settings.host}:{ctx.settings.port}/v1/me",
    ]
