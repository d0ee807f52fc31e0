"""Teams as members play them, through the HTTP API: finding, making, joining and leaving teams,
the captain's work, the feed, and every refusal (with nothing changed)."""

from __future__ import annotations

import asyncio

import pytest

from server.db import utcnow
from server.teams.models import TeamRequest
from server.teams.service import MAX_REQUESTS
from tests.support import unique
from tests.teams.support import handle_of, join, make_team, member, members, problem, team

pytestmark = pytest.mark.usefixtures("team_kinds")


async def test_a_member_makes_a_team_and_is_its_captain(http, as_brand, as_member):
    anna = await member(http, as_brand, "Anna")
    name = unique("Night Owls")
    made = await make_team(http, as_member(anna), "squad", name)
    assert made["kind"] == "squad" and made["policy"] == "open" and made["name"] == name
    assert made["size"] == 1 and made["max_members"] == 30 and made["full"] is False
    seen = await team(http, as_member(anna), made["team_id"])
    assert seen["my_role"] == "captain"
    [row] = seen["members"]
    assert row["is_me"] and row["member_id"] == anna and row["role"] == "captain"
    assert row["display_name"] == "Anna" and seen["captain"]["handle"] == row["handle"]
    # The same name in another case or spacing is taken; another kind may have it.
    bob = await member(http, as_brand)
    again = await http.post(
        "/v1/teams",
        json={"kind": "squad", "name": "  " + name.upper().replace(" ", "   ")},
        headers=as_member(bob),
    )
    problem(again, 409, "team_name_taken")
    other_kind = await http.post("/v1/teams", json={"kind": "club", "name": name}, headers=as_member(bob))
    assert other_kind.status_code == 201, other_kind.text
    # A member in a squad cannot make a second one (one team of a kind at a time).
    second = await http.post(
        "/v1/teams", json={"kind": "squad", "name": unique("x")}, headers=as_member(anna)
    )
    problem(second, 409, "already_in_a_team")


async def test_one_name_made_at_once_by_many_gives_one_team(http, as_brand, as_member):
    makers = await members(http, as_brand, 8)
    name = unique("Race")
    answers = await asyncio.gather(
        *(http.post("/v1/teams", json={"kind": "guild", "name": name}, headers=as_member(m)) for m in makers)
    )
    assert sorted(r.status_code for r in answers) == [201] + [409] * 7, [r.text for r in answers]
    assert all(r.json()["code"] == "team_name_taken" for r in answers if r.status_code == 409)
    found = await http.get("/v1/teams", params={"kind": "guild", "q": name}, headers=as_member(makers[0]))
    assert [t["name"] for t in found.json()["teams"]] == [name]


async def test_bad_team_names_and_kinds_are_refused(http, as_brand, as_member):
    anna = as_member(await member(http, as_brand))
    for name in ("", "   ", "a" * 61, "zero\u200bwidth", "right\u202eleft", "tab\there", "bell\x07"):
        r = await http.post("/v1/teams", json={"kind": "squad", "name": name}, headers=anna)
        assert r.status_code == 400, (name, r.text)
        assert r.json()["code"] in ("invalid_team_name", "validation_error"), r.text
    r = await http.post(
        "/v1/teams", json={"kind": "squad", "name": "ok", "description": "x\u200by"}, headers=anna
    )
    problem(r, 400, "invalid_team_description")
    problem(
        await http.post("/v1/teams", json={"kind": "nope", "name": "x"}, headers=anna),
        404,
        "team_kind_not_found",
    )
    problem(
        await http.post("/v1/teams", json={"kind": "store", "name": "x"}, headers=anna),
        403,
        "team_kind_closed",
    )
    problem(
        await http.post("/v1/teams", json={"kind": "everyone", "name": "x"}, headers=anna),
        403,
        "team_kind_closed",
    )
    r = await http.post("/v1/teams", json={"kind": "squad", "name": "x", "extra": 1}, headers=anna)
    assert r.status_code == 400
    assert (await http.get("/v1/teams/me", headers=anna)).json()["teams"][0]["team"]["kind"] == "everyone"


