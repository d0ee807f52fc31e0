"""Codes, links, the landing page's clicks, claims, conversion with double-sided rewards, boosts,
the referral board, and every refusal: through the HTTP API and the real dispatch."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.db import utcnow
from server.ledger.earning import active_boosts
from server.referrals.models import Referral, ReferralCode
from server.referrals.service import ALPHABET, skeleton
from tests.referrals.support import (
    claim,
    flush_clicks,
    member,
    mine,
    purchase,
    referral_entries,
    referral_of,
)
from tests.support import board_standings

pytestmark = pytest.mark.usefixtures("no_quests")

HUMAN = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
PREVIEW = "WhatsApp/2.23.20.0 A"


async def test_code_is_made_once_without_look_alikes_and_read_in_any_case(ctx, http, as_brand, as_member):
    anna = await member(http, as_brand, name="Anna")
    first = await mine(http, as_member(anna))
    again = await mine(http, as_member(anna))
    code = first["code"]
    assert again["code"] == code and first["generated_code"] == code and first["vanity_code"] is None
    assert len(code) == 7 and set(code) <= set(ALPHABET)
    assert not set(code) & set("0O1IL")
    assert first["link"].endswith(f"/r/{code}") and first["link"].startswith(ctx.settings.public_base_url)
    r = await http.get(f"/r/{code.lower()}", headers={"User-Agent": HUMAN})
    assert r.status_code == 200 and "Anna invited you" in r.text
    # Typed with look-alikes (O for 0, l for 1) and dashes, a vanity code still resolves.
    assert skeleton("an-na-ruNs") == skeleton("ANNARUNS")
    assert skeleton("J0HN") == skeleton("JOHN") and skeleton("B1LL") == skeleton("BILL")
    # Four requests at once on a new member still make one generated code.
    bob = await member(http, as_brand)
    import asyncio

    codes = await asyncio.gather(*(mine(http, as_member(bob)) for _ in range(4)))
    assert len({c["code"] for c in codes}) == 1
    async with ctx.db.session() as session:
        n = (
            await session.execute(
                sa.select(sa.func.count()).where(
                    ReferralCode.member_id == bob, ReferralCode.kind == "generated"
                )
            )
        ).scalar_one()
    assert n == 1


async def test_from_link_click_to_double_reward(ctx, http, as_brand, as_member):
    anna = await member(http, as_brand, name="Anna")
    ben = await member(http, as_brand, name="Ben")
    code = (await mine(http, as_member(anna)))["code"]

    page = await http.get(f"/r/{code}", headers={"User-Agent": HUMAN})
    assert page.status_code == 200
    assert '<meta property="og:title" content="Anna invited you to Acme Rewards">' in page.text
    assert 'name="twitter:card" content="summary_large_image"' in page.text
    assert f'href="acme://referral/{code}"' in page.text
    assert page.headers["cache-control"] == "no-store"
    await http.get(f"/r/{code}", headers={"User-Agent": PREVIEW})  # a chat app drawing the card

    r = await claim(http, as_member(ben), code.lower())
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["referrer_name"] == "Anna" and body["status"] == "claimed"
    assert body["qualifying_action"] == "purchase" and body["reward"]["points"] == 250
    assert body["already_claimed"] is False
    replay = await claim(http, as_member(ben), code)
    assert replay.status_code == 200 and replay.json()["already_claimed"] is True

    # A purchase under the qualifying amount does not convert; the next one does, once.
    await purchase(ctx, ben, amount=5)
    assert (await referral_of(ctx, ben)).status == "claimed"
    await purchase(ctx, ben, amount=30)
    await purchase(ctx, ben, amount=30)
    assert (await referral_of(ctx, ben)).status == "converted"
    assert await referral_entries(ctx, anna) == [
        ("points", 500, f"referral:{ben}:referrer"),
        ("growth", 100, f"referral:{ben}:referrer"),
    ]
    assert await referral_entries(ctx, ben) == [("points", 250, f"referral:{ben}:friend")]

    # The referrer's boost runs, and their next purchase earns by it.
    async with ctx.db.session() as session:
        boosts = await active_boosts(session, anna)
    assert [(b["key"], b["factor"], b["source"]) for b in boosts] == [(f"referral:{ben}", 1.5, "referral")]

    await ctx.outbox.flush()  # the referral.converted event reaches the board
    await flush_clicks(ctx)
    stats = await mine(http, as_member(anna))
    assert (stats["clicks"], stats["previews"], stats["claims"], stats["conversions"]) == (1, 1, 1, 1)
    assert stats["earned_rewards"] == {"points": 500, "growth": 100}
    assert stats["pending_rewards"] == {"points": 0, "growth": 0}
    assert stats["next_milestone"]["count"] == 3 and stats["next_milestone"]["remaining"] == 2
    # The board's own standings (other tests' referrers share it): Anna where they rank her.
    standings = await board_standings(http, "monthly-referrals", as_member(anna))
    row = next(e for e in standings if e["is_me"])
    assert row["score"] == 1 and all(e["score"] >= 1 for e in standings[: row["rank"] - 1])
    assert stats["board"] == {
        "board_id": "monthly-referrals",
        "rank": row["rank"],
        "score": 1,
        "total": len(standings),
    }
    friend_view = await mine(http, as_member(ben))
    assert (
        friend_view["referred_by"]["name"] == "Anna" and friend_view["referred_by"]["status"] == "converted"
    )
    assert friend_view["earned_rewards"] == {"points": 250, "growth": 0}


async def test_refusals_are_clear_and_change_nothing(ctx, http, as_brand, as_member):
    anna = await member(http, as_brand, name="Anna")
    cleo = await member(http, as_brand, name="Cleo")
    late = await member(http, as_brand, days_ago=20)
    dan = await member(http, as_brand)
    code = (await mine(http, as_member(anna)))["code"]
    cleo_code = (await mine(http, as_member(cleo)))["code"]

    async def refused(headers, code_text, status, problem, **body):
        r = await claim(http, headers, code_text, **body)
        assert r.status_code == status, r.text
        assert r.json()["code"] == problem
        assert r.headers["content-type"].startswith("application/problem+json")

    await refused(as_member(dan), "NOPE2345", 404, "code_not_found")
    await refused(as_member(dan), "not a code!", 404, "code_not_found")
    await refused(as_member(anna), code, 409, "self_referral")
    await refused(as_member(late), code, 409, "claim_window_closed")
    await refused(as_brand, code, 400, "member_id_required")
    await refused(as_brand, code, 404, "member_not_found", member_id="never-signed-up")
    await refused(as_member(dan), code, 403, "not_your_member_id", member_id=anna)
    await refused(as_member(dan), code, 400, "invalid_signal", payment_fingerprint="card")
    assert await referral_of(ctx, dan) is None and await referral_of(ctx, late) is None

    assert (await claim(http, as_member(dan), code)).status_code == 201
    await refused(as_member(dan), cleo_code, 409, "already_referred")
    # Anna referred Dan: Dan's code cannot refer Anna back.
    dan_code = (await mine(http, as_member(dan)))["code"]
    anna2 = await member(http, as_brand)
    assert (await claim(http, as_member(anna2), cleo_code)).status_code == 201
    late_anna = await member(http, as_brand)
    assert (await claim(http, as_member(late_anna), dan_code)).status_code == 201
    r = await claim(http, as_member(anna), dan_code)
    assert r.status_code in (409,) and r.json()["code"] == "circular_referral"
    assert (await referral_of(ctx, dan)).referrer_id == anna
    assert await referral_of(ctx, anna) is None

    # A brand system claims for a member, with the member's signals.
    eve = await member(http, as_brand)
    r = await claim(http, as_brand, code, member_id=eve, device_id="dev-eve", ip="198.51.100.9")
    assert r.status_code == 201 and r.json()["member_id"] == eve
    stored = await referral_of(ctx, eve)
    assert stored.claimed_by == "api_key:tests" and stored.device_hash and "dev-eve" not in stored.device_hash


async def test_vanity_codes(ctx, http, as_brand, as_member):
    anna = await member(http, as_brand, name="Anna")
    other = await member(http, as_brand)
    name = f"Anna-{anna[-6:]}"

    async def choose(who, text):
        return await http.put("/v1/referrals/me/code", json={"code": text}, headers=as_member(who))

    r = await choose(anna, name)
    assert r.status_code == 200, r.text
    assert r.json()["code"] == name and r.json()["link"].endswith(f"/r/{name}")
    assert (await mine(http, as_member(anna)))["code"] == name
    # Taken, in any case or spelling of look-alikes.
    for taken in (name.upper(), name.replace("-", ""), name.replace("A", "a")):
        r = await choose(other, taken)
        assert (r.status_code, r.json()["code"]) == (409, "vanity_code_taken")
    for bad, problem in (("ab", "invalid_code"), ("no spaces", "invalid_code"), ("12345", "invalid_code")):
        r = await choose(other, bad)
        assert (r.status_code, r.json()["code"]) == (400, problem), bad
    for rude in ("Sh1tHappens", "big-4ss-hole", "FUCK-you", "acme-official"):
        r = await choose(other, rude)
        assert (r.status_code, r.json()["code"]) == (422, "vanity_code_blocked"), rude
    # Innocent words holding a blocked one pass (the allowlist).
    r = await choose(other, f"Essex-{other[-6:]}")
    assert r.status_code == 200, r.text

    # The new vanity code replaces the old one: the old link says it expired, a claim is refused.
    newer = f"Anna-New-{anna[-6:]}"
    assert (await choose(anna, newer)).status_code == 200
    page = await http.get(f"/r/{name}", headers={"User-Agent": HUMAN})
    assert page.status_code == 410 and "expired" in page.text
    friend = await member(http, as_brand)
    r = await claim(http, as_member(friend), name)
    assert (r.status_code, r.json()["code"]) == (410, "code_expired")
    # The generated code keeps working; the new vanity code is claimable.
    assert (await claim(http, as_member(friend), newer)).status_code == 201
    # At most max_changes (3) vanity codes in all.
    assert (await choose(anna, f"Anna-3-{anna[-6:]}")).status_code == 200
    r = await choose(anna, f"Anna-4-{anna[-6:]}")
    assert (r.status_code, r.json()["code"]) == (409, "vanity_code_limit")


async def test_landing_page_for_unknown_codes_and_names_escaped(ctx, http, as_brand, as_member):
    r = await http.get("/r/ZZZZ9999", headers={"User-Agent": HUMAN})
    assert r.status_code == 404 and "This invitation link does not work" in r.text
    assert "og:title" not in r.text and "App Store" in r.text
    r = await http.get("/r/%3Cscript%3E", headers={"User-Agent": HUMAN})
    assert r.status_code == 404
    sly = await member(http, as_brand, name='<script>alert("x")</script>')
    code = (await mine(http, as_member(sly)))["code"]
    r = await http.get(f"/r/{code}", headers={"User-Agent": HUMAN})
    assert r.status_code == 200 and "<script>alert" not in r.text and "&lt;script&gt;" in r.text
    await flush_clicks(ctx)
    async with ctx.db.session() as session:
        from server.referrals.models import ReferralClick

        click = (
            await session.execute(sa.select(ReferralClick).where(ReferralClick.referrer_id == sly))
        ).scalar_one()
    assert click.user_agent == HUMAN and click.bot is False
    assert len(click.ip_hash) == 32 and "127.0.0.1" not in click.ip_hash


async def test_conversion_only_inside_its_window(ctx, http, as_brand, as_member):
    anna = await member(http, as_brand)
    ben = await member(http, as_brand)
    code = (await mine(http, as_member(anna)))["code"]
    assert (await claim(http, as_member(ben), code)).status_code == 201
    # A purchase dated before the claim does not convert; nor one after the window.
    await purchase(ctx, ben, amount=50, at=utcnow() - timedelta(hours=1))
    await purchase(ctx, ben, amount=50, at=utcnow() + timedelta(days=31))
    assert (await referral_of(ctx, ben)).status == "claimed"
    assert await referral_entries(ctx, anna) == []
    # The window passes: the job closes the referral.
    from server.referrals.service import expire_unconverted

    assert await expire_unconverted(ctx, now=utcnow() + timedelta(days=31)) >= 1
    assert (await referral_of(ctx, ben)).status == "expired"
    # A purchase made inside the window whose event arrives after the expiry still converts.
    await purchase(ctx, ben, amount=50, at=utcnow())
    assert (await referral_of(ctx, ben)).status == "converted"
    assert len(await referral_entries(ctx, anna)) == 2


async def test_one_level_only(ctx, http, as_brand, as_member):
    """Anna referred Ben, Ben referred Cleo: Cleo's purchase pays Ben and Cleo, never Anna."""
    anna, ben, cleo = [await member(http, as_brand) for _ in range(3)]
    assert (await claim(http, as_member(ben), (await mine(http, as_member(anna)))["code"])).status_code == 201
    assert (await claim(http, as_member(cleo), (await mine(http, as_member(ben)))["code"])).status_code == 201
    await purchase(ctx, cleo)
    assert await referral_entries(ctx, anna) == []
    assert [k for _, _, k in await referral_entries(ctx, ben)] == [f"referral:{cleo}:referrer"] * 2
    await purchase(ctx, ben)
    assert {k for _, _, k in await referral_entries(ctx, anna)} == {f"referral:{ben}:referrer"}
    async with ctx.db.session() as session:
        to_anna = (
            await session.execute(sa.select(sa.func.count()).where(Referral.referrer_id == anna))
        ).scalar_one()
    assert to_anna == 1
