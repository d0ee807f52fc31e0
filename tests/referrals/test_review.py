"""Fraud signals, held referrals and the managers' review; milestones once each under concurrency."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from server.admin.models import AuditRecord
from server.db import utcnow
from server.ledger import service as ledger
from server.ledger.earning import active_boosts
from server.ledger.models import LedgerEntry
from tests.referrals.support import (
    claim,
    member,
    mine,
    purchase,
    referral_entries,
    referral_of,
    rewards_of,
)
from tests.support import manager_token, unique
from tests.tasks.quest_support import deliver, event

pytestmark = pytest.mark.usefixtures("no_quests")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def held_list(http, token: str) -> list[dict]:
    r = await http.get("/v1/admin/referrals/held?limit=200", headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()["referrals"]


async def test_shared_ip_alone_does_not_hold(ctx, http, as_brand, as_member):
    """A family on one address: the score rises, the referral converts and pays."""
    mum = await member(http, as_brand)
    kid = await member(http, as_brand)
    code = (await mine(http, as_member(mum)))["code"]
    await purchase(ctx, mum, ip="203.0.113.77")
    r = await claim(http, as_brand, code, member_id=kid, ip="203.0.113.77", device_id=unique("dev"))
    assert r.status_code == 201
    found = await referral_of(ctx, kid)
    assert found.status == "claimed"
    assert [s["signal"] for s in found.risk_signals] == ["shared_ip"] and found.risk_score == 20
    await purchase(ctx, kid)
    assert (await referral_of(ctx, kid)).status == "converted"
    assert len(await referral_entries(ctx, mum)) == 2


async def test_held_referral_approved_pays_its_pending_rewards(ctx, http, as_brand, as_member):
    rita = await member(http, as_brand, name="Rita")
    fred = await member(http, as_brand, name="Fred")
    device = unique("dev")
    code = (await mine(http, as_member(rita)))["code"]
    await purchase(ctx, rita, device_id=device)  # Rita's own phone
    r = await claim(http, as_brand, code, member_id=fred, device_id=device)
    assert r.status_code == 201
    assert r.json()["status"] == "claimed"  # the member is not told their referral is held
    found = await referral_of(ctx, fred)
    assert found.status == "held" and found.risk_score >= 60
    assert "shared_device" in {s["signal"] for s in found.risk_signals}

    await purchase(ctx, fred)
    assert (await referral_of(ctx, fred)).status == "held"
    assert await referral_entries(ctx, rita) == [] and await referral_entries(ctx, fred) == []
    assert (await mine(http, as_member(rita)))["pending_rewards"] == {"points": 500, "growth": 100}

    viewer = await manager_token(ctx, role="viewer")
    editor = await manager_token(ctx, role="editor")
    listed = {x["friend_id"]: x for x in await held_list(http, viewer)}
    assert fred in listed
    item = listed[fred]
    assert item["referrer_id"] == rita and item["referrer_name"] == "Rita" and item["friend_name"] == "Fred"
    assert {w["status"] for w in item["rewards"]} == {"pending"} and item["converted_at"]

    r = await http.post(
        f"/v1/admin/referrals/{fred}/approve", json={"reason": "same family phone"}, headers=bearer(viewer)
    )
    assert (r.status_code, r.json()["code"]) == (403, "forbidden_role")
    r = await http.post(f"/v1/admin/referrals/{fred}/approve", json={"reason": ""}, headers=bearer(editor))
    assert (r.status_code, r.json()["code"]) == (400, "invalid_reason")
    r = await http.post(
        f"/v1/admin/referrals/{fred}/approve", json={"reason": "same family phone"}, headers=bearer(editor)
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "converted" and r.json()["review_reason"] == "same family phone"
    assert [a for _, a, _ in await referral_entries(ctx, rita)] == [500, 100]
    assert [a for _, a, _ in await referral_entries(ctx, fred)] == [250]
    again = await http.post(
        f"/v1/admin/referrals/{fred}/approve", json={"reason": "twice"}, headers=bearer(editor)
    )
    assert (again.status_code, again.json()["code"]) == (409, "referral_not_held")
    assert fred not in {x["friend_id"] for x in await held_list(http, viewer)}
    async with ctx.db.session() as session:
        rec = (
            await session.execute(sa.select(AuditRecord).where(AuditRecord.target == f"member:{fred}"))
        ).scalar_one()
    assert (
        rec.action == "referral.approve"
        and rec.actor.startswith("manager:")
        and rec.reason == "same family phone"
    )
    async with ctx.db.session() as session:
        assert [b["key"] for b in await active_boosts(session, rita)] == [f"referral:{fred}"]


async def test_rejected_referrals_pay_nothing_and_take_back_what_was_paid(ctx, http, as_brand, as_member):
    rita = await member(http, as_brand, name="Rita")
    card = unique("card")
    code = (await mine(http, as_member(rita)))["code"]
    await purchase(ctx, rita, payment_fingerprint=card)
    editor = await manager_token(ctx, role="editor")

    # Held at conversion: the friend's order paid with Rita's card. Rejected: nothing is paid.
    fake = await member(http, as_brand)
    assert (await claim(http, as_brand, code, member_id=fake)).status_code == 201
    assert (await referral_of(ctx, fake)).status == "claimed"
    await purchase(ctx, fake, payment_fingerprint=card)
    assert (await referral_of(ctx, fake)).status == "held"
    r = await http.post(
        f"/v1/admin/referrals/{fake}/reject", json={"reason": "her own card"}, headers=bearer(editor)
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "rejected" and r.json()["undone"]["dropped"] == 3
    assert await referral_entries(ctx, rita) == [] and await referral_entries(ctx, fake) == []
    assert {w.status for w in await rewards_of(ctx, rita)} == {"dropped"}
    await purchase(ctx, fake)  # a rejected referral never converts again
    assert await referral_entries(ctx, rita) == []

    # Paid, then new evidence holds it: rejecting reverses both sides through the ledger.
    sly = await member(http, as_brand)
    assert (await claim(http, as_brand, code, member_id=sly)).status_code == 201
    await purchase(ctx, sly)
    assert (await referral_of(ctx, sly)).status == "converted"
    assert [a for _, a, _ in await referral_entries(ctx, rita)] == [500, 100]
    await purchase(ctx, sly, payment_fingerprint=card)
    assert (await referral_of(ctx, sly)).status == "held"
    r = await http.post(
        f"/v1/admin/referrals/{sly}/reject", json={"reason": "her own card again"}, headers=bearer(editor)
    )
    assert r.status_code == 200, r.text
    undone = r.json()["undone"]
    assert (undone["reversed_points"], undone["reversed_growth"]) == (750, 100)
    assert [a for _, a, _ in await referral_entries(ctx, rita)] == [500, 100, -500, -100]
    assert [a for _, a, _ in await referral_entries(ctx, sly)] == [250, -250]
    async with ctx.db.session() as session:
        assert await active_boosts(session, rita) == []
    assert (await mine(http, as_member(rita)))["earned_rewards"] == {"points": 0, "growth": 0}
    assert (await ledger.verify(ctx)).problems == []
    async with ctx.db.session() as session:
        actions = (
            (
                await session.execute(
                    sa.select(AuditRecord.action).where(
                        AuditRecord.target.in_([f"member:{fake}", f"member:{sly}"])
                    )
                )
            )
            .scalars()
            .all()
        )
    assert sorted(actions) == ["referral.reject", "referral.reject"]


async def test_bursts_of_claims_and_sign_ups_raise_the_score(ctx, http, as_brand, as_member):
    farmer = await member(http, as_brand)
    code = (await mine(http, as_member(farmer)))["code"]
    source = f"192.0.2.{len(unique())}"
    scores = []
    for _ in range(5):
        friend = await member(http, as_brand)
        assert (await claim(http, as_brand, code, member_id=friend, ip=source)).status_code == 201
        scores.append(await referral_of(ctx, friend))
    assert [r.status for r in scores] == ["claimed", "claimed", "claimed", "claimed", "held"]
    last = {s["signal"] for s in scores[-1].risk_signals}
    assert last == {"claim_burst", "signup_burst"}


async def test_milestones_paid_once_each_under_concurrent_conversions(ctx, http, as_brand, as_member):
    star = await member(http, as_brand, name="Star")
    code = (await mine(http, as_member(star)))["code"]
    friends = []
    for _ in range(10):
        f = await member(http, as_brand)
        assert (await claim(http, as_brand, code, member_id=f)).status_code == 201
        friends.append(f)
    for f in friends:  # the claim bursts held some; a manager clears them before anyone buys
        if (await referral_of(ctx, f)).status == "held":
            editor = await manager_token(ctx)
            r = await http.post(
                f"/v1/admin/referrals/{f}/approve", json={"reason": "launch party"}, headers=bearer(editor)
            )
            assert r.status_code == 200
    # Ten first purchases in ten dispatch runs at once, each run delivered twice.
    events = [event(f, "purchase", utcnow(), amount=40) for f in friends]
    await asyncio.gather(*(deliver(ctx, e) for e in events + events))
    async with ctx.db.session() as session:
        keys = (
            await session.execute(
                sa.select(LedgerEntry.idempotency_key, LedgerEntry.currency, LedgerEntry.amount).where(
                    LedgerEntry.member_id == star, LedgerEntry.idempotency_key.like("referral:milestone:%")
                )
            )
        ).all()
    assert sorted(keys) == sorted(
        [
            ("referral:milestone:10", "growth", 1000),
            ("referral:milestone:10", "points", 5000),
            ("referral:milestone:3", "growth", 200),
            ("referral:milestone:3", "points", 1000),
        ]
    )
    stats = await mine(http, as_member(star))
    assert stats["conversions"] == 10 and stats["next_milestone"] is None
    assert [m["reached"] for m in stats["milestones"]] == [True, True]
    assert stats["earned_rewards"] == {"points": 10 * 500 + 1000 + 5000, "growth": 10 * 100 + 200 + 1000}
    assert (await ledger.verify(ctx)).problems == []


async def test_rejection_below_a_milestone_takes_it_back(ctx, http, as_brand, as_member):
    star = await member(http, as_brand)
    code = (await mine(http, as_member(star)))["code"]
    card = unique("card")
    await purchase(ctx, star, payment_fingerprint=card)
    friends = [await member(http, as_brand) for _ in range(3)]
    for f in friends:
        assert (await claim(http, as_brand, code, member_id=f)).status_code == 201
        await purchase(ctx, f)
    assert {k for _, _, k in await referral_entries(ctx, star)} >= {"referral:milestone:3"}
    await purchase(ctx, friends[0], payment_fingerprint=card)  # evidence after payment
    editor = await manager_token(ctx)
    r = await http.post(
        f"/v1/admin/referrals/{friends[0]}/reject", json={"reason": "own card"}, headers=bearer(editor)
    )
    assert r.status_code == 200
    assert r.json()["undone"]["reversed_points"] == 750 + 1000
    stats = await mine(http, as_member(star))
    assert stats["conversions"] == 2 and [m["reached"] for m in stats["milestones"]] == [False, False]
    # A third good friend reaches the milestone again, paid under a new key.
    f4 = await member(http, as_brand)
    assert (await claim(http, as_brand, code, member_id=f4)).status_code == 201
    await purchase(ctx, f4)
    assert "referral:milestone:3:2" in {k for _, _, k in await referral_entries(ctx, star)}


async def test_reassign_by_a_manager(ctx, http, as_brand, as_member):
    wrong, right, friend = [await member(http, as_brand) for _ in range(3)]
    wrong_code = (await mine(http, as_member(wrong)))["code"]
    right_code = (await mine(http, as_member(right)))["code"]
    assert (await claim(http, as_member(friend), wrong_code)).status_code == 201
    editor = await manager_token(ctx)
    r = await http.put(
        f"/v1/admin/referrals/{friend}",
        json={"code": right_code, "reason": "support ticket 42"},
        headers=bearer(editor),
    )
    assert r.status_code == 200 and r.json()["referrer_id"] == right
    await purchase(ctx, friend)
    assert await referral_entries(ctx, wrong) == [] and len(await referral_entries(ctx, right)) == 2
    r = await http.put(
        f"/v1/admin/referrals/{friend}", json={"code": wrong_code, "reason": "again"}, headers=bearer(editor)
    )
    assert (r.status_code, r.json()["code"]) == (409, "referral_converted")
    r = await http.get("/v1/admin/referrals/held", headers=as_member(friend))
    assert r.status_code == 401


async def test_referrer_and_friends_buying_at_once_with_signals(ctx, http, as_brand, as_member):
    """Each run holds both sides of the referrals it touches up front: a referrer's purchase with a
    device and their friends' first purchases, all at once, end without a deadlock or a lost award."""
    star = await member(http, as_brand)
    code = (await mine(http, as_member(star)))["code"]
    friends = [await member(http, as_brand) for _ in range(6)]
    for f in friends:
        assert (await claim(http, as_brand, code, member_id=f)).status_code == 201
    editor = await manager_token(ctx)
    for f in friends:  # the claim burst held some: cleared before the purchases
        if (await referral_of(ctx, f)).status == "held":
            await http.post(f"/v1/admin/referrals/{f}/approve", json={"reason": "ok"}, headers=bearer(editor))
    runs = [event(f, "purchase", utcnow(), amount=40) for f in friends]
    runs += [event(star, "purchase", utcnow(), amount=15, device_id=unique("dev")) for _ in range(6)]
    await asyncio.gather(*(deliver(ctx, e) for e in runs))
    assert {(await referral_of(ctx, f)).status for f in friends} == {"converted"}
    stats = await mine(http, as_member(star))
    assert stats["conversions"] == 6 and [m["reached"] for m in stats["milestones"]] == [True, False]


