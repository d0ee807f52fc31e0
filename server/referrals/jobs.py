"""Referrals whose conversion window passed without the qualifying action are closed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from server.referrals.service import expire_unconverted
from server.scheduler import Job

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)


async def expire(ctx: Context, period: str) -> None:
    """Each tick: claimed referrals past their conversion window become `expired`."""
    n = await expire_unconverted(ctx)
    if n:
        log.info("referrals_expired", count=n, period=period)


JOBS = (Job("referrals.expire", expire, lambda ctx: ctx.settings.referral_expiry_seconds),)
