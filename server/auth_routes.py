"""The admin console's sessions and audit log: community managers log in, see who they are, log out,
and read what was changed."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.params import Parameter

from server import audit, auth
from server.auth import Manager
from server.context import Context


class LoginIn(msgspec.Struct):
    email: Annotated[str, msgspec.Meta(max_length=320)]
    password: Annotated[str, msgspec.Meta(max_length=1024)]


class ManagerOut(msgspec.Struct):
    id: str
    email: str
    display_name: str
    role: str  # viewer | editor | owner


class SessionOut(msgspec.Struct):
    """A new admin session: send `token` as `Authorization: Bearer <token>` until `expires_at`."""

    token: str
    expires_at: datetime
    manager: ManagerOut


class AuditRecordOut(msgspec.Struct):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    reason: str
    details: dict[str, Any]


class AuditOut(msgspec.Struct):
    """The newest records first; `next_before` pages on (`?before=`), null on the last page."""

    records: list[AuditRecordOut]
    next_before: int | None = None


def manager_out(manager: Manager) -> ManagerOut:
    return ManagerOut(manager.id, manager.email, manager.display_name, manager.role)


class AdminSessionsController(Controller):
    path = "/v1/admin"
    tags = ["admin"]

    @post("/sessions", operation_id="createAdminSession", status_code=201)
    async def login(self, ctx: Context, request: Request[Any, Any, Any], data: LoginIn) -> SessionOut:
        """Log in with a manager's email and password; 401 `invalid_credentials` whatever was wrong."""
        address = request.client.host if request.client else None
        token, session, manager = await auth.login(ctx, data.email, data.password, address=address)
        return SessionOut(token, session.expires_at, manager_out(manager))

    @delete("/sessions/current", operation_id="deleteAdminSession")
    async def logout(self, ctx: Context, manager: Manager, request: Request[Any, Any, Any]) -> None:
        """Log out: the token stops working (on every instance within seconds)."""
        token = auth.bearer_token(request)
        if token:
            await auth.logout(ctx, token)

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
        before: Annotated[int | None, Parameter(ge=1)] = None,
    ) -> AuditOut:
        """The audit log, newest first (any role): `action` filters by prefix (`referral.`),
        `target` by exact target (`member:<id>`)."""
        rows = await audit.recent(ctx, action_prefix=action, target=target, limit=limit, before_id=before)
        records = [
            AuditRecordOut(r.id or 0, r.at, r.actor, r.action, r.target, r.reason, r.details) for r in rows
        ]
        next_before = rows[-1].id if len(rows) == limit else None
        return AuditOut(records, next_before)