async def test_list_and_search_teams_members_can_join(http, as_brand, as_member):
    anna = as_member(await member(http, as_brand))
    tag = unique("zq").replace("-", "")
    names = [f"{tag} Alpha", f"{tag} beta", f"{tag} Gamma"]
    for name in names:
        await make_team(http, as_member(await member(http, as_brand)), "guild", name)
    page1 = await http.get("/v1/teams", params={"q": tag.upper(), "limit": 2}, headers=anna)
    assert page1.status_code == 200, page1.text
    body = page1.json()
    assert [t["name"] for t in body["teams"]] == names[:2] and body["next_cursor"]
    page2 = await http.get(
        "/v1/teams", params={"q": tag, "limit": 2, "cursor": body["next_cursor"]}, headers=anna
    )
    assert [t["name"] for t in page2.json()["teams"]] == names[2:] and page2.json()["next_cursor"] is None
    only = await http.get("/v1/teams", params={"q": f"{tag} BETA"}, headers=anna)
    assert [t["name"] for t in only.json()["teams"]] == [names[1]]
    first = only.json()["teams"][0]
    assert (
        first["kind"] == "guild"
        and first["size"] == 1
        and first["full"] is False
        and first["policy"] == "open"
    )
    # Search characters are text, not patterns.
    assert (await http.get("/v1/teams", params={"q": "%"}, headers=anna)).json()["teams"] == []
    problem(await http.get("/v1/teams", params={"kind": "store"}, headers=anna), 400, "team_kind_not_listed")
    problem(await http.get("/v1/teams", params={"kind": "nope"}, headers=anna), 404, "team_kind_not_found")
    problem(await http.get("/v1/teams", params={"cursor": "garbage"}, headers=anna), 400, "invalid_cursor")
    assert (await http.get("/v1/teams", params={"limit": 0}, headers=anna)).status_code == 400


async def test_join_an_open_team_and_see_the_others_by_handle(http, as_brand, as_member):
    anna, bob = await member(http, as_brand, "Anna"), await member(http, as_brand, "Bob")
    made = await make_team(http, as_member(anna), "squad")
    joined = await join(http, as_member(bob), made["team_id"])
    assert joined.status_code == 200, joined.text
    assert joined.json()["status"] == "joined" and joined.json()["role"] == "member"
    assert joined.json()["team"]["size"] == 2
    again = await join(http, as_member(bob), made["team_id"])
    assert again.status_code == 200 and again.json()["status"] == "already_member"
    seen = await team(http, as_member(bob), made["team_id"])
    assert seen["team"]["size"] == 2 and seen["my_role"] == "member"
    by_name = {r["display_name"]: r for r in seen["members"]}
    assert by_name["Bob"]["is_me"] and by_name["Bob"]["member_id"] == bob
    assert (
        not by_name["Anna"]["is_me"]
        and "member_id" not in by_name["Anna"]
        and by_name["Anna"]["role"] == "captain"
    )
    # Someone outside the team reads it too, and sees nobody's id.
    outsider = await team(http, as_member(await member(http, as_brand)), made["team_id"])
    assert outsider["my_role"] is None and all("member_id" not in r for r in outsider["members"])
    mine = (await http.get("/v1/teams/me", headers=as_member(bob))).json()["teams"]
    assert {(t["team"]["team_id"], t["role"]) for t in mine} == {
        (made["team_id"], "member"),
        ("everyone", "member"),
    }


