"""The audit log: who changed what, when and why; written in the same transaction as the change."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from server.admin.models import AuditRecord
from server.db import utcnow

if TYPE_CHECKING:
    from server.context import Context

SYSTEM = "system"
MAX_RECENT = 500


def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    target: str,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> AuditRecord:
    """Add an audit record to the caller's unit of work: it commits with the change it describes,
    or rolls back with it."""
    if len(actor) > 255 or len(action) > 100 or len(target) > 255:
        raise ValueError("an audit actor or target is at most 255 characters, an action 100")
    row = AuditRecord(
        at=utcnow(), actor=actor, action=action, target=target, reason=reason, details=details or {}
    )
    session.add(row)
    return row


async def recent(
    ctx: Context,
    *,
    action_prefix: str | None = None,
    target: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[AuditRecord]:
    """The newest records first, optionally those whose action starts with `action_prefix`
    (`referral.` for every referral decision) or about one `target`; page on with `before_id`
    (the smallest id of the previous page)."""
    audit = AuditRecord.__table__.c
    query = sa.select(AuditRecord).order_by(audit.id.desc()).limit(max(1, min(limit, MAX_RECENT)))
    if action_prefix:
        query = query.where(audit.action.startswith(action_prefix, autoescape=True))
    if target is not None:
        query = query.where(audit.target == target)
    if before_id is not None:
        query = query.where(audit.id < before_id)
    async with ctx.db.session() as session:
        return list((await session.execute(query)).scalars())
