"""A squad's members on two instances hear their squad's rank live: the demo's board of squads
(`weekly-squads`, points earned by each squad's members) tells a team's rank once, on the team's
channel, and every instance writes it to the sockets of the team's members it holds."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.helpers import brand_client, live, member_client
from tests.support import ServerProcess, unique

pytestmark = pytest.mark.e2e
BOARD = "weekly-squads"


def told(team_id: str):  # type: ignore[no-untyped-def]
    def done(ms: list[dict[str, Any]]) -> bool:
        return any(
            m["type"] == "leaderboard.rank_changed"
            and m["data"].get("board_id") == BOARD
            and m["data"].get("team_id") == team_id
            for m in ms
        )

    return done


async def test_a_squad_that_takes_the_lead_is_told_on_both_instances(
    server: ServerProcess, server_b: ServerProcess, brand_key: str, token_for
) -> None:
    a, b = unique("sq"), unique("sq")
    async with brand_client(server.base_url, brand_key) as brand:
        for m in (a, b):
            assert (await brand.put(f"/v1/members/{m}", json={"display_name": m[-6:]})).status_code == 201
    name = unique("Leaders ")
    async with member_client(server.base_url, token_for(a)) as app_a:
        r = await app_a.post("/v1/teams", json={"kind": "squad", "name": name})
        assert r.status_code == 201, r.text
        team = r.json()["team_id"]
    async with member_client(server_b.base_url, token_for(b)) as app_b:
        assert (await app_b.post(f"/v1/teams/{team}/join")).status_code == 200

    skip = ("points.", "growth.", "quest.", "team.")
    async with (
        live(server.ws_url, token_for(a), ranks=True, ignore=skip) as on_a,
        live(server_b.ws_url, token_for(b), ranks=True, ignore=skip) as on_b,
    ):
        async with brand_client(server_b.base_url, brand_key) as brand:
            # Less than test_leaderboards' leader: these points count on the members' board too.
            r = await brand.post(
                f"/v1/members/{b}/points",
                json={"amount": 400_000_000, "reason": "squad prize", "idempotency_key": unique("k")},
            )
            assert r.status_code in (200, 201), r.text
        heard = [(await sock.take_until(told(team)))[-1] for sock in (on_a, on_b)]
    assert heard[0]["id"].split("/")[1] == heard[1]["id"].split("/")[1]  # one publish, heard twice
    data = heard[0]["data"]
    assert (data["reason"], data["rank"], data["team_name"]) == ("entered_top", 1, name)

    async with member_client(server.base_url, token_for(a)) as app_a:
        me = (await app_a.get(f"/v1/leaderboards/{BOARD}/me", params={"around": 0})).json()
        assert (me["team_id"], me["rank"], me["score"]) == (team, 1, 400_000_000)
        split = (await app_a.get(f"/v1/leaderboards/{BOARD}/teams/{team}")).json()
    assert [(e["score"], e["is_me"]) for e in split["members"]] == [(400_000_000, False)]
    assert "member_id" not in split["members"][0] and split["size"] == 2
