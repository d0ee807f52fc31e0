"""A member shares their link, a friend opens it, signs up and claims the code, and the friend's
first order pays both: each hears `referral.converted` live; the referrer sees it in their stats
and on the referral board. All against a real server process, as the apps and the brand call it."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.helpers import brand_client, live, member_client, now_iso, purchase, send_events, wait_until
from tests.support import ServerProcess, board_standings, unique

pytestmark = pytest.mark.e2e

SKIP = ("points.", "growth.", "quest.", "streak.")


async def test_link_click_claim_purchase_and_both_hear_it_live(
    server: ServerProcess, brand_key: str, token_for
) -> None:
    anna, ben = unique("ref"), unique("friend")
    async with (
        brand_client(server.base_url, brand_key) as brand,
        member_client(server.base_url, token_for(anna)) as anna_app,
        member_client(server.base_url, token_for(ben)) as ben_app,
        httpx.AsyncClient(base_url=server.base_url, trust_env=False) as browser,
    ):
        for who, name in ((anna, "Anna"), (ben, "Ben")):
            r = await brand.put(f"/v1/members/{who}", json={"display_name": name, "signed_up_at": now_iso()})
            assert r.status_code in (200, 201), r.text
        mine = (await anna_app.get("/v1/referrals/me")).json()
        code, link = mine["code"], mine["link"]
        assert link.endswith(f"/r/{code}")

        page = await browser.get(f"/r/{code}", headers={"User-Agent": "Mozilla/5.0 (iPhone) Mobile"})
        assert page.status_code == 200 and "Anna invited you" in page.text
        assert 'property="og:title"' in page.text and 'name="twitter:card"' in page.text

        r = await ben_app.post("/v1/referrals/claim", json={"code": code.lower()})
        assert r.status_code == 201, r.text
        assert r.json()["referrer_name"] == "Anna"

        async with (
            live(server.ws_url, token_for(anna), ignore=(*SKIP, "referral.claimed")) as anna_sock,
            live(server.ws_url, token_for(ben), ignore=SKIP) as ben_sock,
        ):
            assert (await send_events(brand, purchase(ben, 25)))["accepted"] == 1
            to_anna = await anna_sock.next()
            assert to_anna["type"] == "referral.converted", to_anna
            data = to_anna["data"]
            assert data["role"] == "referrer" and data["friend_name"] == "Ben"
            assert data["reward"] == {"points": 500, "growth": 100, "badge": None}
            assert data["conversions"] == 1 and data["next_milestone"]["remaining"] == 2
            assert data["boost"]["factor"] == 1.5 and data["celebration"] == "referral"
            to_ben = await ben_sock.next()
            assert to_ben["type"] == "referral.converted", to_ben
            assert to_ben["data"]["role"] == "friend" and to_ben["data"]["referrer_name"] == "Anna"
            assert to_ben["data"]["reward"]["points"] == 250

        async def counted() -> bool:
            stats = (await anna_app.get("/v1/referrals/me")).json()
            return stats["clicks"] == 1 and (stats["board"] or {}).get("score") == 1

        await wait_until(counted, what="the click and the board score")
        stats = (await anna_app.get("/v1/referrals/me")).json()
        assert (stats["claims"], stats["conversions"]) == (1, 1)
        assert stats["earned_rewards"] == {"points": 500, "growth": 100}
        # The board's own standings (other tests' referrers share it): Anna where they rank her.
        standings = await board_standings(anna_app, "monthly-referrals")
        row = next(e for e in standings if e["is_me"])
        assert row["score"] == 1 and all(e["score"] >= 1 for e in standings[: row["rank"] - 1])
        assert stats["board"] == {
            "board_id": "monthly-referrals",
            "rank": row["rank"],
            "score": 1,
            "total": len(standings),
        }
        board = (await anna_app.get("/v1/leaderboards/monthly-referrals/me")).json()
        assert (board["rank"], board["score"], board["total"]) == (row["rank"], 1, len(standings))

        # A second claim by Ben, or a claim of an unknown code, changes nothing.
        r = await ben_app.post("/v1/referrals/claim", json={"code": "NOSUCH99"})
        assert (r.status_code, r.json()["code"]) == (404, "code_not_found")
        missing = await browser.get("/r/NOSUCH99")
        assert missing.status_code == 404 and "does not work" in missing.text
