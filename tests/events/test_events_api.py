"""Member events: batches stored once per event_id, rejected one by one, dispatched to the earning rule."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from server.events.models import MemberEvent
from server.ledger.models import LedgerEntry
from tests.support import unique

# Balances here are this domain's own: no quest rewards for what the tests do.
pytestmark = pytest.mark.usefixtures("no_quests")

NOW = datetime.now(UTC).isoformat()


def purchase(member_id: str, amount: float, event_id: str | None = None) -> dict:
    return {
        "event_id": event_id or unique("ev"),
        "member_id": member_id,
        "type": "purchase",
        "occurred_at": NOW,
        "properties": {"amount": amount, "category": "shoes"},
    }


async def test_purchase_earns_points_and_growth(http, as_brand, as_member, member_id):
    r = await http.post("/v1/events", json={"events": [purchase(member_id, 42.9)]}, headers=as_brand)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "duplicates": 0, "rejected": [], "duplicate_event_ids": []}
    me = (await http.get("/v1/me", headers=as_member(member_id))).json()
    assert (me["points"], me["growth"]) == (42, 42)  # one per currency unit, fractions round down
    entries = (await http.get("/v1/ledger", headers=as_member(member_id))).json()["entries"]
    assert {e["details"]["rule"] for e in entries} == {"earning.purchase"}


async def test_repeated_event_id_is_a_duplicate_not_an_error(http, as_brand, as_member, member_id):
    event = purchase(member_id, 10)
    first = await http.post("/v1/events", json={"events": [event, event]}, headers=as_brand)
    assert first.json()["accepted"] == 1 and first.json()["duplicates"] == 1
    again = await http.post("/v1/events", json={"events": [event]}, headers=as_brand)
    assert again.status_code == 200
    assert again.json() == {
        "accepted": 0,
        "duplicates": 1,
        "rejected": [],
        "duplicate_event_ids": [event["event_id"]],
    }
    me = (await http.get("/v1/me", headers=as_member(member_id))).json()
    assert me["points"] == 10


async def test_concurrent_deliveries_of_one_event_award_once(http, as_brand, as_member, member_id):
    event = purchase(member_id, 25)
    results = await asyncio.gather(
        *(http.post("/v1/events", json={"events": [event]}, headers=as_brand) for _ in range(20))
    )
    assert sum(r.json()["accepted"] for r in results) == 1
    me = (await http.get("/v1/me", headers=as_member(member_id))).json()
    assert me["points"] == 25


async def test_malformed_events_are_rejected_one_by_one(http, as_brand, as_member, member_id, ctx):
    good = purchase(member_id, 5)
    bad = [
        "not an object",
        {**purchase(member_id, 1), "event_id": ""},
        {**purchase(member_id, 1), "member_id": "bad id with spaces"},
        {**purchase(member_id, 1), "type": "Not A Type"},
        {**purchase(member_id, 1), "occurred_at": "yesterday"},
        {**purchase(member_id, 1), "occurred_at": "2026-11-24T10:00:00"},
        {**purchase(member_id, 1), "occurred_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()},
        {**purchase(member_id, 1), "properties": [1, 2]},
        {**purchase(member_id, 1), "properties": {"amount": "12"}},
        {**purchase(member_id, 1), "properties": {"amount": -3}},
        {**purchase(member_id, 1), "surprise": True},
        {
            **purchase(member_id, 1),
            "type": "member.timezone_changed",
            "properties": {"timezone": "Mars/Base"},
        },
        {**purchase(member_id, 1), "occurred_at": "0001-01-01T00:00:00+14:00"},
    ]
    r = await http.post("/v1/events", json={"events": [good, *bad]}, headers=as_brand)
    assert r.status_code == 200
    out = r.json()
    assert out["accepted"] == 1
    codes = [(x["index"], x["code"]) for x in out["rejected"]]
    assert codes == [
        (1, "invalid_event"),
        (2, "invalid_event_id"),
        (3, "invalid_member_id"),
        (4, "invalid_type"),
        (5, "invalid_occurred_at"),
        (6, "invalid_occurred_at"),
        (7, "occurred_in_future"),
        (8, "invalid_properties"),
        (9, "invalid_properties"),
        (10, "invalid_properties"),
        (11, "unknown_field"),
        (12, "reserved_type"),
        (13, "invalid_occurred_at"),
    ]
    assert all(x["reason"] for x in out["rejected"])
    async with ctx.db.session() as session:
        stored = (
            (await session.execute(sa.select(MemberEvent.event_id).where(MemberEvent.member_id == member_id)))
            .scalars()
            .all()
        )
    assert stored == [good["event_id"]]


async def test_batch_shape_and_size(http, as_brand, settings):
    for body in ([], {"events": "x"}, {"nope": []}):
        r = await http.post("/v1/events", json=body, headers=as_brand)
        assert r.status_code == 400 and r.json()["code"] == "invalid_batch"
    r = await http.post(
        "/v1/events", content=b"{not json", headers={**as_brand, "content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_json"
    too_many = {"events": [purchase("m-x", 1) for _ in range(settings.events_batch_max + 1)]}
    r = await http.post("/v1/events", json=too_many, headers=as_brand)
    assert r.status_code == 413 and r.json()["code"] == "batch_too_large"


async def test_full_batch_of_1000(http, as_brand, ctx):
    members = [unique("bulk") for _ in range(10)]
    for m in members:
        assert (await http.put(f"/v1/members/{m}", json={}, headers=as_brand)).status_code == 201
    events = [purchase(members[i % 10], 1) for i in range(1000)]
    r = await http.post("/v1/events", json={"events": events}, headers=as_brand)
    assert r.status_code == 200 and r.json()["accepted"] == 1000
    async with ctx.db.session() as session:
        earned = dict(
            (
                await session.execute(
                    sa.select(LedgerEntry.member_id, sa.func.sum(LedgerEntry.amount))
                    .where(
                        LedgerEntry.member_id.in_(members),
                        LedgerEntry.currency == "points",
                        LedgerEntry.source == "purchase",
                    )
                    .group_by(LedgerEntry.member_id)
                )
            ).all()
        )
    # 100 purchases of 1 each: the demo's third purchase of the week earns x3.
    assert earned == dict.fromkeys(members, 102)


async def test_an_event_for_an_unknown_member_is_rejected_alone(http, as_brand, as_member, member_id, ctx):
    stranger = unique("stranger")
    events = [purchase(member_id, 10), purchase(stranger, 10), purchase(member_id, 5), purchase(stranger, 1)]
    r = await http.post("/v1/events", json={"events": events}, headers=as_brand)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["duplicates"]) == (2, 0)
    assert [(x["index"], x["event_id"], x["code"]) for x in body["rejected"]] == [
        (1, events[1]["event_id"], "member_not_found"),
        (3, events[3]["event_id"], "member_not_found"),
    ]
    assert stranger in body["rejected"][0]["reason"]
    # No member was made, and nothing of the stranger's was stored.
    r = await http.get(f"/v1/members/{stranger}", headers=as_brand)
    assert r.status_code == 404 and r.json()["code"] == "member_not_found"
    async with ctx.db.session() as session:
        stored = (
            await session.execute(sa.select(sa.func.count()).where(MemberEvent.member_id == stranger))
        ).scalar_one()
    assert stored == 0
    assert (await http.get("/v1/me", headers=as_member(member_id))).json()["points"] == 15
    # Once the brand creates the member, the same event is taken.
    assert (await http.put(f"/v1/members/{stranger}", json={}, headers=as_brand)).status_code == 201
    r = await http.post("/v1/events", json={"events": [events[1]]}, headers=as_brand)
    assert r.json()["accepted"] == 1


async def test_every_brand_endpoint_refuses_an_unknown_member(http, as_brand):
    stranger = unique("stranger")
    calls = [
        ("POST", f"/v1/members/{stranger}/points", {"amount": 5, "reason": "x", "idempotency_key": "k"}),
        ("POST", f"/v1/members/{stranger}/ledger/1/reversal", {"reason": "x"}),
        ("PUT", f"/v1/members/{stranger}/friends", {"friends": []}),
        ("GET", f"/v1/members/{stranger}/friends", None),
        ("GET", f"/v1/members/{stranger}", None),
        ("POST", f"/v1/members/{stranger}/badges", {"badge_id": "founding-member", "idempotency_key": "k"}),
    ]
    for method, url, body in calls:
        r = await http.request(method, url, json=body, headers=as_brand)
        assert (r.status_code, r.json()["code"]) == (404, "member_not_found"), (url, r.text)
    r = await http.get(f"/v1/members/{stranger}", headers=as_brand)
    assert r.status_code == 404, "no call made the member"


async def test_events_need_an_api_key(http, as_member, member_id):
    r = await http.post("/v1/events", json={"events": []})
    assert r.status_code == 401 and r.json()["code"] == "missing_api_key"
    r = await http.post("/v1/events", json={"events": []}, headers={"X-Api-Key": "ek_000000000000_nope"})
    assert r.status_code == 401 and r.json()["code"] == "invalid_api_key"
    r = await http.post("/v1/events", json={"events": []}, headers=as_member(member_id))
    assert r.status_code == 401


async def test_the_catalogue_decides_types_and_property_types(http, as_brand, ctx, member_id):
    """Types not in content/events.yaml, and properties of the wrong type, are refused one by one."""

    def ev(type_: str, **properties: object) -> dict:
        return {
            "event_id": unique("ev"),
            "member_id": member_id,
            "type": type_,
            "occurred_at": NOW,
            "properties": properties,
        }

    batch = [
        ev("review_posted", rating=4),
        ev("reviews_posted", rating=4),  # a typo of a type
        ev("review_posted", rating="great"),
        ev("review_posted", rating=4.5),
        ev("review_posted", rating=9),
        ev("purchase", amount=10, channel="fax"),  # not one of the channel's values
        ev("product_viewed"),  # its category is required
        ev("store_visit", store_id=12),
        ev("purchase", amount=10**400),
        ev("share", network="chat", extra={"kept": True}),  # undeclared properties are kept as sent
    ]
    out = (await http.post("/v1/events", json={"events": batch}, headers=as_brand)).json()
    assert out["accepted"] == 2
    assert [(x["index"], x["code"]) for x in out["rejected"]] == [
        (1, "unknown_type"),
        (2, "invalid_properties"),
        (3, "invalid_properties"),
        (4, "invalid_properties"),
        (5, "invalid_properties"),
        (6, "invalid_properties"),
        (7, "invalid_properties"),
        (8, "invalid_properties"),
    ]
    reasons = [x["reason"] for x in out["rejected"]]
    assert "`reviews_posted` is not an event type" in reasons[0]
    assert reasons[1:] == [
        "`rating` is a number.",
        "`rating` is a whole number.",
        "`rating` is at most 5.",
        "`channel` is one of online, store, app.",
        "`category` is required.",
        "`store_id` is a string.",
        "`amount` is beyond ±1,000,000,000,000,000.",
    ]
    async with ctx.db.session() as session:
        stored = set(
            (await session.execute(sa.select(MemberEvent.event_id).where(MemberEvent.member_id == member_id)))
            .scalars()
            .all()
        )
    assert stored == {batch[0]["event_id"], batch[-1]["event_id"]}
