"""A member app buys, hears its badge earned live with what it needs to celebrate, sees the
collection and its tier, and shares a credential that verifies; the brand grants a manual badge."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import brand_client, live, member_client, purchase, send_events
from tests.support import ServerProcess, unique

pytestmark = pytest.mark.e2e


async def test_badge_earned_live_collection_tiers_and_credential(
    server: ServerProcess, brand_key: str, token_for
) -> None:
    member = unique("m")
    token = token_for(member)
    async with (
        brand_client(server.base_url, brand_key) as brand,
        member_client(server.base_url, token) as app,
        live(server.ws_url, token, ignore=("quest.", "points.", "growth."), badges=True) as sock,
    ):
        assert (await send_events(brand, purchase(member, 20)))["accepted"] == 1
        msg = await sock.next()
        assert msg["type"] == "badge.earned", msg
        data = msg["data"]
        assert (data["badge_id"], data["level"], data["level_name"], data["celebration"]) == (
            "shopper",
            1,
            "bronze",
            "badge",
        )
        assert data["next_level"]["name"] == "silver" and data["image"] and data["share_url"]

        collection = (await app.get("/v1/badges")).json()
        earned = {b["badge_id"]: b for b in collection["earned"]}
        assert earned["shopper"]["level_name"] == "bronze" and earned["shopper"]["earned_at"]
        locked = {b["badge_id"] for b in collection["locked"]}
        assert "big-spender" in locked and "night-owl" not in locked  # hidden until earned

        credential = (await app.get("/v1/badges/shopper/credential")).json()
        assert credential["credential_id"] == data["credential_id"]
        check = await app.get(f"/v1/credentials/{credential['credential_id']}")
        assert check.status_code == 200 and check.json()["valid"] is True

        r = await brand.post(
            f"/v1/members/{member}/badges",
            json={"badge_id": "founding-member", "idempotency_key": "launch", "reason": "launch week"},
        )
        assert r.status_code == 201, r.text
        msg = await sock.next()
        assert (msg["type"], msg["data"]["badge_id"]) == ("badge.earned", "founding-member")
        again = await brand.post(
            f"/v1/members/{member}/badges", json={"badge_id": "founding-member", "idempotency_key": "launch"}
        )
        assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
        assert again.json()["credential_id"] == r.json()["credential_id"]
        for badge_id, status, code in (
            ("no-such-badge", 404, "badge_not_found"),
            ("shopper", 409, "badge_not_manual"),
        ):
            r = await brand.post(
                f"/v1/members/{member}/badges", json={"badge_id": badge_id, "idempotency_key": "x"}
            )
            assert (r.status_code, r.json()["code"]) == (status, code)

        ladder = (await app.get("/v1/tiers")).json()
        assert [t["tier"] for t in ladder["tiers"]] == ["regular", "silver", "gold", "diamond"]
        me = ladder["member"]
        assert me["tier"] == "regular" and me["qualifying_growth"] == 20
        assert me["next_tier"]["tier"] == "silver" and me["next_tier"]["growth_to_next"] == 480
