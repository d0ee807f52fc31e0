"""Team channels: one publish per team message, heard by the sockets of the team's members on every
instance, with the teams each socket hears following joins and leaves while it is open."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from server.db import utcnow
from server.members import service as members
from server.realtime.hub import Connection, Hub, send_team_live, team_membership_changed
from tests.e2e.helpers import Live, live
from tests.support import unique

TEAMS = ("team.",)


async def place(ctx: Any, member_id: str, team_id: str, kind: str = "squad") -> None:
    async with ctx.db.transaction() as session:
        await members.ensure_member(session, member_id)
        await members.place(ctx, session, member_id, team_id, kind, "member", utcnow())


async def unplace(ctx: Any, member_id: str, team_id: str) -> None:
    async with ctx.db.transaction() as session:
        await members.unplace(ctx, session, member_id, team_id)


async def say(ctx: Any, team_id: str, n: int, type_: str = "team.test") -> None:
    async with ctx.db.transaction() as session:
        send_team_live(ctx, session, team_id, type_, {"n": n})


async def team_messages(sock: Live, n: int) -> list[dict[str, Any]]:
    return [m for m in await sock.take(n) if m["type"].startswith("team.")]


async def quiet(sock: Live, within: float = 0.5) -> None:
    """Nothing more arrives for a moment."""
    with pytest.raises(TimeoutError):
        got = await sock.next(within)
        raise AssertionError(f"unexpected message {got}")


class Socket:
    """What a second hub in this process writes to: the text frames, in order."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))
        self.arrived.set()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass

    async def wait_for(self, n: int, within: float = 10.0) -> list[dict[str, Any]]:
        async def enough() -> None:
            while len(self.sent) < n:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), within)
        return self.sent


async def subscribers(ctx: Any, channel: str) -> int:
    return int(dict(await ctx.redis.r.pubsub_numsub(channel))[channel])


def lookup_of(table: dict[str, set[str]]):  # type: ignore[no-untyped-def]
    async def teams_of(member_ids: list[str]) -> dict[str, set[str]]:
        return {m: set(table.get(m, set())) for m in member_ids}

    return teams_of


async def test_team_message_reaches_every_member_socket_and_no_one_else(ctx, served, token_for) -> None:
    team = unique("t")
    a, b, outsider = unique("m"), unique("m"), unique("m")
    for m in (a, b):
        await place(ctx, m, team)
    await place(ctx, outsider, unique("t"))
    async with (
        live(served.ws_url, token_for(a), teams=True) as on_a,
        live(served.ws_url, token_for(a), teams=True) as on_a2,
        live(served.ws_url, token_for(b), teams=True) as on_b,
        live(served.ws_url, token_for(outsider), teams=True) as on_out,
    ):
        await say(ctx, team, 1)
        await say(ctx, team, 2)
        for sock in (on_a, on_a2, on_b):
            got = await sock.take(2)
            assert [(m["type"], m["data"]) for m in got] == [
                ("team.test", {"team_id": team, "n": 1}),
                ("team.test", {"team_id": team, "n": 2}),
            ]
            # `<member part>/<team part>`: the team part is the same on every socket.
            assert [m["id"].split("/")[1] for m in got] == [m["id"].split("/")[1] for m in on_a.received]
        await quiet(on_out)
    # One publish per message, to the team's history: not one per member.
    assert [json.loads("{" + t)["data"]["n"] for _, t in await ctx.hub.team_history(team, "0-0")] == [1, 2]
    assert await ctx.hub.head(a) == "0-0"


async def test_since_a_team_message_replays_the_member_messages_after_it(ctx, served, token_for) -> None:
    team, member = unique("t"), unique("m")
    await place(ctx, member, team)
    async with live(served.ws_url, token_for(member), teams=True) as sock:
        before = await ctx.hub.publish(member, "test.before", {})
        await say(ctx, team, 1)
        got = await sock.take(2)
        assert [m["type"] for m in got] == ["test.before", "team.test"]
        assert got[1]["id"].split("/")[0] == before
    after = await ctx.hub.publish(member, "test.after", {})
    async with live(served.ws_url, token_for(member), since=got[1]["id"], teams=True) as again:
        msg = await again.next()
        assert (msg["id"], msg["type"]) == (after, "test.after")
        await quiet(again)


