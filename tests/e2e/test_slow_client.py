"""A member socket that stops reading is dropped rather than slowing the others down."""

from __future__ import annotations

import asyncio
import time

import pytest

from server.config import Settings
from tests.conftest import server_env
from tests.e2e.helpers import (
    LONG_WAIT,
    RawWebSocket,
    adjust,
    brand_client,
    live,
    metric,
    running,
    sockets_open,
)
from tests.support import unique

pytestmark = pytest.mark.e2e

SEND_QUEUE = 8
REASON = "r" * 200  # the longest reason: ~450 bytes a message
MAX_AWARDS = 3000  # the flood's bound; a few hundred are enough to fill the small buffers


async def test_slow_socket_is_dropped_and_others_keep_receiving(
    settings: Settings, brand_key: str, token_for
) -> None:
    slow, other = unique("slow"), unique("other")
    with running(server_env(settings, ENGAGE_REALTIME_SEND_QUEUE=str(SEND_QUEUE))) as proc:
        async with brand_client(proc.base_url, brand_key) as brand:
            for member in (slow, other):
                assert (await brand.put(f"/v1/members/{member}", json={})).status_code == 201

            # The slow client completes the handshake, then never reads again.
            raw = await asyncio.to_thread(RawWebSocket, proc.port, f"/v1/ws?token={token_for(slow)}")
            try:
                assert raw.status_line.startswith("HTTP/1.1 101"), raw.status_line
                async with live(proc.ws_url, token_for(other)) as normal:
                    await sockets_open(proc.base_url, 2)
                    assert metric(proc.base_url, "engage_ws_slow_clients_dropped_total") == 0

                    # Flood the slow member in rounds (bounded), checking in every round that the
                    # other member still gets its message, until the server gives up on the slow one.
                    sent = 0
                    rounds = 0
                    sem = asyncio.Semaphore(8)

                    async def flood_one(n: int) -> None:
                        async with sem:
                            await adjust(brand, slow, 1, reason=REASON, key=f"flood-{n}")

                    deadline = time.monotonic() + 60
                    while metric(proc.base_url, "engage_ws_slow_clients_dropped_total") < 1:
                        assert sent < MAX_AWARDS and time.monotonic() < deadline, (
                            f"the slow socket was not dropped after {sent} messages"
                        )
                        await asyncio.gather(*(flood_one(sent + i) for i in range(100)))
                        sent += 100
                        rounds += 1
                        mine = await adjust(brand, other, 1, reason=f"round {rounds}")
                        msg = await normal.next()
                        assert msg["data"]["entry_id"] == mine["entry_id"]

                    # After the drop the other member is still served, and nothing of theirs was lost.
                    mine = await adjust(brand, other, 1, reason="after the drop")
                    msg = await normal.next()
                    assert (msg["data"]["entry_id"], msg["data"]["balance_after"]) == (
                        mine["entry_id"],
                        rounds + 1,
                    )
                    assert [m["data"]["reason"] for m in normal.received] == [
                        *(f"round {n}" for n in range(1, rounds + 1)),
                        "after the drop",
                    ]
                    assert metric(proc.base_url, "engage_ws_slow_clients_dropped_total") == 1

                # The slow client, reading at last, finds what was buffered, then the close frame.
                frames, code, reason = await asyncio.to_thread(raw.read_until_close, LONG_WAIT)
                assert code == 4008, (frames, code, reason)
                assert "since" in reason
                assert frames < sent
            finally:
                raw.close()

            # The member it belonged to reconnects as told and is served again.
            async with live(proc.ws_url, token_for(slow)) as back:
                await sockets_open(proc.base_url, 1)
                mine = await adjust(brand, slow, 1, reason="back")
                assert (await back.next())["data"]["entry_id"] == mine["entry_id"]
