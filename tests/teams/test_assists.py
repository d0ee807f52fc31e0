"""Friend help through the HTTP API and the real dispatch: asking, helping, every refusal, the
quest step a help advances, the team goal it counts for, the ticket it pays, held helps, the
referral a new member's help makes (or not), parallel helpers, and the share link's page."""

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
from server.referrals.models import Referral
from server.teams.models import Assist, AssistHelp
from tests.e2e.helpers import live
from tests.support import ROOT, manager_token, pinned, unique
from tests.teams.support import handle_of, make_team, member, problem

HELP_GOAL = {
    "id": "squad-helping-hands",
    "kind": "squad",
    "name": "Help each other 10 times",
    "goal": {"event": "assist.helped", "count": 10, "where": "target == 'goal'"},
    "period": "weekly",
    "zone": "UTC",
    "milestones": [{"at": 100, "reward": {"points": 1}}],
}


def assist_content(**overrides: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "expiry_hours": 24,
        "helps_needed": 3,
        "daily_helps": 3,
        "helper_reward": {"points": 5, "growth": 1},
        "referral_claim": True,
        "quests": [
            {"quest": "weekly-spend", "progress": 10, "helps_needed": 3},
            {"quest": "first-week", "step": "check-in-3", "progress": 1, "helps_needed": 2},
        ],
        "goals": [{"goal": HELP_GOAL["id"], "helps_needed": 2}],
        "tickets": {"helps_needed": 5, "tickets": 2},
        "page": {"deep_link": "acme://assist/{code}"},
        **overrides,
    }


@contextlib.contextmanager
def serving_assists(ctx: Context, *, bursts: bool = False, **overrides: Any) -> Iterator[None]:
    """The repository's content with friend help as the tests set it (and a team goal of helps).
    Every member of the tests is new: the referral program's sign-up burst is set out of reach,
    unless `bursts` keeps the repository's."""
    files = read_files(ROOT / "content")
    teams = yaml.safe_load(files["teams.yaml"])
    teams["goals"] = [*teams.get("goals", []), HELP_GOAL]
    teams["assist"] = assist_content(**overrides)
    files["teams.yaml"] = yaml.safe_dump(teams, sort_keys=False)
    if not bursts:
        program = yaml.safe_load(files["referrals.yaml"])
        program["fraud"]["signup_burst"] = {"count": 100_000, "minutes": 60, "score": 35}
        files["referrals.yaml"] = yaml.safe_dump(program, sort_keys=False)
    store, issues = validate_files(files, "test")
    assert not issues, "\n".join(map(str, issues))
    before = ctx.content
    ctx.content = pinned(ctx, store)
    try:
        yield
    finally:
        ctx.content = before


@pytest.fixture
def helping(ctx: Context) -> Iterator[None]:
    with serving_assists(ctx):
        yield


