"""The managers' review of held friend helps (`/v1/admin/assists`, manager bearer token): the
queue, and approving or rejecting a help, through friend help's own rules, audited with the
manager in the same transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, get, post
from litestar.params import Parameter

from server.admin.models import Manager
from server.admin.schemas import ReviewIn
from server.admin.service import require_role
from server.audit import record
from server.context import Context
from server.members.schemas import MemberIdPath
from server.teams import assists

_AssistId = Annotated[str, Parameter(max_length=64)]


class HeldHelpOut(msgspec.Struct):
    assist_id: str
    helper_id: str
    asker_id: str
    at: datetime
    risk_score: int
    signals: list[dict[str, Any]]


class HeldHelpsOut(msgspec.Struct):
    helps: list[HeldHelpOut]


class HelpReviewOut(msgspec.Struct):
    assist_id: str
    helper_id: str
    status: str  # counted (approved on an open request) | approved (paid alone) | rejected
    reviewed_by: str | None
    reviewed_at: datetime | None


class HeldHelpsController(Controller):
    """Friend helps held by the fraud signals (a device, an address or a payment means shared
    with the asker, or a burst of new accounts): neither counted nor paid until decided."""

    path = "/v1/admin/assists"
    tags = ["friend help", "admin"]

    @get("/held", operation_id="listHeldHelps")
    async def held(
        self, ctx: Context, manager: Manager, limit: Annotated[int, Parameter(ge=1, le=200)] = 50
    ) -> HeldHelpsOut:
        """Held helps, longest waiting first, with the signals behind their risk score."""
        return HeldHelpsOut([HeldHelpOut(**h) for h in await assists.held_helps(ctx, limit=limit)])

    @post("/{assist_id:str}/helps/{helper_id:str}/approve", operation_id="approveHelp", status_code=200)
    async def approve(
        self, ctx: Context, manager: Manager, assist_id: _AssistId, helper_id: MemberIdPath, data: ReviewIn
    ) -> HelpReviewOut:
        """Clear a held help (editor role): it counts on the request if it is still open, and the
        helper is paid; on a request that ended meanwhile the helper alone is paid."""
        return await _review(ctx, manager, assist_id, helper_id, data.reason, approve=True)

    @post("/{assist_id:str}/helps/{helper_id:str}/reject", operation_id="rejectHelp", status_code=200)
    async def reject(
        self, ctx: Context, manager: Manager, assist_id: _AssistId, helper_id: MemberIdPath, data: ReviewIn
    ) -> HelpReviewOut:
        """Refuse a held help (editor role): never counted, never paid."""
        return await _review(ctx, manager, assist_id, helper_id, data.reason, approve=False)


async def _review(
    ctx: Context, manager: Manager, assist_id: str, helper_id: str, reason: str, *, approve: bool
) -> HelpReviewOut:
    require_role(manager, "editor")
    assists.check_reason(reason)
    async with ctx.db.transaction() as session:
        h = await assists.review_help(
            ctx, session, assist_id, helper_id, approve=approve, actor=manager.actor
        )
        record(
            session,
            actor=manager.actor,
            action="assist_help.approve" if approve else "assist_help.reject",
            target=f"member:{helper_id}",
            reason=reason,
            details={
                "assist_id": assist_id,
                "asker_id": h.asker_id,
                "status": h.status,
                "risk_score": h.risk_score,
            },
        )
    return HelpReviewOut(h.assist_id, h.helper_id, h.status, h.reviewed_by, h.reviewed_at)
