"""Failed authentications are counted per kind of credential and, for manager logins, per account:
a member app replaying bad tokens does not lock a manager out, and guesses at one manager's
password are cut short however many addresses they come from."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from server.admin.service import create_manager
from server.config import Settings
from tests.conftest import Served
from tests.support import MANAGER_PASSWORD, in_one_rate_limit_window, unique

LIMIT = 5


@pytest.fixture
async def strict(settings: Settings) -> AsyncIterator[Served]:
    """A server on the run's SQL with a low limit and rate-limit counters of its own. Served by
    uvicorn, which takes the client's address from `X-Forwarded-For` sent by 127.0.0.1 (a trusted
    proxy), as `engage serve` does behind one with `ENGAGE_FORWARDED_ALLOW_IPS`."""
    s = Served(
        settings.model_copy(
            update={
                "rate_limit_auth_failures_per_minute": LIMIT,
                "scheduler_enabled": False,
                "redis_prefix": f"{settings.redis_prefix}{unique('strict')}:",
            }
        )
    )
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def from_address(address: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": address, **headers}


def new_address() -> str:
    return "10." + ".".join(str(b) for b in secrets.token_bytes(3))


async def new_manager(served: Served) -> str:
    email = f"{unique('mgr')}@example.com"
    await create_manager(served.ctx, email, MANAGER_PASSWORD, "viewer")
    return email


def assert_rate_limited(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 60


async def test_bad_member_tokens_and_keys_do_not_lock_out_a_manager_login(strict: Served) -> None:
    email = await new_manager(strict)
    address = new_address()
    async with httpx.AsyncClient(base_url=strict.base_url, timeout=30) as client:
        await in_one_rate_limit_window(20)
        # Each kind of credential has its own budget from this address, used up here.
        for path, headers, code in [
            ("/v1/me", {"Authorization": "Bearer not-a-token"}, "invalid_token"),
            ("/v1/members/m-1", {"X-Api-Key": "ek_0_guess"}, "invalid_api_key"),
            ("/v1/admin/me", {"Authorization": "Bearer em_0_guess"}, "invalid_manager_token"),
        ]:
            answers = []
            for _ in range(LIMIT + 1):
                method = client.put if path.startswith("/v1/members") else client.get
                kwargs = {"json": {}} if method is client.put else {}
                answers.append(await method(path, headers=from_address(address, **headers), **kwargs))
            assert [r.json()["code"] for r in answers] == [code] * LIMIT + ["rate_limited"], path
            assert_rate_limited(answers[-1])

        r = await client.post(
            "/v1/admin/sessions",
            json={"email": email, "password": MANAGER_PASSWORD},
            headers=from_address(address),
        )
        assert r.status_code == 201, r.text
        # Bad member tokens from elsewhere are still cut short: the limit itself holds.
        assert_rate_limited(
            await client.get("/v1/me", headers=from_address(address, Authorization="Bearer not-a-token"))
        )


async def test_guesses_at_one_account_from_many_addresses_are_cut_short(strict: Served) -> None:
    target, other = await new_manager(strict), await new_manager(strict)
    addresses = [new_address() for _ in range(LIMIT)]
    async with httpx.AsyncClient(base_url=strict.base_url, timeout=30) as client:

        async def log_in(email: str, password: str, address: str) -> httpx.Response:
            return await client.post(
                "/v1/admin/sessions",
                json={"email": email, "password": password},
                headers=from_address(address),
            )

        await in_one_rate_limit_window(20)
        for address in addresses:  # one guess from each: no address reaches its own limit
            r = await log_in(target, "wrong password!", address)
            assert r.status_code == 401 and r.json()["code"] == "invalid_credentials"
        # The account's limit is reached: even the right password, from an address never seen, waits.
        assert_rate_limited(await log_in(target, MANAGER_PASSWORD, new_address()))
        assert_rate_limited(await log_in(target.upper(), MANAGER_PASSWORD, addresses[0]))
        # Another account logs in from the same addresses.
        r = await log_in(other, MANAGER_PASSWORD, addresses[0])
        assert r.status_code == 201, r.text
        assert r.json()["manager"]["email"] == other
