"""Friend lists and the interim team id: both set by the brand's systems."""

from __future__ import annotations

import asyncio

from tests.support import unique


async def create(http, as_brand, member_id: str) -> None:
    r = await http.put(f"/v1/members/{member_id}", json={}, headers=as_brand)
    assert r.status_code == 201, r.text


async def test_friends_are_set_replaced_read_and_cleared(http, as_brand, member_id):
    """The friends need not be members; each PUT replaces the whole list."""
    await create(http, as_brand, member_id)
    url = f"/v1/members/{member_id}/friends"
    a, b, c = unique("fa"), unique("fb"), unique("fc")
    r = await http.put(url, json={"friends": [c, a, b, a]}, headers=as_brand)
    assert r.status_code == 200, r.text
    assert r.json() == {"member_id": member_id, "friends": sorted([a, b, c])}
    assert (await http.get(f"/v1/members/{member_id}", headers=as_brand)).status_code == 200
    got = await http.get(url, headers=as_brand)
    assert got.status_code == 200 and got.json() == {"member_id": member_id, "friends": sorted([a, b, c])}

    d = unique("fd")
    r = await http.put(url, json={"friends": [d, b]}, headers=as_brand)
    assert r.status_code == 200 and r.json()["friends"] == sorted([b, d])
    assert (await http.get(url, headers=as_brand)).json()["friends"] == sorted([b, d])

    r = await http.put(url, json={"friends": []}, headers=as_brand)
    assert r.status_code == 200 and r.json() == {"member_id": member_id, "friends": []}
    assert (await http.get(url, headers=as_brand)).json() == {"member_id": member_id, "friends": []}


async def test_concurrent_replacements_leave_one_whole_list(http, as_brand, member_id):
    """Each replacement is one transaction: the list ends as one of those sent, never a mix."""
    await create(http, as_brand, member_id)
    url = f"/v1/members/{member_id}/friends"
    shared = [unique("both") for _ in range(5)]
    lists = [sorted([*shared, *(unique(f"only{n}") for _ in range(5))]) for n in range(8)]
    replies = await asyncio.gather(*(http.put(url, json={"friends": f}, headers=as_brand) for f in lists))
    assert [r.status_code for r in replies] == [200] * len(lists), [r.text for r in replies]
    assert (await http.get(url, headers=as_brand)).json()["friends"] in lists


async def test_friend_lists_are_per_member(http, as_brand):
    one, two, friend = unique("one"), unique("two"), unique("f")
    await create(http, as_brand, one)
    await create(http, as_brand, two)
    await http.put(f"/v1/members/{one}/friends", json={"friends": [friend, two]}, headers=as_brand)
    await http.put(f"/v1/members/{two}/friends", json={"friends": [friend]}, headers=as_brand)
    assert (await http.get(f"/v1/members/{one}/friends", headers=as_brand)).json()["friends"] == sorted(
        [friend, two]
    )
    assert (await http.get(f"/v1/members/{two}/friends", headers=as_brand)).json()["friends"] == [friend]
    # Naming someone a friend does not make them a member, nor give them a list.
    r = await http.get(f"/v1/members/{friend}/friends", headers=as_brand)
    assert r.status_code == 404 and r.json()["code"] == "member_not_found"


async def test_a_member_without_a_list_has_no_friends(http, as_brand, member_id):
    await http.put(f"/v1/members/{member_id}", json={}, headers=as_brand)
    r = await http.get(f"/v1/members/{member_id}/friends", headers=as_brand)
    assert r.status_code == 200 and r.json() == {"member_id": member_id, "friends": []}


