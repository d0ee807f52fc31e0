"""A member's journey through one server process, as the member app and the brand's systems see it."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.helpers import (
    adjust,
    brand_client,
    live,
    member_client,
    purchase,
    send_events,
    stream_id,
)
from tests.support import ServerProcess, unique

# The demo content's quests speak too (a purchase moves the weekly spend); these tests follow awards.
QUESTS = ("quest.",)
pytestmark = pytest.mark.e2e


async def test_member_journey_live_messages_match_balances_and_ledger(
    server: ServerProcess, brand_key: str, token_for
) -> None:
    member = unique("m")
    token = token_for(member)
    async with (
        brand_client(server.base_url, brand_key) as brand,
        member_client(server.base_url, token) as app,
    ):
        r = await brand.put(f"/v1/members/{member}", json={"display_name": "Ada", "timezone": "Europe/Paris"})
        assert r.status_code == 201, r.text
        r = await brand.put(f"/v1/members/{member}", json={"display_name": "Ada L."})
        assert r.status_code == 200, r.text
        assert r.json()["timezone"] == "Europe/Paris"

        # Two devices: the token in the query string, and as a bearer header.
        async with (
            live(server.ws_url, token, ignore=QUESTS) as phone,
            live(server.ws_url, bearer=token, ignore=QUESTS) as tablet,
        ):
            event = purchase(member, 12.5)
            assert (await send_events(brand, event))["accepted"] == 1
            adjustment = await adjust(brand, member, 30, reason="welcome gift")
            assert adjustment["balance_after"] == 42

            expected = [
                ("points.awarded", "points", 12, 12, "purchase"),
                ("growth.awarded", "growth", 12, 12, "purchase"),
                ("points.awarded", "points", 30, 42, "welcome gift"),
            ]
            for sock in (phone, tablet):
                got = await sock.take(3)
                assert [
                    (
                        m["type"],
                        m["data"]["currency"],
                        m["data"]["amount"],
                        m["data"]["balance_after"],
                        m["data"]["reason"],
                    )
                    for m in got
                ] == expected
                assert [stream_id(m["id"]) for m in got] == sorted({stream_id(m["id"]) for m in got})
            assert [m["id"] for m in phone.received] == [m["id"] for m in tablet.received]
            assert phone.received == tablet.received

            # Retries from the brand change nothing and send nothing again: the next message is the new one.
            assert (await send_events(brand, event))["duplicates"] == 1
            r = await brand.post(
                f"/v1/members/{member}/points",
                json={
                    "amount": 30,
                    "reason": "welcome gift",
                    "idempotency_key": adjustment["idempotency_key"],
                },
            )
            assert r.status_code == 200 and r.headers.get("idempotent-replayed") == "true", r.text
            assert r.json()["entry_id"] == adjustment["entry_id"]
            spend = await adjust(brand, member, -2, reason="coffee")
            for sock in (phone, tablet):
                nxt = await sock.next()
                assert (nxt["type"], nxt["data"]["amount"], nxt["data"]["balance_after"]) == (
                    "points.deducted",
                    -2,
                    40,
                )
                assert nxt["data"]["entry_id"] == spend["entry_id"]

        me = (await app.get("/v1/me")).json()
        assert (me["member_id"], me["display_name"], me["timezone"]) == (member, "Ada L.", "Europe/Paris")
        assert (me["points"], me["growth"]) == (40, 12)

        ledger = (await app.get("/v1/ledger")).json()
        entries = ledger["entries"]
        assert ledger["next_cursor"] is None
        assert [(e["currency"], e["amount"], e["balance_after"]) for e in entries] == [
            ("points", -2, 40),
            ("points", 30, 42),
            ("growth", 12, 12),
            ("points", 12, 12),
        ]
        # What the sockets said is what the ledger holds, entry by entry.
        live_entries = {m["data"]["entry_id"]: m["data"] for m in phone.received}
        assert set(live_entries) == {e["entry_id"] for e in entries}
        for e in entries:
            said = live_entries[e["entry_id"]]
            assert (
                said["currency"],
                said["amount"],
                said["balance_after"],
                said["reason"],
                said["source"],
            ) == (
                e["currency"],
                e["amount"],
                e["balance_after"],
                e["reason"],
                e["source"],
            )
        assert sum(e["amount"] for e in entries if e["currency"] == "points") == me["points"]
        assert sum(e["amount"] for e in entries if e["currency"] == "growth") == me["growth"]


async def test_reconnect_with_since_replays_exactly_what_was_missed(
    server: ServerProcess, brand_key: str, token_for
) -> None:
    member = unique("m")
    token = token_for(member)
    async with brand_client(server.base_url, brand_key) as brand:
        assert (await brand.put(f"/v1/members/{member}", json={})).status_code == 201

        async with live(server.ws_url, token) as sock:
            for n in (1, 2):
                await adjust(brand, member, n, reason=f"seen {n}")
            seen = await sock.take(2)
        last_seen = seen[-1]["id"]

        # While the app is away: each award is published before its response returns.
        missed = [await adjust(brand, member, 10 + n, reason=f"missed {n}") for n in range(3)]

        async with live(server.ws_url, token, since=last_seen) as sock:
            replayed = await sock.take(3)
            assert [m["data"]["entry_id"] for m in replayed] == [e["entry_id"] for e in missed]
            assert [m["data"]["reason"] for m in replayed] == ["missed 0", "missed 1", "missed 2"]
            assert all(stream_id(m["id"]) > stream_id(last_seen) for m in replayed)
            # Nothing is sent twice: the next message is the next award.
            after = await adjust(brand, member, 100, reason="after")
            nxt = await sock.next()
            assert nxt["data"]["entry_id"] == after["entry_id"]

        # Replaying while awards keep coming: history and live messages meet without gap or repeat.
        resume_from = nxt["id"]
        racing: list[dict] = []

        async def award_meanwhile() -> None:
            for n in range(15):
                racing.append(await adjust(brand, member, 1, reason=f"race {n}"))

        producer = asyncio.create_task(award_meanwhile())
        await asyncio.sleep(0.05)
        async with live(server.ws_url, token, since=resume_from) as sock:
            await producer
            got = await sock.take_until(
                lambda ms: {m["data"]["entry_id"] for m in ms} >= {e["entry_id"] for e in racing}
            )
            ids = [m["id"] for m in got]
            assert len(ids) == len(set(ids)), f"duplicates: {ids}"
            assert [stream_id(i) for i in ids] == sorted(stream_id(i) for i in ids)
            assert [m["data"]["entry_id"] for m in got] == [e["entry_id"] for e in racing]

        # The whole history, from the start.
        async with live(server.ws_url, token, since="0-0") as sock:
            everything = await sock.take(2 + 3 + 1 + 15)
            assert [m["data"]["reason"] for m in everything] == (
                ["seen 1", "seen 2", "missed 0", "missed 1", "missed 2", "after"]
                + [f"race {n}" for n in range(15)]
            )
            assert everything[-1]["data"]["balance_after"] == 1 + 2 + 10 + 11 + 12 + 100 + 15
