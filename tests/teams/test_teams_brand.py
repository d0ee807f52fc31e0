"""Teams by the brand's systems (API key) and by managers: assigned teams, members' places, reading
a team; live messages of joins and leaves; the OpenAPI description of every teams route."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from server.audit import AuditRecord
from tests.support import manager_token, unique
from tests.teams.support import join, make_team, member, problem, team

pytestmark = pytest.mark.usefixtures("team_kinds")


async def test_the_brand_makes_and_renames_assigned_teams(http, as_brand, as_member):
    team_id = unique("store")
    name = unique("Paris Opera")
    made = await http.put(f"/v1/teams/{team_id}", json={"kind": "region", "name": name}, headers=as_brand)
    assert made.status_code == 201, made.text
    assert made.json()["policy"] == "assigned" and made.json()["name"] == name and made.json()["size"] == 0
    renamed = await http.put(
        f"/v1/teams/{team_id}",
        json={"kind": "region", "name": name + " 2", "description": "Rue Auber"},
        headers=as_brand,
    )
    assert renamed.status_code == 200 and renamed.json()["description"] == "Rue Auber"
    again = await http.put(
        f"/v1/teams/{team_id}", json={"kind": "region", "name": name + " 2"}, headers=as_brand
    )
    assert again.status_code == 200
    other = unique("store")
    taken = await http.put(
        f"/v1/teams/{other}", json={"kind": "region", "name": (name + " 2").upper()}, headers=as_brand
    )
    problem(taken, 409, "team_name_taken")
    problem(
        await http.put(f"/v1/teams/{team_id}", json={"kind": "store", "name": "x"}, headers=as_brand),
        409,
        "team_kind_mismatch",
    )
    problem(
        await http.put(f"/v1/teams/{other}", json={"kind": "squad", "name": "x"}, headers=as_brand),
        409,
        "team_kind_not_assigned",
    )
    problem(
        await http.put(f"/v1/teams/{other}", json={"kind": "nope", "name": "x"}, headers=as_brand),
        404,
        "team_kind_not_found",
    )
    problem(
        await http.put("/v1/teams/everyone", json={"kind": "region", "name": "x"}, headers=as_brand),
        409,
        "team_id_reserved",
    )
    # `me` is a path of its own (GET /v1/teams/me): no team is made under it.
    assert (
        await http.put("/v1/teams/me", json={"kind": "region", "name": "x"}, headers=as_brand)
    ).status_code == 405
    problem(
        await http.put("/v1/teams/-x", json={"kind": "region", "name": "x"}, headers=as_brand),
        400,
        "invalid_team_id",
    )
    problem(
        await http.put(f"/v1/teams/{other}", json={"kind": "region", "name": "a\u200bb"}, headers=as_brand),
        400,
        "invalid_team_name",
    )
    assert (
        await http.put(f"/v1/teams/{other}", json={"kind": "region", "name": "x" * 61}, headers=as_brand)
    ).status_code == 400
    # Members may not.
    anna = as_member(await member(http, as_brand))
    assert (
        await http.put(f"/v1/teams/{other}", json={"kind": "region", "name": "x"}, headers=anna)
    ).status_code == 401
    # The same new team made by many requests at once is one team.
    racing = unique("store")
    answers = await asyncio.gather(
        *(
            http.put(f"/v1/teams/{racing}", json={"kind": "region", "name": racing}, headers=as_brand)
            for _ in range(6)
        )
    )
    assert sorted(r.status_code for r in answers) == [200] * 5 + [201], [r.text for r in answers]


async def test_the_brand_places_moves_and_takes_out_members(http, as_brand, as_member):
    east, west = unique("east"), unique("west")
    for t in (east, west):
        assert (
            await http.put(f"/v1/teams/{t}", json={"kind": "region", "name": t}, headers=as_brand)
        ).status_code == 201
    anna = await member(http, as_brand, "Anna")
    url = f"/v1/members/{anna}/teams/region"
    placed = await http.put(url, json={"team_id": east}, headers=as_brand)
    assert placed.status_code == 200, placed.text
    assert placed.json() | {"joined_at": None} == {
        "member_id": anna,
        "kind": "region",
        "team_id": east,
        "role": "member",
        "joined_at": None,
        "moved_from": [],
    }
    moved = await http.put(url, json={"team_id": west}, headers=as_brand)
    assert moved.json()["moved_from"] == [east]
    same = await http.put(url, json={"team_id": west}, headers=as_brand)
    assert same.status_code == 200 and same.json()["moved_from"] == []
    seen = await team(http, as_brand, west)  # the brand reads a team, every member's id with it
    assert seen["team"]["size"] == 1 and seen["members"][0]["member_id"] == anna and seen["my_role"] is None
    assert (await team(http, as_brand, east))["team"]["size"] == 0
    mine = (await http.get("/v1/teams/me", headers=as_member(anna))).json()["teams"]
    assert [t["team"]["team_id"] for t in mine if t["team"]["kind"] == "region"] == [west]
    # The brand may place members in teams of other kinds too: the one-team rule still holds.
    squad = await make_team(http, as_member(await member(http, as_brand)), "squad")
    in_squad = await http.put(
        f"/v1/members/{anna}/teams/squad", json={"team_id": squad["team_id"]}, headers=as_brand
    )
    assert in_squad.status_code == 200 and in_squad.json()["role"] == "member"
    # Refusals.
    problem(
        await http.put(
            f"/v1/members/{unique('nobody')}/teams/region", json={"team_id": west}, headers=as_brand
        ),
        404,
        "member_not_found",
    )
    problem(await http.put(url, json={"team_id": unique("none")}, headers=as_brand), 404, "team_not_found")
    problem(
        await http.put(url, json={"team_id": squad["team_id"]}, headers=as_brand), 409, "team_kind_mismatch"
    )
    problem(
        await http.put(f"/v1/members/{anna}/teams/nope", json={"team_id": west}, headers=as_brand),
        404,
        "team_kind_not_found",
    )
    problem(
        await http.put(f"/v1/members/{anna}/teams/everyone", json={"team_id": "everyone"}, headers=as_brand),
        409,
        "community_team",
    )
    problem(
        await http.put("/v1/members/-bad/teams/region", json={"team_id": west}, headers=as_brand),
        400,
        "invalid_member_id",
    )
    for bad in ("bad id", ""):  # the description states the pattern: an empty id is not one
        refused = await http.put(url, json={"team_id": bad}, headers=as_brand)
        problem(refused, 400, "validation_error")
        assert refused.json()["errors"][0]["key"] == "team_id"
    out = await http.delete(url, headers=as_brand)
    assert out.status_code == 200 and out.json()["left"] == [west]
    assert (await http.delete(url, headers=as_brand)).json()["left"] == []
    assert (await team(http, as_brand, west))["team"]["size"] == 0


async def test_placing_into_a_full_team_is_refused_and_changes_nothing(http, as_brand, as_member):
    full = await make_team(http, as_member(await member(http, as_brand)), "five")
    for _ in range(4):
        assert (await join(http, as_member(await member(http, as_brand)), full["team_id"])).status_code == 200
    home = await make_team(http, as_member(await member(http, as_brand)), "five")
    anna = await member(http, as_brand)
    assert (await join(http, as_member(anna), home["team_id"])).status_code == 200
    r = await http.put(f"/v1/members/{anna}/teams/five", json={"team_id": full["team_id"]}, headers=as_brand)
    problem(r, 409, "team_full")
    # Not moved out of her team either: the refusal changed nothing.
    assert (await team(http, as_brand, home["team_id"]))["team"]["size"] == 2
    assert (await team(http, as_brand, full["team_id"]))["team"]["size"] == 5


async def test_managers_place_members_and_make_teams_audited(ctx, http, as_brand):
    editor = {"Authorization": f"Bearer {await manager_token(ctx, 'editor')}"}
    viewer = {"Authorization": f"Bearer {await manager_token(ctx, 'viewer')}"}
    team_id = unique("north")
    problem(
        await http.put(
            f"/v1/admin/teams/{team_id}", json={"kind": "region", "name": team_id}, headers=viewer
        ),
        403,
        "forbidden_role",
    )
    made = await http.put(
        f"/v1/admin/teams/{team_id}", json={"kind": "region", "name": team_id}, headers=editor
    )
    assert made.status_code == 201, made.text
    anna = await member(http, as_brand)
    placed = await http.put(
        f"/v1/admin/members/{anna}/teams/region", json={"team_id": team_id}, headers=editor
    )
    assert placed.status_code == 200 and placed.json()["team_id"] == team_id
    problem(
        await http.put(f"/v1/admin/members/{anna}/teams/region", json={"team_id": team_id}, headers=viewer),
        403,
        "forbidden_role",
    )
    out = await http.delete(f"/v1/admin/members/{anna}/teams/region", headers=editor)
    assert out.status_code == 200 and out.json()["left"] == [team_id]
    async with ctx.db.session() as session:
        rows = (
            await session.execute(
                sa.select(AuditRecord.action, AuditRecord.target, AuditRecord.actor)
                .where(AuditRecord.target.in_([f"team:{team_id}", f"member:{anna}"]))
                .order_by(AuditRecord.id)
            )
        ).all()
    assert [(a, t) for a, t, _ in rows] == [
        ("team.create", f"team:{team_id}"),
        ("team.place", f"member:{anna}"),
        ("team.unplace", f"member:{anna}"),
    ]
    assert all(actor.startswith("manager:") for _, _, actor in rows)


async def test_the_profile_team_id_is_the_brand_kind_team(http, as_brand, as_member):
    anna = await member(http, as_brand)
    store = unique("Store")
    r = await http.put(f"/v1/members/{anna}", json={"team_id": store}, headers=as_brand)
    assert r.json()["team_id"] == store
    seen = await team(http, as_brand, store)
    assert seen["team"]["kind"] == "store" and seen["team"]["size"] == 1
    # Another id differing only in case makes its own team, numbered instead of refused.
    bob = await member(http, as_brand)
    r = await http.put(f"/v1/members/{bob}", json={"team_id": store.lower()}, headers=as_brand)
    assert r.status_code == 200 and r.json()["team_id"] == store.lower()
    assert (await team(http, as_brand, store.lower()))["team"]["name"] == f"{store.lower()} (2)"
    # A team id of 64 characters is longer than a name: the name is cut.
    long_id = (unique("s") + "x" * 64)[:64]
    r = await http.put(f"/v1/members/{bob}", json={"team_id": long_id}, headers=as_brand)
    assert r.status_code == 200, r.text
    assert (await team(http, as_brand, long_id))["team"]["name"] == long_id[:60]
    assert (await team(http, as_brand, store.lower()))["team"]["size"] == 0
    for reserved in ("everyone", "me"):
        r = await http.put(f"/v1/members/{bob}", json={"team_id": reserved}, headers=as_brand)
        problem(r, 409, "team_id_reserved")


async def test_joins_and_leaves_are_live_to_the_team(served, http, as_brand, as_member, token_for):
    from tests.e2e.helpers import live

    anna, bob = await member(http, as_brand, "Anna"), await member(http, as_brand, "Bob")
    made = await make_team(http, as_member(anna), "squad")
    async with live(served.ws_url, token_for(anna), teams=True) as sock:
        await asyncio.sleep(0.3)
        await join(http, as_member(bob), made["team_id"])
        joined = await sock.next()
        assert joined["type"] == "team.member_joined", joined
        assert joined["data"]["team_id"] == made["team_id"] and joined["data"]["display_name"] == "Bob"
        assert bob not in str(joined)
        await http.post(f"/v1/teams/{made['team_id']}/leave", headers=as_member(bob))
        left = await sock.next()
        assert left["type"] == "team.member_left" and left["data"]["display_name"] == "Bob"


async def test_every_teams_route_is_described(http):
    doc = (await http.get("/schema/openapi.json")).json()
    ops = {
        op["operationId"]: op
        for path, methods in doc["paths"].items()
        if path.startswith(
            (
                "/v1/teams",
                "/v1/team-invites",
                "/t/",
                "/v1/members/{member_id}/teams",
                "/v1/admin/teams",
                "/v1/admin/members/{member_id}/teams",
            )
        )
        for op in methods.values()
        if isinstance(op, dict) and "operationId" in op
    }
    expected = {
        "listTeams",
        "createTeam",
        "getMyTeams",
        "getTeam",
        "putTeam",
        "joinTeam",
        "leaveTeam",
        "createTeamInvite",
        "listTeamRequests",
        "acceptTeamRequest",
        "declineTeamRequest",
        "removeTeamMember",
        "handOverCaptaincy",
        "getTeamInvite",
        "getTeamFeed",
        "placeMember",
        "unplaceMember",
        "teamInvitePage",
        "adminPutTeam",
        "adminPlaceMember",
        "adminUnplaceMember",
    }
    assert expected <= set(ops), expected - set(ops)
    assert {next(iter(s)) for s in ops["getTeam"]["security"]} == {"MemberToken", "ApiKey"}
    assert {next(iter(s)) for s in ops["getTeamFeed"]["security"]} == {"MemberToken", "ApiKey"}
    assert "409" in ops["joinTeam"]["responses"] and "410" in ops["joinTeam"]["responses"]
    assert "403" in ops["joinTeam"]["responses"] and "202" in ops["joinTeam"]["responses"]
    assert "403" in ops["createTeamInvite"]["responses"]
    assert "410" in ops["teamInvitePage"]["responses"] and "security" not in ops["teamInvitePage"]
    assert "409" in ops["putTeam"]["responses"] and "201" in ops["putTeam"]["responses"]
    body = ops["createTeam"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/TeamIn")
    name = doc["components"]["schemas"]["TeamIn"]["properties"]["name"]
    assert name["maxLength"] == 60 and "pattern" in name
