"""Tier re-evaluation: once per member per period, and drops carried out when their notice ends."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from server.badges.tiers import review_tiers
from server.scheduler import Job

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)


async def review(ctx: Context, period: str) -> None:
    """Each tick: members not yet evaluated in the ladder's period, and drops that are due."""
    report = await review_tiers(ctx)
    if report.evaluated or report.dropped:
        log.info(
            "tiers_reviewed",
            period=report.period,
            evaluated=report.evaluated,
            promoted=report.promoted,
            noticed=report.noticed,
            dropped=report.dropped,
            kept=report.kept,
        )


JOBS = (Job("tiers.review", review, lambda ctx: ctx.settings.tier_review_seconds),)
