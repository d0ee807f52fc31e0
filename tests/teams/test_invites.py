"""Invite links: made by the captain, opening a public page with a preview card and the app's
deep link, joining with their code within their life and uses, counted exactly under races."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.db import utcnow
from server.teams.invites import ALPHABET, CODE_LENGTH
from server.teams.models import TeamInvite
from tests.support import unique
from tests.teams.support import join, make_team, member, members, problem, team

pytestmark = pytest.mark.usefixtures("team_kinds")


async def _age(ctx, code: str, **values) -> None:  # type: ignore[no-untyped-def]
    async with ctx.db.transaction() as session:
        await session.execute(sa.update(TeamInvite).where(TeamInvite.code == code).values(**values))


async def test_an_invite_link_opens_a_page_with_the_team_and_the_way_in(ctx, http, as_brand, as_member):
    cap = await member(http, as_brand, "Cara")
    club = await make_team(http, as_member(cap), "club", unique("Book Club"))
    r = await http.post(
        f"/v1/teams/{club['team_id']}/invites", json={"days": 2, "uses": 3}, headers=as_member(cap)
    )
    assert r.status_code == 201, r.text
    invite = r.json()
    code = invite["code"]
    assert len(code) == CODE_LENGTH and set(code) <= set(ALPHABET) and invite["uses_left"] == 3
    assert invite["link"] == f"{ctx.settings.public_base_url.rstrip('/')}/t/{code}"
    assert invite["team_id"] == club["team_id"]
    left = utcnow() + timedelta(days=2) - invite_time(invite["expires_at"])
    assert abs(left.total_seconds()) < 60
    page = await http.get(f"/t/{code}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert f"Cara invited you to {club['name']}" in html
    assert 'property="og:title"' in html and 'name="twitter:card"' in html and f"/t/{code}" in html
    assert f"acme://teams/{club['team_id']}/join?invite={code}" in html and code in html
    assert (await http.get(f"/t/{code.lower()}")).status_code == 200  # typed in lower case
    # The app reads which team a code opens.
    friend = as_member(await member(http, as_brand))
    read = await http.get(f"/v1/team-invites/{code}", headers=friend)
    assert read.status_code == 200 and read.json()["team"]["team_id"] == club["team_id"]
    assert read.json()["uses_left"] == 3
    # Unknown, expired and used-up links: a friendly page, 404 or 410.
    missing = await http.get("/t/ZZZZZZZZZZ")
    assert missing.status_code == 404 and "does not work" in missing.text
    assert (await http.get("/t/" + "x" * 64)).status_code == 404
    problem(await http.get("/v1/team-invites/ZZZZZZZZZZ", headers=friend), 404, "invite_not_found")
    await _age(ctx, code, uses=3)
    used = await http.get(f"/t/{code}")
    assert used.status_code == 410 and "used up" in used.text
    await _age(ctx, code, uses=0, expires_at=utcnow() - timedelta(seconds=1))
    expired = await http.get(f"/t/{code}")
    assert expired.status_code == 410 and "expired" in expired.text
    problem(await http.get(f"/v1/team-invites/{code}", headers=friend), 410, "invite_expired")


def invite_time(text: str):  # type: ignore[no-untyped-def]
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_joining_with_an_invite_and_every_refusal(ctx, http, as_brand, as_member):
    cap = as_member(await member(http, as_brand))
    club = await make_team(http, cap, "club")
    defaults = (await http.post(f"/v1/teams/{club['team_id']}/invites", headers=cap)).json()
    assert defaults["uses_left"] == 20  # content's defaults: content/teams.yaml `invites`
    made = await http.post(f"/v1/teams/{club['team_id']}/invites", json={"uses": 1}, headers=cap)
    code = made.json()["code"]
    other_club = await make_team(http, as_member(await member(http, as_brand)), "club")
    friend = as_member(await member(http, as_brand))
    problem(await join(http, friend, other_club["team_id"], code), 400, "invite_for_another_team")
    problem(await join(http, friend, club["team_id"], "NOPE"), 404, "invite_not_found")
    problem(await join(http, friend, club["team_id"], "ZZZZZZZZZZ"), 404, "invite_not_found")
    joined = await join(http, friend, club["team_id"], code.lower())
    assert joined.status_code == 200 and joined.json()["status"] == "joined", joined.text
    late = as_member(await member(http, as_brand))
    problem(await join(http, late, club["team_id"], code), 410, "invite_used_up")
    expired = (await http.post(f"/v1/teams/{club['team_id']}/invites", headers=cap)).json()["code"]
    await _age(ctx, expired, expires_at=utcnow() - timedelta(seconds=1))
    problem(await join(http, late, club["team_id"], expired), 410, "invite_expired")
    assert (await team(http, cap, club["team_id"]))["team"]["size"] == 2
    # Not the captain: no invites.
    problem(await http.post(f"/v1/teams/{club['team_id']}/invites", headers=friend), 403, "not_captain")
    for body in ({"days": 0}, {"days": 91}, {"uses": 0}, {"uses": 10_001}, {"days": "x"}):
        r = await http.post(f"/v1/teams/{club['team_id']}/invites", json=body, headers=cap)
        assert r.status_code == 400, (body, r.text)


async def test_twenty_joins_at_once_on_an_invite_of_three_uses_make_three_members(
    ctx, http, as_brand, as_member
):
    cap = as_member(await member(http, as_brand))
    circle = await make_team(http, cap, "circle")
    code = (await http.post(f"/v1/teams/{circle['team_id']}/invites", json={"uses": 3}, headers=cap)).json()[
        "code"
    ]
    friends = await members(http, as_brand, 20)
    answers = await asyncio.gather(*(join(http, as_member(m), circle["team_id"], code) for m in friends))
    assert sorted(r.status_code for r in answers) == [200] * 3 + [410] * 17, [r.text for r in answers]
    assert {r.json()["code"] for r in answers if r.status_code == 410} == {"invite_used_up"}
    assert (await team(http, cap, circle["team_id"]))["team"]["size"] == 4
    async with ctx.db.session() as session:
        uses = (await session.execute(sa.select(TeamInvite.uses).where(TeamInvite.code == code))).scalar_one()
    assert uses == 3


async def test_a_join_refused_for_a_full_team_does_not_spend_the_invite(ctx, http, as_brand, as_member):
    cap = as_member(await member(http, as_brand))
    five = await make_team(http, cap, "five")
    code = (await http.post(f"/v1/teams/{five['team_id']}/invites", json={"uses": 10}, headers=cap)).json()[
        "code"
    ]
    for m in await members(http, as_brand, 4):
        assert (await join(http, as_member(m), five["team_id"])).status_code == 200
    problem(
        await join(http, as_member(await member(http, as_brand)), five["team_id"], code), 409, "team_full"
    )
    async with ctx.db.session() as session:
        uses = (await session.execute(sa.select(TeamInvite.uses).where(TeamInvite.code == code))).scalar_one()
    assert uses == 0
