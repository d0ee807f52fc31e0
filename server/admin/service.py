"""Community managers: accounts, roles, sessions, and the actions they take on the game, each
audited in the same transaction as the change itself."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from litestar.connection import ASGIConnection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from server import ratelimit
from server.admin.models import Manager, ManagerSession
from server.audit import SYSTEM, record
from server.auth import MANAGER_LOGIN, MANAGER_TOKEN, bearer_token, count_failure, failures_scope, hash_secret
from server.context import Context  # at run time: Litestar reads the dependencies' annotations
from server.db import execute_counting, utcnow
from server.errors import ProblemError
from server.referrals import service as referrals
from server.referrals.service import Referral
from server.text import clean_name, has_control

ROLES = ("viewer", "editor", "owner")
_ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
MIN_PASSWORD_LENGTH = 12
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


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


def _check_new_manager(email: str, password: str, role: str, display_name: str) -> str:
    """The new manager's display name, cleaned; 400 for anything unfit."""
    if len(email) > 200 or has_control(email) or not _EMAIL_RE.fullmatch(email):
        raise ProblemError(400, "invalid_email", "A manager's email is an address such as ana@example.com.")
    if role not in ROLES:
        raise ProblemError(400, "invalid_role", f"A manager's role is one of {', '.join(ROLES)}.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ProblemError(
            400, "weak_password", f"A manager's password has at least {MIN_PASSWORD_LENGTH} characters."
        )
    return clean_name(display_name, code="invalid_display_name", what="A manager's display name")


async def create_manager(
    ctx: Context,
    email: str,
    password: str,
    role: str,
    display_name: str | None = None,
    *,
    actor: str = SYSTEM,
) -> Manager:
    """A new manager account (audited as `manager.create` by `actor`); 409 `manager_exists` when
    the email has one already; 400 `invalid_email`, `invalid_role` or `weak_password`."""
    email = _normalized_email(email)
    name = _check_new_manager(email, password, role, display_name or email.partition("@")[0])
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
            record(session, actor=actor, action="manager.create", target=row.actor, details={"role": role})
    except IntegrityError:  # created at the same moment by someone else
        raise exists from None
    return row


async def _manager_by_email(session: AsyncSession, email: str) -> Manager | None:
    found = await session.execute(sa.select(Manager).where(col(Manager.email) == email))
    return found.scalar_one_or_none()


async def list_managers(ctx: Context) -> list[Manager]:
    """Every manager account, the oldest first (disabled ones too)."""
    async with ctx.db.session() as session:
        return list((await session.execute(sa.select(Manager).order_by(col(Manager.created_at)))).scalars())


async def disable_manager(ctx: Context, email: str, *, actor: str = SYSTEM) -> bool:
    """Disable a manager and end their sessions (at once, on every instance); False when there is
    no active manager with that email."""
    email = _normalized_email(email)
    now = utcnow()
    async with ctx.db.transaction() as session:
        manager = await _manager_by_email(session, email)
        if manager is None or manager.disabled_at is not None:
            return False
        manager.disabled_at = now
        await session.execute(
            sa.update(ManagerSession)
            .where(col(ManagerSession.manager_id) == manager.id, col(ManagerSession.revoked_at).is_(None))
            .values(revoked_at=now)
        )
        record(session, actor=actor, action="manager.disable", target=manager.actor)
    return True


_INVALID_CREDENTIALS = "The email or password is not right, or the account is disabled."
_ADDRESS_FAILURES = failures_scope(MANAGER_LOGIN)
_ACCOUNT_FAILURES = failures_scope("manager_account")


def _account_key(email: str) -> str:
    # Hashed: Redis holds counts, not the e-mail addresses that were tried.
    return hashlib.sha256(email.encode()).hexdigest()[:32]


async def login(
    ctx: Context, email: str, password: str, *, address: str | None = None
) -> tuple[str, ManagerSession, Manager]:
    """A new session for a manager: the bearer token (shown once), its row and the manager.

    401 `invalid_credentials`, alike for an unknown email, a wrong password and a disabled account.
    Failed logins are counted per account (whatever the address: a guess spread over many
    addresses is cut short too) and per client `address` when given, apart from other kinds of
    failed authentication; past the limit of either every attempt is refused (429
    `rate_limited`), the right password too, until the minute turns over."""
    email = _normalized_email(email)
    limit = ctx.settings.rate_limit_auth_failures_per_minute
    watched = [(_ACCOUNT_FAILURES, _account_key(email))]
    if address:
        watched.append((_ADDRESS_FAILURES, address))
    for scope, who in watched:
        # Read before the password is even checked, so that guessing on stops getting answers.
        if await ratelimit.reached(ctx, scope, who, limit):
            raise ratelimit.limited(scope, "Too many failed logins.")
    async with ctx.db.session() as session:
        manager = await _manager_by_email(session, email)
    matches = await _password_matches(manager.password_hash if manager else None, password)
    if manager is None or not matches or manager.disabled_at is not None:
        for scope, who in watched:
            await ratelimit.hit(ctx, scope, who, limit)
        raise ProblemError(401, "invalid_credentials", _INVALID_CREDENTIALS)
    session_id = secrets.token_hex(8)
    token = f"em_{session_id}_{secrets.token_urlsafe(32)}"
    now = utcnow()
    row = ManagerSession(
        id=session_id,
        manager_id=manager.id,
        token_hash=hash_secret(token),
        created_at=now,
        expires_at=now + timedelta(hours=ctx.settings.manager_session_hours),
    )
    rehashed = await _hash_password(password) if _hasher.check_needs_rehash(manager.password_hash) else None
    async with ctx.db.transaction() as session:
        session.add(row)
        if rehashed is not None:  # the hasher's parameters were raised since this hash was made
            await session.execute(
                sa.update(Manager).where(col(Manager.id) == manager.id).values(password_hash=rehashed)
            )
        record(
            session,
            actor=manager.actor,
            action="manager.login",
            target=manager.actor,
            details={"session": session_id},
        )
    return token, row, manager


