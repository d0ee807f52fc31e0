"""Team goals: members' events add up per team, milestones pay each member once, fairly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from server.content.loader import validate_files
from server.ledger.service import verify
from server.teams import goals as team_goals
from server.teams.models import TeamGoalContribution, TeamGoalMilestone, TeamGoalTotal
from tests.support import unique
from tests.teams.goal_support import (
    deliver,
    event,
    goals_files,
    new_members,
    new_team,
    paid,
    place,
    points,
    serving_goals,
    settle,
    unplace,
)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def _total(ctx, goal_id: str, team_id: str) -> tuple[float, int]:
    async with ctx.db.session() as session:
        row = (
            await session.execute(
                sa.select(TeamGoalTotal.total, TeamGoalTotal.contributors).where(
                    TeamGoalTotal.goal_id == goal_id, TeamGoalTotal.team_id == team_id
                )
            )
        ).first()
    return (row.total, row.contributors) if row else (0.0, 0)


async def _milestones(ctx, goal_id: str, team_id: str) -> list[tuple[int, str]]:
    async with ctx.db.session() as session:
        rows = await session.execute(
            sa.select(TeamGoalMilestone.at, TeamGoalMilestone.status)
            .where(TeamGoalMilestone.goal_id == goal_id, TeamGoalMilestone.team_id == team_id)
            .order_by(TeamGoalMilestone.at)
        )
        return [tuple(r) for r in rows]


async def test_parallel_contributions_add_up_and_pay_each_milestone_once(ctx, http, as_brand):
    """200 orders of 200 members of one crew, sent as 20 parallel batches of the brand's events:
    the total is exactly 200 and each milestone pays each member once."""
    goal_id = unique("orders").lower()
    goal = {
        "id": goal_id,
        "kind": "crew",
        "name": "200 orders",
        "goal": {"event": "purchase", "count": 200},
        "period": "weekly",
        "milestones": [
            {"at": 40, "reward": {"points": 4}},
            {"at": 70, "reward": {"points": 7}},
            {"at": 100, "reward": {"points": 10, "growth": 1}},
        ],
    }
    now = _now()
    crew = await new_members(ctx, 200, now - timedelta(days=30))
    team_id = await new_team(ctx, "crew", crew, now - timedelta(days=10))
    with serving_goals(ctx, [goal]):

        async def batch(ids: list[str]) -> None:
            body = {
                "events": [
                    {
                        "event_id": unique("ev"),
                        "member_id": m,
                        "type": "purchase",
                        "occurred_at": (now - timedelta(seconds=5)).isoformat(),
                        "properties": {"amount": 12.5},
                    }
                    for m in ids
                ]
            }
            r = await http.post("/v1/events", json=body, headers=as_brand)
            assert r.status_code == 200, r.text
            assert r.json()["accepted"] == len(ids)

        await asyncio.gather(*(batch(crew[i : i + 10]) for i in range(0, 200, 10)))
        await settle(ctx)
        assert await _total(ctx, goal_id, team_id) == (200.0, 200)
        assert await _milestones(ctx, goal_id, team_id) == [(40, "paid"), (70, "paid"), (100, "paid")]
        period = team_goals.span_at(ctx.content.get("teams").goals[0], now).key
        entries = await paid(ctx, crew, goal_id)
        for m in crew:
            assert points(entries[m]) == 4 + 7 + 10, (m, entries[m])
            assert [k for k, c, _ in entries[m] if c == "points"] == [
                f"team:{goal_id}:{period}:{team_id}:{at}:{m}" for at in (40, 70, 100)
            ]
        report = await verify(ctx)
        assert report.problems == []


async def test_replayed_events_and_payments_change_nothing(ctx):
    goal_id = unique("replay").lower()
    goal = {
        "id": goal_id,
        "kind": "crew",
        "name": "Three orders",
        "goal": {"event": "purchase", "count": 3},
        "milestones": [{"at": 100, "reward": {"points": 30}}],
    }
    now = _now()
    crew = await new_members(ctx, 3, now - timedelta(days=30))
    team_id = await new_team(ctx, "crew", crew, now - timedelta(days=10))
    with serving_goals(ctx, [goal]):
        events = [event(m, "purchase", now - timedelta(seconds=1), amount=5) for m in crew]
        await deliver(ctx, *events)
        await deliver(ctx, *events)  # a second delivery of the same events
        await settle(ctx)
        assert await _total(ctx, goal_id, team_id) == (3.0, 3)
        # The payment run again from the start, as after a crash: the keys pay nothing twice.
        async with ctx.db.transaction() as session:
            await session.execute(
                sa.update(TeamGoalMilestone)
                .where(TeamGoalMilestone.goal_id == goal_id)
                .values(status="paying", cursor="", phase="team", claimed_until=None)
            )
        await settle(ctx)
        entries = await paid(ctx, crew, goal_id)
        assert all(points(entries[m]) == 30 and len(entries[m]) == 1 for m in crew), entries
        assert (await verify(ctx)).problems == []


async def test_late_joiner_leaver_cap_and_non_contributors(ctx, http, as_member):
    """A: in the team from the start, caps at 3. E: contributes, is paid the 50% milestone and
    leaves before 100%. B and C join late: B does less than min_contribution, C enough (after
    the team reached 50%: C earns it too, as a member then who contributed in the period).
    D does nothing. F joins after the team reached 100%."""
    goal_id = unique("fair").lower()
    goal = {
        "id": goal_id,
        "kind": "crew",
        "name": "Eight orders",
        "goal": {"event": "purchase", "count": 8},
        "period": "weekly",
        "min_contribution": 2,
        "member_cap": 3,
        "milestones": [
            {"at": 50, "reward": {"points": 10}},
            {"at": 100, "name": "All eight", "reward": {"points": 20}, "non_contributor": {"points": 2}},
        ],
    }
    now = _now()
    with serving_goals(ctx, [goal]):
        span = team_goals.span_at(ctx.content.get("teams").goals[0], now)
        a, e, d, b, c, f = await new_members(ctx, 6, now - timedelta(days=60))
        team_id = await new_team(ctx, "crew", [a, e, d], span.starts_at - timedelta(days=1))
        late = max(span.starts_at + timedelta(seconds=1), now - timedelta(seconds=60))
        await place(ctx, b, team_id, "crew", late)
        await place(ctx, c, team_id, "crew", late)
        at = now - timedelta(seconds=1)
        await deliver(ctx, *(event(a, "purchase", at, amount=1) for _ in range(5)))  # 3 count
        await deliver(ctx, event(e, "purchase", at, amount=1), event(e, "purchase", at, amount=1))
        await settle(ctx)
        assert await _total(ctx, goal_id, team_id) == (5.0, 2)
        assert await _milestones(ctx, goal_id, team_id) == [(50, "paid")]
        await unplace(ctx, e, team_id)
        await deliver(ctx, event(e, "purchase", at, amount=1))  # out of the team: counts for nobody
        await deliver(ctx, event(b, "purchase", at, amount=1))
        await deliver(ctx, event(c, "purchase", at, amount=1), event(c, "purchase", at, amount=1))
        await settle(ctx)
        assert await _total(ctx, goal_id, team_id) == (8.0, 4)
        await place(ctx, f, team_id, "crew", datetime.now(UTC))
        await deliver(ctx, event(f, "purchase", datetime.now(UTC), amount=1))
        await settle(ctx)
        assert await _total(ctx, goal_id, team_id) == (9.0, 5)
        entries = await paid(ctx, [a, e, d, b, c, f], goal_id)
        assert {m: points(x) for m, x in entries.items()} == {a: 30, e: 10, d: 2, b: 2, c: 30, f: 0}

        r = await http.get(f"/v1/teams/{team_id}/goals", headers=as_member(b))
        assert r.status_code == 200, r.text
        (g,) = r.json()["goals"]
        assert (g["progress"], g["target"], g["percent"]) == (9, 8, 112.5)
        assert g["my_contribution"] == 1 and g["my_rank"] == 4
        top = g["milestones"][1]
        assert top["reached_at"] is not None
        assert top["mine"] == {
            "outcome": "non_contributor",
            "reward": {"points": 2, "growth": 0, "badge": None},
            "reason": "below_min_contribution",
            "paid": True,
        }
        amounts = sorted((m["amount"], m["in_team"]) for m in g["members"])
        assert amounts == [(0, True), (1, True), (1, True), (2, False), (2, True), (3, True)]
        r = await http.get(f"/v1/teams/{team_id}/goals", headers=as_member(e))
        assert r.status_code == 403 and r.json()["code"] == "not_a_team_member"
        r = await http.get(f"/v1/teams/{unique('nope')}/goals", headers=as_member(a))
        assert r.status_code == 404 and r.json()["code"] == "team_not_found"
        assert (await verify(ctx)).problems == []


async def test_a_period_turns_at_midnight_and_on_monday_in_its_zone(ctx):
    weekly, daily = unique("week").lower(), unique("day").lower()
    goals = [
        {
            "id": weekly,
            "kind": "crew",
            "name": "Weekly",
            "goal": {"event": "purchase", "count": 100},
            "period": "weekly",
            "zone": "Europe/Paris",
            "milestones": [{"at": 100, "reward": {"points": 1}}],
        },
        {
            "id": daily,
            "kind": "crew",
            "name": "Daily",
            "goal": {"event": "purchase", "sum": "amount", "target": 1000},
            "period": "daily",
            "zone": "America/New_York",
            "milestones": [{"at": 100, "reward": {"points": 1}}],
        },
    ]
    (m,) = await new_members(ctx, 1, datetime(2026, 10, 1, tzinfo=UTC))
    team_id = await new_team(ctx, "crew", [m], datetime(2026, 11, 1, tzinfo=UTC))
    with serving_goals(ctx, goals):
        # Sunday 23:59 and Monday 00:01 in Paris (UTC+1 in November).
        await deliver(
            ctx,
            event(m, "purchase", datetime(2026, 11, 15, 22, 59, tzinfo=UTC), amount=5),
            event(m, "purchase", datetime(2026, 11, 15, 23, 1, tzinfo=UTC), amount=7),
        )
        # 23:59 and 00:01 in New York (UTC-5 in November), on the 20th and 21st.
        await deliver(
            ctx,
            event(m, "purchase", datetime(2026, 11, 21, 4, 59, tzinfo=UTC), amount=11),
            event(m, "purchase", datetime(2026, 11, 21, 5, 1, tzinfo=UTC), amount=13),
        )
        async with ctx.db.session() as session:
            rows = await session.execute(
                sa.select(
                    TeamGoalTotal.goal_id, TeamGoalTotal.period, TeamGoalTotal.total, TeamGoalTotal.starts_at
                )
                .where(TeamGoalTotal.team_id == team_id)
                .order_by(TeamGoalTotal.goal_id, TeamGoalTotal.period)
            )
            found = {(g, p): (t, s) for g, p, t, s in rows}
    assert found[(weekly, "2026-W46")][0] == 1 and found[(weekly, "2026-W47")][0] == 3
    assert found[(weekly, "2026-W47")][1] == datetime(2026, 11, 15, 23, 0, tzinfo=UTC)  # Monday 00:00 Paris
    assert found[(daily, "2026-11-20")][0] == 11 and found[(daily, "2026-11-21")][0] == 13
    assert found[(daily, "2026-11-21")][1] == datetime(2026, 11, 21, 5, 0, tzinfo=UTC)


async def test_community_goal_of_ten_thousand_members(ctx, http, as_member):
    """Every member is in the community team without a row of their own: 9,995 contributions
    loaded in SQL, five real check-ins cross the milestone, and the payment goes through
    every contributor and then every other member, in batches."""
    goal_id = unique("all").lower()
    goal = {
        "id": goal_id,
        "kind": "all-tests",
        "name": "Everyone together",
        "goal": {"event": "checkin.completed", "count": 19_995},
        "period": "weekly",
        "member_cap": 3,
        "milestones": [{"at": 100, "reward": {"points": 5}, "non_contributor": {"points": 1}}],
    }
    now = _now()
    everyone = await new_members(ctx, 10_000, now - timedelta(days=60), prefix="cm")
    contributors, idle = everyone[:9_990], everyone[9_990:]
    with serving_goals(ctx, [goal]):
        span = team_goals.span_at(ctx.content.get("teams").goals[0], now)
        amounts = {m: 1 + i % 3 for i, m in enumerate(contributors)}  # 9,990 members: 19,980 in all
        async with ctx.db.transaction() as session:
            rows = [
                dict(
                    goal_id=goal_id,
                    period=span.key,
                    team_id="all-tests",
                    member_id=m,
                    amount=float(a),
                    first_at=now,
                    updated_at=now,
                )
                for m, a in amounts.items()
            ]
            for start in range(0, len(rows), 2000):
                await session.execute(sa.insert(TeamGoalContribution.__table__), rows[start : start + 2000])
            await session.execute(
                sa.insert(TeamGoalTotal.__table__),
                [
                    dict(
                        goal_id=goal_id,
                        period=span.key,
                        team_id="all-tests",
                        total=19_980.0,
                        contributors=9_990,
                        starts_at=span.starts_at,
                        ends_at=span.ends_at,
                        updated_at=now,
                        summarized=False,
                    )
                ],
            )
            await session.execute(
                sa.insert(team_goals.LEVELS),
                [
                    dict(
                        goal_id=goal_id, period=span.key, team_id="all-tests", amount=float(a), members=3_330
                    )
                    for a in (1, 2, 3)
                ],
            )
        # 15 more check-ins from five idle members (3 each) reach 19,995.
        at = now - timedelta(seconds=1)
        await deliver(ctx, *(event(m, "checkin.completed", at) for m in idle[:5] for _ in range(3)))
        assert await _total(ctx, goal_id, "all-tests") == (19_995.0, 9_995)
        await settle(ctx)
        assert await _milestones(ctx, goal_id, "all-tests") == [(100, "paid")]
        entries = await paid(ctx, everyone, goal_id)
        assert all(points(entries[m]) == 5 and len(entries[m]) == 1 for m in contributors + idle[:5])
        assert all(points(entries[m]) == 1 and len(entries[m]) == 1 for m in idle[5:])

        r = await http.get("/v1/teams/all-tests/goals", headers=as_member(idle[0]))
        assert r.status_code == 200, r.text
        (g,) = r.json()["goals"]
        assert g["progress"] == 19_995 and g["contributors"] == 9_995
        assert g["my_contribution"] == 3 and g["my_rank"] == 1
        # The top ten (ties in member order), then me.
        assert len(g["members"]) == 11 and all(x["amount"] == 3 for x in g["members"])
        assert [x["me"] for x in g["members"]] == [False] * 10 + [True]
        r = await http.get("/v1/teams/all-tests/goals", headers=as_member(contributors[0]))
        (g,) = r.json()["goals"]
        # 3,330 + 5 members did 3 and 3,330 did 2: a member with 1 is 6,666th.
        assert g["my_contribution"] == 1 and g["my_rank"] == 6_666
        assert g["milestones"][0]["mine"]["outcome"] == "reward"
        assert any(x["me"] for x in g["members"])
    assert (await verify(ctx)).problems == []


@pytest.mark.parametrize("bad", ["streak", "distinct", "order", "once", "min_over_cap"])
def test_content_refuses_goals_a_team_cannot_have(bad):
    from server.teams.goal_content import TeamGoal

    base = {
        "id": "g",
        "kind": "crew",
        "name": "G",
        "goal": {"event": "purchase", "count": 3},
        "milestones": [{"at": 50, "reward": {"points": 1}}, {"at": 100, "reward": {"points": 2}}],
    }
    if bad == "streak":
        base["goal"] = {"event": "checkin.completed", "streak": 3}
    elif bad == "distinct":
        base["goal"] = {"event": "purchase", "distinct": "category", "target": 3}
    elif bad == "min_over_cap":
        base.update(member_cap=3, min_contribution=5)
    elif bad == "order":
        base["milestones"] = list(reversed(base["milestones"]))
    else:
        base["period"] = "once"
    with pytest.raises(ValueError):
        TeamGoal.model_validate(base)


def _issues(goal: dict) -> list[str]:
    _, issues = validate_files(goals_files([goal]), "test")
    return [i.message for i in issues]


async def test_content_checks_the_events_and_badges_a_goal_names(ctx):
    base = {
        "id": "g",
        "kind": "crew",
        "name": "G",
        "goal": {"event": "purchase", "count": 3},
        "milestones": [{"at": 100, "reward": {"points": 1}}],
    }

    def goal(**kw: object) -> list[str]:
        return _issues({**base, "goal": {"event": "purchase", **kw}})

    def milestone(**kw: object) -> list[str]:
        return _issues({**base, "milestones": [{"at": 100, **kw}]})

    assert _issues(base) == []
    assert any("unknown event type `purchased`" in m for m in goal(event="purchased", count=3))
    assert any("needs a number" in m for m in goal(sum="channel", target=3))
    assert any("has no property `colour`" in m for m in goal(count=3, where="colour == 'red'"))
    assert milestone(reward={"badge": "founding-member"}) == []
    earned = milestone(reward={"points": 1}, non_contributor={"badge": "shopper"})
    assert any("earned by its criteria" in m for m in earned)
    assert any("unknown badge `nope`" in m for m in milestone(reward={"badge": "nope"}))
    assert any("not one of the kinds" in m for m in _issues({**base, "kind": "nokind"}))


async def test_a_goal_over_members_counts_each_member_once(ctx, http, as_member):
    goal_id = unique("members").lower()
    goal = {
        "id": goal_id,
        "kind": "crew",
        "name": "Three of us review",
        "goal": {"event": "review_posted", "distinct": "member", "target": 3},
        "milestones": [{"at": 100, "reward": {"points": 3}}],
    }
    now = _now()
    crew = await new_members(ctx, 4, now - timedelta(days=30))
    team_id = await new_team(ctx, "crew", crew, now - timedelta(days=10))
    at = now - timedelta(seconds=1)
    with serving_goals(ctx, [goal]):
        await deliver(ctx, *(event(crew[0], "review_posted", at, rating=5) for _ in range(3)))
        await deliver(ctx, event(crew[1], "review_posted", at, rating=4))
        r = await http.get(f"/v1/teams/{team_id}/goals", headers=as_member(crew[0]))
        (g,) = r.json()["goals"]
        assert (g["measure"], g["progress"], g["remaining_text"]) == ("members", 2, "1 more member")
        assert g["my_contribution"] == 1 and g["my_share"] == 0.5 and g["my_rank"] == 1
        # A member cannot post their own progress: events come from the brand's systems only.
        body = {
            "events": [
                {
                    "event_id": unique("ev"),
                    "member_id": crew[2],
                    "type": "review_posted",
                    "occurred_at": at.isoformat(),
                    "properties": {"rating": 5},
                }
            ]
        }
        r = await http.post("/v1/events", json=body, headers=as_member(crew[2]))
        assert r.status_code == 401
        await deliver(ctx, event(crew[2], "review_posted", at, rating=3))
        await settle(ctx)
        assert await _total(ctx, goal_id, team_id) == (3.0, 3)
        entries = await paid(ctx, crew, goal_id)
        assert [points(entries[m]) for m in crew] == [3, 3, 3, 0]


async def test_a_unit_of_work_costs_the_same_statements_for_one_goal_or_many(ctx):
    """Ten members' orders in one unit: one team and one goal, or ten teams and five goals."""
    from sqlalchemy import event as sa_event

    now = _now()
    at = now - timedelta(seconds=1)

    def goals(n: int) -> list[dict]:
        return [
            {
                "id": unique(f"cost{i}").lower(),
                "kind": "crew",
                "name": f"Cost {i}",
                "goal": {"event": "purchase", "count": 1000},
                "milestones": [{"at": 100, "reward": {"points": 1}}],
            }
            for i in range(n)
        ]

    async def statements(teams: int, n_goals: int) -> list[str]:
        crew = await new_members(ctx, 10, now - timedelta(days=30))
        for i in range(teams):
            await new_team(
                ctx, "crew", crew[i * 10 // teams : (i + 1) * 10 // teams], now - timedelta(days=1)
            )
        seen: list[str] = []

        def note(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
            if "team_goal_milestones.status" in statement or "team_goal_totals.summarized" in statement:
                return  # the served app's payout and summary jobs, on their own connections
            if "team_goal" in statement or "member_teams" in statement or "team_posts" in statement:
                seen.append(" ".join(statement.split()[:4]))

        with serving_goals(ctx, goals(n_goals)):
            sa_event.listen(ctx.db.engine.sync_engine, "before_cursor_execute", note)
            try:
                await deliver(ctx, *(event(m, "purchase", at, amount=3) for m in crew))
            finally:
                sa_event.remove(ctx.db.engine.sync_engine, "before_cursor_execute", note)
        return seen

    one = await statements(1, 1)
    many = await statements(10, 5)
    from collections import Counter

    assert Counter(one) == Counter(many), (Counter(one), Counter(many))
    # One statement per table of the team goals: read and write the contributions, add to the
    # totals, post the first contributions.
    mine = Counter(s for s in many if "team_goal" in s or "team_posts" in s)
    assert sorted(mine.values()) == [1, 1, 1, 1], mine


async def test_a_big_team_lists_its_top_contributors_and_the_member(ctx, http, as_member):
    """A team of 150 (a store) shows its top ten and the member asking, with their true rank,
    not every member of it."""
    goal_id = unique("big").lower()
    goal = {
        "id": goal_id,
        "kind": "crew",
        "name": "Many orders",
        "goal": {"event": "purchase", "count": 10_000},
        "period": "weekly",
        "milestones": [{"at": 100, "reward": {"points": 1}}],
    }
    now = _now()
    with serving_goals(ctx, [goal]):
        span = team_goals.span_at(ctx.content.get("teams").goals[0], now)
        crew = await new_members(ctx, 150, now - timedelta(days=60))
        team_id = await new_team(ctx, "crew", crew, span.starts_at - timedelta(days=1))
        at = now - timedelta(seconds=1)
        # Members 0..19 order 20..1 times; member 149 orders 5 times (tied with others).
        await deliver(
            ctx, *(event(m, "purchase", at, amount=1) for i, m in enumerate(crew[:20]) for _ in range(20 - i))
        )
        await deliver(ctx, *(event(crew[149], "purchase", at, amount=1) for _ in range(5)))
        await settle(ctx)
        r = await http.get(f"/v1/teams/{team_id}/goals", headers=as_member(crew[149]))
        assert r.status_code == 200, r.text
        (g,) = r.json()["goals"]
        assert g["my_contribution"] == 5 and g["my_rank"] == 16  # 15 members did more
        listed = g["members"]
        assert len(listed) == 11 and [m["amount"] for m in listed[:10]] == list(range(20, 10, -1))
        assert [m["rank"] for m in listed[:3]] == [1, 2, 3]
        me = [m for m in listed if m["me"]]
        assert me == [{**me[0], "amount": 5, "rank": 16, "in_team": True}]
        r = await http.get(f"/v1/teams/{team_id}/goals", headers=as_member(crew[100]))
        (g,) = r.json()["goals"]
        assert g["my_contribution"] == 0 and g["my_rank"] is None and len(g["members"]) == 11


async def test_a_sum_of_decimals_reaches_its_milestone_despite_float_error(ctx):
    """0.7 + 0.1 is 0.7999999999999999 in floating point: a milestone at 0.8 is reached all the same."""
    goal_id = unique("cents").lower()
    goal = {
        "id": goal_id,
        "kind": "crew",
        "name": "Eighty cents",
        "goal": {"event": "purchase", "sum": "amount", "target": 0.8},
        "period": "weekly",
        "milestones": [{"at": 100, "reward": {"points": 7}}],
    }
    now = _now()
    with serving_goals(ctx, [goal]):
        span = team_goals.span_at(ctx.content.get("teams").goals[0], now)
        a, b = await new_members(ctx, 2, now - timedelta(days=60))
        team_id = await new_team(ctx, "crew", [a, b], span.starts_at - timedelta(days=1))
        at = now - timedelta(seconds=1)
        await deliver(ctx, event(a, "purchase", at, amount=0.7))
        await deliver(ctx, event(b, "purchase", at, amount=0.1))
        await settle(ctx)
        assert await _milestones(ctx, goal_id, team_id) == [(100, "paid")]
        entries = await paid(ctx, [a, b], goal_id)
        assert {m: points(x) for m, x in entries.items()} == {a: 7, b: 7}