async def test_one_team_of_a_kind_unless_the_kind_allows_several(http, as_brand, as_member):
    first, second = [
        await make_team(http, as_member(await member(http, as_brand)), "squad") for _ in range(2)
    ]
    cara = as_member(await member(http, as_brand))
    assert (await join(http, cara, first["team_id"])).status_code == 200
    problem(await join(http, cara, second["team_id"]), 409, "already_in_a_team")
    assert (await team(http, cara, second["team_id"]))["team"]["size"] == 1
    g1 = await make_team(http, as_member(await member(http, as_brand)), "guild")
    g2 = await make_team(http, as_member(await member(http, as_brand)), "guild")
    assert (await join(http, cara, g1["team_id"])).status_code == 200
    assert (await join(http, cara, g2["team_id"])).status_code == 200
    kinds = sorted(t["team"]["kind"] for t in (await http.get("/v1/teams/me", headers=cara)).json()["teams"])
    assert kinds == ["everyone", "guild", "guild", "squad"]


async def test_thirty_joins_at_once_fill_five_places_exactly(http, as_brand, as_member):
    captain = as_member(await member(http, as_brand))
    made = await make_team(http, captain, "five")
    joiners = await members(http, as_brand, 30)
    answers = await asyncio.gather(*(join(http, as_member(m), made["team_id"]) for m in joiners))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * 4 + [409] * 26, [r.text for r in answers if r.status_code not in (200, 409)]
    assert {r.json()["code"] for r in answers if r.status_code == 409} == {"team_full"}
    seen = await team(http, captain, made["team_id"])
    assert seen["team"]["size"] == 5 and len(seen["members"]) == 5 and seen["team"]["full"] is True


async def test_one_member_joining_two_squads_at_once_gets_one(http, as_brand, as_member):
    squads = [await make_team(http, as_member(await member(http, as_brand)), "squad") for _ in range(2)]
    for _ in range(3):
        dan = as_member(await member(http, as_brand))
        answers = await asyncio.gather(*(join(http, dan, s["team_id"]) for s in squads))
        assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
        mine = (await http.get("/v1/teams/me", headers=dan)).json()["teams"]
        assert sum(1 for t in mine if t["team"]["kind"] == "squad") == 1
    sizes = [(await team(http, dan, s["team_id"]))["team"]["size"] for s in squads]
    assert sum(sizes) == 2 + 3


async def test_leaving_and_a_captain_handing_over_to_the_longest_member(http, as_brand, as_member):
    anna, bob, cara = (
        await member(http, as_brand, "Anna"),
        await member(http, as_brand, "Bob"),
        await member(http, as_brand, "Cara"),
    )
    made = await make_team(http, as_member(anna), "squad")
    await join(http, as_member(bob), made["team_id"])
    await join(http, as_member(cara), made["team_id"])
    left = await http.post(f"/v1/teams/{made['team_id']}/leave", headers=as_member(anna))
    assert left.status_code == 200 and left.json()["size"] == 2
    seen = await team(http, as_member(bob), made["team_id"])
    assert seen["my_role"] == "captain" and seen["captain"]["display_name"] == "Bob"
    problem(
        await http.post(f"/v1/teams/{made['team_id']}/leave", headers=as_member(anna)), 409, "not_in_team"
    )
    # The new captain can invite; the old one cannot any more.
    assert (
        await http.post(f"/v1/teams/{made['team_id']}/invites", headers=as_member(bob))
    ).status_code == 201
    problem(
        await http.post(f"/v1/teams/{made['team_id']}/invites", headers=as_member(anna)), 403, "not_captain"
    )
    # Anna is free to join another squad now.
    other = await make_team(http, as_member(await member(http, as_brand)), "squad")
    assert (await join(http, as_member(anna), other["team_id"])).status_code == 200


async def test_assigned_and_community_teams_are_not_joined_or_left_by_members(http, as_brand, as_member):
    eve = await member(http, as_brand)
    store = unique("store")
    r = await http.put(f"/v1/members/{eve}", json={"team_id": store}, headers=as_brand)
    assert r.status_code == 200 and r.json()["team_id"] == store
    problem(await http.post(f"/v1/teams/{store}/leave", headers=as_member(eve)), 403, "team_assigned")
    other = as_member(await member(http, as_brand))
    problem(await join(http, other, store), 403, "team_assigned")
    problem(await http.post(f"/v1/teams/{store}/leave", headers=other), 409, "not_in_team")
    problem(await join(http, other, "everyone"), 409, "community_team")
    problem(await http.post("/v1/teams/everyone/leave", headers=other), 409, "community_team")
    everyone = await team(http, other, "everyone")
    assert everyone["team"]["policy"] == "community" and everyone["members"] is None
    assert everyone["team"]["size"] >= 2 and everyone["team"]["max_members"] is None
    assert everyone["my_role"] == "member"


