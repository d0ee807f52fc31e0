"""Who is calling: members (JWT bearer tokens from the brand) and the brand's systems (API keys);
the guards that routes depend on. Community managers' sessions are the admin domain's."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import jwt
import sqlalchemy as sa
import structlog
from litestar.connection import ASGIConnection
from redis.exceptions import RedisError
from sqlmodel import Column, Field, col

from server import audit, ratelimit
from server.audit import SYSTEM
from server.context import Context  # at run time: Litestar reads the dependencies' annotations
from server.db import TableModel, UTCDateTime, execute_counting, utcnow
from server.errors import ProblemError
from server.members.service import MEMBER_ID_RE, ensure_known

if TYPE_CHECKING:
    from server.config import Settings

log = structlog.get_logger(__name__)


# ---------------------------------------------------------------- member tokens


def verify_member_token(settings: Settings, token: str) -> str:
    """The member id (`sub`) of a valid token; 401 `invalid_token` otherwise."""
    return _verified(settings, token)[0]


# Tokens verified by this process, until they expire: a member app sends the same token with every
# request, and checking its signature again each time is most of what authentication costs.
_KNOWN_TOKENS_MAX = 50_000
TOKEN_LEEWAY = 30


def verify_member_token_cached(ctx: Context, token: str) -> str:
    known: dict[str, tuple[str, float]] = ctx.extras.setdefault("verified_tokens", {})
    seen = known.get(token)
    if seen is not None and seen[1] > time.time():
        return seen[0]
    member_id, expires = _verified(ctx.settings, token)
    if len(known) >= _KNOWN_TOKENS_MAX:
        known.clear()
    known[token] = (member_id, expires + TOKEN_LEEWAY)
    return member_id


def _verified(settings: Settings, token: str) -> tuple[str, float]:
    """The member id and expiry (epoch seconds) of a valid token."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_verify_key,
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience or None,
            issuer=settings.jwt_issuer or None,
            options={"require": ["sub", "exp"]},
            leeway=TOKEN_LEEWAY,
        )
    except jwt.ExpiredSignatureError:
        raise ProblemError(401, "token_expired", "The member token has expired; get a new one.") from None
    except jwt.PyJWTError:
        raise ProblemError(401, "invalid_token", "The member token is not valid.") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not MEMBER_ID_RE.fullmatch(sub):
        raise ProblemError(401, "invalid_token", "The member token's subject is not a valid member id.")
    return sub, float(claims["exp"])


def issue_member_token(settings: Settings, member_id: str, ttl: timedelta = timedelta(days=30)) -> str:
    """A member token signed with the configured key (what the brand's backend does in production)."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {"sub": member_id, "iat": now, "exp": now + ttl}
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_signing_key, algorithm=settings.jwt_algorithm)


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


# ---------------------------------------------------------------- API keys


class ApiKey(TableModel, table=True):
    """A brand system's key. Only a hash is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=16)
    name: str = Field(max_length=100)
    key_hash: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


def hash_secret(secret: str) -> str:
    # Keys are 32 random bytes, so a fast hash is enough (no dictionary to guess from).
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_api_key(ctx: Context, name: str, *, actor: str = SYSTEM) -> tuple[ApiKey, str]:
    """A new key for a brand system, audited as `api_key.create` by `actor`: its row and the key
    itself (shown once); 400 `invalid_name`."""
    if not name.strip() or len(name) > 100:
        raise ProblemError(400, "invalid_name", "An API key name is 1 to 100 characters.")
    key_id = secrets.token_hex(6)
    full = f"ek_{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiKey(id=key_id, name=name.strip(), key_hash=hash_secret(full), created_at=utcnow())
    async with ctx.db.transaction() as session:
        session.add(row)
        audit.record(
            session,
            actor=actor,
            action="api_key.create",
            target=f"api_key:{key_id}",
            details={"name": row.name},
        )
    return row, full


async def list_api_keys(ctx: Context) -> list[ApiKey]:
    async with ctx.db.session() as session:
        return list((await session.execute(sa.select(ApiKey).order_by(col(ApiKey.created_at)))).scalars())


