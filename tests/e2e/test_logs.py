"""The server's log never holds a member token or an API key, whichever way a client sent them."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

from server.auth import issue_member_token
from server.config import Settings
from tests.conftest import server_env
from tests.e2e.helpers import adjust, brand_client, close_of, json_lines, live, sockets_open
from tests.support import ServerProcess, unique

pytestmark = pytest.mark.e2e


def _secret_parts(secret: str) -> list[str]:
    """The secret and the parts that would betray it even if cut or reformatted."""
    if secret.startswith("ek_"):
        return [secret, secret.split("_", 2)[2]]
    return [secret, secret.rsplit(".", 1)[1]]  # a JWT: the whole, and its signature


def _leaks(log: str, secrets: list[str]) -> list[str]:
    return [part for s in secrets for part in _secret_parts(s) if part in log]


async def _served(settings: Settings) -> ServerProcess:
    proc = ServerProcess(server_env(settings, ENGAGE_LOG_LEVEL="INFO"))
    await asyncio.to_thread(proc.start)
    return proc


async def _stopped_log(proc: ServerProcess) -> str:
    await asyncio.to_thread(proc.stop)
    text = proc.log()
    proc.log_path.unlink(missing_ok=True)
    return text


async def test_logs_hold_no_api_key_and_no_header_or_http_query_token(
    settings: Settings, brand_key: str
) -> None:
    member = unique("m")
    token = issue_member_token(settings, member)
    expired = issue_member_token(settings, member, timedelta(minutes=-5))
    wrong_key = brand_key[:-4] + ("AAAA" if not brand_key.endswith("AAAA") else "BBBB")
    proc = await _served(settings)
    try:
        async with (
            brand_client(proc.base_url, brand_key) as brand,
            httpx.AsyncClient(base_url=proc.base_url, timeout=30, trust_env=False) as anon,
        ):
            assert (await brand.put(f"/v1/members/{member}", json={})).status_code == 201
            await adjust(brand, member, 3)
            # Failures are logged (status >= 400): with a wrong key, a key in the query string, ...
            assert (
                await anon.get(f"/v1/members/{member}", headers={"X-Api-Key": wrong_key})
            ).status_code == 401
            assert (await anon.get(f"/v1/members/{member}?api_key={brand_key}")).status_code == 401
            assert (await anon.get(f"/nowhere?api_key={brand_key}&token={token}")).status_code == 404
            # ... a member token as a header, an expired one, and one in an HTTP query string.
            assert (await anon.get("/v1/me", headers={"Authorization": f"Bearer {token}"})).status_code == 200
            assert (
                await anon.get("/v1/me", headers={"Authorization": f"Bearer {expired}"})
            ).status_code == 401
            assert (await anon.get(f"/v1/me?token={token}")).status_code == 401
        # The live socket with the token as a bearer header, good and expired.
        async with live(proc.ws_url, bearer=token):
            await sockets_open(proc.base_url, 1)
        assert await close_of(proc.ws_url, bearer=expired) == (4401, "token_expired")
    finally:
        log = await _stopped_log(proc)

    logged = json_lines(log)
    assert any(line.get("event") == "request" and line.get("status") == 401 for line in logged), log
    assert not _leaks(log, [brand_key, wrong_key, token, expired]), log


async def test_logs_hold_no_token_sent_in_the_websocket_query_string(settings: Settings) -> None:
    member = unique("m")
    token = issue_member_token(settings, member)
    wrong = issue_member_token(settings, member, timedelta(minutes=-5))
    proc = await _served(settings)
    try:
        async with live(proc.ws_url, token):
            await sockets_open(proc.base_url, 1)
        assert await close_of(proc.ws_url, wrong) == (4401, "token_expired")
    finally:
        log = await _stopped_log(proc)
    leaked = _leaks(log, [token, wrong])
    assert not leaked, "log lines with a token:\n" + "\n".join(
        line for line in log.splitlines() if any(p in line for p in leaked)
    )