async def test_invite_only_teams_take_requests_the_captain_answers(http, as_brand, as_member):
    cap = as_member(await member(http, as_brand, "Cap"))
    club = await make_team(http, cap, "club")
    asker, other = await member(http, as_brand, "Asker"), await member(http, as_brand, "Other")
    asked = await join(http, as_member(asker), club["team_id"])
    assert (
        asked.status_code == 202
        and asked.json()["status"] == "requested"
        and asked.json()["team"]["size"] == 1
    )
    assert (await join(http, as_member(asker), club["team_id"])).status_code == 202  # the same request
    await join(http, as_member(other), club["team_id"])
    listed = await http.get(f"/v1/teams/{club['team_id']}/requests", headers=cap)
    assert listed.status_code == 200
    names = [r["member"]["display_name"] for r in listed.json()["requests"]]
    assert names == ["Asker", "Other"] and all(
        "member_id" not in r["member"] for r in listed.json()["requests"]
    )
    problem(
        await http.get(f"/v1/teams/{club['team_id']}/requests", headers=as_member(asker)), 403, "not_captain"
    )
    asker_handle = await handle_of(http, as_member(asker))
    other_handle = await handle_of(http, as_member(other))
    problem(
        await http.post(
            f"/v1/teams/{club['team_id']}/requests/{asker_handle}/accept", headers=as_member(other)
        ),
        403,
        "not_captain",
    )
    accepted = await http.post(f"/v1/teams/{club['team_id']}/requests/{asker_handle}/accept", headers=cap)
    assert (
        accepted.status_code == 200
        and accepted.json()["status"] == "joined"
        and accepted.json()["team"]["size"] == 2
    )
    declined = await http.post(f"/v1/teams/{club['team_id']}/requests/{other_handle}/decline", headers=cap)
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    problem(
        await http.post(f"/v1/teams/{club['team_id']}/requests/{other_handle}/accept", headers=cap),
        404,
        "request_not_found",
    )
    assert (await http.get(f"/v1/teams/{club['team_id']}/requests", headers=cap)).json()["requests"] == []
    assert (await team(http, cap, club["team_id"]))["team"]["size"] == 2


async def test_the_captain_removes_a_member_and_hands_over(http, as_brand, as_member):
    anna, bob = await member(http, as_brand, "Anna"), await member(http, as_brand, "Bob")
    made = await make_team(http, as_member(anna), "squad")
    await join(http, as_member(bob), made["team_id"])
    bob_handle, anna_handle = await handle_of(http, as_member(bob)), await handle_of(http, as_member(anna))
    url = f"/v1/teams/{made['team_id']}"
    problem(await http.delete(f"{url}/members/{anna_handle}", headers=as_member(bob)), 403, "not_captain")
    problem(
        await http.delete(f"{url}/members/{anna_handle}", headers=as_member(anna)), 409, "cannot_remove_self"
    )
    problem(
        await http.delete(f"{url}/members/zzzzzzzzzzzz", headers=as_member(anna)),
        404,
        "team_member_not_found",
    )
    problem(
        await http.post(f"{url}/captain", json={"handle": anna_handle}, headers=as_member(anna)),
        409,
        "already_captain",
    )
    handed = await http.post(f"{url}/captain", json={"handle": bob_handle}, headers=as_member(anna))
    assert handed.status_code == 200, handed.text
    seen = await team(http, as_member(anna), made["team_id"])
    assert seen["my_role"] == "member" and seen["captain"]["handle"] == bob_handle
    removed = await http.delete(f"{url}/members/{anna_handle}", headers=as_member(bob))
    assert removed.status_code == 200 and removed.json()["size"] == 1
    assert all(
        t["team"]["kind"] != "squad"
        for t in (await http.get("/v1/teams/me", headers=as_member(anna))).json()["teams"]
    )
    problem(await http.post("/v1/teams/everyone/invites", headers=as_member(anna)), 403, "not_captain")


