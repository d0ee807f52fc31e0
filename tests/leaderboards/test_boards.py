"""Boards end to end inside one server: scores written through the service, read over HTTP.

Every test here runs twice (see conftest.py): with the boards on the run's Redis, and on a
three-node Redis Cluster.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from server.db import utcnow
from server.leaderboards import keys
from server.leaderboards.index import _payload, _rows_query, apply_scores, check, live_periods, rebuild
from server.leaderboards.jobs import archive_due
from server.leaderboards.models import LeagueMember
from server.leaderboards.periods import previous_span, span_at
from server.leaderboards.service import boards
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
    who_handle,
)
from tests.support import unique
from tests.tasks.quest_support import serving


def board_yaml(board_id: str, **extra: str) -> str:
    fields = {
        "name": "Test board",
        "metric": "{event: purchase, value: amount}",
        "period": "weekly",
        "zone": "Europe/Paris",
        "scopes": "[global, tier, team, friends]",
        "rookie": "{days: 30}",
        "notify": "{every_seconds: 0}",
    }
    fields.update(extra)
    body = "\n".join(f"    {k}: {v}" for k, v in fields.items() if v)
    return f"boards:\n  - id: {board_id}\n{body}\n"


def moment_in(span_start: datetime, now: datetime, fraction: float) -> datetime:
    return span_start + (now - span_start) * fraction


async def test_ties_go_to_whoever_reached_the_score_first(
    board_app: BoardApp, http_to: httpx.AsyncClient
) -> None:
    ctx, bid = board_app.ctx, unique("ties")
    a, b, c, d, e = (unique(x) for x in "abcde")
    with serving(ctx, boards_store(board_yaml(bid))):
        for m in (a, b, c, d, e):
            await put_member(http_to, board_app.brand, m)
        now = utcnow()
        span = span_at(boards(ctx).get(bid), now)
        assert span is not None
        at = [moment_in(span.start, now, f) for f in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)]
        await score(ctx, bid, e, 20, at[0])  # e reaches 50 last, in two steps
        await score(ctx, bid, b, 50, at[1])
        await score(ctx, bid, a, 50, at[2])
        await score(ctx, bid, c, 50, at[3])
        await score(ctx, bid, d, 60, at[4])
        await score(ctx, bid, e, 30, at[5])
        page = await standings(http_to, board_app.member(a), bid, limit=10)
        assert order(page) == [(1, d, 60), (2, b, 50), (3, a, 50), (4, c, 50), (5, e, 50)]
        assert page["total"] == 5 and page["period"]["key"] == span.key and page["period"]["status"] == "live"
        assert page["entries"][0]["display_name"] == d.upper()
        # The same order in Redis itself, each score exact.
        assert [m for m, _ in await redis_board(ctx, bid, span.key)] == [d, b, a, c, e]


async def test_ties_in_the_same_instant_rank_by_member_id_everywhere(
    board_app: BoardApp, http_to: httpx.AsyncClient
) -> None:
    ctx, bid = board_app.ctx, unique("same")
    members = sorted(unique("s") for _ in range(4))
    await make_members(ctx, members)
    with serving(ctx, boards_store(board_yaml(bid))):
        now = utcnow()
        async with ctx.db.transaction() as session:
            from server.leaderboards.service import Observation, record

            board = boards(ctx).get(bid)
            await record(ctx, session, [Observation(board, m, 10, now) for m in members], now=now)
        page = await standings(http_to, board_app.member(members[0]), bid)
        live = [m for _, m, _ in order(page)]
        assert sorted(live) == members and len(set(live)) == 4
        assert [r for r, _, _ in order(page)] == [1, 2, 3, 4]
        # The archive orders them the same way (checked against the same rule).
        from server.leaderboards.jobs import final_order

        class R:
            def __init__(self, m: str) -> None:
                self.member_id, self.score, self.tiebreak = m, 10, keys.slot_of(span_at(board, now), now)  # type: ignore[arg-type]

        assert [r.member_id for r in final_order(board, [R(m) for m in members])] == live


async def test_operators_best_set_and_ascending_boards(
    board_app: BoardApp, http_to: httpx.AsyncClient
) -> None:
    ctx = board_app.ctx
    best, latest, fastest = unique("best"), unique("set"), unique("asc")
    content = (
        board_yaml(best, operator="best")
        + board_yaml(latest, operator="set").replace("boards:\n", "")
        + board_yaml(fastest, operator="best", order="asc").replace("boards:\n", "")
    )
    a, b = unique("a"), unique("b")
    with serving(ctx, boards_store(content)):
        now = utcnow()
        span = span_at(boards(ctx).get(best), now)
        assert span is not None
        t = [moment_in(span.start, now, f) for f in (0.2, 0.4, 0.6)]
        for board_id in (best, latest, fastest):
            await score(ctx, board_id, a, 30, t[0])
            await score(ctx, board_id, a, 10, t[1])
            await score(ctx, board_id, b, 20, t[2])
        headers = board_app.member(a)
        assert order(await standings(http_to, headers, best)) == [(1, a, 30), (2, b, 20)]
        assert order(await standings(http_to, headers, latest)) == [(1, b, 20), (2, a, 10)]
        assert order(await standings(http_to, headers, fastest)) == [(1, a, 10), (2, b, 20)]


async def test_pages_and_the_members_around_me(board_app: BoardApp, http_to: httpx.AsyncClient) -> None:
    ctx, bid = board_app.ctx, unique("pages")
    members = [unique(f"p{i:02d}") for i in range(25)]
    with serving(ctx, boards_store(board_yaml(bid))):
        now = utcnow()
        for i, m in enumerate(members):
            await score(ctx, bid, m, 100 - i, now)
        headers = board_app.member(members[12])
        seen, cursor = [], None
        while True:
            params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
            page = await standings(http_to, headers, bid, **params)
            seen += order(page)
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [(i + 1, m, 100 - i) for i, m in enumerate(members)]
        me = await mine(http_to, headers, bid, around=2)
        assert me["rank"] == 13 and me["score"] == 88 and me["total"] == 25
        assert [who(e) for e in me["entries"]] == members[10:15]
        top = await mine(http_to, board_app.member(members[0]), bid, around=3)
        assert [e["rank"] for e in top["entries"]] == [1, 2, 3, 4]
        stranger = await mine(http_to, board_app.member(unique("nobody")), bid)
        assert stranger["rank"] is None and stranger["score"] is None and stranger["entries"] == []


async def test_scopes_tier_team_friends_and_moves(board_app: BoardApp, http_to: httpx.AsyncClient) -> None:
    ctx, bid = board_app.ctx, unique("scopes")
    gold1, gold2, silver, loner = unique("g1"), unique("g2"), unique("sv"), unique("lo")
    with serving(ctx, boards_store(board_yaml(bid))):
        await put_member(http_to, board_app.brand, gold1, tier="gold", team_id="red")
        await put_member(http_to, board_app.brand, gold2, tier="gold", team_id="blue")
        await put_member(http_to, board_app.brand, silver, tier="silver", team_id="red")
        await put_member(http_to, board_app.brand, loner)
        now = utcnow()
        for m, amount in ((gold1, 10), (gold2, 30), (silver, 20), (loner, 5)):
            await score(ctx, bid, m, amount, now)
        g = board_app.member(gold1)
        assert order(await standings(http_to, g, bid, scope="tier")) == [(1, gold2, 30), (2, gold1, 10)]
        page = await standings(http_to, g, bid, scope="tier:silver")
        assert order(page) == [(1, silver, 20)] and page["scope"] == "tier:silver"
        assert order(await standings(http_to, g, bid, scope="team")) == [(1, silver, 20), (2, gold1, 10)]
        # A member with no tier is on the first tier of the ladder.
        assert order(await standings(http_to, g, bid, scope="tier:regular")) == [(1, loner, 5)]
        r = await http_to.get(
            f"/v1/leaderboards/{bid}", params={"scope": "team"}, headers=board_app.member(loner)
        )
        assert r.status_code == 404 and r.json()["code"] == "no_team"
        # Friends: the member ranked among the friends the brand named (strangers and friends
        # without a score are left out).
        r = await http_to.put(
            f"/v1/members/{gold1}/friends",
            json={"friends": [silver, loner, unique("x")]},
            headers=board_app.brand,
        )
        assert r.status_code == 200
        friends = await standings(http_to, g, bid, scope="friends")
        assert order(friends) == [(1, silver, 20), (2, gold1, 10), (3, loner, 5)]
        me = await mine(http_to, g, bid, scope="friends", around=1)
        assert me["rank"] == 2 and [who(e) for e in me["entries"]] == [silver, gold1, loner]
        # A new tier moves the member's live score with them.
        await put_member(http_to, board_app.brand, gold2, tier="silver")
        assert order(await standings(http_to, g, bid, scope="tier")) == [(1, gold1, 10)]
        assert order(await standings(http_to, g, bid, scope="tier:silver")) == [
            (1, gold2, 30),
            (2, silver, 20),
        ]
        # And a new display name shows.
        await put_member(http_to, board_app.brand, gold2, display_name="Renamed")
        assert (await standings(http_to, g, bid))["entries"][0]["display_name"] == "Renamed"


async def test_rookie_board_takes_recent_sign_ups_and_lets_them_age_out(
    board_app: BoardApp, http_to: httpx.AsyncClient
) -> None:
    ctx, bid = board_app.ctx, unique("rookies")
    fresh, aging, veteran = unique("new"), unique("aging"), unique("old")
    now = utcnow()
    with serving(ctx, boards_store(board_yaml(bid, period="all_time"))):
        await put_member(http_to, board_app.brand, fresh, signed_up_at=now - timedelta(days=2))
        await put_member(http_to, board_app.brand, aging, signed_up_at=now - timedelta(days=31))
        await put_member(http_to, board_app.brand, veteran, signed_up_at=now - timedelta(days=400))
        await score(ctx, bid, fresh, 10, now)
        await score(ctx, bid, veteran, 50, now)
        # Two days ago `aging` was 29 days in: a rookie then, not any more.
        await score(ctx, bid, aging, 30, now - timedelta(days=2), now=now - timedelta(days=2))
        headers = board_app.member(fresh)
        assert order(await standings(http_to, headers, bid, scope="rookie")) == [(1, fresh, 10)]
        assert [m for _, m, _ in order(await standings(http_to, headers, bid))] == [veteran, aging, fresh]
        r = await http_to.get(f"/v1/leaderboards/{bid}", params={"scope": "league"}, headers=headers)
        assert r.status_code == 400 and r.json()["code"] == "invalid_scope"


async def test_replayed_and_late_outbox_rows_change_nothing(
    board_app: BoardApp, http_to: httpx.AsyncClient
) -> None:
    ctx, bid = board_app.ctx, unique("replay")
    a, b = unique("a"), unique("b")
    with serving(ctx, boards_store(board_yaml(bid))):
        now = utcnow()
        board = boards(ctx).get(bid)
        span = span_at(board, now)
        await score(ctx, bid, a, 10, now)
        async with ctx.db.session() as session:
            first = (
                await session.execute(_rows_query(board, span).where(sa.text(f"member_id = '{a}'")))
            ).one()
        await score(ctx, bid, a, 15, now)
        await score(ctx, bid, b, 20, now)
        before = await redis_board(ctx, bid, span.key)
        old = _payload(ctx, board, span, first, None, now)
        async with ctx.db.session() as session:
            latest = (
                await session.execute(_rows_query(board, span).where(sa.text(f"member_id = '{a}'")))
            ).one()
        current = _payload(ctx, board, span, latest, None, now)
        # The first row applied again, late (after a newer one), and the newest applied twice.
        await apply_scores(ctx, [(1, old), (2, current), (3, current)], True)
        assert await redis_board(ctx, bid, span.key) == before
        assert order(await standings(http_to, board_app.member(a), bid)) == [(1, a, 25), (2, b, 20)]
        assert all(d.clean for d in await check(ctx, await live_periods(ctx, [bid])))


async def test_many_amounts_at_once_add_up(board_app: BoardApp, http_to: httpx.AsyncClient) -> None:
    ctx, bid = board_app.ctx, unique("busy")
    member = unique("m")
    with serving(ctx, boards_store(board_yaml(bid))):
        now = utcnow()
        await asyncio.gather(*(score(ctx, bid, member, 1, now) for _ in range(20)))
        me = await mine(http_to, board_app.member(member), bid)
        assert me["score"] == 20 and me["rank"] == 1
        assert all(d.clean for d in await check(ctx, await live_periods(ctx, [bid])))


async def test_flushed_redis_is_rebuilt_to_identical_standings(
    board_app: BoardApp, http_to: httpx.AsyncClient
) -> None:
    ctx, bid = board_app.ctx, unique("rebuild")
    tiers = ["regular", "silver", "gold"]
    members = [unique(f"r{i:02d}") for i in range(30)]
    now = utcnow()
    with serving(ctx, boards_store(board_yaml(bid))):
        for i, m in enumerate(members):
            await put_member(
                http_to,
                board_app.brand,
                m,
                tier=tiers[i % 3],
                signed_up_at=now - timedelta(days=10 * (i % 5)),
            )
            await score(ctx, bid, m, (i * 7) % 11, now - timedelta(seconds=i))
        headers = board_app.member(members[0])

        async def snapshot() -> list[object]:
            return [
                order(await standings(http_to, headers, bid, scope=s, limit=100))
                for s in ("global", "tier:silver", "tier:gold", "rookie")
            ] + [(await mine(http_to, headers, bid, around=3))["entries"]]

        before = await snapshot()
        span = span_at(boards(ctx).get(bid), now)
        await drop_board_keys(ctx, bid, span.key)
        assert (await standings(http_to, headers, bid))["entries"] == []
        drift = await check(ctx, await live_periods(ctx, [bid]))
        assert drift[0].missing == 30 and not drift[0].clean
        done = await rebuild(ctx, await live_periods(ctx, [bid]))
        assert [(d.board_id, d.members) for d in done] == [(bid, 30)]
        assert await snapshot() == before
        assert all(d.clean for d in await check(ctx, await live_periods(ctx, [bid])))
        # A stray member in Redis is drift too, and a rebuild takes it out.
        await ctx.redis.boards.zadd(keys.base(ctx, bid, span.key) + ":g", {"ghost": 1})
        assert (await check(ctx, await live_periods(ctx, [bid])))[0].extra == 1
        await rebuild(ctx, await live_periods(ctx, [bid]))
        assert await snapshot() == before


async def test_finished_periods_are_archived_and_stay_readable(
    board_app: BoardApp, http_to: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, bid = board_app.ctx, unique("archive")
    members = [unique(f"a{i}") for i in range(6)]
    monkeypatch.setattr(ctx.settings, "leaderboard_grace_seconds", 3 * 86400.0)
    with serving(ctx, boards_store(board_yaml(bid, period="daily", zone="America/New_York"))):
        board = boards(ctx).get(bid)
        now = utcnow()
        yesterday = previous_span(board, now)
        assert yesterday is not None and yesterday.end is not None
        for i, m in enumerate(members):
            await put_member(http_to, board_app.brand, m, tier="gold" if i % 2 else "silver")
            await score(ctx, bid, m, 10 * (i % 3), yesterday.start + timedelta(hours=1, minutes=i))
        headers = board_app.member(members[0])
        live = await standings(http_to, headers, bid, period="previous", limit=100)
        assert live["period"]["status"] == "ended" and live["period"]["key"] == yesterday.key
        live_gold = order(await standings(http_to, headers, bid, period="previous", scope="tier:gold"))
        # Two instances' archive jobs at once: the period is archived by one of them, once.
        due = yesterday.end + timedelta(days=3, seconds=31)
        first, second = await asyncio.gather(archive_due(ctx, now=due), archive_due(ctx, now=due))
        assert [a for a in first + second if a[0] == bid] == [(bid, yesterday.key, 6)]
        assert await archive_due(ctx, now=due) == []
        final = await standings(http_to, headers, bid, period="previous", limit=100)
        assert final["period"]["status"] == "archived" and order(final) == order(live)
        assert order(await standings(http_to, headers, bid, period=yesterday.key, limit=100)) == order(live)
        by_date = (yesterday.start + timedelta(hours=12)).astimezone(UTC).date().isoformat()
        assert order(await standings(http_to, headers, bid, period=by_date, limit=100)) == order(live)
        assert (
            order(await standings(http_to, headers, bid, period="previous", scope="tier:gold")) == live_gold
        )
        page = await standings(http_to, headers, bid, period="previous", limit=2)
        nxt = await standings(http_to, headers, bid, period="previous", limit=2, cursor=page["next_cursor"])
        assert order(page) + order(nxt) == order(live)[:4]
        me = await mine(http_to, headers, bid, period="previous", around=1)
        mine_live = next(e for e in live["entries"] if who(e) == members[0])
        assert me["rank"] == mine_live["rank"] and me["score"] == 0
        # Today is a new period: it starts empty.
        assert (await standings(http_to, headers, bid))["entries"] == []
        # A late amount for the archived day no longer counts.
        await score(
            ctx,
            bid,
            members[0],
            1000,
            yesterday.start + timedelta(hours=2),
            now=yesterday.end + timedelta(days=4),
        )
        assert order(await standings(http_to, headers, bid, period="previous", limit=100)) == order(live)


async def test_leagues_promote_and_demote_at_the_weekly_reset(
    board_app: BoardApp, http_to: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, bid = board_app.ctx, unique("league")
    monkeypatch.setattr(ctx.settings, "leaderboard_grace_seconds", 15 * 86400.0)
    content = board_yaml(
        bid,
        scopes="[global]",
        rookie="",
        league="{levels: [Bronze, Silver, Gold], size: 4, promote: 2, demote: 1}",
    )
    members = [f"{unique('lg')}-{i:02d}" for i in range(12)]
    with serving(ctx, boards_store(content)):
        board = boards(ctx).get(bid)
        now = utcnow()
        last = previous_span(board, now)
        before_last = previous_span(board, last.start)
        assert last and before_last and last.end and before_last.end
        # Week 1: twelve members at Bronze sit in three cohorts of four, in the order they act.
        for i, m in enumerate(members):
            await score(ctx, bid, m, 100 - i, before_last.start + timedelta(hours=1, minutes=i))
        headers = board_app.member(members[0])
        cohort = await standings(http_to, headers, bid, period=before_last.key)
        assert cohort["scope"] == "league" and [who(e) for e in cohort["entries"]] == members[:4]
        await archive_due(ctx, now=before_last.end + timedelta(days=15, seconds=31))
        levels = await league_levels(ctx, bid)
        promoted = {m for m in members if levels.get(m) == 1}
        assert promoted == {members[0], members[1], members[4], members[5], members[8], members[9]}
        # Week 2: the six promoted play at Silver (cohorts of 4 and 2), members[11] does nothing.
        for i, m in enumerate(members[:11]):
            await score(ctx, bid, m, i + 1, last.start + timedelta(hours=1, minutes=i))
        silver_page = await standings(http_to, board_app.member(members[0]), bid, period=last.key)
        assert {who(e) for e in silver_page["entries"]} <= promoted
        await archive_due(ctx, now=last.end + timedelta(days=15, seconds=31))
        after = await league_levels(ctx, bid)
        # In the full Silver cohort (members 0, 1, 4, 5 by when they acted; scores 1, 2, 5, 6):
        # 5 and 4 go up to Gold, 0 goes back to Bronze.
        assert after[members[5]] == 2 and after[members[4]] == 2 and after[members[0]] == 0
        assert after[members[1]] == 1
        assert members[11] not in await placed(ctx, bid, last.key)
        boards_list = (await http_to.get("/v1/leaderboards", headers=board_app.member(members[5]))).json()
        mine_league = next(b for b in boards_list["boards"] if b["board_id"] == bid)["league"]
        assert mine_league["name"] == "Gold" and mine_league["level"] == 2


async def league_levels(ctx: object, board_id: str) -> dict[str, int]:
    async with ctx.db.session() as session:  # type: ignore[attr-defined]
        rows = await session.execute(
            sa.select(LeagueMember.member_id, LeagueMember.level).where(LeagueMember.board_id == board_id)  # type: ignore[call-overload]
        )
        return {m: lv for m, lv in rows}


async def placed(ctx: object, board_id: str, period: str) -> set[str]:
    from server.leaderboards.models import BoardScore

    async with ctx.db.session() as session:  # type: ignore[attr-defined]
        rows = await session.execute(
            sa.select(BoardScore.member_id).where(
                BoardScore.board_id == board_id, BoardScore.period == period
            )  # type: ignore[call-overload]
        )
        return {m for (m,) in rows}


async def test_rank_messages_when_a_threshold_or_a_friend_is_crossed(
    board_app: BoardApp, http_to: httpx.AsyncClient
) -> None:
    ctx, bid = board_app.ctx, unique("ranks")
    a, b, c = unique("a"), unique("b"), unique("c")
    with serving(ctx, boards_store(board_yaml(bid, notify="{top: [1, 3], friends: true, every_seconds: 0}"))):
        await put_member(http_to, board_app.brand, b, display_name="Bea")
        await put_member(http_to, board_app.brand, c)
        r = await http_to.put(f"/v1/members/{c}/friends", json={"friends": [a]}, headers=board_app.brand)
        assert r.status_code == 200
        now = utcnow()
        marks = {m: await ctx.hub.head(m) for m in (a, b, c)}
        await score(ctx, bid, a, 10, now)
        await score(ctx, bid, b, 20, now)
        await score(ctx, bid, c, 5, now)  # third: enters the top 3
        await score(ctx, bid, c, 10, now)  # passes friend a (20 > 15 > 10... c reaches 15)
        said = {m: await rank_messages(ctx, m, marks[m]) for m in (a, b, c)}
        assert (
            said[a][0]["reason"] == "entered_top" and said[a][0]["threshold"] == 1 and said[a][0]["rank"] == 1
        )
        assert said[a][1]["reason"] == "overtaken" and who_handle(said[a][1]["by_handle"]) == b
        assert said[a][1]["by_display_name"] == "Bea" and said[a][1]["rank"] == 2
        assert said[b][0]["reason"] == "entered_top" and said[b][0]["rank"] == 1
        assert said[c][0]["reason"] == "entered_top" and said[c][0]["threshold"] == 3
        assert said[c][1]["reason"] == "passed_friend" and [
            who_handle(h) for h in said[c][1]["friend_handles"]
        ] == [a]
        assert said[a][-1]["reason"] == "overtaken_by_friend" and who_handle(said[a][-1]["by_handle"]) == c
        for messages in said.values():  # no member id of another, in any field
            assert all("member_id" not in k and "friend_ids" not in k for m in messages for k in m["data"])
        assert all(m["data"]["board_id"] == bid for ms in said.values() for m in ms)


async def test_rank_messages_are_rate_limited(board_app: BoardApp, http_to: httpx.AsyncClient) -> None:
    ctx, bid = board_app.ctx, unique("quiet")
    a, b = unique("a"), unique("b")
    with serving(ctx, boards_store(board_yaml(bid, notify="{top: [1], friends: false, every_seconds: 600}"))):
        now = utcnow()
        mark = await ctx.hub.head(a)
        await score(ctx, bid, a, 10, now)  # a enters the top: told
        await score(ctx, bid, b, 20, now)  # a pushed out: within the limit, not told
        await score(ctx, bid, a, 20, now)  # a back on top: not told either
        assert [m["data"]["reason"] for m in await rank_messages(ctx, a, mark)] == ["entered_top"]


async def rank_messages(ctx: object, member_id: str, since: str) -> list[dict[str, object]]:
    history = await ctx.hub.history(member_id, since)  # type: ignore[attr-defined]
    out = [json.loads(raw) for _, raw in history]
    return [
        m | {"reason": m["data"]["reason"], **m["data"]}
        for m in out
        if m["type"] == "leaderboard.rank_changed"
    ]


async def test_points_boards_count_what_the_ledger_posts(
    board_app: BoardApp, http_to: httpx.AsyncClient
) -> None:
    ctx, bid = board_app.ctx, unique("points")
    member = unique("m")
    with serving(ctx, boards_store(board_yaml(bid, metric="points"))):
        await put_member(http_to, board_app.brand, member)
        for i, amount in enumerate((50, 30, -20)):
            r = await http_to.post(
                f"/v1/members/{member}/points",
                json={"amount": amount, "reason": "test", "idempotency_key": f"k{i}"},
                headers=board_app.brand,
            )
            assert r.status_code in (200, 201), r.text
        # A replayed adjustment counts once; a correction (negative adjustment) counts against.
        r = await http_to.post(
            f"/v1/members/{member}/points",
            json={"amount": 50, "reason": "test", "idempotency_key": "k0"},
            headers=board_app.brand,
        )
        assert r.status_code in (200, 201)
        me = await mine(http_to, board_app.member(member), bid)
        assert me["score"] == 60
        assert all(d.clean for d in await check(ctx, await live_periods(ctx, [bid])))


async def test_bad_requests_are_refused_clearly(board_app: BoardApp, http_to: httpx.AsyncClient) -> None:
    ctx, bid, season = board_app.ctx, unique("bad"), unique("season")
    seasons = (
        "\n      - {id: s2020, start: 2020-01-01, end: 2020-04-01}"
        "\n      - {id: s2099, start: 2099-01-01, end: 2099-04-01}"
    )
    content = board_yaml(bid) + board_yaml(season, period="season", seasons=seasons, rookie="").replace(
        "boards:\n", ""
    )
    headers = board_app.member(unique("m"))
    with serving(ctx, boards_store(content)):
        cases = [
            (f"/v1/leaderboards/{unique('nope')}", {}, 404, "board_not_found"),
            (f"/v1/leaderboards/{bid}", {"period": "2026-13"}, 400, "invalid_period"),
            (f"/v1/leaderboards/{bid}", {"period": "2099-W01"}, 400, "future_period"),
            (f"/v1/leaderboards/{bid}", {"period": "2026-02-30"}, 400, "invalid_period"),
            (f"/v1/leaderboards/{bid}", {"limit": 0}, 400, "invalid_limit"),
            (f"/v1/leaderboards/{bid}", {"limit": 101}, 400, "invalid_limit"),
            (f"/v1/leaderboards/{bid}", {"cursor": "bm90LW1pbmU"}, 400, "invalid_cursor"),
            (f"/v1/leaderboards/{bid}", {"scope": "galaxy"}, 400, "invalid_scope"),
            (f"/v1/leaderboards/{bid}", {"scope": "tier:platinum"}, 400, "invalid_scope"),
            (f"/v1/leaderboards/{bid}/me", {"around": 51}, 400, "invalid_around"),
            (f"/v1/leaderboards/{season}", {}, 404, "no_current_period"),
            (f"/v1/leaderboards/{season}", {"period": "s2099"}, 400, "future_period"),
        ]
        for path, params, status, code in cases:
            r = await http_to.get(path, params=params, headers=headers)
            assert (r.status_code, r.json().get("code")) == (status, code), (path, params, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        ok = await http_to.get(f"/v1/leaderboards/{season}", params={"period": "s2020"}, headers=headers)
        assert ok.status_code == 200 and ok.json()["entries"] == []
        assert (await http_to.get(f"/v1/leaderboards/{bid}")).status_code == 401
        listed = (await http_to.get("/v1/leaderboards", headers=headers)).json()["boards"]
        by_id = {b["board_id"]: b for b in listed}
        assert by_id[season]["current_period"] is None and by_id[season]["previous_period"]["key"] == "s2020"
        assert by_id[bid]["scopes"] == ["global", "tier", "team", "friends", "rookie"]
        assert by_id[bid]["current_period"]["key"].startswith(str(utcnow().isocalendar()[0])[:2])


async def test_top_pages_are_shared_briefly_and_dropped_on_a_local_write(
    board_app: BoardApp, http_to: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, bid = board_app.ctx, unique("pages")
    a, b, elsewhere = unique("a"), unique("b"), unique("other")
    await make_members(ctx, [elsewhere])
    monkeypatch.setattr(ctx.settings, "leaderboard_page_cache_seconds", 0.5)
    with serving(ctx, boards_store(board_yaml(bid))):
        now = utcnow()
        span = span_at(boards(ctx).get(bid), now)
        await score(ctx, bid, a, 10, now)
        headers = board_app.member(a)
        assert order(await standings(http_to, headers, bid)) == [(1, a, 10)]
        # Another instance indexes a score: this one shows it within the page's lifetime.
        base = keys.base(ctx, bid, span.key)
        await ctx.redis.boards.zadd(base + ":g", {elsewhere: keys.encode(50, 0, "desc")})
        await ctx.redis.boards.hset(base + ":m", elsewhere, "1\t\t50\tOther")
        assert order(await standings(http_to, headers, bid)) == [(1, a, 10)]
        await asyncio.sleep(0.6)
        assert order(await standings(http_to, headers, bid)) == [(1, elsewhere, 50), (2, a, 10)]
        # A score written here is shown at once.
        await score(ctx, bid, b, 20, now)
        assert order(await standings(http_to, headers, bid)) == [(1, elsewhere, 50), (2, b, 20), (3, a, 10)]
        # Around-me is never shared.
        assert (await mine(http_to, headers, bid))["rank"] == 3
