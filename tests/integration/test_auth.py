"""Member tokens and API keys: what is accepted and what is refused, with which code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from server.auth import (
    authenticate_api_key,
    create_api_key,
    issue_member_token,
    revoke_api_key,
    verify_member_token,
)
from server.config import Settings, SettingsError
from server.context import Context
from server.errors import ProblemError
from server.redis import RedisHandle
from tests.support import free_port, in_one_rate_limit_window


def _claims(sub: str, **extra) -> dict:
    now = datetime.now(UTC)
    return {"sub": sub, "iat": now, "exp": now + timedelta(hours=1), **extra}


async def test_member_token_failures(http, settings, member_id):
    cases = {
        "missing_token": {},
        "invalid_token": {"Authorization": "Bearer not-a-jwt"},
    }
    for code, headers in cases.items():
        r = await http.get("/v1/me", headers=headers)
        assert r.status_code == 401 and r.json()["code"] == code
    wrong_secret = jwt.encode(_claims(member_id), "another-secret-of-enough-length-000000", algorithm="HS256")
    expired = jwt.encode(
        {**_claims(member_id), "exp": datetime.now(UTC) - timedelta(hours=1)},
        settings.jwt_secret,
        algorithm="HS256",
    )
    no_exp = jwt.encode({"sub": member_id}, settings.jwt_secret, algorithm="HS256")
    unsigned = jwt.encode(_claims(member_id), None, algorithm="none")
    bad_sub = jwt.encode(_claims("has spaces"), settings.jwt_secret, algorithm="HS256")
    for token, code in [
        (wrong_secret, "invalid_token"),
        (expired, "token_expired"),
        (no_exp, "invalid_token"),
        (unsigned, "invalid_token"),
        (bad_sub, "invalid_token"),
    ]:
        r = await http.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401 and r.json()["code"] == code, token


def test_rs256_public_key(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_path = tmp_path / "brand.pub"
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    s = Settings(
        data_dir=tmp_path, jwt_public_key=str(public_path), jwt_private_key=private_pem, jwt_audience="app"
    )
    token = issue_member_token(s, "rs-member")
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert verify_member_token(s, token) == "rs-member"
    hs = jwt.encode(_claims("rs-member", aud="app"), "x" * 40, algorithm="HS256")
    try:
        verify_member_token(s, hs)
        raise AssertionError("an HS256 token must not pass where RS256 is configured")
    except ProblemError as exc:
        assert exc.code == "invalid_token"
    wrong_aud = jwt.encode(_claims("rs-member", aud="other"), private_pem, algorithm="RS256")
    try:
        verify_member_token(s, wrong_aud)
        raise AssertionError("a token for another audience must not pass")
    except ProblemError as exc:
        assert exc.code == "invalid_token"


def test_local_secret_is_generated_once_and_only_on_purpose(tmp_path):
    with pytest.raises(SettingsError, match="No JWT secret"):
        Settings(data_dir=tmp_path).hs256_secret  # noqa: B018 - reading it must not create it
    assert not (tmp_path / "jwt_secret").exists()
    assert Settings(data_dir=tmp_path).ensure_secrets() == [tmp_path / "jwt_secret", tmp_path / "hash_secret"]
    first = Settings(data_dir=tmp_path).hs256_secret
    assert len(first) >= 48
    assert Settings(data_dir=tmp_path).ensure_secrets() == []
    assert Settings(data_dir=tmp_path).hs256_secret == first
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o777 == 0o600


async def test_api_key_is_stored_hashed_and_revocable(http, ctx, member_id):
    row, key = await create_api_key(ctx, "revoke me")
    assert key not in row.key_hash and len(row.key_hash) == 64
    r = await http.put(f"/v1/members/{member_id}", json={}, headers={"X-Api-Key": key})
    assert r.status_code == 201
    # Revoked by another process (an operator's `engage apikey revoke`, another instance): the
    # served instance, which has just verified and remembered the key, refuses it at once.
    elsewhere = Context(ctx.settings, ctx.db, ctx.redis)
    assert await revoke_api_key(elsewhere, row.id)
    r = await http.put(f"/v1/members/{member_id}", json={}, headers={"X-Api-Key": key})
    assert r.status_code == 401 and r.json()["code"] == "invalid_api_key"
    assert not await revoke_api_key(elsewhere, row.id)  # revoked already
    _, fresh = await create_api_key(ctx, "another")
    altered = fresh[:-2] + ("zz" if not fresh.endswith("zz") else "yy")
    r = await http.put(f"/v1/members/{member_id}", json={}, headers={"X-Api-Key": altered})
    assert r.status_code == 401 and r.json()["code"] == "invalid_api_key"


async def test_repeated_failures_from_one_address_are_cut_short(settings, member_id):
    from tests.conftest import Served

    strict = settings.model_copy(
        update={
            "rate_limit_auth_failures_per_minute": 5,
            "scheduler_enabled": False,
            # Its own counters: other tests' failures from 127.0.0.1 must not count here.
            "redis_prefix": settings.redis_prefix + "strict:",
        }
    )
    s = Served(strict)
    await s.start()
    try:
        async with httpx.AsyncClient(base_url=s.base_url, timeout=10) as client:
            await in_one_rate_limit_window(10)
            codes = [
                (
                    await client.put(f"/v1/members/{member_id}", json={}, headers={"X-Api-Key": "ek_0_guess"})
                ).json()["code"]
                for _ in range(8)
            ]
    finally:
        await s.stop()
    # One window: the first 5 failures are answered, every one past the limit is refused.
    assert codes == ["invalid_api_key"] * 5 + ["rate_limited"] * 3


async def test_with_redis_unreachable_a_verified_key_is_remembered_as_before(ctx, settings):
    """An instance that cannot reach Redis cannot hear of revocations: it keeps a key it verified
    until its cache entry expires (seconds), and then reads SQL again, which has the revocation."""
    dead = RedisHandle(settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"}))
    dead.start()
    offline = Context(ctx.settings, ctx.db, dead)
    row, key = await create_api_key(ctx, "offline")
    try:
        assert (await authenticate_api_key(offline, key, 100)).key_id == row.id  # the count fails open
        assert await revoke_api_key(ctx, row.id)  # announced through a Redis this instance cannot reach
        assert (await authenticate_api_key(offline, key, 100)).key_id == row.id
        offline.extras.clear()  # the cache entry expired
        with pytest.raises(ProblemError) as refused:
            await authenticate_api_key(offline, key, 100)
        assert refused.value.code == "invalid_api_key"
    finally:
        await dead.close()