async def test_joining_and_leaving_while_connected_starts_and_stops_the_team(ctx, served, token_for) -> None:
    team, member = unique("t"), unique("m")
    await place(ctx, member, unique("t"))  # another team: the member exists
    async with live(served.ws_url, token_for(member), teams=True) as sock:
        await say(ctx, team, 1)
        await quiet(sock)
        # What the team says from the join on reaches the socket, even before its instance has
        # subscribed the team's channel (the join itself is the first thing a team says of it).
        await place(ctx, member, team)
        await say(ctx, team, 2)
        await say(ctx, team, 3)
        assert [m["data"]["n"] for m in await sock.take(2)] == [2, 3]
        await _until_hears(ctx.hub, member, team)
        await unplace(ctx, member, team)
        await _until_hears(ctx.hub, member, team, hears=False)
        await say(ctx, team, 4)
        await quiet(sock)
    assert team not in ctx.hub.team_local


async def _until_hears(hub: Hub, member_id: str, team_id: str, hears: bool = True) -> None:
    for _ in range(200):
        if all((team_id in c.teams) == hears for c in hub.local.get(member_id, ())):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{member_id} still {'does not hear' if hears else 'hears'} {team_id}")


async def test_community_team_is_heard_by_every_socket(ctx, served, token_for) -> None:
    a, b = unique("m"), unique("m")
    async with (
        live(served.ws_url, token_for(a), teams=True) as on_a,
        live(served.ws_url, token_for(b), teams=True) as on_b,
    ):
        await say(ctx, "everyone", 7)  # the demo content's community kind
        for sock in (on_a, on_b):
            msg = await sock.next()
            assert msg["data"] == {"team_id": "everyone", "n": 7}


async def test_a_second_instance_subscribes_each_team_once_and_lets_go_with_its_last_socket(ctx) -> None:
    """Two hubs in one process on one Redis, as two instances: a message said once reaches the
    sockets of both; each hub subscribes the team's channel once, whatever its sockets."""
    team = unique("t")
    a, b, c = unique("m"), unique("m"), unique("m")
    hub2 = Hub(ctx)
    await hub2.start()
    try:
        lookup = lookup_of({a: {team}, b: {team}, c: {team}})
        socks = {m: Socket() for m in (a, b, c)}
        conns = {m: Connection(hub2, m, socks[m]) for m in (a, b, c)}  # type: ignore[arg-type]
        for m in (a, b, c):
            await hub2.connect(conns[m], lookup)
        assert hub2.team_local[team] == set(conns.values())
        channel = hub2.team_channel(team)
        assert await subscribers(ctx, channel) == 1
        await say(ctx, team, 1)
        for m in (a, b, c):
            got = await socks[m].wait_for(1)
            assert [(x["type"], x["data"]["n"]) for x in got] == [("team.test", 1)]
            assert got[0]["id"].startswith("0-0/")
        await hub2.disconnect(conns[a])
        await hub2.disconnect(conns[b])
        assert await subscribers(ctx, channel) == 1
        await hub2.disconnect(conns[c])
        assert team not in hub2.team_local
        for _ in range(100):  # the unsubscribe is written, not waited for
            if await subscribers(ctx, channel) == 0:
                break
            await asyncio.sleep(0.02)
        assert await subscribers(ctx, channel) == 0
    finally:
        await hub2.stop()


async def test_a_membership_change_reaches_every_instance(ctx) -> None:
    team, member = unique("t"), unique("m")
    table: dict[str, set[str]] = {member: set()}
    hub2 = Hub(ctx)
    await hub2.start()
    try:
        sock = Socket()
        conn = Connection(hub2, member, sock)  # type: ignore[arg-type]
        await hub2.connect(conn, lookup_of(table))
        assert conn.teams == set()
        table[member] = {team}
        async with ctx.db.transaction() as session:  # what members.place and unplace queue
            team_membership_changed(ctx, session, member)
        await _until_hears(hub2, member, team)
        await say(ctx, team, 1)
        assert [x["data"]["n"] for x in await sock.wait_for(1)] == [1]
        await hub2.disconnect(conn)
    finally:
        await hub2.stop()


async def test_sockets_that_stay_open_get_the_team_messages_sent_while_redis_was_lost(ctx) -> None:
    team, member = unique("t"), unique("m")
    hub2 = Hub(ctx)
    await hub2.start()
    try:
        sock = Socket()
        conn = Connection(hub2, member, sock)  # type: ignore[arg-type]
        await hub2.connect(conn, lookup_of({member: {team}}))
        await say(ctx, team, 1)
        await sock.wait_for(1)
        # The instance's pub/sub connection drops: it misses what is said until it is back.
        await hub2._pubsub.connection.disconnect()
        await say(ctx, team, 2)
        await say(ctx, team, 3)
        got = await sock.wait_for(3, within=20)
        assert [x["data"]["n"] for x in got] == [1, 2, 3]
        await hub2.disconnect(conn)
    finally:
        await hub2.stop()
