"""Earning rules: how many points and growth a member event is worth (content/earning.yaml).

Here, the purchase rule: points and growth per currency unit of a `purchase` event's amount.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from server.content.loader import ContentKind, register_kind
from server.events.dispatch import DomainEvent, declare_properties, on_batch
from server.ledger import service as ledger

if TYPE_CHECKING:
    from server.context import Context


class PurchaseRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points_per_unit: Decimal = Field(default=Decimal(1), ge=0, le=10_000)
    growth_per_unit: Decimal = Field(default=Decimal(1), ge=0, le=10_000)


class ExpiryRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after_days: int | None = Field(
        default=365, ge=1, le=3650, description="points expire this long after they were earned; null: never"
    )
    warn_days: int = Field(
        default=30, ge=0, le=365, description="the 'expiring soon' message goes out this long before"
    )


class EarningContent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purchase: PurchaseRule = PurchaseRule()
    expiry: ExpiryRule = ExpiryRule()


register_kind(ContentKind(name="earning", filename="earning.yaml", model=EarningContent))


def _check_purchase(properties: dict[str, Any]) -> str | None:
    amount = properties.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        return "a purchase carries a numeric `amount` (the spend in currency units)."
    if not math.isfinite(amount) or amount < 0:
        return "a purchase `amount` is a finite number, zero or more."
    if amount > 1_000_000:
        return "a purchase `amount` above 1,000,000 is refused."
    return None


declare_properties("purchase", _check_purchase)


def purchase_amounts(rule: PurchaseRule, amount: float) -> dict[str, int]:
    """Whole points and growth for a spend; fractions are rounded down."""
    spend = Decimal(str(amount))
    return {
        "points": int(spend * rule.points_per_unit),
        "growth": int(spend * rule.growth_per_unit),
    }


def _purchases(ctx: Context, event_type: str) -> bool:
    return event_type == "purchase"


@on_batch(_purchases)
async def earn_from_purchases(ctx: Context, session: AsyncSession, events: list[DomainEvent]) -> None:
    """Points and growth for a run of purchases, posted together."""
    rule: PurchaseRule = ctx.content.get("earning").purchase
    postings: list[ledger.Posting] = []
    for event in events:
        amount = event.properties.get("amount")
        if not isinstance(amount, int | float) or isinstance(amount, bool):
            continue
        details = {
            "rule": "earning.purchase",
            "event_id": event.event_id,
            "spend": amount,
            "points_per_unit": str(rule.points_per_unit),
            "growth_per_unit": str(rule.growth_per_unit),
        }
        for currency, value in purchase_amounts(rule, amount).items():
            if value:
                postings.append(
                    ledger.Posting(
                        event.member_id,
                        currency,
                        value,
                        reason="purchase",
                        source="purchase",
                        idempotency_key=f"event:{event.event_id}",
                        details=details,
                    )
                )
    await ledger.post_many(ctx, session, postings)