async def test_the_feed_keeps_joins_and_leaves_for_the_team(http, as_brand, as_member, ctx):
    anna, bob = await member(http, as_brand, "Anna"), await member(http, as_brand, "Bob")
    made = await make_team(http, as_member(anna), "squad")
    await join(http, as_member(bob), made["team_id"])
    await http.post(f"/v1/teams/{made['team_id']}/leave", headers=as_member(anna))
    feed = await http.get(f"/v1/teams/{made['team_id']}/feed", headers=as_member(bob))
    assert feed.status_code == 200, feed.text
    posts = feed.json()["posts"]
    assert [(p["type"], p["member"]["display_name"]) for p in posts] == [
        ("captain_changed", "Bob"),
        ("member_left", "Anna"),
        ("member_joined", "Bob"),
        ("member_joined", "Anna"),
    ]
    assert posts[0]["member"]["is_me"] and posts[0]["member"]["member_id"] == bob
    assert "member_id" not in posts[1]["member"]
    paged = await http.get(f"/v1/teams/{made['team_id']}/feed", params={"limit": 3}, headers=as_member(bob))
    cursor = paged.json()["next_cursor"]
    rest = await http.get(
        f"/v1/teams/{made['team_id']}/feed", params={"cursor": cursor}, headers=as_member(bob)
    )
    assert [p["type"] for p in rest.json()["posts"]] == ["member_joined"] and rest.json()[
        "next_cursor"
    ] is None
    problem(await http.get(f"/v1/teams/{made['team_id']}/feed", headers=as_member(anna)), 403, "not_in_team")
    brand = await http.get(f"/v1/teams/{made['team_id']}/feed", headers=as_brand)
    assert brand.status_code == 200 and brand.json()["posts"][1]["member"]["member_id"] == anna
    assert (await http.get("/v1/teams/everyone/feed", headers=as_member(anna))).status_code == 200


async def test_unknown_and_malformed_ids_are_clear_refusals(http, as_brand, as_member):
    anna = as_member(await member(http, as_brand))
    for method, path in (
        ("GET", "/v1/teams/{t}"),
        ("POST", "/v1/teams/{t}/join"),
        ("POST", "/v1/teams/{t}/leave"),
        ("GET", "/v1/teams/{t}/feed"),
        ("POST", "/v1/teams/{t}/invites"),
        ("GET", "/v1/teams/{t}/requests"),
    ):
        r = await http.request(
            method, path.format(t=unique("none")), headers=anna, json={} if method == "POST" else None
        )
        problem(r, 404, "team_not_found")
        r = await http.request(
            method, path.format(t="-bad"), headers=anna, json={} if method == "POST" else None
        )
        problem(r, 400, "invalid_team_id")
    assert (await http.get("/v1/teams/x", headers={})).status_code == 401


async def test_an_invite_only_team_holds_a_bounded_number_of_requests(ctx, http, as_brand, as_member):
    club = await make_team(http, as_member(await member(http, as_brand)), "club")
    early = as_member(await member(http, as_brand))
    assert (await join(http, early, club["team_id"])).status_code == 202
    async with ctx.db.transaction() as session:
        for _ in range(MAX_REQUESTS - 1):
            session.add(TeamRequest(team_id=club["team_id"], member_id=unique("asker"), created_at=utcnow()))
    problem(
        await join(http, as_member(await member(http, as_brand)), club["team_id"]), 409, "team_requests_full"
    )
    again = await join(http, early, club["team_id"])  # asking again is not a new request
    assert again.status_code == 202 and again.json()["status"] == "requested"
