"""Milestones of several teams reached in one unit of work are paid together, in one transaction,
and still each member once: under replay, racing payers and the job, and when another payer takes
one of them over mid-batch (the group rolls back and the job pays the rest)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from server.ledger.service import verify
from server.teams import goals as team_goals
from server.teams.models import TeamGoalMilestone
from tests.support import unique
from tests.teams.goal_support import (
    deliver,
    event,
    new_members,
    new_team,
    paid,
    points,
    serving_goals,
    settle,
)


async def test_milestones_reached_together_are_paid_together_and_once(ctx, monkeypatch):
    """Six teams reach both milestones in one unit: one grouped payment pays them all; paying
    them again (two payers and the job at once) pays nothing more."""
    seen = []
    orig = team_goals._batches

    async def spy(c, s, plans):
        seen.append(len(plans))
        return await orig(c, s, plans)

    monkeypatch.setattr(team_goals, "_batches", spy)
    goal_id = unique("grp").lower()
    goal = {
        "id": goal_id,
        "kind": "crew",
        "name": "Two orders",
        "goal": {"event": "purchase", "count": 2},
        "milestones": [
            {"at": 50, "reward": {"points": 5}},
            {"at": 100, "reward": {"points": 30, "growth": 1}},
        ],
    }
    now = datetime.now(UTC).replace(microsecond=0)
    crews = [await new_members(ctx, 2, now - timedelta(days=30)) for _ in range(6)]
    teams = [await new_team(ctx, "crew", crew, now - timedelta(days=10)) for crew in crews]
    everyone = [m for c in crews for m in c]
    with serving_goals(ctx, [goal]):
        events = [event(m, "purchase", now - timedelta(seconds=1), amount=5) for m in everyone]
        await deliver(ctx, *events)
        await settle(ctx)
        assert max(seen) >= 6, seen
        for t in teams:
            async with ctx.db.session() as session:
                st = (
                    (
                        await session.execute(
                            sa.select(TeamGoalMilestone.status).where(TeamGoalMilestone.team_id == t)
                        )
                    )
                    .scalars()
                    .all()
                )
            assert sorted(st) == ["paid", "paid"], st
        entries = await paid(ctx, everyone, goal_id)
        assert all(points(entries[m]) == 35 and len(entries[m]) == 3 for m in everyone), entries
        # replay: everything paying again, paid together, and concurrently with the job
        async with ctx.db.transaction() as session:
            await session.execute(
                sa.update(TeamGoalMilestone)
                .where(TeamGoalMilestone.goal_id == goal_id)
                .values(status="paying", cursor="", phase="team", claimed_until=None, claimed_by=None)
            )
        period = team_goals.span_at(ctx.content.get("teams").goals[0], now).key
        keys = sorted((goal_id, period, t, at) for t in teams for at in (50, 100))
        await asyncio.gather(
            team_goals.pay_milestones(ctx, keys, 2),
            team_goals.pay_milestones(ctx, keys[::-1], 2),
            team_goals.pay_due(ctx),
        )
        await settle(ctx)
        entries = await paid(ctx, everyone, goal_id)
        assert all(points(entries[m]) == 35 and len(entries[m]) == 3 for m in everyone), entries
        # a milestone taken over by another payer: the group pays nothing, the rest is released
        async with ctx.db.transaction() as session:
            await session.execute(
                sa.update(TeamGoalMilestone)
                .where(TeamGoalMilestone.goal_id == goal_id)
                .values(status="paying", cursor="", phase="team", claimed_until=None, claimed_by=None)
            )
        token = "mine"
        held = await team_goals._claim(ctx, keys, token)
        assert held == keys
        async with ctx.db.transaction() as session:
            await session.execute(
                sa.update(TeamGoalMilestone)
                .where(TeamGoalMilestone.team_id == teams[0])
                .values(claimed_by="other")
            )
        assert await team_goals._pay_batches(ctx, keys, token) == []
        async with ctx.db.session() as session:
            rows = (
                await session.execute(
                    sa.select(
                        TeamGoalMilestone.team_id, TeamGoalMilestone.claimed_until, TeamGoalMilestone.status
                    ).where(TeamGoalMilestone.goal_id == goal_id)
                )
            ).all()
        assert all((r.status == "paying") == (r.team_id == teams[0]) for r in rows), rows
        async with ctx.db.transaction() as session:
            await session.execute(
                sa.update(TeamGoalMilestone)
                .where(TeamGoalMilestone.team_id == teams[0])
                .values(claimed_until=None)
            )
        await settle(ctx)
        entries = await paid(ctx, everyone, goal_id)
        assert all(points(entries[m]) == 35 and len(entries[m]) == 3 for m in everyone), entries
        assert (await verify(ctx)).problems == []


async def test_a_group_whose_milestone_is_taken_over_rolls_back_and_is_paid_later(ctx, monkeypatch):
    """Another payer takes one milestone of the group mid-batch: nothing of the group is paid
    then, its claims are released, and the job pays every member once afterwards."""
    goal_id = unique("grl").lower()
    goal = {
        "id": goal_id,
        "kind": "crew",
        "name": "Two orders",
        "goal": {"event": "purchase", "count": 2},
        "milestones": [{"at": 100, "reward": {"points": 30}}],
    }
    now = datetime.now(UTC).replace(microsecond=0)
    crews = [await new_members(ctx, 2, now - timedelta(days=30)) for _ in range(3)]
    teams = [await new_team(ctx, "crew", crew, now - timedelta(days=10)) for crew in crews]
    everyone = [m for c in crews for m in c]
    orig_post = team_goals._post
    armed = [True]

    async def stealing_post(c, session, postings, badges):
        await orig_post(c, session, postings, badges)
        if armed[0] and len({p.details["team_id"] for p in postings}) > 1:
            armed[0] = False
            await session.execute(
                sa.update(TeamGoalMilestone)
                .where(TeamGoalMilestone.team_id == teams[0])
                .values(claimed_by="other")
            )

    monkeypatch.setattr(team_goals, "_post", stealing_post)
    with serving_goals(ctx, [goal]):
        await deliver(ctx, *[event(m, "purchase", now - timedelta(seconds=1), amount=5) for m in everyone])
        assert not armed[0]
        entries = await paid(ctx, everyone, goal_id)
        assert all(entries[m] == [] for m in everyone), entries  # rolled back
        async with ctx.db.session() as session:
            rows = (
                await session.execute(
                    sa.select(
                        TeamGoalMilestone.team_id,
                        TeamGoalMilestone.claimed_until,
                        TeamGoalMilestone.claimed_by,
                    ).where(TeamGoalMilestone.goal_id == goal_id)
                )
            ).all()
        assert all(r.claimed_until is None and r.claimed_by not in (None, "other") for r in rows), rows
        await settle(ctx)
        entries = await paid(ctx, everyone, goal_id)
        assert all(points(entries[m]) == 30 and len(entries[m]) == 1 for m in everyone), entries
        assert (await verify(ctx)).problems == []