async def ask(http: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await http.post("/v1/assists", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def help_on(
    http: httpx.AsyncClient, headers: dict[str, str], assist_id: str, **body: Any
) -> httpx.Response:
    return await http.post(f"/v1/assists/{assist_id}/help", json=body, headers=headers)


async def entries(ctx: Context, member_id: str, source: str = "assist") -> list[tuple[str, int, str]]:
    async with ctx.db.session() as session:
        rows = await session.execute(
            sa.select(LedgerEntry.currency, LedgerEntry.amount, LedgerEntry.idempotency_key)
            .where(LedgerEntry.member_id == member_id, LedgerEntry.source == source)
            .order_by(LedgerEntry.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def quest(http: httpx.AsyncClient, headers: dict[str, str], quest_id: str) -> dict[str, Any]:
    r = await http.get(f"/v1/quests/{quest_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


pytestmark = pytest.mark.usefixtures("helping")


async def test_helps_advance_the_quest_step_and_pay_each_helper_once(ctx, http, as_brand, as_member):
    anna = await member(http, as_brand, "Anna")
    friends = [await member(http, as_brand) for _ in range(3)]
    a = await ask(http, as_member(anna), quest_id="weekly-spend")
    assert (a["status"], a["helps_needed"], a["helps"], a["helps_left"]) == ("open", 3, 0, 3)
    assert a["link"].endswith(f"/a/{a['assist_id']}") and len(a["assist_id"]) == 16
    assert a["what"] == "Spend 100 this week" and a["step_id"] == "weekly-spend" and a["mine"] is True
    assert a["asker"] == await handle_of(http, as_member(anna))

    async with live(ctx_ws(http), token_of(as_member(anna)), ignore=("points.", "growth.", "quest.")) as sock:
        for i, friend in enumerate(friends, 1):
            r = await help_on(http, as_member(friend), a["assist_id"])
            assert r.status_code == 200, r.text
            body = r.json()
            assert (body["status"], body["helps"], body["helps_left"]) == ("counted", i, 3 - i)
            assert body["reward"] == {"points": 5, "growth": 1}
        got = await sock.take(4)
    assert [m["type"] for m in got] == ["assist.received"] * 3 + ["assist.completed"]
    assert [m["data"]["helps_left"] for m in got[:3]] == [2, 1, 0]
    assert got[0]["data"]["helper"] == await handle_of(http, as_member(friends[0]))
    assert got[3]["data"]["assist_id"] == a["assist_id"]

    # Three helps of 10 each: the asker's weekly spend moved by 30, as if they had spent it.
    q = await quest(http, as_member(anna), "weekly-spend")
    assert (q["progress"], q["target"], q["status"]) == (30, 100, "active")
    for friend in friends:
        assert await entries(ctx, friend) == [
            ("points", 5, f"assist:{a['assist_id']}:helper"),
            ("growth", 1, f"assist:{a['assist_id']}:helper"),
        ]
    assert await entries(ctx, anna) == []  # a quest step's help pays no tickets

    view = (await http.get(f"/v1/assists/{a['assist_id']}", headers=as_member(friends[0]))).json()
    assert (view["status"], view["helps_left"], view["mine"], view["helped_by_me"]) == (
        "completed",
        0,
        False,
        True,
    )
    assert view["helpers"] == [await handle_of(http, as_member(f)) for f in friends]
    assert view["pending_helps"] is None  # only the asker sees helps held for review
    assert not any(f in str(view) for f in friends)  # handles, never member ids
    mine = (await http.get("/v1/assists", headers=as_member(anna))).json()["assists"]
    assert [m["assist_id"] for m in mine] == [a["assist_id"]] and mine[0]["pending_helps"] == 0


def ctx_ws(http: httpx.AsyncClient) -> str:
    return str(http.base_url).replace("http://", "ws://").rstrip("/")


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def test_a_chain_step_is_helped_to_done_and_the_next_step_opens(ctx, http, as_brand, as_member):
    anna = await member(http, as_brand)
    a = await ask(http, as_member(anna), quest_id="first-week", step_id="check-in-3")
    assert a["helps_needed"] == 2
    for _ in range(2):
        f = await member(http, as_brand)
        assert (await help_on(http, as_member(f), a["assist_id"])).status_code == 200
    steps = {s["step_id"]: s for s in (await quest(http, as_member(anna), "first-week"))["steps"]}
    assert steps["check-in-3"]["progress"] == 2 and steps["check-in-3"]["status"] == "active"
    # Another request on the same step while none is open; a step not allowed is refused.
    again = await ask(http, as_member(anna), quest_id="first-week")
    assert again["step_id"] == "check-in-3"
    r = await http.post(
        "/v1/assists", json={"quest_id": "first-week", "step_id": "complete-profile"}, headers=as_member(anna)
    )
    problem(r, 409, "help_not_allowed")


async def test_every_refusal_changes_nothing(ctx, http, as_brand, as_member):
    anna, ben, cleo, dan = [await member(http, as_brand) for _ in range(4)]
    a = await ask(http, as_member(anna), ticket=True)
    aid = a["assist_id"]

    problem(await help_on(http, as_member(anna), aid), 403, "cannot_help_yourself")
    assert (await help_on(http, as_member(ben), aid)).status_code == 200
    problem(await help_on(http, as_member(ben), aid), 409, "already_helped")
    problem(await help_on(http, as_member(ben), "x" * 16), 404, "assist_not_found")
    problem(await help_on(http, as_member(ben), "nope"), 404, "assist_not_found")
    problem(await http.get("/v1/assists/" + "y" * 16, headers=as_member(ben)), 404, "assist_not_found")
    # One open request per target per member.
    r = await http.post("/v1/assists", json={"ticket": True}, headers=as_member(anna))
    problem(r, 409, "assist_already_open")
    assert r.json()["assist_id"] == aid
    # The body names exactly one target.
    for body in (
        {},
        {"ticket": True, "quest_id": "weekly-spend"},
        {"step_id": "check-in-3"},
        {"ticket": False},
    ):
        problem(
            await http.post("/v1/assists", json=body, headers=as_member(anna)), 400, "invalid_assist_target"
        )
    problem(
        await http.post("/v1/assists", json={"quest_id": "nope"}, headers=as_member(anna)),
        404,
        "quest_not_found",
    )
    problem(
        await http.post("/v1/assists", json={"quest_id": "explorer"}, headers=as_member(anna)),
        409,
        "help_not_allowed",
    )
    problem(
        await http.post("/v1/assists", json={"goal_id": HELP_GOAL["id"]}, headers=as_member(anna)),
        409,
        "not_in_a_team",
    )
    problem(
        await http.post("/v1/assists", json={"goal_id": "nope"}, headers=as_member(anna)),
        404,
        "team_goal_not_found",
    )

    # Expired: refused with 410, and the share page says so.
    async with ctx.db.transaction() as session:
        await session.execute(
            sa.update(Assist).where(Assist.id == aid).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    problem(await help_on(http, as_member(cleo), aid), 410, "assist_expired")
    assert (await http.get(f"/a/{aid}")).status_code == 410
    assert (await http.get(f"/v1/assists/{aid}", headers=as_member(cleo))).json()["status"] == "expired"
    # An expired request no longer blocks a new one.
    b = await ask(http, as_member(anna), ticket=True)

    # Completed: refused with 409.
    for _ in range(5):
        f = await member(http, as_brand)
        assert (await help_on(http, as_member(f), b["assist_id"])).status_code == 200
    problem(await help_on(http, as_member(dan), b["assist_id"]), 409, "assist_completed")

    async with ctx.db.session() as session:
        rows = (
            (
                await session.execute(
                    sa.select(AssistHelp).where(AssistHelp.assist_id.in_([aid, b["assist_id"]]))
                )
            )
            .scalars()
            .all()
        )
    assert sorted((h.assist_id == aid, h.status) for h in rows) == [(False, "counted")] * 5 + [
        (True, "counted")
    ]
    assert await entries(ctx, cleo) == [] and await entries(ctx, dan) == []


async def test_daily_cap_counts_every_request_and_says_when_it_resets(ctx, http, as_brand, as_member):
    helper = await member(http, as_brand)
    askers = [await member(http, as_brand) for _ in range(4)]
    ids = [(await ask(http, as_member(m), ticket=True))["assist_id"] for m in askers]
    for n, aid in enumerate(ids[:3]):
        r = await help_on(http, as_member(helper), aid)
        assert r.status_code == 200 and r.json()["helps_left_today"] == 2 - n
    r = await help_on(http, as_member(helper), ids[3])
    problem(r, 429, "daily_help_limit")
    assert r.json()["resets_at"] > utcnow().isoformat() and int(r.headers["retry-after"]) > 0
    view = (await http.get(f"/v1/assists/{ids[3]}", headers=as_member(askers[3]))).json()
    assert view["helps"] == 0 and view["helpers"] == []
    assert len(await entries(ctx, helper)) == 6  # 3 helps: points and growth each


async def test_twenty_parallel_helpers_complete_a_request_exactly(ctx, http, as_brand, as_member):
    anna = await member(http, as_brand)
    a = await ask(http, as_member(anna), ticket=True)  # 5 helps needed
    helpers = [await member(http, as_brand) for _ in range(20)]
    answers = await asyncio.gather(*(help_on(http, as_member(h), a["assist_id"]) for h in helpers))
    ok = [h for h, r in zip(helpers, answers, strict=True) if r.status_code == 200]
    refused = [r for r in answers if r.status_code != 200]
    assert len(ok) == 5, [r.text for r in answers]
    assert all(r.status_code == 409 and r.json()["code"] == "assist_completed" for r in refused)
    assert sorted(r.json()["helps"] for r in answers if r.status_code == 200) == [1, 2, 3, 4, 5]
    view = (await http.get(f"/v1/assists/{a['assist_id']}", headers=as_member(anna))).json()
    assert (view["helps"], view["helps_left"], view["status"], len(view["helpers"])) == (5, 0, "completed", 5)
    for h in helpers:
        assert len(await entries(ctx, h)) == (2 if h in ok else 0)
    # The ticket request paid its tickets once, in the tickets currency.
    assert await entries(ctx, anna) == [("tickets", 2, f"assist:{a['assist_id']}:tickets")]
    me = (await http.get("/v1/me", headers=as_member(anna))).json()
    assert me["tickets"] == 2


async def test_helps_from_the_askers_device_are_held_then_reviewed(ctx, http, as_brand, as_member):
    anna, sock, puppet = [await member(http, as_brand) for _ in range(3)]
    a = await ask(http, as_member(anna), ticket=True, device_id="device-anna-1")
    aid = a["assist_id"]
    for helper in (sock, puppet):
        r = await help_on(http, as_member(helper), aid, device_id="device-anna-1")
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["status"], body["helps"], body["helps_left"], body["reward"]) == (
            "held",
            0,
            5,
            {"points": 0, "growth": 0},
        )
    assert await entries(ctx, sock) == []
    view = (await http.get(f"/v1/assists/{aid}", headers=as_member(anna))).json()
    assert (view["helps"], view["pending_helps"], view["helpers"]) == (0, 2, [])

    viewer, editor = await manager_token(ctx, role="viewer"), await manager_token(ctx, role="editor")
    queue = await http.get("/v1/admin/assists/held?limit=200", headers=bearer(editor))
    assert queue.status_code == 200, queue.text
    held = [h for h in queue.json()["helps"] if h["assist_id"] == aid]
    assert sorted(h["helper_id"] for h in held) == sorted([sock, puppet])
    assert {s["signal"] for s in held[0]["signals"]} >= {"shared_device"}
    review = f"/v1/admin/assists/{aid}/helps/{sock}"
    problem(
        await http.post(review + "/approve", json={"reason": "ok"}, headers=bearer(viewer)),
        403,
        "forbidden_role",
    )
    # Approved: it counts now, and the helper is paid; rejected: never.
    r = await http.post(review + "/approve", json={"reason": "a family's tablet"}, headers=bearer(editor))
    assert r.status_code == 200 and r.json()["status"] == "counted", r.text
    problem(
        await http.post(review + "/reject", json={"reason": "again"}, headers=bearer(editor)),
        409,
        "help_not_held",
    )
    r = await http.post(
        f"/v1/admin/assists/{aid}/helps/{puppet}/reject",
        json={"reason": "a second account"},
        headers=bearer(editor),
    )
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    view = (await http.get(f"/v1/assists/{aid}", headers=as_member(anna))).json()
    assert (view["helps"], view["pending_helps"]) == (1, 0)
    assert len(await entries(ctx, sock)) == 2 and await entries(ctx, puppet) == []


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_burst_of_new_accounts_helping_one_member_is_held(ctx, http, as_brand, as_member):
    statuses = []
    with serving_assists(ctx, bursts=True):
        anna = await member(http, as_brand)
        a = await ask(http, as_member(anna), ticket=True)
        for _ in range(5):
            newcomer = unique("new")  # a first token makes the member: a new account each time
            statuses.append((await help_on(http, as_member(newcomer), a["assist_id"])).json()["status"])
    # The referral program's sign-up burst (4 within an hour) holds the 4th new account on.
    assert statuses == ["counted", "counted", "counted", "held", "held"]


async def test_helps_count_for_a_team_goal_of_helps(ctx, http, as_brand, as_member):
    anna, ben, cleo = [await member(http, as_brand) for _ in range(3)]
    squad = await make_team(http, as_member(anna), "squad")
    a = await ask(http, as_member(anna), goal_id=HELP_GOAL["id"])
    assert (a["target"], a["goal_id"], a["helps_needed"]) == ("goal", HELP_GOAL["id"], 2)
    for f in (ben, cleo):
        assert (await help_on(http, as_member(f), a["assist_id"])).status_code == 200
    r = await http.get(f"/v1/teams/{squad['team_id']}/goals", headers=as_member(anna))
    assert r.status_code == 200, r.text
    goal = next(g for g in r.json()["goals"] if g["goal_id"] == HELP_GOAL["id"])
    assert goal["progress"] == 2 and goal["my_contribution"] == 2


@pytest.mark.parametrize("on", [True, False])
async def test_a_new_member_who_helps_is_a_referral_only_when_content_says_so(
    ctx, http, as_brand, as_member, on
):
    with serving_assists(ctx, referral_claim=on):
        anna = await member(http, as_brand)
        old_friend = await member(http, as_brand)  # a member before the request: no claim
        a = await ask(http, as_member(anna), ticket=True)
        newcomer = unique("new")
        assert (await help_on(http, as_member(old_friend), a["assist_id"])).json()[
            "referral_claimed"
        ] is False
        r = await help_on(http, as_member(newcomer), a["assist_id"])
        assert r.status_code == 200 and r.json()["referral_claimed"] is on
        async with ctx.db.session() as session:
            made = await session.get(Referral, newcomer)
            assert await session.get(Referral, old_friend) is None
        if on:
            assert made is not None and made.referrer_id == anna and made.claimed_by == "assist"
        else:
            assert made is None


async def test_the_share_link_opens_a_page_with_a_preview_card(ctx, http, as_brand, as_member):
    anna = await member(http, as_brand, "Anna")
    a = await ask(http, as_member(anna), quest_id="weekly-spend")
    page = await http.get(f"/a/{a['assist_id']}")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert '<meta property="og:title" content="Anna needs your help">' in page.text
    assert "3 more helps" in page.text and "Spend 100 this week" in page.text
    assert f'href="acme://assist/{a["assist_id"]}"' in page.text
    missing = await http.get("/a/" + "z" * 16)
    assert missing.status_code == 404 and "does not exist" in missing.text
    assert (await http.get("/a/bad")).status_code == 404


async def test_a_quest_helped_in_a_period_that_is_over_takes_nothing(ctx, http, as_brand, as_member):
    anna, ben = await member(http, as_brand), await member(http, as_brand)
    a = await ask(http, as_member(anna), quest_id="weekly-spend")
    async with ctx.db.transaction() as session:  # asked last week
        await session.execute(sa.update(Assist).where(Assist.id == a["assist_id"]).values(period="2020-W01"))
    assert (await help_on(http, as_member(ben), a["assist_id"])).status_code == 200
    assert (await quest(http, as_member(anna), "weekly-spend"))["progress"] == 0


async def test_an_approved_help_from_a_new_member_is_the_askers_referral(ctx, http, as_brand, as_member):
    """A newcomer's help held by the sign-up burst and then approved by a manager counts as the
    asker's referral, as it would have unheld; a rejected one does not."""
    with serving_assists(ctx, bursts=True):
        anna = await member(http, as_brand)
        a = await ask(http, as_member(anna), ticket=True)
        newcomers = [unique("new") for _ in range(5)]
        statuses = [(await help_on(http, as_member(n), a["assist_id"])).json()["status"] for n in newcomers]
        assert statuses == ["counted", "counted", "counted", "held", "held"]
        editor = await manager_token(ctx, role="editor")
        approved, rejected = newcomers[3], newcomers[4]
        r = await http.post(
            f"/v1/admin/assists/{a['assist_id']}/helps/{approved}/approve",
            json={"reason": "a real friend"},
            headers=bearer(editor),
        )
        assert r.status_code == 200 and r.json()["status"] == "counted", r.text
        r = await http.post(
            f"/v1/admin/assists/{a['assist_id']}/helps/{rejected}/reject",
            json={"reason": "a second account"},
            headers=bearer(editor),
        )
        assert r.status_code == 200, r.text
        async with ctx.db.session() as session:
            made = await session.get(Referral, approved)
            assert made is not None and made.referrer_id == anna and made.claimed_by == "assist"
            assert await session.get(Referral, rejected) is None
