"""The ledger through the HTTP API: awards, idempotency under concurrency, overspends, history."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from server.ledger.models import LedgerEntry
from tests.support import unique


async def create_member(http, as_brand, member_id: str, **fields) -> None:
    r = await http.put(f"/v1/members/{member_id}", json={"display_name": "Test", **fields}, headers=as_brand)
    assert r.status_code in (200, 201), r.text


async def test_award_and_balance(http, as_brand, as_member, member_id):
    await create_member(http, as_brand, member_id)
    r = await http.post(
        f"/v1/members/{member_id}/points",
        json={"amount": 40, "reason": "goodwill", "idempotency_key": "k-1"},
        headers=as_brand,
    )
    assert r.status_code == 200, r.text
    entry = r.json()
    assert entry["amount"] == 40 and entry["balance_after"] == 40 and entry["currency"] == "points"
    assert len(entry["hash"]) == 64
    me = (await http.get("/v1/me", headers=as_member(member_id))).json()
    assert me["points"] == 40 and me["growth"] == 0


async def test_same_key_200_times_at_once_gives_one_entry_and_one_answer(
    http, as_brand, as_member, member_id, ctx
):
    await create_member(http, as_brand, member_id)
    body = {"amount": 7, "reason": "launch gift", "idempotency_key": "launch"}

    async def send():
        return await http.post(f"/v1/members/{member_id}/points", json=body, headers=as_brand)

    responses = await asyncio.gather(*(send() for _ in range(200)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1  # the same answer, byte for byte
    assert sum(1 for r in responses if r.headers.get("idempotent-replayed") != "true") == 1
    async with ctx.db.session() as session:
        count = (
            await session.execute(
                sa.select(sa.func.count()).select_from(LedgerEntry).where(LedgerEntry.member_id == member_id)
            )
        ).scalar_one()
    assert count == 1
    me = (await http.get("/v1/me", headers=as_member(member_id))).json()
    assert me["points"] == 7


async def test_concurrent_distinct_awards_all_count(http, as_brand, as_member, member_id):
    await create_member(http, as_brand, member_id)

    async def send(i: int):
        return await http.post(
            f"/v1/members/{member_id}/points",
            json={"amount": 3, "reason": "task", "idempotency_key": f"task-{i}"},
            headers=as_brand,
        )

    responses = await asyncio.gather(*(send(i) for i in range(50)))
    assert {r.status_code for r in responses} == {200}
    balances = sorted(r.json()["balance_after"] for r in responses)
    assert balances == [3 * (i + 1) for i in range(50)]  # serialized: every balance seen once
    me = (await http.get("/v1/me", headers=as_member(member_id))).json()
    assert me["points"] == 150


async def test_key_reused_for_a_different_amount_is_refused(http, as_brand, member_id):
    await create_member(http, as_brand, member_id)
    url = f"/v1/members/{member_id}/points"
    assert (
        await http.post(url, json={"amount": 5, "reason": "a", "idempotency_key": "x"}, headers=as_brand)
    ).status_code == 200
    r = await http.post(url, json={"amount": 6, "reason": "a", "idempotency_key": "x"}, headers=as_brand)
    assert r.status_code == 409 and r.json()["code"] == "idempotency_key_reused"


async def test_overspend_is_refused_and_changes_nothing(http, as_brand, as_member, member_id):
    await create_member(http, as_brand, member_id)
    url = f"/v1/members/{member_id}/points"
    await http.post(url, json={"amount": 10, "reason": "earn", "idempotency_key": "e"}, headers=as_brand)
    r = await http.post(
        url, json={"amount": -11, "reason": "spend", "idempotency_key": "s"}, headers=as_brand
    )
    assert r.status_code == 409
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "insufficient_balance" and problem["balance"] == 10
    ok = await http.post(
        url, json={"amount": -10, "reason": "spend", "idempotency_key": "s2"}, headers=as_brand
    )
    assert ok.status_code == 200 and ok.json()["balance_after"] == 0
    ledger = (await http.get("/v1/ledger", headers=as_member(member_id))).json()
    assert [e["amount"] for e in ledger["entries"]] == [-10, 10]


async def test_concurrent_spends_never_go_below_zero(http, as_brand, as_member, member_id):
    await create_member(http, as_brand, member_id)
    url = f"/v1/members/{member_id}/points"
    await http.post(url, json={"amount": 100, "reason": "earn", "idempotency_key": "e"}, headers=as_brand)
    responses = await asyncio.gather(
        *(
            http.post(
                url, json={"amount": -30, "reason": "spend", "idempotency_key": f"s{i}"}, headers=as_brand
            )
            for i in range(10)
        )
    )
    assert sorted(r.status_code for r in responses) == [200] * 3 + [409] * 7
    me = (await http.get("/v1/me", headers=as_member(member_id))).json()
    assert me["points"] == 10


async def test_growth_is_not_spent(http, as_brand, member_id):
    await create_member(http, as_brand, member_id)
    url = f"/v1/members/{member_id}/points"
    await http.post(
        url,
        json={"amount": 10, "reason": "x", "idempotency_key": "g", "currency": "growth"},
        headers=as_brand,
    )
    r = await http.post(
        url,
        json={"amount": -20, "reason": "x", "idempotency_key": "g2", "currency": "growth"},
        headers=as_brand,
    )
    assert r.status_code == 409 and r.json()["code"] == "insufficient_balance"


async def test_bad_input_is_a_clear_4xx(http, as_brand, member_id):
    await create_member(http, as_brand, member_id)
    url = f"/v1/members/{member_id}/points"
    cases = [
        ({"amount": 0, "reason": "x", "idempotency_key": "k"}, 400, "invalid_amount"),
        ({"amount": "ten", "reason": "x", "idempotency_key": "k"}, 400, "validation_error"),
        ({"amount": 5, "reason": "", "idempotency_key": "k"}, 400, "invalid_reason"),
        ({"amount": 5, "reason": "x"}, 400, "validation_error"),
        ({"amount": 5, "reason": "x", "idempotency_key": "k", "currency": "gold"}, 400, "validation_error"),
        ({"amount": 5, "reason": "x", "idempotency_key": "k", "extra": 1}, 400, "validation_error"),
        ({"amount": 5, "reason": "x", "idempotency_key": "k", "source": "s" * 65}, 400, "validation_error"),
    ]
    for body, status, code in cases:
        r = await http.post(url, json=body, headers=as_brand)
        assert (r.status_code, r.json()["code"]) == (status, code), (body, r.text)
    r = await http.post(
        f"/v1/members/{unique('nobody')}/points",
        json={"amount": 5, "reason": "x", "idempotency_key": "k"},
        headers=as_brand,
    )
    assert r.status_code == 404 and r.json()["code"] == "member_not_found"


async def test_a_brand_labels_entries_from_its_own_sources_only(http, as_brand, as_member, member_id):
    await create_member(http, as_brand, member_id)
    url = f"/v1/members/{member_id}/points"
    # The server's own sources count by their own rules (referral growth weighs double on the ladder).
    for source in ("referral", "reversal", "quest", "expiry", "purchase", "checkin"):
        r = await http.post(
            url,
            json={"amount": 100, "reason": "x", "idempotency_key": f"s-{source}", "source": source},
            headers=as_brand,
        )
        assert (r.status_code, r.json()["code"]) == (400, "validation_error"), (source, r.text)
        assert [e["key"] for e in r.json()["errors"]] == ["source"]
    r = await http.post(
        url,
        json={"amount": -5, "reason": "x", "idempotency_key": "neg", "source": "promotion"},
        headers=as_brand,
    )
    assert (r.status_code, r.json()["code"]) == (400, "invalid_amount")
    given = {}
    for source in ("promotion", "service_recovery", None):
        body = {"amount": 100, "reason": "x", "idempotency_key": f"ok-{source}", "currency": "growth"}
        if source:
            body["source"] = source
        r = await http.post(url, json=body, headers=as_brand)
        assert r.status_code == 200, r.text
        given[source] = r.json()["source"]
    assert given == {"promotion": "promotion", "service_recovery": "service_recovery", None: "adjustment"}
    tiers = (await http.get("/v1/tiers", headers=as_member(member_id))).json()
    assert tiers["member"]["qualifying_growth"] == 300  # counted once each, in no doubled dimension
    r = await http.get("/schema/openapi.json")
    points_in = r.json()["components"]["schemas"]["PointsIn"]
    assert set(points_in["properties"]["source"]["enum"]) == {"adjustment", "promotion", "service_recovery"}


async def test_reversal_is_a_new_entry_once(http, as_brand, as_member, member_id):
    await create_member(http, as_brand, member_id)
    url = f"/v1/members/{member_id}/points"
    entry = (
        await http.post(url, json={"amount": 25, "reason": "oops", "idempotency_key": "o"}, headers=as_brand)
    ).json()
    rev_url = f"/v1/members/{member_id}/ledger/{entry['entry_id']}/reversal"
    first = await http.post(rev_url, json={"reason": "granted by mistake"}, headers=as_brand)
    again = await http.post(rev_url, json={"reason": "granted by mistake"}, headers=as_brand)
    assert first.status_code == again.status_code == 200
    assert first.json()["entry_id"] == again.json()["entry_id"]
    assert first.json()["amount"] == -25 and first.json()["reverses_entry_id"] == entry["entry_id"]
    me = (await http.get("/v1/me", headers=as_member(member_id))).json()
    assert me["points"] == 0
    r = await http.post(
        f"/v1/members/{member_id}/ledger/999999999/reversal", json={"reason": "x"}, headers=as_brand
    )
    assert r.status_code == 404 and r.json()["code"] == "entry_not_found"


async def test_ledger_pages_newest_first(http, as_brand, as_member, member_id):
    await create_member(http, as_brand, member_id)
    for i in range(5):
        await http.post(
            f"/v1/members/{member_id}/points",
            json={"amount": i + 1, "reason": f"r{i}", "idempotency_key": f"p{i}"},
            headers=as_brand,
        )
    page1 = (await http.get("/v1/ledger?limit=2", headers=as_member(member_id))).json()
    assert [e["amount"] for e in page1["entries"]] == [5, 4]
    page2 = (
        await http.get(f"/v1/ledger?limit=2&cursor={page1['next_cursor']}", headers=as_member(member_id))
    ).json()
    page3 = (
        await http.get(f"/v1/ledger?limit=2&cursor={page2['next_cursor']}", headers=as_member(member_id))
    ).json()
    assert [e["amount"] for e in page2["entries"]] == [3, 2]
    assert [e["amount"] for e in page3["entries"]] == [1] and page3["next_cursor"] is None
    bad = await http.get("/v1/ledger?cursor=zzz", headers=as_member(member_id))
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_cursor"
    bad = await http.get("/v1/ledger?limit=0", headers=as_member(member_id))
    assert bad.status_code == 400
    from server.ledger.service import encode_cursor

    huge = encode_cursor(99_999_999_999)
    bad = await http.get(f"/v1/ledger?cursor={huge}", headers=as_member(member_id))
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_cursor"
