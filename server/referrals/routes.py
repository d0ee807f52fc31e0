from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get, post, put
from litestar.openapi import ResponseSpec
from litestar.params import Parameter

from server.auth import member_from_token, provide_api_client
from server.context import Context
from server.errors import ProblemError
from server.referrals import service
from server.referrals.content import program
from server.referrals.landing import landing_page
from server.referrals.schemas import (
    ClaimIn,
    ClaimOut,
    CodeOut,
    MyReferralsOut,
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

    @post(
        "/claim",
        operation_id="claimReferral",
        status_code=201,
        response_description="Claimed",
        responses={200: ResponseSpec(ClaimOut, description="Claimed already: the first claim")},
    )
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
