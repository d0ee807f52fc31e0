"""Members of one team connected to two instances hear the team live: a team message is published
once and every instance writes it to the sockets of the team's members it holds."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.helpers import Live, brand_client, live, member_client, purchase, send_events
from tests.support import ServerProcess, unique

pytestmark = pytest.mark.e2e


def of_team(team_id: str, type_: str, check: Any = None):  # type: ignore[no-untyped-def]
    """Messages until one of `type_` about the team (and, when given, with `check(data)`)."""

    def done(ms: list[dict[str, Any]]) -> bool:
        return any(
            m["type"] == type_ and m["data"].get("team_id") == team_id and (check is None or check(m["data"]))
            for m in ms
        )

    return done


async def heard(sock: Live, team_id: str, type_: str, check: Any = None) -> dict[str, Any]:
    got = await sock.take_until(of_team(team_id, type_, check))
    return got[-1]


async def member(brand: httpx.AsyncClient) -> str:
    member_id = unique("m")
    r = await brand.put(f"/v1/members/{member_id}", json={"display_name": member_id[-6:]})
    assert r.status_code == 201, r.text
    return member_id


async def test_members_of_one_team_on_two_instances_hear_it_live(
    server: ServerProcess, server_b: ServerProcess, brand_key: str, token_for
) -> None:
    async with brand_client(server.base_url, brand_key) as brand:
        a, b, c, d = [await member(brand) for _ in range(4)]
    async with member_client(server.base_url, token_for(a)) as app_a:
        r = await app_a.post("/v1/teams", json={"kind": "squad", "name": unique("Squad ")})
        assert r.status_code == 201, r.text
        team = r.json()["team_id"]
    async with member_client(server_b.base_url, token_for(b)) as app_b:
        assert (await app_b.post(f"/v1/teams/{team}/join")).status_code == 200

    async with (
        live(server.ws_url, token_for(a), teams=True) as on_a,
        live(server_b.ws_url, token_for(b), teams=True) as on_b,
        live(server_b.ws_url, token_for(c), teams=True) as on_c,  # not in the team yet
    ):
        # A join through instance A: the member on A and the member on B both hear it.
        async with member_client(server.base_url, token_for(c)) as app_c:
            assert (await app_c.post(f"/v1/teams/{team}/join")).status_code == 200
        for sock in (on_a, on_b):
            await heard(sock, team, "team.member_joined", lambda data: data["display_name"] == c[-6:])
        ids = {sock.received[-1]["id"].split("/")[1] for sock in (on_a, on_b)}
        assert len(ids) == 1  # one message, the same team part on both instances

        # c joined while connected (on B): c hears the team from now on, as a and b do.
        async with member_client(server_b.base_url, token_for(d)) as app_d:
            assert (await app_d.post(f"/v1/teams/{team}/join")).status_code == 200
        for sock in (on_a, on_b, on_c):
            await heard(sock, team, "team.member_joined", lambda data: data["display_name"] == d[-6:])

        # d leaves: everyone still in the team hears it, on both instances.
        async with member_client(server.base_url, token_for(d)) as app_d:
            assert (await app_d.post(f"/v1/teams/{team}/leave")).status_code == 200
        for sock in (on_a, on_b, on_c):
            await heard(sock, team, "team.member_left", lambda data: data["display_name"] == d[-6:])


async def test_team_goal_progress_reaches_members_on_both_instances(
    server: ServerProcess, server_b: ServerProcess, brand_key: str, token_for
) -> None:
    """The demo's squad goal counts purchases: the brand posts events for team members and every
    member's socket, on either instance, hears `team.goal_progress`; a member who joins mid-way
    starts hearing it."""
    async with (
        brand_client(server.base_url, brand_key) as brand,
        brand_client(server_b.base_url, brand_key) as brand_b,
    ):
        a, b, c = [await member(brand) for _ in range(3)]
        async with member_client(server.base_url, token_for(a)) as app_a:
            r = await app_a.post("/v1/teams", json={"kind": "squad", "name": unique("Squad ")})
            assert r.status_code == 201, r.text
            team = r.json()["team_id"]
        async with member_client(server_b.base_url, token_for(b)) as app_b:
            assert (await app_b.post(f"/v1/teams/{team}/join")).status_code == 200

        async with (
            live(server.ws_url, token_for(a), teams=True) as on_a,
            live(server_b.ws_url, token_for(b), teams=True) as on_b,
            live(server.ws_url, token_for(c), teams=True) as on_c,
        ):
            await send_events(brand_b, purchase(a, 10))
            for sock in (on_a, on_b):
                progress = (await heard(sock, team, "team.goal_progress"))["data"]
                assert (progress["goal_id"], progress["progress"]) == ("squad-weekly-orders", 1)

            # c joins mid-way, on instance B; c's socket is on A.
            async with member_client(server_b.base_url, token_for(c)) as app_c:
                assert (await app_c.post(f"/v1/teams/{team}/join")).status_code == 200
            await heard(on_c, team, "team.member_joined", lambda data: data["display_name"] == c[-6:])
            await send_events(brand, purchase(b, 10), purchase(c, 10))
            for sock in (on_a, on_b, on_c):
                # Progress is coalesced (at most one every few seconds): the last value arrives.
                progress = await heard(sock, team, "team.goal_progress", lambda data: data["progress"] == 3)
                assert progress["data"]["target"] == 60
