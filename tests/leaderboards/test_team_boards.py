"""Boards that rank teams, and the `team` scope by a board's kind of team.

Every test here runs twice (see conftest.py): with the boards on the run's Redis, and on a
three-node Redis Cluster.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from server.content.loader import read_files, validate_files
from server.db import utcnow
from server.leaderboards import keys
from server.leaderboards.index import _payload, _rows_query, apply_scores, check, live_periods, restore_lost
from server.leaderboards.jobs import archive_due
from server.leaderboards.models import BoardScore, TeamShare
from server.leaderboards.periods import previous_span, span_at
from server.leaderboards.service import Observation, boards, record
from server.teams import service as teams
from tests.events.test_statement_counts import counting
from tests.leaderboards.conftest import BoardApp
from tests.leaderboards.support import (
    boards_store,
    drop_board_keys,
    make_members,
    mine,
    order,
    put_member,
    redis_board,
    score,
    standings,
    who,
)
from tests.support import ROOT, unique
from tests.tasks.quest_support import serving


def board_yaml(board_id: str, **extra: str) -> str:
    """A weekly board of squads counting purchases, and beside it (`<id>-m`) a board of members
    whose `team` scope is the member's squad."""
    fields = {
        "name": "Squads",
        "metric": "{event: purchase, value: amount}",
        "ranks": "teams",
        "team_kind": "squad",
        "period": "weekly",
        "zone": "Europe/Paris",
        "notify": "{every_seconds: 0}",
    }
    fields.update(extra)
    body = "\n".join(f"    {k}: {v}" for k, v in fields.items() if v)
    return (
        f"boards:\n  - id: {board_id}\n{body}\n"
        f"  - id: {board_id}-m\n    name: Members\n    metric: {{event: purchase, value: amount}}\n"
        "    scopes: [global, team]\n    team_kind: squad\n    notify: {every_seconds: 0}\n"
    )


async def make_team(ctx: Any, kind_id: str, member_ids: list[str], team_id: str | None = None) -> str:
    """A team of a kind with these members, made as the brand's systems make assigned teams."""
    team_id = team_id or unique(kind_id)
    await make_members(ctx, member_ids)
    async with ctx.db.transaction() as session:
        kind = teams.kind_of(ctx, kind_id)
        team = await teams.create_assigned(session, team_id, kind, name=f"The {team_id}", created_by="brand")
        for m in member_ids:
            await teams.add_member(ctx, session, team, kind, m)
    return team_id


async def move(ctx: Any, member_id: str, from_team: str, to_team: str) -> None:
    async with ctx.db.transaction() as session:
        old = await teams.get_team(session, from_team, lock=True)
        new = await teams.get_team(session, to_team, lock=True)
        assert old is not None and new is not None
        assert await teams.remove_member(ctx, session, old, member_id)
        assert await teams.add_member(ctx, session, new, teams.kind_of(ctx, new.kind), member_id)


def ranked(page: dict[str, Any]) -> list[tuple[int, str, int]]:
    assert page["entries"] == [] and page["ranks"] == "teams"
    return [(t["rank"], t["team_id"], t["score"]) for t in page["teams"]]