async def revoke_api_key(ctx: Context, key_id: str, *, actor: str = SYSTEM) -> bool:
    """Revoke a key (audited as `api_key.revoke` by `actor`); False when no active key has that id.

    Every instance refuses it from its next request: the instances check a Redis counter of
    revocations beside each request's rate-limit count. Without Redis here (or reachable there)
    they refuse it once their cached verification expires, within `_KEY_CACHE_SECONDS`."""
    async with ctx.db.transaction() as session:
        key = ApiKey.__table__.c
        revoked = await execute_counting(
            session,
            sa.update(ApiKey).where(key.id == key_id, key.revoked_at.is_(None)).values(revoked_at=utcnow()),
        )
        if revoked:
            audit.record(session, actor=actor, action="api_key.revoke", target=f"api_key:{key_id}")
    if not revoked:
        return False
    cache = _key_cache(ctx)
    for digest in [d for d, known in cache.items() if known.client.key_id == key_id]:
        cache.pop(digest, None)
    if ctx.redis.client is not None:
        try:
            await ctx.redis.client.incr(_revocations_key(ctx))
        except (RedisError, OSError) as exc:
            log.warning("api_key_revocation_not_announced", key_id=key_id, error=type(exc).__name__)
    return True


@dataclass(frozen=True)
class ApiClient:
    key_id: str
    name: str

    @property
    def actor(self) -> str:
        """How the audit log names this brand system."""
        return f"api_key:{self.key_id}"


# A verified key is remembered for this long so that the hot path does not read SQL on every
# request. A revocation bumps a counter in Redis that each cached hit compares (read by the script
# that counts the request anyway), so it takes effect at once; with Redis unreachable, within this.
_KEY_CACHE_SECONDS = 10.0


@dataclass(frozen=True)
class _KnownKey:
    until: float  # time.monotonic()
    client: ApiClient
    revocations: Any  # the Redis counter when the key was read from SQL (or ratelimit.UNREAD)


def _key_cache(ctx: Context) -> dict[str, _KnownKey]:
    return ctx.extras.setdefault("api_key_cache", {})


def _revocations_key(ctx: Context) -> str:
    return ctx.redis.key("auth", "api_key_revocations")


async def _revocations(ctx: Context) -> Any:
    """The revocation counter (None before the first revocation), or ratelimit.UNREAD."""
    if ctx.redis.client is None:
        return ratelimit.UNREAD
    try:
        return await ctx.redis.client.get(_revocations_key(ctx))
    except (RedisError, OSError) as exc:
        log.warning("api_key_revocations_unavailable", error=type(exc).__name__)
        return ratelimit.UNREAD


async def verify_api_key(ctx: Context, presented: str) -> ApiClient:
    """The brand system of a valid, unrevoked key, read from SQL; 401 `invalid_api_key` otherwise."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != "ek":
        raise ProblemError(401, "invalid_api_key", "The API key is not valid.")
    # Read before SQL: a revocation between the two then shows as a newer counter on the next hit.
    revocations = await _revocations(ctx)
    digest = hash_secret(presented)
    async with ctx.db.session() as session:
        row = await session.get(ApiKey, parts[1])
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
        raise ProblemError(401, "invalid_api_key", "The API key is not valid or was revoked.")
    client = ApiClient(row.id, row.name)
    cache = _key_cache(ctx)
    if len(cache) > 10_000:
        cache.clear()
    cache[digest] = _KnownKey(time.monotonic() + _KEY_CACHE_SECONDS, client, revocations)
    return client


async def authenticate_api_key(ctx: Context, presented: str, per_minute: int) -> ApiClient:
    """The brand system of `presented`, its request counted: 401 `invalid_api_key` for a key that
    is not valid or was revoked, 429 `rate_limited` past `per_minute`."""
    digest = hash_secret(presented)
    known = _key_cache(ctx).get(digest)
    if known is not None and known.until > time.monotonic():
        # The request's count and the revocation counter come back from one script call.
        pending = ratelimit.start(ctx, "api_key", known.client.key_id, per_minute, read=_revocations_key(ctx))
        current = await (ratelimit.settle(ctx, pending) if pending else _revocations(ctx))
        if current == known.revocations or isinstance(current, ratelimit.Unread):
            return known.client
        _key_cache(ctx).pop(digest, None)  # a key was revoked since: this one is read again
        return await verify_api_key(ctx, presented)
    client = await verify_api_key(ctx, presented)
    await ratelimit.hit(ctx, "api_key", client.key_id, per_minute)
    return client


# ---------------------------------------------------------------- guards as dependencies


async def _known_member(ctx: Context, member_id: str) -> None:
    """A valid token for an unknown member creates a bare member (remembered per process)."""
    await ensure_known(ctx, member_id)


# Failed authentications are counted per kind of credential, each kind with a budget of its own per
# client address: a member app replaying stale tokens must not lock a manager out of the console.
MEMBER_TOKEN = "member_token"
API_KEY = "api_key"
MANAGER_TOKEN = "manager_token"
MANAGER_LOGIN = "manager_login"


def failures_scope(kind: str) -> str:
    """The rate-limit scope that counts failed authentications of one `kind`."""
    return f"auth_failures:{kind}"


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The caller's address (the proxy's client when `ENGAGE_FORWARDED_ALLOW_IPS` trusts it)."""
    return connection.client.host if connection.client else "unknown"


