"""Friend quests through the HTTP API and the real dispatch: invitations and their refusals, one
shared total from both members' events, and the same reward for both, once, under replays and
parallel units of work."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from server.content.loader import read_files, validate_files
from server.context import Context
from server.db import utcnow
from server.ledger.models import LedgerEntry
from tests.support import ROOT, pinned
from tests.tasks.quest_support import deliver, event
from tests.teams.support import handle_of, member, problem

QUESTS = [
    {
        "id": "duo-orders",
        "name": "Six orders together",
        "goal": {"event": "purchase", "count": 6},
        "period": "weekly",
        "zone": "Europe/Paris",
        "reward": {"points": 70, "growth": 7},
    },
    {
        "id": "duo-spend",
        "name": "Spend 100 together",
        "goal": {"event": "purchase", "sum": "amount", "target": 100},
        "period": "weekly",
        "zone": "UTC",
        "reward": {"points": 30},
    },
]


@contextlib.contextmanager
def serving_friend_quests(ctx: Context) -> Iterator[None]:
    files = read_files(ROOT / "content")
    teams = yaml.safe_load(files["teams.yaml"])
    teams["friend_quests"] = QUESTS
    files["teams.yaml"] = yaml.safe_dump(teams, sort_keys=False)
    store, issues = validate_files(files, "test")
    assert not issues, "\n".join(map(str, issues))
    before = ctx.content
    ctx.content = pinned(ctx, store)
    try:
        yield
    finally:
        ctx.content = before


pytestmark = pytest.mark.usefixtures("quests_of_friends")


@pytest.fixture
def quests_of_friends(ctx: Context) -> Iterator[None]:
    with serving_friend_quests(ctx):
        yield


async def invite(http: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    return await http.post("/v1/friend-quests", json=body, headers=headers)


async def pairs(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    r = await http.get("/v1/friend-quests", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def paid(ctx: Context, member_id: str) -> list[tuple[str, int, str]]:
    async with ctx.db.session() as session:
        rows = await session.execute(
            sa.select(LedgerEntry.currency, LedgerEntry.amount, LedgerEntry.idempotency_key)
            .where(LedgerEntry.member_id == member_id, LedgerEntry.source == "friend_quest")
            .order_by(LedgerEntry.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def paired(
    http: httpx.AsyncClient, as_brand: dict[str, str], as_member: Any, quest_id: str = "duo-orders"
) -> tuple[str, str, str]:
    anna, ben = await member(http, as_brand, "Anna"), await member(http, as_brand, "Ben")
    r = await invite(http, as_member(anna), quest_id=quest_id, handle=await handle_of(http, as_member(ben)))
    assert r.status_code == 201, r.text
    pair_id = r.json()["pair_id"]
    r = await http.post(f"/v1/friend-quests/{pair_id}/accept", headers=as_member(ben))
    assert r.status_code == 200, r.text
    return anna, ben, pair_id


async def test_both_members_count_to_one_bar_and_both_are_paid_once(ctx, http, as_brand, as_member):
    anna, ben = await member(http, as_brand, "Anna"), await member(http, as_brand, "Ben")
    r = await invite(
        http, as_member(anna), quest_id="duo-orders", handle=await handle_of(http, as_member(ben))
    )
    assert r.status_code == 201, r.text
    invited = r.json()
    assert (
        invited["status"] == "invited" and invited["invited_by_me"] is True and len(invited["members"]) == 1
    )
    pair_id = invited["pair_id"]
    # Ben sees the invitation; Anna's purchase before he accepts does not count.
    mine = await pairs(http, as_member(ben))
    assert [p["pair_id"] for p in mine["pairs"]] == [pair_id] and mine["pairs"][0]["invited_by_me"] is False
    await deliver(ctx, event(anna, "purchase", utcnow(), amount=10))
    r = await http.post(f"/v1/friend-quests/{pair_id}/accept", headers=as_member(ben))
    assert r.status_code == 200 and r.json()["status"] == "active", r.text

    evs = [event(anna, "purchase", utcnow(), amount=10) for _ in range(2)]
    evs += [event(ben, "purchase", utcnow(), amount=10) for _ in range(3)]
    await deliver(ctx, *evs)
    view = (await pairs(http, as_member(anna)))["pairs"][0]
    assert (view["progress"], view["target"], view["status"]) == (5, 6, "active")
    assert [(m["contribution"], m["is_me"]) for m in view["members"]] == [(2, True), (3, False)]
    assert [m["display_name"] for m in view["members"]] == ["Anna", "Ben"]
    assert view["remaining_text"] and view["ends_at"] is not None

    last = event(ben, "purchase", utcnow(), amount=10)
    await deliver(ctx, last)
    await deliver(ctx, last, event(anna, "purchase", utcnow(), amount=10))  # a replay, then one more
    view = (await pairs(http, as_member(ben)))["pairs"][0]
    assert (view["progress"], view["status"]) == (6, "completed")
    assert [m["contribution"] for m in view["members"]] == [2, 4]
    for m in (anna, ben):
        assert await paid(ctx, m) == [
            ("points", 70, f"friend_quest:{pair_id}"),
            ("growth", 7, f"friend_quest:{pair_id}"),
        ]
    offers = {q["quest_id"]: q for q in (await pairs(http, as_member(anna)))["quests"]}
    assert offers["duo-orders"]["paired"] is True and offers["duo-spend"]["paired"] is False


async def test_one_pairing_per_quest_and_period_and_the_other_refusals(ctx, http, as_brand, as_member):
    anna, ben, pair_id = await paired(http, as_brand, as_member)
    cleo, dan = await member(http, as_brand), await member(http, as_brand)
    r = await invite(
        http, as_member(anna), quest_id="duo-orders", handle=await handle_of(http, as_member(cleo))
    )
    problem(r, 409, "already_paired")
    assert r.json()["pair_id"] == pair_id
    # Cleo invites Ben, who is paired on this quest already: he cannot accept.
    r = await invite(
        http, as_member(cleo), quest_id="duo-orders", handle=await handle_of(http, as_member(ben))
    )
    assert r.status_code == 201
    cleos = r.json()["pair_id"]
    problem(
        await http.post(f"/v1/friend-quests/{cleos}/accept", headers=as_member(ben)), 409, "already_paired"
    )
    problem(
        await http.post(f"/v1/friend-quests/{cleos}/accept", headers=as_member(cleo)),
        403,
        "cannot_pair_with_yourself",
    )
    problem(await http.post(f"/v1/friend-quests/{cleos}/accept", headers=as_member(dan)), 403, "not_invited")
    problem(
        await http.post(f"/v1/friend-quests/{pair_id}/accept", headers=as_member(dan)), 403, "not_invited"
    )
    problem(
        await http.post("/v1/friend-quests/" + "q" * 16 + "/accept", headers=as_member(dan)),
        404,
        "friend_quest_not_found",
    )
    problem(await invite(http, as_member(dan), quest_id="nope"), 404, "friend_quest_not_found")
    problem(
        await invite(http, as_member(dan), quest_id="duo-orders", handle="no-such-handle"),
        404,
        "member_not_found",
    )
    problem(await invite(http, as_member(dan), quest_id="duo-orders", friend_id=cleo), 403, "not_a_friend")
    problem(
        await invite(
            http, as_member(dan), quest_id="duo-orders", handle=await handle_of(http, as_member(dan))
        ),
        400,
        "cannot_pair_with_yourself",
    )
    # Cleo withdraws her invitation, and may then invite a friend of hers by id.
    r = await http.post(f"/v1/friend-quests/{cleos}/decline", headers=as_member(cleo))
    assert r.status_code == 200 and r.json()["status"] == "declined"
    problem(
        await http.post(f"/v1/friend-quests/{cleos}/accept", headers=as_member(ben)), 409, "invitation_closed"
    )
    r = await http.put(f"/v1/members/{cleo}/friends", json={"friends": [dan]}, headers=as_brand)
    assert r.status_code == 200, r.text
    r = await invite(http, as_member(cleo), quest_id="duo-orders", friend_id=dan)
    assert r.status_code == 201, r.text
    # An open invitation (nobody named): whoever has its id may accept.
    eve = await member(http, as_brand)
    r = await invite(http, as_member(dan), quest_id="duo-spend")
    assert r.status_code == 201
    r = await http.post(f"/v1/friend-quests/{r.json()['pair_id']}/accept", headers=as_member(eve))
    assert r.status_code == 200 and r.json()["status"] == "active"


async def test_an_invitation_of_a_period_that_is_over_cannot_be_accepted(ctx, http, as_brand, as_member):
    from server.teams.models import FriendQuestPair

    anna, ben = await member(http, as_brand), await member(http, as_brand)
    r = await invite(http, as_member(anna), quest_id="duo-orders")
    pair_id = r.json()["pair_id"]
    async with ctx.db.transaction() as session:
        await session.execute(
            sa.update(FriendQuestPair).where(FriendQuestPair.id == pair_id).values(period="2020-W01")
        )
    problem(
        await http.post(f"/v1/friend-quests/{pair_id}/accept", headers=as_member(ben)),
        410,
        "invitation_expired",
    )


async def test_parallel_events_of_both_members_add_up_exactly_and_pay_once(ctx, http, as_brand, as_member):
    anna, ben, pair_id = await paired(http, as_brand, as_member, "duo-spend")
    now = utcnow()
    # 30 purchases of 5 from each side, in 12 units of work at once: 300 in all, target 100.
    evs = [
        event(m, "purchase", now + timedelta(milliseconds=i), amount=5)
        for i in range(30)
        for m in (anna, ben)
    ]
    await asyncio.gather(*(deliver(ctx, *evs[i::12]) for i in range(12)))
    view = (await pairs(http, as_member(anna)))["pairs"][0]
    assert view["status"] == "completed" and view["progress"] == 100
    assert sum(m["contribution"] for m in view["members"]) == 100
    for m in (anna, ben):
        assert await paid(ctx, m) == [("points", 30, f"friend_quest:{pair_id}")]
