"""Reading the audit log: the console and `GET /v1/admin/audit`. What writes to it is
`server.audit`, in the same transaction as each change."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from server.audit import SYSTEM, AuditRecord, record

if TYPE_CHECKING:
    from server.context import Context

__all__ = ["MAX_RECENT", "SYSTEM", "recent", "record"]

MAX_RECENT = 500


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
