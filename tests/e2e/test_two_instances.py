"""Two server processes on one SQL database and one Redis behave as one service."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import adjust, brand_client, live, member_client, purchase, send_events
from tests.support import ServerProcess, unique

# The demo content's quests speak too (a purchase moves the weekly spend); these tests follow awards.
QUESTS = ("quest.",)
pytestmark = pytest.mark.e2e


async def test_message_caused_on_one_instance_reaches_socket_on_the_other(
    server: ServerProcess, server_b: ServerProcess, brand_key: str, token_for
) -> None:
    member = unique("m")
    token = token_for(member)
    async with (
        brand_client(server_b.base_url, brand_key) as brand_b,
        brand_client(server.base_url, brand_key) as brand_a,
    ):
        assert (await brand_b.put(f"/v1/members/{member}", json={})).status_code == 201

        async with (
            live(server.ws_url, token, ignore=QUESTS) as on_a,
            live(server_b.ws_url, token, ignore=QUESTS) as on_b,
        ):
            # Caused through B: the socket on A hears it (and B's own socket too).
            assert (await send_events(brand_b, purchase(member, 5)))["accepted"] == 1
            # Caused through A: the socket on B hears it.
            await adjust(brand_a, member, 7, reason="from A")
            for sock in (on_a, on_b):
                got = await sock.take(3)
                assert [(m["type"], m["data"]["amount"], m["data"]["balance_after"]) for m in got] == [
                    ("points.awarded", 5, 5),
                    ("growth.awarded", 5, 5),
                    ("points.awarded", 7, 12),
                ]
            assert on_a.received == on_b.received

        # A member app reconnecting to the other instance resumes from the id it last saw.
        await adjust(brand_b, member, 1, reason="while away")
        async with live(server.ws_url, token, since=on_b.last_id, ignore=QUESTS) as again:
            msg = await again.next()
            assert (msg["data"]["reason"], msg["data"]["balance_after"]) == ("while away", 13)

    for base in (server.base_url, server_b.base_url):
        async with member_client(base, token) as app:
            me = (await app.get("/v1/me")).json()
            assert (me["points"], me["growth"]) == (13, 5)