_INVALID_MANAGER_TOKEN = "The manager token is not valid, has expired or was revoked: log in again."


async def verify_manager_token(ctx: Context, token: str) -> Manager:
    """The manager of a live session token; 401 `invalid_manager_token` otherwise.

    Read from SQL on every request, never remembered: a logout, a disabled account or a changed
    role holds at once on every instance, and a person's requests are few enough for one indexed
    read each."""
    digest = hash_secret(token)
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "em" or not parts[1] or len(parts[1]) > 16:
        raise ProblemError(401, "invalid_manager_token", _INVALID_MANAGER_TOKEN)
    async with ctx.db.session() as session:
        found = (
            await session.execute(
                sa.select(ManagerSession, Manager)
                .join(Manager, col(Manager.id) == ManagerSession.manager_id)
                .where(col(ManagerSession.id) == parts[1])
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
    return manager


async def logout(ctx: Context, token: str) -> bool:
    """End the session of `token`; False when it was not a live session."""
    digest = hash_secret(token)
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "em":
        return False
    async with ctx.db.transaction() as session:
        sessions = ManagerSession.__table__.c
        ended = await execute_counting(
            session,
            sa.update(ManagerSession)
            .where(sessions.id == parts[1], sessions.token_hash == digest, sessions.revoked_at.is_(None))
            .values(revoked_at=utcnow()),
        )
        return bool(ended)


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
        await count_failure(ctx, request, MANAGER_TOKEN)
        raise


def require_role(manager: Manager, role: str) -> None:
    """403 `forbidden_role` unless the manager's role is `role` or above (viewer < editor < owner)."""
    if _ROLE_RANK.get(manager.role, -1) < _ROLE_RANK[role]:
        raise ProblemError(403, "forbidden_role", f"This needs the {role} role or higher.")


# --- the review of held referrals: the referral's rules are the referrals domain's; the decision is
# audited here, in the same transaction as the change.


async def approve_referral(ctx: Context, manager: Manager, friend_id: str, reason: str) -> Referral:
    """Clear a held referral (editor): its pending rewards are paid."""
    require_role(manager, "editor")
    async with ctx.db.transaction() as session:
        referral = await referrals.approve(ctx, session, friend_id, actor=manager.actor, reason=reason)
        record(
            session,
            actor=manager.actor,
            action="referral.approve",
            target=f"member:{friend_id}",
            reason=reason,
            details={
                "referrer_id": referral.referrer_id,
                "risk_score": referral.risk_score,
                "status": referral.status,
            },
        )
    return referral


async def reject_referral(
    ctx: Context, manager: Manager, friend_id: str, reason: str
) -> tuple[Referral, dict[str, Any]]:
    """Refuse a held referral (editor): pending rewards dropped, paid ones reversed."""
    require_role(manager, "editor")
    async with ctx.db.transaction() as session:
        referral, undone = await referrals.reject(ctx, session, friend_id, actor=manager.actor, reason=reason)
        record(
            session,
            actor=manager.actor,
            action="referral.reject",
            target=f"member:{friend_id}",
            reason=reason,
            details={
                "referrer_id": referral.referrer_id,
                "risk_score": referral.risk_score,
                "undone": undone,
            },
        )
    return referral, undone


async def reassign_referral(
    ctx: Context, manager: Manager, friend_id: str, code: str, reason: str
) -> Referral:
    """Correct who referred a member (editor), before anything was paid."""
    require_role(manager, "editor")
    async with ctx.db.transaction() as session:
        referral, before = await referrals.reassign(ctx, session, friend_id, code, reason=reason)
        record(
            session,
            actor=manager.actor,
            action="referral.reassign",
            target=f"member:{friend_id}",
            reason=reason,
            details={"from": before, "to": referral.referrer_id},
        )
    return referral
