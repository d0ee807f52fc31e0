"""The admin API (`/v1/admin/...`, manager bearer token): sessions, the audit log and the review
of held referrals."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post, put
from litestar.params import Parameter

from server.admin import audit, service
from server.admin.models import Manager
from server.admin.schemas import (
    AuditOut,
    AuditRecordOut,
    HeldOut,
    LoginIn,
    ManagerOut,
    ReassignIn,
    ReviewIn,
    ReviewOut,
    SessionOut,
)
from server.auth import bearer_token
from server.context import Context
from server.members.schemas import MemberIdPath
from server.referrals import service as referrals


def manager_out(manager: Manager) -> ManagerOut:
    return ManagerOut(manager.id, manager.email, manager.display_name, manager.role)


class AdminSessionsController(Controller):
    path = "/v1/admin"
    tags = ["admin"]

    @post("/sessions", operation_id="createAdminSession", status_code=201)
    async def login(self, ctx: Context, request: Request[Any, Any, Any], data: LoginIn) -> SessionOut:
        """Log in with a manager's email and password; 401 `invalid_credentials` whatever was wrong."""
        address = request.client.host if request.client else None
        token, session, manager = await service.login(ctx, data.email, data.password, address=address)
        return SessionOut(token, session.expires_at, manager_out(manager))

    @delete("/sessions/current", operation_id="deleteAdminSession")
    async def logout(self, ctx: Context, manager: Manager, request: Request[Any, Any, Any]) -> None:
        """Log out: the token stops working (on every instance within seconds)."""
        token = bearer_token(request)
        if token:
            await service.logout(ctx, token)

    @get("/me", operation_id="getAdminMe")
    async def me(self, manager: Manager) -> ManagerOut:
        """The manager of the session."""
        return manager_out(manager)

    @get("/audit", operation_id="listAuditRecords")
    async def audit_log(
        self,
        ctx: Context,
        manager: Manager,
        action: Annotated[str | None, Parameter(max_length=100)] = None,
        target: Annotated[str | None, Parameter(max_length=255)] = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Parameter(pattern=r"^[1-9][0-9]{0,17}$")] = None,
    ) -> AuditOut:
        """The audit log, newest first (any role): `action` filters by prefix (`referral.`),
        `target` by exact target (`member:<id>`); `cursor` is the `next_cursor` of the page before."""
        before_id = int(cursor) if cursor else None
        rows = await audit.recent(ctx, action_prefix=action, target=target, limit=limit, before_id=before_id)
        records = [
            AuditRecordOut(r.id or 0, r.at, r.actor, r.action, r.target, r.reason, r.details) for r in rows
        ]
        next_cursor = str(rows[-1].id) if len(rows) == limit and rows[-1].id else None
        return AuditOut(records, next_cursor)


class ReferralReviewController(Controller):
    """The managers' review of held referrals (`Authorization: Bearer <manager token>`)."""

    path = "/v1/admin/referrals"
    tags = ["referrals", "admin"]

    @get("/held", operation_id="listHeldReferrals")
    async def held(
        self,
        ctx: Context,
        manager: Manager,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Parameter(max_length=64)] = None,
    ) -> HeldOut:
        """Held referrals, longest waiting first: both sides, the signals behind the risk score
        and the pending rewards."""
        found = await referrals.held(ctx, limit=limit, after=cursor)
        return HeldOut(found, found[-1]["friend_id"] if len(found) == limit else None)

    @post("/{friend_id:str}/approve", operation_id="approveReferral", status_code=200)
    async def approve(
        self, ctx: Context, manager: Manager, friend_id: MemberIdPath, data: ReviewIn
    ) -> ReviewOut:
        """Clear a held referral: its pending rewards are paid (editor role)."""
        r = await service.approve_referral(ctx, manager, friend_id, data.reason)
        return _review_out(r)

    @post("/{friend_id:str}/reject", operation_id="rejectReferral", status_code=200)
    async def reject(
        self, ctx: Context, manager: Manager, friend_id: MemberIdPath, data: ReviewIn
    ) -> ReviewOut:
        """Refuse a held referral: pending rewards are dropped and any paid are reversed through
        the ledger (editor role)."""
        r, undone = await service.reject_referral(ctx, manager, friend_id, data.reason)
        return _review_out(r, undone)

    @put("/{friend_id:str}", operation_id="reassignReferral")
    async def reassign(
        self, ctx: Context, manager: Manager, friend_id: MemberIdPath, data: ReassignIn
    ) -> ReviewOut:
        """Correct who referred a member, by the right referrer's code, before anything was paid
        (editor role)."""
        r = await service.reassign_referral(ctx, manager, friend_id, data.code, data.reason)
        return _review_out(r)


def _review_out(r: Any, undone: dict[str, Any] | None = None) -> ReviewOut:
    return ReviewOut(
        r.friend_id,
        r.referrer_id,
        r.status,
        r.risk_score,
        r.reviewed_by,
        r.reviewed_at,
        r.review_reason,
        undone,
    )
