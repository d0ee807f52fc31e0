"""A revoked API key is refused at once by every running instance, however recently they
accepted it: the revocation is announced through Redis, which each cached key is checked against."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from server.auth import revoke_api_key
from server.config import Settings
from server.context import Context
from tests.conftest import server_env
from tests.e2e.helpers import brand_client, create_api_key
from tests.support import ROOT, ServerProcess, unique

pytestmark = pytest.mark.e2e


def revoke_from_cli(env: dict[str, str], key_id: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "server.cli", "apikey", "revoke", key_id],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and f"revoked {key_id}" in out.stdout, out.stdout + out.stderr


async def refused_by_both_after(
    settings: Settings, servers: tuple[ServerProcess, ServerProcess], revoke
) -> None:  # type: ignore[no-untyped-def]
    key = await asyncio.to_thread(create_api_key, server_env(settings), unique("revoked brand"))
    key_id = key.split("_")[1]
    member = unique("m")
    a, b = servers
    async with brand_client(a.base_url, key) as on_a, brand_client(b.base_url, key) as on_b:
        # Both instances verify the key and remember it.
        for client in (on_a, on_b, on_a, on_b):
            r = await client.put(f"/v1/members/{member}", json={})
            assert r.status_code in (200, 201), r.text

        await revoke(key_id)

        for client in (on_a, on_b):
            r = await client.put(f"/v1/members/{member}", json={})
            assert r.status_code == 401, r.text
            assert r.json()["code"] == "invalid_api_key"


async def test_a_key_revoked_by_the_service_is_refused_by_both_instances_at_once(
    settings: Settings, ctx: Context, server: ServerProcess, server_b: ServerProcess
) -> None:
    # `ctx` is a third process's view of the same SQL and Redis (the tests' own instance).
    async def revoke(key_id: str) -> None:
        assert await revoke_api_key(ctx, key_id, actor="cli:e2e")

    await refused_by_both_after(settings, (server, server_b), revoke)


async def test_a_key_revoked_from_the_cli_is_refused_by_both_instances(
    settings: Settings, server: ServerProcess, server_b: ServerProcess
) -> None:
    async def revoke(key_id: str) -> None:
        await asyncio.to_thread(revoke_from_cli, server_env(settings), key_id)

    await refused_by_both_after(settings, (server, server_b), revoke)