async def test_raw_signals_are_never_stored(ctx, http, as_brand):
    buyer = await member(http, as_brand)
    r = await http.post(
        "/v1/events",
        json={
            "events": [
                {
                    "event_id": unique("ev"),
                    "member_id": buyer,
                    "type": "purchase",
                    "occurred_at": utcnow().isoformat(),
                    "properties": {"amount": 12, "device_id": "RAW-DEVICE-1", "ip": "198.51.100.10"},
                }
            ]
        },
        headers=as_brand,
    )
    assert r.json()["accepted"] == 1
    from server.events.models import MemberEvent

    async with ctx.db.session() as session:
        props = (
            await session.execute(sa.select(MemberEvent.properties).where(MemberEvent.member_id == buyer))
        ).scalar_one()
    assert props["amount"] == 12
    assert props["device_id"].startswith("h:") and "RAW-DEVICE-1" not in str(props)
    assert props["ip"].startswith("h:") and "198.51.100.10" not in str(props)


async def test_reassign_refused_once_converted_and_bad_admin_input(ctx, http, as_brand, as_member):
    old, new, friend = [await member(http, as_brand) for _ in range(3)]
    device = unique("dev")
    old_code = (await mine(http, as_member(old)))["code"]
    new_code = (await mine(http, as_member(new)))["code"]
    await purchase(ctx, old, device_id=device)
    assert (await claim(http, as_brand, old_code, member_id=friend, device_id=device)).status_code == 201
    await purchase(ctx, friend)  # converted while held: its rewards are set, pending
    editor = await manager_token(ctx)
    r = await http.put(
        f"/v1/admin/referrals/{friend}",
        json={"code": new_code, "reason": "wrong code"},
        headers=bearer(editor),
    )
    assert (r.status_code, r.json()["code"]) == (409, "referral_converted")
    for path, status, code in (
        ("/v1/admin/referrals/a%00b/approve", 400, "control_character"),
        ("/v1/admin/referrals/no%20such/reject", 400, "invalid_member_id"),
        (f"/v1/admin/referrals/{unique('nobody')}/approve", 404, "referral_not_found"),
        (f"/v1/admin/referrals/{unique('nobody')}/reject", 404, "referral_not_found"),
    ):
        r = await http.post(path, json={"reason": "x"}, headers=bearer(editor))
        assert (r.status_code, r.json()["code"]) == (status, code), (path, r.text)
    r = await http.get("/v1/admin/referrals/held?cursor=a%00b", headers=bearer(editor))
    assert (r.status_code, r.json()["code"]) == (400, "control_character")
    r = await http.post(
        f"/v1/admin/referrals/{friend}/approve", json={"reason": "a\x00b"}, headers=bearer(editor)
    )
    assert (r.status_code, r.json()["code"]) == (400, "validation_error")
    r = await http.put(
        "/v1/referrals/me/code", json={"code": "a-b-c-d-e-f-g-h-i-j-k-m-n-p-q-r-s-t"}, headers=as_member(old)
    )
    assert (r.status_code, r.json()["code"]) == (400, "invalid_code")
    assert (await referral_of(ctx, friend)).status == "held"


async def test_held_after_payment_then_approved_keeps_milestones(ctx, http, as_brand, as_member):
    star = await member(http, as_brand)
    code = (await mine(http, as_member(star)))["code"]
    card = unique("card")
    await purchase(ctx, star, payment_fingerprint=card)
    friends = [await member(http, as_brand) for _ in range(4)]
    for f in friends:
        assert (await claim(http, as_brand, code, member_id=f)).status_code == 201
        await purchase(ctx, f)
    for f in friends[:2]:  # evidence after payment holds two of them
        await purchase(ctx, f, payment_fingerprint=card)
        assert (await referral_of(ctx, f)).status == "held"
    editor = await manager_token(ctx)
    r = await http.post(
        f"/v1/admin/referrals/{friends[0]}/reject", json={"reason": "card"}, headers=bearer(editor)
    )
    assert r.status_code == 200
    r = await http.post(
        f"/v1/admin/referrals/{friends[1]}/approve", json={"reason": "fine"}, headers=bearer(editor)
    )
    assert r.status_code == 200
    stats = await mine(http, as_member(star))
    assert stats["conversions"] == 3 and [m["reached"] for m in stats["milestones"]] == [True, False]
    assert (await ledger.verify(ctx)).problems == []
