from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get, post, put
from litestar.params import Parameter

from server.auth import Manager, member_from_token, provide_api_client, require_role
from server.context import Context
from server.errors import ProblemError
from server.referrals import service
from server.referrals.content import program
from server.referrals.landing import landing_page
from server.referrals.schemas import (
    ClaimIn,
    ClaimOut,
    CodeOut,
    HeldOut,
    MyReferralsOut,
    ReassignIn,
    ReviewIn,
    ReviewOut,
    VanityIn,
)

_Code = Annotated[str, Parameter(max_length=64)]
_MemberId = Annotated[str, Parameter(max_length=64)]


class ReferralsController(Controller):
    path = "/v1/referrals"
    tags = ["referrals"]

    @get("/me", operation_id="getMyReferrals")
    async def me(self, ctx: Context, current_member: str) -> MyReferralsOut:
        """The member's code and link, clicks, claims and conversions, pending and earned rewards,
        the milestones and the next one, and their rank on the referral board."""
        return MyReferralsOut(**await service.my_referrals(ctx, current_member))

    @put("/me/code", operation_id="setMyReferralCode")
    async def set_code(self, ctx: Context, current_member: str, data: VanityIn) -> CodeOut:
        """Choose a vanity code (letters, digits and '-'); the previous vanity code stops working
        for new friends but stays the member's."""
        codes = await service.set_vanity(ctx, current_member, data.code)
        active = service.active_code(codes)
        assert active is not None
        generated = next(c.display for c in codes if c.kind == "generated")
        return CodeOut(
            active.display,
            service.link_for(ctx, active.display),
            generated,
            active.display if active.kind == "vanity" else None,
        )

    @post("/claim", operation_id="claimReferral", status_code=201)
    async def claim(self, ctx: Context, request: Request[Any, Any, Any], data: ClaimIn) -> Response[ClaimOut]:
        """A new member names who referred them: with their member token, or by a brand system
        (`X-Api-Key`) for `member_id`. The same claim again answers 200 with the first."""
        signals = {
            "device_id": data.device_id,
            "payment_fingerprint": data.payment_fingerprint,
            "ip": data.ip,
        }
        if request.headers.get("x-api-key"):
            client = await provide_api_client(ctx, request)
            if not data.member_id:
                raise ProblemError(
                    400, "member_id_required", "A brand system names the `member_id` claiming."
                )
            member_id, by = data.member_id, f"api_key:{client.name}"
        else:
            member_id, by = await member_from_token(ctx, request), "member"
            if data.member_id and data.member_id != member_id:
                raise ProblemError(403, "not_your_member_id", "A member claims for themselves only.")
            if data.payment_fingerprint:
                raise ProblemError(400, "invalid_signal", "Only brand systems send a payment fingerprint.")
            signals["ip"] = request.client.host if request.client else None
        claimed = await service.claim(
            ctx, member_id, data.code, by=by, signals=signals, known_only=by.startswith("api_key:")
        )
        r = claimed.referral
        content = program(ctx)
        out = ClaimOut(
            member_id=member_id,
            code=claimed.display_code,
            referrer_name=claimed.referrer_name,
            status="claimed" if r.status == "held" and r.converted_at is None else r.status,
            claimed_at=r.claimed_at,
            convert_by=r.convert_by,
            qualifying_action=content.conversion.event,
            reward=content.friend_reward.model_dump(),
            already_claimed=not claimed.created,
        )
        return Response(out, status_code=201 if claimed.created else 200)


class LandingController(Controller):
    path = "/r"
    tags = ["referrals"]

    @get("/{code:str}", operation_id="referralLandingPage", media_type=MediaType.HTML)
    async def page(self, ctx: Context, request: Request[Any, Any, Any], code: _Code) -> Response[str]:
        """The page a shared link opens: a preview card for chat apps and social networks, the
        invitation and the way into the app (public)."""
        ip = request.client.host if request.client else ""
        page = await landing_page(ctx, code, ip, request.headers.get("user-agent", ""))
        return Response(
            page.html,
            status_code=page.status,
            media_type=MediaType.HTML,
            headers={"Cache-Control": "no-store"},
        )


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
        found = await service.held(ctx, limit=limit, after=cursor)
        return HeldOut(found, found[-1]["friend_id"] if len(found) == limit else None)

    @post("/{friend_id:str}/approve", operation_id="approveReferral", status_code=200)
    async def approve(
        self, ctx: Context, manager: Manager, friend_id: _MemberId, data: ReviewIn
    ) -> ReviewOut:
        """Clear a held referral: its pending rewards are paid (editor role)."""
        require_role(manager, "editor")
        r = await service.approve(ctx, friend_id, actor=f"manager:{manager.email}", reason=data.reason)
        return _review_out(r)

    @post("/{friend_id:str}/reject", operation_id="rejectReferral", status_code=200)
    async def reject(self, ctx: Context, manager: Manager, friend_id: _MemberId, data: ReviewIn) -> ReviewOut:
        """Refuse a held referral: pending rewards are dropped and any paid are reversed through
        the ledger (editor role)."""
        require_role(manager, "editor")
        r, undone = await service.reject(ctx, friend_id, actor=f"manager:{manager.email}", reason=data.reason)
        return _review_out(r, undone)

    @put("/{friend_id:str}", operation_id="reassignReferral")
    async def reassign(
        self, ctx: Context, manager: Manager, friend_id: _MemberId, data: ReassignIn
    ) -> ReviewOut:
        """Correct who referred a member, by the right referrer's code, before anything was paid
        (editor role)."""
        require_role(manager, "editor")
        r = await service.reassign(
            ctx, friend_id, data.code, actor=f"manager:{manager.email}", reason=data.reason
        )
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
