"""Verifiable badges: an earned badge as an Open Badges 3.0 credential, signed as a VC-JWT.

A `member_badges` row is one credential (its id is the credential's id). The document is built
from the row and the badge's content whenever it is asked for, and signed with the server's key
in the specification's JSON Web Token proof format: RS256 (what every verifier must support), a
JOSE header of `alg`, `kid` (a URL of the key in the JWKS served at /v1/badges/keys) and `typ`,
and the credential itself as the JWT payload, with `iss`, `jti`, `nbf` and `sub` repeating its
issuer id, id, `validFrom` and subject id. No `iat`: the same row signs to the same JWT.

The key is an RSA key created on first need and kept in `badge_signing_keys`, so that every
instance signs with the same one; old keys stay in the JWKS so that what they signed still verifies.
The member is never named in the document: the subject is a pseudonym and a salted hash of the
member id, both keyed with a secret derived from the signing key.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import jwt
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from server.badges.images import image_url
from server.badges.models import BadgeSigningKey, MemberBadge
from server.db import insert_ignore, utcnow
from server.errors import ProblemError
from server.members.service import get_member

if TYPE_CHECKING:
    from server.badges.content import Badge, BadgeCatalog
    from server.context import Context

ALGORITHM = "RS256"
CONTEXTS = [
    "https://www.w3.org/ns/credentials/v2",
    "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json",
]
CREDENTIAL_TYPES = ["VerifiableCredential", "OpenBadgeCredential"]
DEFAULT_ISSUER_NAME = "Engage"
# The first key's id is a fixed name, not the key's RFC 7638 thumbprint: instances that create
# the first key at the same moment each generate a different key, and only a shared primary key
# lets the database keep exactly one of them (the others' inserts are ignored and they read the
# winner back). A later key, added by rotation, takes the next name.
FIRST_KEY_ID = "badges-1"
CREDENTIAL_ID_RE = re.compile(r"^[0-9a-f]{32}$")

_ACTIVE = "badge_signing_key"  # ctx.extras: the SigningKey new credentials are signed with
_KNOWN = "badge_keys"  # ctx.extras: every SigningKey loaded, by kid (for verification)
_LOCK = "badge_key_lock"  # ctx.extras: one creation attempt per process at a time


@dataclass(frozen=True)
class SigningKey:
    kid: str  # the row's id; the JOSE `kid` is the key's URL with this as its fragment
    private_key: rsa.RSAPrivateKey
    public_jwk: dict[str, Any]  # kty, n, e
    # Keys the recipient pseudonym and hash salts: a secret every instance shares, since it is
    # derived from the stored private key (the data dir's secret may differ per instance).
    recipient_secret: bytes
    active: bool

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()


@dataclass(frozen=True)
class IssuedCredential:
    """A credential as handed out: the row it stands for, its document and its signed JWT."""

    row: MemberBadge
    badge: Badge
    credential: dict[str, Any]
    jwt: str

    @property
    def credential_id(self) -> str:
        return self.row.id


@dataclass(frozen=True)
class SharedCredential:
    """What a public verification link shows: the credential, whether it verifies, and to whom."""

    issued: IssuedCredential
    valid: bool
    holder_name: str | None


# --- addresses ----------------------------------------------------------------------------------


def _base(ctx: Context) -> str:
    return ctx.settings.public_base_url.rstrip("/")


def issuer_url(ctx: Context) -> str:
    return f"{_base(ctx)}/v1/badges/issuer"


def keys_url(ctx: Context) -> str:
    return f"{_base(ctx)}/v1/badges/keys"


def credential_url(ctx: Context, credential_id: str) -> str:
    """The credential's `id`, and where its verification can be read as JSON."""
    return f"{_base(ctx)}/v1/credentials/{credential_id}"


def verify_page_url(ctx: Context, credential_id: str) -> str:
    """The page to share: what a person who opens the link sees."""
    return f"{_base(ctx)}/credentials/{credential_id}"


def achievement_url(ctx: Context, badge_id: str, level: int) -> str:
    return f"{_base(ctx)}/v1/badges/{badge_id}#level-{level}"


def key_url(ctx: Context, kid: str) -> str:
    return f"{keys_url(ctx)}#{kid}"


