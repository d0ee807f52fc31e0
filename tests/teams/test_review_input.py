"""Odd ids and bodies on every teams route, and teams of a kind taken out of the content: each a
clear answer, never a 5xx."""

from __future__ import annotations

from tests.support import unique
from tests.teams.support import make_team, member, serving_test_kinds


async def test_odd_ids_and_bodies_never_fail_the_server(ctx, http, as_brand, as_member, team_kinds):
    a = await member(http, as_brand)
    b = await member(http, as_brand)
    ha, hb = as_member(a), as_member(b)
    t = await make_team(http, ha, "squad")
    tid = t["team_id"]
    weird = ["me", "everyone", "x" * 64, "é", "a%20b", "0", "-", "store", "squad", "t_" + "0" * 16]
    weird += ["a..b", "a:b@c"]
    calls = []
    for w in weird:
        calls += [
            ("GET", f"/v1/teams/{w}", None),
            ("GET", f"/v1/teams/{w}/goals", None),
            ("GET", f"/v1/teams/{w}/feed", None),
            ("POST", f"/v1/teams/{w}/join", {}),
            ("POST", f"/v1/teams/{w}/leave", None),
            ("POST", f"/v1/teams/{w}/invites", {}),
            ("GET", f"/v1/teams/{w}/requests", None),
            ("DELETE", f"/v1/teams/{tid}/members/{w}", None),
            ("POST", f"/v1/teams/{tid}/captain", {"handle": w[:16]}),
            ("GET", f"/v1/team-invites/{w}", None),
            ("GET", f"/t/{w}", None),
            ("GET", f"/a/{w}", None),
            ("GET", f"/v1/assists/{w}", None),
            ("POST", f"/v1/assists/{w}/help", {}),
            ("POST", f"/v1/friend-quests/{w}/accept", None),
            ("POST", f"/v1/friend-quests/{w}/decline", None),
            ("GET", f"/v1/leaderboards/{w}/teams/{w}", None),
            ("GET", f"/v1/leaderboards/{w}", None),
        ]
    calls += [
        ("GET", f"/v1/teams/{tid}/feed?cursor=999999999999999999", None),
        ("GET", f"/v1/teams/{tid}/feed?cursor=2147483648", None),
        ("GET", "/v1/teams?cursor=zzzz", None),
        ("GET", "/v1/teams?cursor=eyJrIjoxfQ", None),
        ("GET", "/v1/teams?cursor=W10", None),
        ("GET", "/v1/teams?cursor=WzEsMl0", None),
        ("GET", "/v1/teams?cursor=" + "A" * 399, None),
        ("GET", "/v1/teams?q=%00", None),
        ("GET", "/v1/teams?q=%25_", None),
        ("GET", "/v1/teams?kind=everyone", None),
        ("GET", "/v1/teams?kind=nope", None),
        ("POST", "/v1/teams", {"kind": "everyone", "name": "x"}),
        ("POST", "/v1/teams", {"kind": "store", "name": "x"}),
        ("POST", "/v1/teams", {"kind": "squad", "name": "\u200b\u200b"}),
        ("POST", "/v1/teams", {"kind": "squad", "name": "a" * 61}),
        ("POST", "/v1/teams", {"kind": "squad", "name": "ok", "description": "\x00"}),
        ("POST", f"/v1/teams/{tid}/join", {"invite": "x" * 32}),
        ("POST", f"/v1/teams/{tid}/invites", {"days": 90, "uses": 10**9}),
        ("POST", "/v1/assists", {"goal_id": "nope"}),
        ("POST", "/v1/assists", {"ticket": True}),
        ("POST", "/v1/assists", {"quest_id": "nope"}),
        ("POST", "/v1/assists", {"quest_id": "nope", "step_id": "x"}),
        ("POST", "/v1/assists", {}),
        ("POST", "/v1/friend-quests", {"quest_id": "nope"}),
        ("POST", "/v1/friend-quests", {"quest_id": "nope", "handle": "zz"}),
        ("POST", "/v1/friend-quests", {"quest_id": "nope", "friend_id": a}),
        ("GET", "/v1/leaderboards/nope/teams/" + tid + "?period=zz", None),
    ]
    bad = []
    for method, url, body in calls:
        for h in (ha, hb):
            r = await http.request(method, url, json=body, headers=h)
            if r.status_code >= 500:
                bad.append((method, url, body, r.status_code, r.text[:200]))
    for method, url, body in [
        ("PUT", f"/v1/members/{a}", {"team_id": "everyone"}),
        ("PUT", f"/v1/members/{a}", {"team_id": "me"}),
        ("PUT", f"/v1/members/{a}", {"team_id": "x" * 64}),
        ("PUT", f"/v1/members/{a}", {"team_id": tid}),
        ("PUT", f"/v1/members/{a}/teams/everyone", {"team_id": "everyone"}),
        ("PUT", f"/v1/members/{a}/teams/squad", {"team_id": tid}),
        ("PUT", f"/v1/members/{a}/teams/store", {"team_id": "everyone"}),
        ("PUT", f"/v1/members/{a}/teams/nope", {"team_id": "x"}),
        ("PUT", f"/v1/members/{unique('no')}/teams/store", {"team_id": "x"}),
        ("DELETE", f"/v1/members/{a}/teams/store", None),
        ("DELETE", f"/v1/members/{a}/teams/everyone", None),
        ("PUT", f"/v1/teams/{'x' * 64}", {"kind": "store", "name": "n"}),
        ("PUT", "/v1/teams/everyone", {"kind": "store", "name": "n"}),
        ("PUT", f"/v1/teams/{tid}", {"kind": "store", "name": "n"}),
        ("PUT", "/v1/teams/abc", {"kind": "squad", "name": "n"}),
        ("GET", f"/v1/teams/{tid}/feed?cursor=999999999999999999", None),
        ("GET", "/v1/teams/everyone/feed", None),
        ("GET", "/v1/teams/everyone", None),
        ("GET", f"/v1/teams/{tid}", None),
    ]:
        r = await http.request(method, url, json=body, headers=as_brand)
        if r.status_code >= 500:
            bad.append((method, url, body, r.status_code, r.text[:200]))
    assert not bad, "\n".join(map(str, bad))


