"""Who is calling: members (JWT bearer tokens from the brand), the brand's systems (API keys) and
community managers (admin sessions)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import jwt
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from litestar.connection import ASGIConnection
from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Column, Field, SQLModel

from server import audit, ratelimit
from server.context import Context  # at run time: Litestar reads the dependencies' annotations
from server.db import UTCDateTime, utcnow
from server.errors import ProblemError
from server.members.service import MEMBER_ID_RE, ensure_member, member_exists, remember_member

if TYPE_CHECKING:
    from server.config import Settings


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
    options: dict[str, Any] = {"require": ["sub", "exp"]}
    try:
        claims = jwt.decode(
            token,
            settings.jwt_verify_key,
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience or None,
            issuer=settings.jwt_issuer or None,
            options=options,
            leeway=TOKEN_LEEWAY,
        )
    except jwt.ExpiredSignatureError:
        raise ProblemError(401, "token_expired", "The member token has expired; get a new one.") from None
    except jwt.PyJWTError:
        raise ProblemError(401, "invalid_token", "The member token is not valid.") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not MEMBER_ID_RE.match(sub):
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


class ApiKey(SQLModel, table=True):
    """A brand system's key. Only a hash is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=16)
    name: str = Field(max_length=100)
    key_hash: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


def _hash_key(secret: str) -> str:
    # Keys are 32 random bytes, so a fast hash is enough (no dictionary to guess from).
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_api_key(ctx: Context, name: str) -> tuple[ApiKey, str]:
    if not name.strip() or len(name) > 100:
        raise ProblemError(400, "invalid_name", "An API key name is 1 to 100 characters.")
    key_id = secrets.token_hex(6)
    full = f"ek_{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiKey(id=key_id, name=name.strip(), key_hash=_hash_key(full), created_at=utcnow())
    async with ctx.db.transaction() as session:
        session.add(row)
    return row, full


async def list_api_keys(ctx: Context) -> list[ApiKey]:
    async with ctx.db.session() as session:
        return list((await session.execute(sa.select(ApiKey).order_by(ApiKey.created_at))).scalars())


async def revoke_api_key(ctx: Context, key_id: str) -> bool:
    async with ctx.db.transaction() as session:
        result = await session.execute(
            sa.update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())  # type: ignore[union-attr]
        )
        return bool(result.rowcount)


@dataclass(frozen=True)
class ApiClient:
    key_id: str
    name: str


# A verified key is remembered briefly so that the hot path does not read SQL on every request;
# a revocation takes effect within this many seconds on every instance.
_KEY_CACHE_SECONDS = 10.0


async def verify_api_key(ctx: Context, presented: str) -> ApiClient:
    cache: dict[str, tuple[float, ApiClient]] = ctx.extras.setdefault("api_key_cache", {})
    digest = _hash_key(presented)
    hit = cache.get(digest)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != "ek":
        raise ProblemError(401, "invalid_api_key", "The API key is not valid.")
    async with ctx.db.session() as session:
        row = await session.get(ApiKey, parts[1])
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
        raise ProblemError(401, "invalid_api_key", "The API key is not valid or was revoked.")
    client = ApiClient(row.id, row.name)
    if len(cache) > 10_000:
        cache.clear()
    cache[digest] = (time.monotonic() + _KEY_CACHE_SECONDS, client)
    return client


# ---------------------------------------------------------------- guards as dependencies


async def _known_member(ctx: Context, member_id: str) -> None:
    """A valid token for an unknown member creates a bare member (remembered per process)."""
    if await member_exists(ctx, member_id):
        return
    async with ctx.db.transaction() as session:
        await ensure_member(session, member_id)
    remember_member(ctx, member_id)


async def _count_failure(ctx: Context, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """One more failed authentication from this address; 429 once there are too many."""
    address = connection.client.host if connection.client else "unknown"
    await ratelimit.hit(ctx, "auth_failures", address, ctx.settings.rate_limit_auth_failures_per_minute)


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
        await _count_failure(ctx, connection)
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
        client = await verify_api_key(ctx, presented)
    except ProblemError:
        await _count_failure(ctx, request)
        raise
    await ratelimit.hit(ctx, "api_key", client.key_id, ctx.settings.rate_limit_api_key_per_minute)
    return client


# ---------------------------------------------------------------- community managers


ROLES = ("viewer", "editor", "owner")
_ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
MIN_PASSWORD_LENGTH = 12
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Manager(SQLModel, table=True):
    """A community manager's account for the admin console. Only an argon2 hash of the password
    is stored; a disabled manager can no longer log in and their sessions end."""

    __tablename__ = "managers"
    __table_args__ = (sa.UniqueConstraint("email", name="uq_managers_email"),)

    id: str = Field(primary_key=True, max_length=16)
    email: str = Field(max_length=200)  # lower-cased
    display_name: str = Field(max_length=100)
    role: str = Field(max_length=16)  # viewer | editor | owner
    password_hash: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    disabled_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))

    @property
    def actor(self) -> str:
        """How the audit log names this manager."""
        return f"manager:{self.email}"


