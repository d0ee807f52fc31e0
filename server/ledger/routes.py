from __future__ import annotations

from litestar import Controller, Response, get, post
from litestar.params import Parameter

from server.auth import ApiClient
from server.context import Context
from server.errors import ProblemError, not_found
from server.ledger import service
from server.ledger.schemas import EntryOut, LedgerPage, PointsBody, ReversalIn
from server.members.schemas import MemberIdPath
from server.members.service import check_member_id, member_exists


class LedgerController(Controller):
    path = "/v1"
    tags = ["ledger"]

    @post("/members/{member_id:str}/points", operation_id="adjustPoints", status_code=200)
    async def adjust(
        self, ctx: Context, api_client: ApiClient, member_id: MemberIdPath, data: PointsBody
    ) -> Response[EntryOut]:
        """Credit or debit a member (brand systems). The same idempotency key always gives the same entry.

        `source` labels the entry: `adjustment` (the default, a correction either way), or a
        credit for a `promotion` or a `service_recovery`.
        """
        check_member_id(member_id)
        if data.source != "adjustment" and data.amount < 0:
            raise ProblemError(
                400,
                "invalid_amount",
                f"A {data.source} gives; take back with source `adjustment` or a reversal.",
            )
        if not await member_exists(ctx, member_id):
            raise not_found("member", member_id)
        posted = await service.post_alone(
            ctx,
            member_id,
            currency=data.currency,
            amount=data.amount,
            reason=data.reason,
            source=data.source,
            idempotency_key=data.idempotency_key,
            details={"api_key": api_client.key_id},
            audited_by=api_client.actor,
        )
        headers = {} if posted.created else {"Idempotent-Replayed": "true"}
        return Response(service.to_out(posted.entry), headers=headers)

    @post(
        "/members/{member_id:str}/ledger/{entry_id:int}/reversal",
        operation_id="reverseEntry",
        status_code=200,
    )
    async def reverse(
        self, ctx: Context, api_client: ApiClient, member_id: MemberIdPath, entry_id: int, data: ReversalIn
    ) -> EntryOut:
        """Cancel an entry with a new, opposite entry (brand systems). Reversing twice changes nothing."""
        check_member_id(member_id)
        if not await member_exists(ctx, member_id):
            raise not_found("member", member_id)
        async with ctx.db.transaction() as session:
            posted = await service.reverse(
                ctx, session, member_id, entry_id, data.reason, audited_by=api_client.actor
            )
        return service.to_out(posted.entry)

    @get("/ledger", operation_id="getLedger")
    async def ledger(
        self,
        ctx: Context,
        current_member: str,
        cursor: str | None = None,
        limit: int = Parameter(default=50, ge=1, le=200),
    ) -> LedgerPage:
        """The calling member's ledger, newest first."""
        async with ctx.db.session() as session:
            entries, next_cursor = await service.history(session, current_member, cursor, limit)
        return LedgerPage(entries=[service.to_out(e) for e in entries], next_cursor=next_cursor)
