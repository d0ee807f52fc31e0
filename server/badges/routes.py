from __future__ import annotations

from html import escape
from typing import Annotated

from litestar import Controller, MediaType, Response, get, post
from litestar.datastructures import CacheControlHeader
from litestar.openapi import ResponseSpec
from litestar.params import Parameter

from server import audit
from server.auth import ApiClient
from server.badges import credentials, images, service, tiers
from server.badges.schemas import (
    BadgeGrantIn,
    BadgeGrantOut,
    CollectionOut,
    CredentialOut,
    JwkOut,
    JwksOut,
    ProfileOut,
    TiersOut,
    VerificationOut,
)
from server.context import Context
from server.errors import ProblemError, not_found
from server.members.schemas import MemberIdPath
from server.members.service import check_member_id, member_exists

_BadgeId = Annotated[str, Parameter(max_length=64)]
_CredentialId = Annotated[str, Parameter(max_length=64)]
# The issuer profile and keys change rarely (a key rotation): verifiers may keep them a while.
_PUBLIC_CACHE = CacheControlHeader(public=True, max_age=300)


class BadgesController(Controller):
    path = "/v1/badges"
    tags = ["badges"]

    @get("/", operation_id="listBadges")
    async def collection(self, ctx: Context, current_member: str) -> CollectionOut:
        """The member's collection: earned (date, level) and locked (progress, what is left);
        hidden badges only once earned; rarity as the share of members holding each."""
        found = await service.collection(ctx, current_member)
        return CollectionOut(found["earned"], found["locked"], found["total"])

    @get("/issuer", operation_id="getBadgeIssuer", cache_control=_PUBLIC_CACHE)
    async def issuer(self, ctx: Context) -> ProfileOut:
        """The issuer of the badges' credentials, an Open Badges `Profile` (public)."""
        p = credentials.issuer_profile(ctx)
        return ProfileOut(context=list(credentials.CONTEXTS), **p)

    @get("/keys", operation_id="getBadgeKeys", cache_control=_PUBLIC_CACHE)
    async def keys(self, ctx: Context) -> JwksOut:
        """The public keys credentials are signed with, as a JWK Set (public)."""
        keys = await credentials.public_keys(ctx)
        return JwksOut([JwkOut(k["kty"], k["n"], k["e"], k["kid"], k["alg"], k["use"]) for k in keys])

    @get(
        "/{badge_id:str}/image.svg",
        operation_id="getBadgeImage",
        media_type="image/svg+xml",
        cache_control=_PUBLIC_CACHE,
    )
    async def image(
        self, ctx: Context, badge_id: _BadgeId, level: Annotated[int, Parameter(ge=1, le=100)] = 1
    ) -> Response[str]:
        """A badge's picture at a level, drawn from its name, rarity and level: what `image` points
        to when the content gives no image of the brand's own (public)."""
        return Response(images.drawing(ctx, badge_id, level), media_type="image/svg+xml")

    @get("/{badge_id:str}/credential", operation_id="getBadgeCredential")
    async def credential(self, ctx: Context, current_member: str, badge_id: _BadgeId) -> CredentialOut:
        """The member's earned badge as an Open Badges 3.0 credential, signed (VC-JWT), with the
        link to share; the highest level earned."""
        issued = await credentials.member_credential(ctx, current_member, badge_id)
        return CredentialOut(
            credential_id=issued.credential_id,
            credential=issued.credential,
            jwt=issued.jwt,
            verify_url=credentials.verify_page_url(ctx, issued.credential_id),
            verify_json_url=credentials.credential_url(ctx, issued.credential_id),
            issuer_url=credentials.issuer_url(ctx),
            keys_url=credentials.keys_url(ctx),
        )


class BadgeGrantsController(Controller):
    path = "/v1/members"
    tags = ["badges"]

    @post(
        "/{member_id:str}/badges",
        operation_id="grantBadge",
        status_code=201,
        response_description="Granted",
        responses={200: ResponseSpec(BadgeGrantOut, description="Held already: the first grant")},
    )
    async def grant(
        self, ctx: Context, api_client: ApiClient, member_id: MemberIdPath, data: BadgeGrantIn
    ) -> Response[BadgeGrantOut]:
        """Grant a manual badge (brand systems); the same idempotency key, or a badge already held,
        answers with the first grant (200, `Idempotent-Replayed: true`); a member the server does
        not know is refused (404 `member_not_found`)."""
        check_member_id(member_id)
        if not await member_exists(ctx, member_id):
            raise not_found("member", member_id)
        async with ctx.db.transaction() as session:
            earned = await service.grant(
                ctx,
                session,
                member_id,
                data.badge_id,
                idempotency_key=data.idempotency_key,
                reason=data.reason or f"granted by {api_client.name}",
            )
            if earned.created:
                audit.record(
                    session,
                    actor=api_client.actor,
                    action="badge.grant",
                    target=f"member:{member_id}",
                    reason=earned.reason,
                    details={
                        "badge_id": earned.badge.id,
                        "round": earned.round,
                        "idempotency_key": earned.key,
                    },
                )
        out = BadgeGrantOut(
            member_id,
            earned.badge.id,
            earned.level,
            earned.round,
            earned.earned_at,
            earned.id,
            earned.created,
        )
        if earned.created:
            return Response(out, status_code=201)
        return Response(out, status_code=200, headers={"Idempotent-Replayed": "true"})


