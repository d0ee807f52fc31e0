from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from server.ledger.expiry import expire_points
from server.ledger.service import verify
from server.scheduler import Job

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)


async def audit_ledger(ctx: Context, period: str) -> None:
    """Once per period on one instance: recompute every chain and balance, and shout if one was altered."""
    report = await verify(ctx)
    if report.problems:
        log.error(
            "ledger_audit_failed", period=period, problems=len(report.problems), first=report.problems[:5]
        )
    else:
        log.info("ledger_audit_ok", period=period, members=report.members, entries=report.entries)


async def expire_points_due(ctx: Context, period: str) -> None:
    """Once per period on one instance: expire the points earned too long ago (oldest first) and
    tell the members whose points expire soon."""
    report = await expire_points(ctx)
    if report.refused:
        log.error(
            "points_expiry_refused", period=period, members=len(report.refused), first=report.refused[:5]
        )
    if report.expired_points or report.warned:
        log.info(
            "points_expired",
            period=period,
            members=report.expired_members,
            points=report.expired_points,
            warned=report.warned,
        )


JOBS = (
    Job("ledger.audit", audit_ledger, lambda ctx: ctx.settings.ledger_audit_seconds),
    Job("ledger.expire_points", expire_points_due, lambda ctx: ctx.settings.points_expiry_seconds),
)