def issuer_profile(ctx: Context) -> dict[str, Any]:
    """The issuer as an Open Badges `Profile` (embedded in every credential, and served at its id)."""
    # No setting names the issuer yet; one called `badge_issuer_name` is used once it exists.
    name = getattr(ctx.settings, "badge_issuer_name", "") or DEFAULT_ISSUER_NAME
    return {"id": issuer_url(ctx), "type": ["Profile"], "name": name, "url": _base(ctx)}


# --- the signing key ----------------------------------------------------------------------------


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _new_key() -> tuple[str, dict[str, Any]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    numbers = private.public_key().public_numbers()
    return pem, {"kty": "RSA", "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}


def _load(row: BadgeSigningKey) -> SigningKey:
    private = serialization.load_pem_private_key(row.private_pem.encode(), password=None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise RuntimeError(f"badge signing key {row.kid} is not an RSA key")
    secret = hashlib.sha256(b"engage badge recipients\x00" + row.private_pem.encode()).digest()
    return SigningKey(row.kid, private, dict(row.public_jwk), secret, row.active)


def _known(ctx: Context) -> dict[str, SigningKey]:
    known: dict[str, SigningKey] = ctx.extras.setdefault(_KNOWN, {})
    return known


async def _active_row(ctx: Context) -> BadgeSigningKey | None:
    t = BadgeSigningKey.__table__
    async with ctx.db.session() as session:
        found = await session.execute(
            sa.select(BadgeSigningKey).where(t.c.active.is_(True)).order_by(t.c.created_at.desc()).limit(1)
        )
        return found.scalars().first()


async def _create_first_key(ctx: Context) -> None:
    pem, public_jwk = await asyncio.to_thread(_new_key)  # ~0.1 s of CPU: off the event loop
    async with ctx.db.transaction() as session:
        await session.execute(
            insert_ignore(session, BadgeSigningKey.__table__).values(
                kid=FIRST_KEY_ID,
                algorithm=ALGORITHM,
                private_pem=pem,
                public_jwk=public_jwk,
                active=True,
                created_at=utcnow(),
            )
        )


async def signing_key(ctx: Context) -> SigningKey:
    """The key new credentials are signed with: loaded once per process, created on first need.

    Instances that create it at the same time end with one key (the database keeps the first
    insert of the fixed kid; every instance then reads the active key back)."""
    cached: SigningKey | None = ctx.extras.get(_ACTIVE)
    if cached is not None:
        return cached
    lock: asyncio.Lock = ctx.extras.setdefault(_LOCK, asyncio.Lock())
    async with lock:
        cached = ctx.extras.get(_ACTIVE)
        if cached is not None:
            return cached
        row = await _active_row(ctx)
        if row is None:
            await _create_first_key(ctx)
            row = await _active_row(ctx)
        if row is None:
            raise RuntimeError("no active badge signing key: one was deactivated without a successor")
        key = _load(row)
        _known(ctx)[key.kid] = key
        ctx.extras[_ACTIVE] = key
        return key


async def _key_named(ctx: Context, kid: str) -> SigningKey | None:
    known = _known(ctx)
    if kid in known:
        return known[kid]
    async with ctx.db.session() as session:
        row = await session.get(BadgeSigningKey, kid)
    if row is None:
        return None
    key = known[kid] = _load(row)
    return key


async def public_keys(ctx: Context) -> list[dict[str, Any]]:
    """Every key's public half as a JWK (kid, alg, use "sig"): the active one and those retired,
    whose credentials still verify. Creates the first key if there is none yet."""
    await signing_key(ctx)
    t = BadgeSigningKey.__table__
    async with ctx.db.session() as session:
        rows = (await session.execute(sa.select(t.c.kid, t.c.public_jwk).order_by(t.c.created_at))).all()
    return [{**jwk, "kid": key_url(ctx, kid), "alg": ALGORITHM, "use": "sig"} for kid, jwk in rows]


# --- the credential -----------------------------------------------------------------------------


def _keyed(key: SigningKey, purpose: str, value: str) -> bytes:
    return hmac.new(key.recipient_secret, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()


def subject_id(key: SigningKey, member_id: str) -> str:
    """The member's pseudonym as credential subject (and JWT `sub`): the same in every credential
    the key signs for the member, and nothing anyone without the key can turn back into the id."""
    # A keyed hash is indistinguishable from random to whoever lacks the key: a version 4 UUID.
    return f"urn:uuid:{uuid.UUID(bytes=_keyed(key, 'subject', member_id)[:16], version=4)}"


def recipient_identifier(key: SigningKey, member_id: str, credential_id: str) -> dict[str, Any]:
    """An `IdentityObject`: the member id hashed with a salt of the credential's own.

    The salt is published, as the specification expects, so that a party the member tells their
    id can check it is theirs; being different in each credential, the hashes do not link a
    member's credentials to each other, and no table can be computed before the salt is known."""
    salt = _keyed(key, "salt", credential_id).hex()[:32]
    digest = hashlib.sha256((member_id + salt).encode()).hexdigest()
    return {
        "type": "IdentityObject",
        "identityHash": f"sha256${digest}",
        "identityType": "accountId",  # the brand's id of the member's account
        "hashed": True,
        "salt": salt,
    }


def _valid_from(earned_at: datetime) -> tuple[str, int]:
    """`validFrom` and the JWT's `nbf`, which must be the same instant: whole seconds."""
    at = earned_at.replace(microsecond=0)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ"), int(at.timestamp())


def achievement_name(badge: Badge, level: int) -> str:
    level_name = badge.level_name(level)
    return f"{badge.name} ({level_name})" if level_name else badge.name


def build_credential(ctx: Context, key: SigningKey, row: MemberBadge, badge: Badge) -> dict[str, Any]:
    """The `OpenBadgeCredential` (JSON-LD) for one earned badge: Open Badges 3.0 on the VC 2.0 model."""
    name = achievement_name(badge, row.level)
    narrative = badge.narrative(ctx.content.get("events"), row.level)
    achievement: dict[str, Any] = {
        "id": achievement_url(ctx, row.badge_id, row.level),
        "type": ["Achievement"],
        "achievementType": "Badge",
        "name": name,
        "description": badge.description or narrative,
        "criteria": {"narrative": narrative},
    }
    achievement["image"] = {"id": image_url(ctx, badge, row.level), "type": "Image"}
    issuer = issuer_profile(ctx)
    valid_from, _ = _valid_from(row.earned_at)
    credential: dict[str, Any] = {
        "@context": list(CONTEXTS),
        "id": credential_url(ctx, row.id),
        "type": list(CREDENTIAL_TYPES),
        "issuer": issuer,
        "validFrom": valid_from,
        "name": name,
        "credentialSubject": {
            "id": subject_id(key, row.member_id),
            "type": ["AchievementSubject"],
            "identifier": [recipient_identifier(key, row.member_id, row.id)],
            "achievement": achievement,
        },
    }
    if badge.description:
        credential["description"] = badge.description
    return credential


def sign_credential(ctx: Context, key: SigningKey, credential: dict[str, Any]) -> str:
    """The credential as a compact JWS (VC-JWT): the document is the payload, with the registered
    claims that repeat it (`iss` issuer id, `jti` id, `nbf` validFrom, `sub` subject id)."""
    _, nbf = _valid_from(datetime.fromisoformat(credential["validFrom"]))
    payload = {
        **credential,
        "iss": credential["issuer"]["id"],
        "jti": credential["id"],
        "nbf": nbf,
        "sub": credential["credentialSubject"]["id"],
    }
    return jwt.encode(payload, key.private_key, algorithm=ALGORITHM, headers={"kid": key_url(ctx, key.kid)})


async def _issue(ctx: Context, row: MemberBadge, badge: Badge) -> IssuedCredential:
    key = await signing_key(ctx)
    credential = build_credential(ctx, key, row, badge)
    return IssuedCredential(row, badge, credential, sign_credential(ctx, key, credential))


def _catalog(ctx: Context) -> BadgeCatalog | None:
    catalog: BadgeCatalog | None = ctx.content.get("badges")
    return catalog


async def member_credential(ctx: Context, member_id: str, badge_id: str) -> IssuedCredential:
    """The member's credential for a badge: the highest level they earned (of the latest round
    that reached it). 404 `badge_not_found` for an unknown badge (or a hidden one not earned),
    404 `badge_not_earned` for one they do not hold."""
    catalog = _catalog(ctx)
    badge = catalog.get(badge_id) if catalog is not None else None
    t = MemberBadge.__table__
    row: MemberBadge | None = None
    if badge is not None:
        async with ctx.db.session() as session:
            found = await session.execute(
                sa.select(MemberBadge)
                .where(t.c.member_id == member_id, t.c.badge_id == badge_id)
                .order_by(t.c.level.desc(), t.c.round.desc(), t.c.earned_at.desc())
                .limit(1)
            )
            row = found.scalars().first()
    if badge is None or (row is None and badge.hidden):
        raise ProblemError(404, "badge_not_found", f"There is no badge '{badge_id}'.")
    if row is None:
        raise ProblemError(
            404, "badge_not_earned", f"You have not earned the badge '{badge_id}' yet: it has no credential."
        )
    return await _issue(ctx, row, badge)


async def shared_credential(ctx: Context, credential_id: str) -> SharedCredential | None:
    """A credential by its id, for the public verification links: None for an unknown id (or a
    badge no longer in the content, whose credential can no longer be described)."""
    if not CREDENTIAL_ID_RE.match(credential_id):
        return None
    async with ctx.db.session() as session:
        row = await session.get(MemberBadge, credential_id)
        member = await get_member(session, row.member_id) if row is not None else None
    catalog = _catalog(ctx)
    badge = catalog.get(row.badge_id) if row is not None and catalog is not None else None
    if row is None or badge is None:
        return None
    issued = await _issue(ctx, row, badge)
    valid = await verify_credential(ctx, issued.jwt) is not None
    return SharedCredential(issued, valid, member.display_name if member is not None else None)


# --- verifying ----------------------------------------------------------------------------------


def _credential_id_of(ctx: Context, jti: Any) -> str | None:
    prefix = credential_url(ctx, "")
    if not isinstance(jti, str) or not jti.startswith(prefix):
        return None
    credential_id = jti[len(prefix) :]
    return credential_id if CREDENTIAL_ID_RE.match(credential_id) else None


def _matches_row(ctx: Context, key: SigningKey, claims: dict[str, Any], row: MemberBadge) -> bool:
    """Whether the signed document says what the stored award says: who, which badge and level,
    when, by whom. (Names and descriptions may have been edited in the content since.)"""
    subject = claims.get("credentialSubject")
    issuer = claims.get("issuer")
    if not isinstance(subject, dict) or not isinstance(issuer, dict):
        return False
    achievement = subject.get("achievement")
    valid_from, nbf = _valid_from(row.earned_at)
    types = claims.get("type")
    return (
        isinstance(types, list)
        and all(t in types for t in CREDENTIAL_TYPES)
        and claims.get("id") == claims["jti"] == credential_url(ctx, row.id)
        and issuer.get("id") == claims["iss"] == issuer_url(ctx)
        and subject.get("id") == claims["sub"] == subject_id(key, row.member_id)
        and subject.get("identifier") == [recipient_identifier(key, row.member_id, row.id)]
        and isinstance(achievement, dict)
        and achievement.get("id") == achievement_url(ctx, row.badge_id, row.level)
        and claims.get("validFrom") == valid_from
        and claims["nbf"] == nbf
    )


async def verify_credential(ctx: Context, jwt_text: str) -> dict[str, Any] | None:
    """The credential a VC-JWT carries, if it verifies: RS256 signed by one of our keys (named by
    its `kid`), registered claims that agree with the document, and a document that matches the
    stored award it names. None otherwise: bad signature, unknown key or award, any mismatch."""
    try:
        header = jwt.get_unverified_header(jwt_text)
    except jwt.PyJWTError:
        return None
    kid = header.get("kid")
    if header.get("alg") != ALGORITHM or not isinstance(kid, str):
        return None
    key = await _key_named(ctx, kid.rpartition("#")[2])
    if key is None:
        return None
    try:
        claims: dict[str, Any] = jwt.decode(
            jwt_text,
            key.public_key,
            algorithms=[ALGORITHM],
            issuer=issuer_url(ctx),
            options={"require": ["iss", "jti", "nbf", "sub"], "verify_aud": False},
        )
    except jwt.PyJWTError:
        return None
    credential_id = _credential_id_of(ctx, claims.get("jti"))
    if credential_id is None:
        return None
    async with ctx.db.session() as session:
        row = await session.get(MemberBadge, credential_id)
    if row is None or not _matches_row(ctx, key, claims, row):
        return None
    return claims