class TiersController(Controller):
    path = "/v1/tiers"
    tags = ["tiers"]

    @get("/", operation_id="getTiers")
    async def ladder(self, ctx: Context, current_member: str) -> TiersOut:
        """The ladder, the member's tier and qualifying growth by dimension, and what is left to the next."""
        found = await tiers.member_tiers(ctx, current_member)
        return TiersOut(found["managed_by"], found["tiers"], found["member"], found.get("window"))


class CredentialsController(Controller):
    """The public side of a credential: what its id resolves to, and the page of a shared link."""

    path = "/"
    tags = ["badges"]

    @get("/v1/credentials/{credential_id:str}", operation_id="verifyCredential")
    async def verify(self, ctx: Context, credential_id: _CredentialId) -> VerificationOut:
        """A credential by its id, signed afresh and verified against the server's key (public)."""
        shared = await credentials.shared_credential(ctx, credential_id)
        if shared is None:
            raise ProblemError(404, "credential_not_found", f"There is no credential '{credential_id}'.")
        issued = shared.issued
        return VerificationOut(
            valid=shared.valid,
            credential_id=issued.credential_id,
            credential=issued.credential,
            jwt=issued.jwt,
            issuer=credentials.issuer_profile(ctx),
            badge_id=issued.row.badge_id,
            level=issued.row.level,
            level_name=issued.badge.level_name(issued.row.level),
            earned_at=issued.row.earned_at,
            verify_url=credentials.verify_page_url(ctx, issued.credential_id),
        )

    @get("/credentials/{credential_id:str}", operation_id="getCredentialPage", media_type=MediaType.HTML)
    async def page(self, ctx: Context, credential_id: _CredentialId) -> Response[str]:
        """The page a shared link opens: the badge, who earned it and when, and whether it verifies."""
        shared = await credentials.shared_credential(ctx, credential_id)
        if shared is None:
            return Response(_not_found_page(), status_code=404, media_type=MediaType.HTML)
        return Response(_credential_page(ctx, shared), media_type=MediaType.HTML)


# --- the shared page ------------------------------------------------------------------------------

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#222}"
    "img{max-width:10rem;display:block;margin:0 auto 1rem}h1{text-align:center}"
    ".ok{color:#176f2c}.bad{color:#a11}small{color:#666}"
)


def _html(title: str, body: str, head: str = "") -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title>{head}<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _credential_page(ctx: Context, shared: credentials.SharedCredential) -> str:
    issued = shared.issued
    achievement = issued.credential["credentialSubject"]["achievement"]
    name, description = achievement["name"], achievement["description"]
    issuer = issued.credential["issuer"]["name"]
    image = achievement.get("image", {}).get("id")
    holder = shared.holder_name or "a member"
    earned = issued.row.earned_at
    when = f"{earned.day} {earned:%B %Y}"
    json_url = credentials.credential_url(ctx, issued.credential_id)
    head = (
        f'<meta property="og:title" content="{escape(name)}">'
        f'<meta property="og:description" content="{escape(description)}">'
        f'<meta property="og:url" content="{escape(credentials.verify_page_url(ctx, issued.credential_id))}">'
        + (f'<meta property="og:image" content="{escape(image)}">' if image else "")
    )
    status = (
        '<p class="ok">✔ Signature verified</p>'
        if shared.valid
        else '<p class="bad">✘ Signature could not be verified</p>'
    )
    body = (
        (f'<img src="{escape(image)}" alt="">' if image else "")
        + f"<h1>{escape(name)}</h1><p>{escape(description)}</p>"
        + f"<p>Issued by {escape(issuer)} to <strong>{escape(holder)}</strong> on {escape(when)}.</p>"
        + status
        + "<p><small>An Open Badges 3.0 credential: "
        + f'<a href="{escape(json_url)}">the signed credential (JSON)</a>.</small></p>'
    )
    return _html(f"{name}: a verified badge", body, head)


def _not_found_page() -> str:
    body = (
        "<h1>Badge not found</h1><p>This link does not lead to a badge credential. "
        "It may have been mistyped, or the badge is no longer available.</p>"
    )
    return _html("Badge not found", body)