class ManagerSession(SQLModel, table=True):
    """One login. The token is `em_<id>_<secret>`; only its sha256 is stored."""

    __tablename__ = "manager_sessions"

    id: str = Field(primary_key=True, max_length=16)
    manager_id: str = Field(max_length=16, index=True)
    token_hash: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


# argon2id with the library's defaults (64 MiB, 3 passes): slow on purpose, so each hash runs on a
# worker thread (the C code releases the GIL) rather than stalling every request on the loop.
_hasher = PasswordHasher()
_dummy_hash: list[str] = []


async def _hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def _password_matches(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no hash (an unknown email) a dummy one is checked, so the
    answer takes as long either way and does not tell which emails have an account."""
    if password_hash is None:
        if not _dummy_hash:
            _dummy_hash.append(await _hash_password(secrets.token_urlsafe(16)))
        password_hash = _dummy_hash[0]
    try:
        return await asyncio.to_thread(_hasher.verify, password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _normalized_email(email: str) -> str:
    return email.strip().lower()


def _check_new_manager(email: str, password: str, role: str, display_name: str) -> None:
    if len(email) > 200 or not _EMAIL_RE.match(email):
        raise ProblemError(400, "invalid_email", "A manager's email is an address such as ana@example.com.")
    if role not in ROLES:
        raise ProblemError(400, "invalid_role", f"A manager's role is one of {', '.join(ROLES)}.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ProblemError(
            400, "weak_password", f"A manager's password has at least {MIN_PASSWORD_LENGTH} characters."
        )
    if not display_name or len(display_name) > 100:
        raise ProblemError(400, "invalid_display_name", "A manager's display name is 1 to 100 characters.")


async def create_manager(
    ctx: Context,
    email: str,
    password: str,
    role: str,
    display_name: str | None = None,
    *,
    actor: str = audit.SYSTEM,
) -> Manager:
    """A new manager account (audited as `manager.create` by `actor`); 409 `manager_exists` when
    the email has one already; 400 `invalid_email`, `invalid_role` or `weak_password`."""
    email = _normalized_email(email)
    name = (display_name or email.partition("@")[0]).strip()
    _check_new_manager(email, password, role, name)
    row = Manager(
        id=secrets.token_hex(6),
        email=email,
        display_name=name,
        role=role,
        password_hash=await _hash_password(password),
        created_at=utcnow(),
    )
    exists = ProblemError(409, "manager_exists", f"There is already a manager with the email {email}.")
    try:
        async with ctx.db.transaction() as session:
            if await _manager_by_email(session, email) is not None:
                raise exists
            session.add(row)
            audit.record(
                session, actor=actor, action="manager.create", target=row.actor, details={"role": role}
            )
    except IntegrityError:  # created at the same moment by someone else
        raise exists from None
    return row


async def _manager_by_email(session: AsyncSession, email: str) -> Manager | None:
    found = await session.execute(sa.select(Manager).where(Manager.email == email))
    return found.scalar_one_or_none()


async def list_managers(ctx: Context) -> list[Manager]:
    """Every manager account, the oldest first (disabled ones too)."""
    async with ctx.db.session() as session:
        return list((await session.execute(sa.select(Manager).order_by(Manager.created_at))).scalars())


async def disable_manager(ctx: Context, email: str, *, actor: str = audit.SYSTEM) -> bool:
    """Disable a manager and end their sessions (on every instance within a few seconds);
    False when there is no active manager with that email."""
    email = _normalized_email(email)
    now = utcnow()
    async with ctx.db.transaction() as session:
        manager = await _manager_by_email(session, email)
        if manager is None or manager.disabled_at is not None:
            return False
        manager.disabled_at = now
        await session.execute(
            sa.update(ManagerSession)
            .where(ManagerSession.manager_id == manager.id, ManagerSession.revoked_at.is_(None))  # type: ignore[union-attr]
            .values(revoked_at=now)
        )
        audit.record(session, actor=actor, action="manager.disable", target=manager.actor)
    cache = _manager_cache(ctx)
    for digest in [d for d, (_, m) in cache.items() if m.id == manager.id]:
        cache.pop(digest, None)
    return True


_INVALID_CREDENTIALS = "The email or password is not right, or the account is disabled."


async def _too_many_failures(ctx: Context, who: str) -> bool:
    """Whether `who` is over the failed-login limit of this minute: read from the counter that
    `ratelimit.hit(ctx, "auth_failures", who, ...)` keeps, before the password is even checked,
    so that guessing on stops getting answers. Fails open when Redis is unreachable."""
    limit = ctx.settings.rate_limit_auth_failures_per_minute
    if ctx.redis.client is None or limit <= 0:
        return False
    key = ctx.redis.key("rl", "auth_failures", who, int(time.time() // 60))
    try:
        count = await ctx.redis.client.get(key)
    except (RedisError, OSError):
        return False
    return count is not None and int(count) >= limit


async def login(
    ctx: Context, email: str, password: str, *, address: str | None = None
) -> tuple[str, ManagerSession, Manager]:
    """A new session for a manager: the bearer token (shown once), its row and the manager.

    401 `invalid_credentials`, alike for an unknown email, a wrong password and a disabled account;
    failures are counted per email (and per client `address` when given), and past the limit every
    attempt is refused (429 `rate_limited`), the right password too."""
    email = _normalized_email(email)
    limit = ctx.settings.rate_limit_auth_failures_per_minute
    watched = [email] + ([address] if address else [])
    for who in watched:
        if await _too_many_failures(ctx, who):
            raise ProblemError(
                429,
                "rate_limited",
                "Too many failed logins: try again in a minute.",
                headers={"Retry-After": "60"},
            )
    async with ctx.db.session() as session:
        manager = await _manager_by_email(session, email)
    matches = await _password_matches(manager.password_hash if manager else None, password)
    if manager is None or not matches or manager.disabled_at is not None:
        for who in watched:
            await ratelimit.hit(ctx, "auth_failures", who, limit)
        raise ProblemError(401, "invalid_credentials", _INVALID_CREDENTIALS)
    session_id = secrets.token_hex(8)
    token = f"em_{session_id}_{secrets.token_urlsafe(32)}"
    now = utcnow()
    row = ManagerSession(
        id=session_id,
        manager_id=manager.id,
        token_hash=_hash_key(token),
        created_at=now,
        expires_at=now + timedelta(hours=ctx.settings.manager_session_hours),
    )
    rehashed = await _hash_password(password) if _hasher.check_needs_rehash(manager.password_hash) else None
    async with ctx.db.transaction() as session:
        session.add(row)
        if rehashed is not None:  # the hasher's parameters were raised since this hash was made
            await session.execute(
                sa.update(Manager).where(Manager.id == manager.id).values(password_hash=rehashed)
            )
        audit.record(
            session,
            actor=manager.actor,
            action="manager.login",
            target=manager.actor,
            details={"session": session_id},
        )
    return token, row, manager


def _manager_cache(ctx: Context) -> dict[str, tuple[float, Manager]]:
    return ctx.extras.setdefault("manager_token_cache", {})


# A verified manager token is remembered this long by a process: a logout or a disabled account
# takes effect within this many seconds on every other instance (at once on this one).
_MANAGER_CACHE_SECONDS = 5.0
_INVALID_MANAGER_TOKEN = "The manager token is not valid, has expired or was revoked: log in again."


async def verify_manager_token(ctx: Context, token: str) -> Manager:
    """The manager of a live session token; 401 `invalid_manager_token` otherwise."""
    cache = _manager_cache(ctx)
    digest = _hash_key(token)
    hit = cache.get(digest)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "em" or not parts[1] or len(parts[1]) > 16:
        raise ProblemError(401, "invalid_manager_token", _INVALID_MANAGER_TOKEN)
    async with ctx.db.session() as session:
        found = (
            await session.execute(
                sa.select(ManagerSession, Manager)
                .join(Manager, Manager.id == ManagerSession.manager_id)
                .where(ManagerSession.id == parts[1])
            )
        ).first()
    now = utcnow()
    if found is None:
        raise ProblemError(401, "invalid_manager_token", _INVALID_MANAGER_TOKEN)
    row, manager = found
    if (
        not hmac.compare_digest(row.token_hash, digest)
        or row.revoked_at is not None
        or row.expires_at <= now
        or manager.disabled_at is not None
    ):
        raise ProblemError(401, "invalid_manager_token", _INVALID_MANAGER_TOKEN)
    if len(cache) > 10_000:
        cache.clear()
    keep = min(_MANAGER_CACHE_SECONDS, (row.expires_at - now).total_seconds())
    cache[digest] = (time.monotonic() + keep, manager)
    return manager


async def logout(ctx: Context, token: str) -> bool:
    """End the session of `token`; False when it was not a live session."""
    digest = _hash_key(token)
    _manager_cache(ctx).pop(digest, None)
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "em":
        return False
    async with ctx.db.transaction() as session:
        result = await session.execute(
            sa.update(ManagerSession)
            .where(
                ManagerSession.id == parts[1],
                ManagerSession.token_hash == digest,
                ManagerSession.revoked_at.is_(None),  # type: ignore[union-attr]
            )
            .values(revoked_at=utcnow())
        )
        return bool(result.rowcount)


async def provide_manager(ctx: Context, request: ASGIConnection[Any, Any, Any, Any]) -> Manager:
    """Dependency `manager`: the community manager calling with `Authorization: Bearer em_...`."""
    token = bearer_token(request)
    try:
        if not token:
            raise ProblemError(
                401,
                "missing_manager_token",
                "This needs a manager session: log in with POST /v1/admin/sessions, then send "
                "`Authorization: Bearer <token>`.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await verify_manager_token(ctx, token)
    except ProblemError:
        await _count_failure(ctx, request)
        raise


def require_role(manager: Manager, role: str) -> None:
    """403 `forbidden_role` unless the manager's role is `role` or above (viewer < editor < owner)."""
    if _ROLE_RANK.get(manager.role, -1) < _ROLE_RANK[role]:
        raise ProblemError(403, "forbidden_role", f"This needs the {role} role or higher.")