async def breakdown(
    http: httpx.AsyncClient, headers: dict[str, str], board_id: str, team_id: str, **params: Any
) -> dict[str, Any]:
    r = await http.get(f"/v1/leaderboards/{board_id}/teams/{team_id}", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def shares(page: dict[str, Any]) -> list[tuple[int, str, int]]:
    return [(e["rank"], who(e), e["score"]) for e in page["members"]]


def moment(span_start: Any, now: Any, fraction: float) -> Any:
    return span_start + (now - span_start) * fraction


async def test_the_team_scope_is_the_members_team_of_the_boards_kind(
    board_app: BoardApp, http_to: httpx.AsyncClient
) -> None:
    ctx, bid = board_app.ctx, unique("kinds")
    a, b, c = unique("a"), unique("b"), unique("c")
    yaml = board_yaml(bid) + (
        f"  - id: {bid}-store\n    name: Stores\n    metric: {{event: purchase, value: amount}}\n"
        "    scopes: [global, team]\n"  # no team_kind: the teams' brand kind, stores
    )
    with serving(ctx, boards_store(yaml)):
        # a and b shop at one store, c at another; a and c play in one squad, b in another.
        store1, store2 = unique("st"), unique("st")
        await put_member(http_to, board_app.brand, a, team_id=store1)
        await put_member(http_to, board_app.brand, b, team_id=store1)
        await put_member(http_to, board_app.brand, c, team_id=store2)
        squad1 = await make_team(ctx, "squad", [a, c])
        squad2 = await make_team(ctx, "squad", [b])
        now = utcnow()
        for m, amount in ((a, 10), (b, 20), (c, 30)):
            for board_id in (f"{bid}-m", f"{bid}-store"):
                await score(ctx, board_id, m, amount, now)
        me = board_app.member(a)
        assert order(await standings(http_to, me, f"{bid}-store", scope="team")) == [(1, b, 20), (2, a, 10)]
        assert order(await standings(http_to, me, f"{bid}-m", scope="team")) == [(1, c, 30), (2, a, 10)]
        listed = (await http_to.get("/v1/leaderboards", headers=me)).json()["boards"]
        kinds = {x["board_id"]: (x["ranks"], x["team_kind"]) for x in listed}
        assert kinds[bid] == ("teams", "squad") and kinds[f"{bid}-m"] == ("members", "squad")
        assert kinds[f"{bid}-store"] == ("members", "store")
        # Moving to another squad moves the member's live scores with them, on the squads' board.
        await move(ctx, b, squad2, squad1)
        assert order(await standings(http_to, me, f"{bid}-m", scope="team")) == [
            (1, c, 30),
            (2, b, 20),
            (3, a, 10),
        ]
        assert order(await standings(http_to, me, f"{bid}-store", scope="team")) == [(1, b, 20), (2, a, 10)]
        assert all(d.clean for d in await check(ctx, await live_periods(ctx, [f"{bid}-m", f"{bid}-store"])))


async def test_teams_rank_by_what_their_members_brought_and_ties_go_to_the_first(
    board_app: BoardApp, http_to: httpx.AsyncClient
) -> None:
    ctx, bid = board_app.ctx, unique("squads")
    a1, a2, b1, b2, c1, loner = (unique(x) for x in ("a1", "a2", "b1", "b2", "c1", "lo"))
    with serving(ctx, boards_store(board_yaml(bid))):
        red = await make_team(ctx, "squad", [a1, a2])
        blue = await make_team(ctx, "squad", [b1, b2])
        green = await make_team(ctx, "squad", [c1])
        await make_members(ctx, [loner])
        now = utcnow()
        span = span_at(boards(ctx).get(bid), now)
        assert span is not None
        at = [moment(span.start, now, f) for f in (0.1, 0.2, 0.3, 0.4, 0.5)]
        await score(ctx, bid, b1, 30, at[0])
        await score(ctx, bid, a1, 25, at[1])
        await score(ctx, bid, c1, 10, at[2])
        await score(ctx, bid, a2, 5, at[3])  # red reaches 30 after blue did: blue ranks first
        await score(ctx, bid, loner, 500, at[4])  # in no squad: counts for no team
        me = board_app.member(a1)
        page = await standings(http_to, me, bid)
        assert ranked(page) == [(1, blue, 30), (2, red, 30), (3, green, 10)] and page["total"] == 3
        assert {t["team_id"]: (t["name"], t["size"]) for t in page["teams"]} == {
            red: (f"The {red}", 2),
            blue: (f"The {blue}", 2),
            green: (f"The {green}", 1),
        }
        mine_page = await mine(http_to, me, bid, around=1)
        assert mine_page["team_id"] == red and mine_page["rank"] == 2 and mine_page["score"] == 30
        assert [t["team_id"] for t in mine_page["teams"]] == [blue, red, green]
        lonely = await mine(http_to, board_app.member(loner), bid)
        assert lonely["team_id"] is None and lonely["rank"] is None and lonely["teams"] == []
        # What each member brought: the sum is the team's score; only my own row names me.
        split = await breakdown(http_to, me, bid, red)
        assert shares(split) == [(1, a1, 25), (2, a2, 5)]
        assert (split["rank"], split["score"], split["size"], split["total"]) == (2, 30, 2, 2)
        mine_row, other = split["members"]
        assert mine_row["is_me"] and mine_row["member_id"] == a1 and mine_row["handle"]
        assert not other["is_me"] and "member_id" not in other
        first = await breakdown(http_to, me, bid, red, limit=1)
        assert shares(first) == [(1, a1, 25)] and first["next_cursor"]
        rest = await breakdown(http_to, me, bid, red, limit=1, cursor=first["next_cursor"])
        assert shares(rest) == [(2, a2, 5)] and rest["next_cursor"] is None
        # The team's row in SQL and in Redis are the members' shares added up.
        assert all(d.clean for d in await check(ctx, await live_periods(ctx, [bid])))
        assert [m for m, _ in await redis_board(ctx, bid, span.key)] == [blue, red, green]


async def test_many_members_of_a_team_at_once_add_up(board_app: BoardApp, http_to: httpx.AsyncClient) -> None:
    ctx, bid = board_app.ctx, unique("busy")
    squad = [unique(f"m{i}") for i in range(10)]
    with serving(ctx, boards_store(board_yaml(bid))):
        team = await make_team(ctx, "squad", squad)
        now = utcnow()
        await asyncio.gather(*(score(ctx, bid, m, 1 + i % 3, now) for i, m in enumerate(squad * 3)))
        expected = sum(1 + i % 3 for i in range(30))
        assert ranked(await standings(http_to, board_app.member(squad[0]), bid)) == [(1, team, expected)]
        split = await breakdown(http_to, board_app.member(squad[0]), bid, team)
        assert sum(e["score"] for e in split["members"]) == expected == split["score"]
        assert all(d.clean for d in await check(ctx, await live_periods(ctx, [bid])))


async def test_a_member_who_moves_leaves_what_they_brought_with_the_old_team(
    board_app: BoardApp, http_to: httpx.AsyncClient
) -> None:
    ctx, bid = board_app.ctx, unique("movers")
    mover, stayer, other = unique("mv"), unique("st"), unique("ot")
    with serving(ctx, boards_store(board_yaml(bid))):
        old = await make_team(ctx, "squad", [mover, stayer])
        new = await make_team(ctx, "squad", [other])
        now = utcnow()
        await score(ctx, bid, mover, 40, now)
        await score(ctx, bid, stayer, 5, now)
        await score(ctx, bid, other, 10, now)
        await move(ctx, mover, old, new)
        await score(ctx, bid, mover, 7, now)  # now for the new team
        me = board_app.member(mover)
        assert ranked(await standings(http_to, me, bid)) == [(1, old, 45), (2, new, 17)]
        ctx.extras.pop("lb_team_facts", None)  # names and sizes are kept a few seconds per instance
        left = await breakdown(http_to, me, bid, old)
        assert shares(left) == [(1, mover, 40), (2, stayer, 5)] and left["size"] == 1
        joined = await breakdown(http_to, me, bid, new)
        assert shares(joined) == [(1, other, 10), (2, mover, 7)] and joined["size"] == 2
        assert (await mine(http_to, me, bid))["team_id"] == new
        assert all(d.clean for d in await check(ctx, await live_periods(ctx, [bid])))


async def test_a_finished_period_of_teams_is_archived_and_stays_readable(
    board_app: BoardApp, http_to: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, bid = board_app.ctx, unique("archive")
    a, b, c = unique("a"), unique("b"), unique("c")
    monkeypatch.setattr(ctx.settings, "leaderboard_grace_seconds", 3 * 86400.0)
    with serving(ctx, boards_store(board_yaml(bid, period="daily", zone="America/New_York"))):
        board = boards(ctx).get(bid)
        now = utcnow()
        yesterday = previous_span(board, now)
        assert yesterday is not None and yesterday.end is not None
        red = await make_team(ctx, "squad", [a, b])
        blue = await make_team(ctx, "squad", [c])
        await score(ctx, bid, a, 10, yesterday.start + timedelta(hours=1))
        await score(ctx, bid, c, 20, yesterday.start + timedelta(hours=2))
        await score(ctx, bid, b, 10, yesterday.start + timedelta(hours=3))  # red reaches 20 last
        me = board_app.member(a)
        live = await standings(http_to, me, bid, period="previous")
        assert live["period"]["status"] == "ended" and ranked(live) == [(1, blue, 20), (2, red, 20)]
        due = yesterday.end + timedelta(days=3, seconds=31)
        first, second = await asyncio.gather(archive_due(ctx, now=due), archive_due(ctx, now=due))
        assert [x for x in first + second if x[0] == bid] == [(bid, yesterday.key, 2)]
        final = await standings(http_to, me, bid, period="previous")
        assert final["period"]["status"] == "archived" and final["teams"] == live["teams"]
        kept = await mine(http_to, me, bid, period=yesterday.key)
        assert (kept["team_id"], kept["rank"], kept["score"]) == (red, 2, 20)
        split = await breakdown(http_to, me, bid, red, period="previous")
        assert split["period"]["status"] == "archived" and split["rank"] == 2
        assert shares(split) == [(1, a, 10), (2, b, 10)] and split["score"] == 20
        # Today starts empty, and a late amount for the archived day no longer counts.
        assert (await standings(http_to, me, bid))["teams"] == []
        late = yesterday.end + timedelta(days=4)
        await score(ctx, bid, a, 99, yesterday.start + timedelta(hours=4), now=late)
        assert (await standings(http_to, me, bid, period="previous"))["teams"] == live["teams"]


async def test_replays_change_nothing_and_a_lost_index_is_rebuilt(
    board_app: BoardApp, http_to: httpx.AsyncClient
) -> None:
    ctx, bid = board_app.ctx, unique("replay")
    a, b = unique("a"), unique("b")
    with serving(ctx, boards_store(board_yaml(bid))):
        red = await make_team(ctx, "squad", [a])
        blue = await make_team(ctx, "squad", [b])
        board = boards(ctx).get(bid)
        now = utcnow()
        span = span_at(board, now)
        assert span is not None
        await score(ctx, bid, a, 10, now)
        async with ctx.db.session() as session:
            query = _rows_query(board, span).where(BoardScore.__table__.c.member_id == red)
            first = (await session.execute(query)).one()
        await score(ctx, bid, a, 15, now)
        await score(ctx, bid, b, 20, now)
        before = await redis_board(ctx, bid, span.key)
        async with ctx.db.session() as session:
            latest = (await session.execute(query)).one()
        old, current = (_payload(ctx, board, span, row, None, now) for row in (first, latest))
        await apply_scores(ctx, [(1, old), (2, current), (3, current)], True)
        assert await redis_board(ctx, bid, span.key) == before
        me = board_app.member(a)
        expected = [(1, red, 25), (2, blue, 20)]
        assert ranked(await standings(http_to, me, bid)) == expected
        # Redis loses the board: the guard restores it from SQL, teams and their order alike.
        await drop_board_keys(ctx, bid, span.key)
        await ctx.redis.boards.delete(keys.built_key(keys.base(ctx, bid, span.key)))
        restored = await restore_lost(ctx, await live_periods(ctx, [bid]))
        assert [(r.board_id, r.members) for r in restored] == [(bid, 2)]
        assert await redis_board(ctx, bid, span.key) == before
        assert ranked(await standings(http_to, me, bid)) == expected
        assert all(d.clean for d in await check(ctx, await live_periods(ctx, [bid])))


async def test_team_rank_messages_reach_the_teams_members(
    board_app: BoardApp, http_to: httpx.AsyncClient
) -> None:
    ctx, bid = board_app.ctx, unique("ranks")
    a1, a2, b1 = unique("a1"), unique("a2"), unique("b1")
    with serving(ctx, boards_store(board_yaml(bid, notify="{top: [1, 3], every_seconds: 0}"))):
        red = await make_team(ctx, "squad", [a1, a2])
        blue = await make_team(ctx, "squad", [b1])
        marks = await _marks(ctx, {a1: red, a2: red, b1: blue})
        now = utcnow()
        await score(ctx, bid, a1, 10, now)  # red enters the top
        await score(ctx, bid, b1, 20, now)  # blue passes red
        team_of = {a1: red, a2: red, b1: blue}
        said = {m: await team_rank_messages(ctx, m, t, marks[m]) for m, t in team_of.items()}
        assert said[a1] == said[a2]
        entered, overtaken = said[a1]
        assert (entered["reason"], entered["threshold"], entered["rank"], entered["team_id"]) == (
            "entered_top",
            1,
            1,
            red,
        )
        assert entered["team_name"] == f"The {red}" and entered["board_id"] == bid
        assert (overtaken["reason"], overtaken["rank"], overtaken["by_team_id"]) == ("overtaken", 2, blue)
        assert overtaken["by_team_name"] == f"The {blue}"
        assert [(m["reason"], m["rank"]) for m in said[b1]] == [("entered_top", 1)]


async def test_team_rank_messages_are_rate_limited(board_app: BoardApp, http_to: httpx.AsyncClient) -> None:
    ctx, bid = board_app.ctx, unique("quiet")
    a, b = unique("a"), unique("b")
    with serving(ctx, boards_store(board_yaml(bid, notify="{top: [1], every_seconds: 600}"))):
        red = await make_team(ctx, "squad", [a])
        await make_team(ctx, "squad", [b])
        marks = await _marks(ctx, {a: red})
        now = utcnow()
        await score(ctx, bid, a, 10, now)  # red enters the top: told
        await score(ctx, bid, b, 20, now)  # red pushed out: within the limit, not told
        await score(ctx, bid, a, 20, now)  # red back on top: not told either
        assert [m["reason"] for m in await team_rank_messages(ctx, a, red, marks[a])] == ["entered_top"]


async def _marks(ctx: Any, team_of: dict[str, str]) -> dict[str, str]:
    """Where each member's team's history stands now."""
    out = {}
    for m, team_id in team_of.items():
        last = await ctx.redis.r.xrevrange(ctx.hub.team_history_key(team_id), count=1)
        out[m] = str(last[0][0]) if last else "0-0"
    return out


async def team_rank_messages(ctx: Any, member_id: str, team_id: str, since: str) -> list[dict[str, Any]]:
    """The rank messages published on the member's team's channel since `since`, oldest first
    (from the team's short history: each is one publish, heard by every member's socket)."""
    entries = await ctx.redis.r.xrange(ctx.hub.team_history_key(team_id), min=f"({since}", max="+")
    out = [json.loads('{"id":"' + mid + '",' + fields["t"]) for mid, fields in entries]
    return [m["data"] for m in out if m["type"] == "leaderboard.rank_changed"]


async def test_bad_team_board_requests_are_refused_clearly(
    board_app: BoardApp, http_to: httpx.AsyncClient
) -> None:
    ctx, bid = board_app.ctx, unique("bad")
    a = unique("a")
    with serving(ctx, boards_store(board_yaml(bid))):
        squad = await make_team(ctx, "squad", [a])
        club = await make_team(ctx, "club", [unique("c")])
        await score(ctx, bid, a, 5, utcnow())
        me = board_app.member(a)

        async def refused(path: str, status: int, code: str, **params: Any) -> str:
            r = await http_to.get(path, params=params, headers=me)
            assert r.status_code == status and r.json()["code"] == code, r.text
            return str(r.json()["detail"])

        assert "squad" in await refused(f"/v1/leaderboards/{bid}/teams/{club}", 404, "team_not_found")
        await refused(f"/v1/leaderboards/{bid}/teams/{unique('nope')}", 404, "team_not_found")
        await refused(f"/v1/leaderboards/{bid}-m/teams/{squad}", 404, "not_a_team_board")
        await refused(f"/v1/leaderboards/{unique('nope')}/teams/{squad}", 404, "board_not_found")
        await refused(f"/v1/leaderboards/{bid}/teams/{squad}", 400, "invalid_period", period="2026-13")
        await refused(f"/v1/leaderboards/{bid}/teams/{squad}", 400, "invalid_limit", limit=0)
        await refused(f"/v1/leaderboards/{bid}/teams/{squad}", 400, "invalid_cursor", cursor="zzz")
        await refused(f"/v1/leaderboards/{bid}", 400, "invalid_scope", scope="team")
        await refused(f"/v1/leaderboards/{bid}/me", 400, "invalid_scope", scope="friends")
        await refused(f"/v1/leaderboards/{bid}", 400, "invalid_period", period="W99")
        # Nothing changed: the squad's score is what it was.
        assert ranked(await standings(http_to, me, bid)) == [(1, squad, 5)]


async def test_statements_do_not_grow_with_the_boards_that_rank_teams(board_app: BoardApp) -> None:
    ctx = board_app.ctx
    members = [unique(f"m{i}") for i in range(4)]
    one, five = unique("one"), [unique(f"five{i}") for i in range(5)]
    yaml_one = board_yaml(one)
    yaml_five = "boards:\n" + "".join(board_yaml(b).split("\n", 1)[1] for b in five)
    await make_members(ctx, members)
    with serving(ctx, boards_store(yaml_one)):
        await make_team(ctx, "squad", members[:2])
        await make_team(ctx, "squad", members[2:])
    counts = []
    for yaml in (yaml_one, yaml_five, yaml_one, yaml_five):  # the first round warms what is noted once
        with serving(ctx, boards_store(yaml)):
            found = boards(ctx)
            seen = [Observation(b, m, 3, utcnow()) for b in found.boards for m in members]
            async with ctx.db.transaction() as session:
                with counting(ctx) as statements:  # the unit of work's (rank messages come after)
                    await record(ctx, session, seen)
            counts.append(len(statements))
    assert counts[2] == counts[3], counts
    async with ctx.db.session() as session:
        t = TeamShare.__table__.c
        summed = sa.select(sa.func.count(), sa.func.sum(t.score)).where(t.board_id.in_(five))
        rows, total = (await session.execute(summed)).one()
    assert (rows, total) == (4 * 5, 2 * 4 * 5 * 3)  # a share per member and board, brought twice


@pytest.mark.parametrize(
    ("board", "teams_yaml", "message"),
    [
        ("team_kind: guild", None, "team kind `guild` is not declared"),
        ("team_kind: everyone", None, "community of every member"),
        ("team_kind: club", "several", "lets a member be in several teams"),
        ("", "several", "(name a team_kind)"),
    ],
)
def test_a_boards_kind_of_team_must_be_one_it_can_use(
    board: str, teams_yaml: str | None, message: str
) -> None:
    files = read_files(ROOT / "content")
    if teams_yaml == "several":
        files["teams.yaml"] = (
            "brand_kind: club\nkinds:\n  - {id: club, name: Clubs, policy: assigned, several: true}\n"
            "  - {id: everyone, name: All, policy: community}\n"
        )
    files["leaderboards.yaml"] = (
        "boards:\n  - id: squads\n    name: Squads\n    metric: points\n    ranks: teams\n"
        + (f"    {board}\n" if board else "")
    )
    files["referrals.yaml"] = "\n".join(
        line for line in files["referrals.yaml"].splitlines() if not line.startswith("board:")
    )
    _, issues = validate_files(files, "test")
    assert any(message in i.message and i.file.endswith("leaderboards.yaml") for i in issues), issues


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("scopes: [global, team]", "global scope only"),
        ("operator: best", "operator: increment"),
        ("rookie: {days: 3}", "rank members, not teams"),
    ],
)
def test_a_board_that_ranks_teams_ranks_them_by_adding_up(fields: str, message: str) -> None:
    files = read_files(ROOT / "content")
    files["leaderboards.yaml"] = (
        "boards:\n  - id: squads\n    name: Squads\n    metric: points\n    ranks: teams\n"
        f"    team_kind: squad\n    {fields}\n"
    )
    _, issues = validate_files(files, "test")
    assert any(message in i.message for i in issues), issues