async def test_bad_friend_lists_are_refused_and_change_nothing(http, as_brand, member_id):
    await create(http, as_brand, member_id)
    url = f"/v1/members/{member_id}/friends"
    kept = unique("kept")
    assert (await http.put(url, json={"friends": [kept]}, headers=as_brand)).status_code == 200
    cases = [
        ({"friends": [unique("f"), member_id]}, "invalid_friends"),
        ({"friends": ["bad id"]}, "invalid_member_id"),
        ({"friends": ["-dash"]}, "invalid_member_id"),
        ({"friends": ["x" * 65]}, "invalid_member_id"),
        ({"friends": [f"f-{i}" for i in range(1001)]}, "too_many_friends"),
        ({"friends": [kept], "best": kept}, "validation_error"),
        ({"friends": kept}, "validation_error"),
        ({}, "validation_error"),
    ]
    for body, code in cases:
        r = await http.put(url, json=body, headers=as_brand)
        assert r.status_code == 400 and r.json()["code"] == code, (body, r.text)
    r = await http.put(url, json={"friends": [member_id]}, headers=as_brand)
    assert member_id in r.json()["detail"]
    assert (await http.get(url, headers=as_brand)).json()["friends"] == [kept]
    r = await http.put("/v1/members/bad%20id/friends", json={"friends": []}, headers=as_brand)
    assert r.status_code == 400 and r.json()["code"] == "invalid_member_id"


async def test_a_thousand_friends_are_allowed_and_duplicates_count_once(http, as_brand, member_id):
    await create(http, as_brand, member_id)
    friends = [f"{member_id}-f{i:04d}" for i in range(1000)]
    r = await http.put(
        f"/v1/members/{member_id}/friends", json={"friends": friends + friends[:10]}, headers=as_brand
    )
    assert r.status_code == 200, r.text
    assert r.json()["friends"] == friends
    assert (await http.get(f"/v1/members/{member_id}/friends", headers=as_brand)).json()["friends"] == friends


async def test_friends_need_an_api_key(http, as_member, member_id):
    url = f"/v1/members/{member_id}/friends"
    r = await http.put(url, json={"friends": []}, headers=as_member(member_id))
    assert r.status_code == 401 and r.json()["code"] == "missing_api_key"
    r = await http.get(url, headers=as_member(member_id))
    assert r.status_code == 401 and r.json()["code"] == "missing_api_key"


async def test_unknown_member_has_no_friend_list(http, as_brand):
    member_id = unique("nobody")
    r = await http.put(f"/v1/members/{member_id}/friends", json={"friends": []}, headers=as_brand)
    assert r.status_code == 404 and r.json()["code"] == "member_not_found"
    r = await http.get(f"/v1/members/{member_id}/friends", headers=as_brand)
    assert r.status_code == 404 and r.json()["code"] == "member_not_found"
    r = await http.get("/v1/members/bad%20id/friends", headers=as_brand)
    assert r.status_code == 400 and r.json()["code"] == "invalid_member_id"


async def test_team_id_is_set_kept_and_cleared(http, as_brand, member_id):
    url = f"/v1/members/{member_id}"
    created = await http.put(url, json={"team_id": "team-1"}, headers=as_brand)
    assert created.status_code == 201 and created.json()["team_id"] == "team-1"
    kept = await http.put(url, json={"display_name": "Teammate"}, headers=as_brand)
    assert kept.json()["team_id"] == "team-1"
    moved = await http.put(url, json={"team_id": "crew:2@east"}, headers=as_brand)
    assert moved.json()["team_id"] == "crew:2@east"
    assert (await http.get(url, headers=as_brand)).json()["team_id"] == "crew:2@east"
    cleared = await http.put(url, json={"team_id": ""}, headers=as_brand)
    assert cleared.status_code == 200 and cleared.json()["team_id"] is None
    assert (await http.get(url, headers=as_brand)).json()["team_id"] is None


async def test_bad_team_ids_are_refused_and_change_nothing(http, as_brand, member_id):
    url = f"/v1/members/{member_id}"
    await http.put(url, json={"team_id": "kept"}, headers=as_brand)
    for team_id in ("bad team", "-team", "t" * 65, "team/1"):
        r = await http.put(url, json={"team_id": team_id}, headers=as_brand)
        assert r.status_code == 400 and r.json()["code"] == "invalid_team_id", (team_id, r.text)
    r = await http.put(url, json={"team_id": 7}, headers=as_brand)
    assert r.status_code == 400 and r.json()["code"] == "validation_error"
    assert (await http.get(url, headers=as_brand)).json()["team_id"] == "kept"


async def test_a_new_member_has_no_team(http, as_brand, member_id):
    r = await http.put(f"/v1/members/{member_id}", json={}, headers=as_brand)
    assert r.status_code == 201 and r.json()["team_id"] is None
