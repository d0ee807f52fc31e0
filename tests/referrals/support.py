"""Members, claims and qualifying purchases for the referral tests, through the real API and dispatch."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from server.context import Context
from server.db import utcnow
from server.ledger.models import LedgerEntry
from server.referrals.landing import recorder
from server.referrals.models import Referral, ReferralReward
from tests.support import unique
from tests.tasks.quest_support import deliver, event


async def member(
    http: httpx.AsyncClient, as_brand: dict[str, str], *, name: str | None = None, days_ago: float = 0
) -> str:
    """A new member, signed up `days_ago`."""
    member_id = unique("rf")
    signed = (utcnow() - timedelta(days=days_ago)).isoformat()
    r = await http.put(
        f"/v1/members/{member_id}",
        json={"display_name": name or member_id, "signed_up_at": signed},
        headers=as_brand,
    )
    assert r.status_code in (200, 201), r.text
    return member_id


async def mine(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    r = await http.get("/v1/referrals/me", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def claim(http: httpx.AsyncClient, headers: dict[str, str], code: str, **body: Any) -> httpx.Response:
    return await http.post("/v1/referrals/claim", json={"code": code, **body}, headers=headers)


async def purchase(
    ctx: Context, member_id: str, amount: float = 20, at: datetime | None = None, **props: Any
) -> None:
    await deliver(ctx, event(member_id, "purchase", at or utcnow(), amount=amount, **props))


async def referral_entries(ctx: Context, member_id: str) -> list[tuple[str, int, str]]:
    """The member's ledger entries from referrals (and their reversals): (currency, amount, key)."""
    async with ctx.db.session() as session:
        rows = await session.execute(
            sa.select(LedgerEntry.currency, LedgerEntry.amount, LedgerEntry.idempotency_key)
            .where(
                LedgerEntry.member_id == member_id,
                sa.or_(LedgerEntry.source == "referral", LedgerEntry.idempotency_key.like("reversal:%")),
            )
            .order_by(LedgerEntry.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def referral_of(ctx: Context, friend_id: str) -> Referral | None:
    async with ctx.db.session() as session:
        return await session.get(Referral, friend_id)


async def rewards_of(ctx: Context, member_id: str) -> list[ReferralReward]:
    async with ctx.db.session() as session:
        rows = await session.execute(
            sa.select(ReferralReward).where(ReferralReward.member_id == member_id).order_by(ReferralReward.id)
        )
        return list(rows.scalars())


async def flush_clicks(ctx: Context) -> None:
    await recorder(ctx).flush()