async def count_failure(ctx: Context, connection: ASGIConnection[Any, Any, Any, Any], kind: str) -> None:
    """One more failed authentication of `kind` from this address; 429 once there are too many."""
    await ratelimit.hit(
        ctx,
        failures_scope(kind),
        client_address(connection),
        ctx.settings.rate_limit_auth_failures_per_minute,
    )


async def member_from_token(ctx: Context, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The member calling with a token (`?token=` on the websocket, else the bearer header)."""
    member_id = await _identified(ctx, connection)
    await ratelimit.hit(ctx, "member", member_id, ctx.settings.rate_limit_member_per_minute)
    await _known_member(ctx, member_id)
    return member_id


async def _identified(ctx: Context, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The member id of the connection's token; failures counted and refused (401)."""
    token = connection.query_params.get("token") if connection.scope["type"] == "websocket" else None
    token = token or bearer_token(connection)
    try:
        if not token:
            raise ProblemError(
                401,
                "missing_token",
                "This needs a member token: `Authorization: Bearer <token>`.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return verify_member_token_cached(ctx, token)
    except ProblemError:
        await count_failure(ctx, connection, MEMBER_TOKEN)
        raise


@dataclass
class Reader:
    """A member making a read whose request count is still on its way to Redis: the read's own
    Redis call goes with it in one round trip, and `settle` (always called, once the read is
    done) refuses the request if it was over the member's limit."""

    ctx: Context
    member_id: str
    pending: ratelimit.Pending | None

    async def settle(self) -> None:
        pending, self.pending = self.pending, None
        await ratelimit.settle(self.ctx, pending)


async def provide_reader(ctx: Context, request: ASGIConnection[Any, Any, Any, Any]) -> Reader:
    """Dependency `reader`: the member calling with a bearer token, for reads that settle the
    rate limit themselves (safe methods only: the read is done before the count is known)."""
    member_id = await _identified(ctx, request)
    await _known_member(ctx, member_id)
    pending = ratelimit.start(ctx, "member", member_id, ctx.settings.rate_limit_member_per_minute)
    return Reader(ctx, member_id, pending)


# Both take `ctx` as a dependency of their own: Litestar then resolves `ctx` and them one after the
# other, where two dependencies side by side would cost a task group (tasks) on every request.
async def provide_member_id(ctx: Context, request: ASGIConnection[Any, Any, Any, Any]) -> str:
    """Dependency `member_id`: the member calling with a bearer token."""
    return await member_from_token(ctx, request)


async def provide_api_client(ctx: Context, request: ASGIConnection[Any, Any, Any, Any]) -> ApiClient:
    """Dependency `api_client`: the brand system calling with `X-Api-Key`."""
    presented = request.headers.get("x-api-key")
    try:
        if not presented:
            raise ProblemError(401, "missing_api_key", "This needs an API key in the `X-Api-Key` header.")
        return await authenticate_api_key(ctx, presented, ctx.settings.rate_limit_api_key_per_minute)
    except ProblemError as problem:
        if problem.status == 401:
            await count_failure(ctx, request, API_KEY)
        raise
