"""A message caused right after the live socket opened reaches it, even without `?since=`.

Regression test: the server used to accept the websocket (the app sees it open) before it had
authenticated the member and subscribed to the member's channel, so a message published in between
was lost; with 20 sockets opening at once about half of them lost it, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest

from tests.e2e.helpers import adjust, brand_client, live, sockets_open
from tests.support import ServerProcess, unique

pytestmark = pytest.mark.e2e


async def test_award_right_after_socket_opens_is_delivered(
    server: ServerProcess, brand_key: str, token_for
) -> None:
    members = [unique("m") for _ in range(20)]
    await sockets_open(server.base_url, 0)
    async with brand_client(server.base_url, brand_key) as brand, AsyncExitStack() as stack:
        for member in members:
            assert (await brand.put(f"/v1/members/{member}", json={})).status_code == 201
        # 20 member apps open their socket; as soon as each is open, the brand awards its member.
        socks = await asyncio.gather(
            *(stack.enter_async_context(live(server.ws_url, token_for(m))) for m in members)
        )
        first = await asyncio.gather(*(adjust(brand, m, 5, reason="right after connect") for m in members))
        # Then, with every socket surely subscribed, a marker message to know when to stop reading
        # (were the first ones lost, the test says how many rather than timing out).
        await sockets_open(server.base_url, len(members))
        markers = [await adjust(brand, m, 1, reason="marker") for m in members]
        lost = []
        for sock, f, marker in zip(socks, first, markers, strict=True):
            got = await sock.take_until(
                lambda ms, k=marker["entry_id"]: any(m["data"]["entry_id"] == k for m in ms)
            )
            if f["entry_id"] not in [m["data"]["entry_id"] for m in got]:
                lost.append(f["member_id"])
    assert not lost, f"{len(lost)} of {len(members)} sockets missed the award made just after they opened"