async def test_teams_of_a_kind_taken_out_of_the_content_never_fail_the_server(ctx, http, as_brand, as_member):
    with serving_test_kinds(ctx):
        a = await member(http, as_brand)
        b = await member(http, as_brand)
        ha, hb = as_member(a), as_member(b)
        t5 = await make_team(http, ha, "five")
        tid = t5["team_id"]
        r = await http.post(f"/v1/teams/{tid}/join", json={}, headers=hb)
        assert r.status_code == 200, r.text
        r = await http.post(f"/v1/teams/{tid}/invites", json={}, headers=ha)
        code = r.json().get("code")
        r = await http.put(f"/v1/members/{a}/teams/region", json={"team_id": "reg-1"}, headers=as_brand)
        r = await http.put("/v1/teams/reg-1", json={"kind": "region", "name": "Reg 1"}, headers=as_brand)
        r = await http.put(f"/v1/members/{a}/teams/region", json={"team_id": "reg-1"}, headers=as_brand)
    # The content without the test kinds: their teams, invites and placements are left.
    bad = []
    hb_handle = (await http.get("/v1/me", headers=hb)).json()["handle"]
    for method, url, body, h in [
        ("GET", f"/v1/teams/{tid}", None, ha),
        ("GET", "/v1/teams/me", None, ha),
        ("GET", "/v1/teams", None, ha),
        ("GET", "/v1/teams?kind=five", None, ha),
        ("GET", f"/v1/teams/{tid}/goals", None, ha),
        ("GET", f"/v1/teams/{tid}/feed", None, ha),
        ("POST", f"/v1/teams/{tid}/invites", {}, ha),
        ("GET", f"/v1/teams/{tid}/requests", None, ha),
        ("POST", f"/v1/teams/{tid}/captain", {"handle": hb_handle}, ha),
        ("DELETE", f"/v1/teams/{tid}/members/{hb_handle}", None, ha),
        ("POST", f"/v1/teams/{tid}/leave", None, ha),
        ("POST", f"/v1/teams/{tid}/join", {}, hb),
        ("POST", f"/v1/teams/{tid}/join", {"invite": code or "x"}, hb),
        ("GET", f"/v1/team-invites/{code}", None, hb),
        ("GET", f"/t/{code}", None, hb),
        ("GET", f"/v1/members/{a}", None, as_brand),
        ("PUT", f"/v1/members/{a}/teams/five", {"team_id": tid}, as_brand),
        ("DELETE", f"/v1/members/{a}/teams/five", None, as_brand),
        ("DELETE", f"/v1/members/{a}/teams/region", None, as_brand),
        ("GET", "/v1/teams/reg-1", None, as_brand),
        ("PUT", "/v1/teams/reg-1", {"kind": "region", "name": "x"}, as_brand),
        ("PUT", f"/v1/members/{a}", {"team_id": "reg-1"}, as_brand),
        ("GET", "/v1/me", None, ha),
    ]:
        r = await http.request(method, url, json=body, headers=h)
        if r.status_code >= 500:
            bad.append((method, url, r.status_code, r.text[:300]))
    assert not bad, "\n".join(map(str, bad))
