"""Check-ins over HTTP, as the member app plays them."""

from __future__ import annotations

import asyncio
import json

import pytest

# Balances here are this domain's own: no quest rewards for what the tests do.
pytestmark = pytest.mark.usefixtures("no_quests")


async def test_check_in_twice_and_the_calendar(http, as_member, member_id, ctx):
    headers = as_member(member_id)
    results = await asyncio.gather(*(http.post("/v1/checkins", headers=headers) for _ in range(10)))
    assert {r.status_code for r in results} == {200}
    bodies = [r.json() for r in results]
    assert sum(not b["already_checked_in"] for b in bodies) == 1
    first = next(b for b in bodies if not b["already_checked_in"])
    assert first["streak"] == 1 and first["cycle_day"] == 1 and first["reward"]["points"] > 0
    again = (await http.post("/v1/checkins", headers=headers)).json()
    assert again["already_checked_in"] and again["date"] == first["date"]
    me = (await http.get("/v1/me", headers=headers)).json()
    assert me["streak"] == 1 and me["points"] == first["reward"]["points"]
    cal = (await http.get("/v1/checkins", headers=headers)).json()
    assert cal["checked_in_today"] and cal["days"][-1] == {"date": first["date"], "status": "checked_in"}
    assert cal["next_reward"]["cycle_day"] == 2
    month = first["date"][:7]
    assert (await http.get(f"/v1/checkins?month={month}", headers=headers)).json()["month"] == month
    types = [json.loads(m)["type"] for _, m in await ctx.hub.history(member_id, "0-0")]
    assert {"checkin.completed", "streak.updated", "points.awarded", "growth.awarded"} <= set(types)


async def test_bad_requests_change_nothing(http, as_member, member_id):
    headers = as_member(member_id)
    for month in ("2026-13", "26-11", "november", "2026-1", "9999-01"):
        r = await http.get(f"/v1/checkins?month={month}", headers=headers)
        assert r.status_code == 400 and r.json()["code"] == "invalid_month", month
    r = await http.post("/v1/streak/freezes", headers=headers)
    assert r.status_code == 409 and r.json()["code"] == "insufficient_points"
    r = await http.post("/v1/streak/repair", headers=headers)
    assert r.status_code == 409 and r.json()["code"] == "nothing_to_repair"
    r = await http.post("/v1/checkins/makeup", json={"date": "2999-01-01"}, headers=headers)
    assert r.status_code == 400 and r.json()["code"] == "makeup_not_in_past"
    r = await http.post("/v1/checkins/makeup", json={"date": "yesterday"}, headers=headers)
    assert r.status_code == 400 and r.json()["code"] == "validation_error"
    me = (await http.get("/v1/me", headers=headers)).json()
    assert (me["points"], me["streak"]) == (0, 0)


async def test_freeze_purchase_with_idempotency_key(http, as_member, as_brand, member_id, ctx):
    from server.checkins.service import rules

    price = rules(ctx).freeze.price
    await http.put(f"/v1/members/{member_id}", json={}, headers=as_brand)
    await http.post(
        f"/v1/members/{member_id}/points",
        json={"amount": price * 2, "reason": "seed", "idempotency_key": "seed"},
        headers=as_brand,
    )
    headers = {**as_member(member_id), "Idempotency-Key": "buy-1"}
    first, second = [await http.post("/v1/streak/freezes", headers=headers) for _ in range(2)]
    assert first.status_code == second.status_code == 200
    assert first.json()["freezes_held"] == second.json()["freezes_held"] == 1
    me = (await http.get("/v1/me", headers=as_member(member_id))).json()
    assert me["points"] == price
