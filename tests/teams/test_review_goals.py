"""Team goals under the review's cases: what a leaver earned, long ids, the end-of-period post."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from server.ledger.service import verify
from server.teams import goals as team_goals
from server.teams import service as teams
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


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def test_a_member_who_leaves_before_the_payer_comes_keeps_the_milestone(ctx, monkeypatch):
    """The milestone is reached while A and B are in the crew; its payment is left to the job (as
    for a team larger than what the effect pays at once), and B leaves before the job comes: B
    was in the team and contributed when it was reached, and is paid it once all the same."""
    goal_id = unique("leaver").lower()
    goal = {
        "id": goal_id,
        "kind": "crew",
        "name": "Two orders",
        "goal": {"event": "purchase", "count": 2},
        "milestones": [{"at": 100, "reward": {"points": 20}, "non_contributor": {"points": 3}}],
    }
    now = _now()
    a, b, c = await new_members(ctx, 3, now - timedelta(days=30))
    team_id = await new_team(ctx, "crew", [a, b, c], now - timedelta(days=10))
    monkeypatch.setattr(team_goals, "PAY_INLINE", 0)
    with serving_goals(ctx, [goal]):
        at = now - timedelta(seconds=1)
        await deliver(ctx, event(a, "purchase", at), event(b, "purchase", at))
        assert points((await paid(ctx, [b], goal_id))[b]) == 0  # not paid yet: the job pays
        await teams.leave(ctx, b, team_id)
        await teams.leave(ctx, c, team_id)  # C did nothing: the non-contributors' reward, kept too
        await settle(ctx)
        entries = await paid(ctx, [a, b, c], goal_id)
        assert {m: points(x) for m, x in entries.items()} == {a: 20, b: 20, c: 3}
        assert all(len(x) == 1 for x in entries.values()), entries
        assert (await verify(ctx)).problems == []


async def test_ids_of_the_longest_lengths_are_paid_under_a_key_the_ledger_takes(ctx):
    """A goal, a brand's team and members whose ids are 64 characters long: the milestone's
    payment keys stay within the ledger's 200 characters, and each member is paid once, the
    contributors and the non-contributor alike."""
    goal_id = (unique("g").lower() + "-" + "x" * 64)[:64]
    goal = {
        "id": goal_id,
        "kind": "crew",
        "name": "Two orders",
        "goal": {"event": "purchase", "count": 2},
        "period": "monthly",
        "milestones": [{"at": 100, "reward": {"points": 20}, "non_contributor": {"points": 3}}],
    }
    now = _now()
    a, b, c = await new_members(ctx, 3, now - timedelta(days=30), prefix="m" * 45)
    assert len(a) == 64
    team_id = (unique("T") + "." + "t" * 64)[:64]
    await new_team(ctx, "crew", [a, b, c], now - timedelta(days=40), team_id=team_id)
    with serving_goals(ctx, [goal]):
        at = now - timedelta(seconds=1)
        await deliver(ctx, event(a, "purchase", at), event(b, "purchase", at))
        await settle(ctx, within=20)
        await deliver(ctx, event(c, "purchase", at))  # C contributes later: the reward as well
        await settle(ctx, within=20)
        entries = await paid(ctx, [a, b, c], goal_id)
        assert {m: points(x) for m, x in entries.items()} == {a: 20, b: 20, c: 23}
        assert all(len(key) <= 200 for x in entries.values() for key, _, _ in x)
        assert (await verify(ctx)).problems == []


async def test_leaves_racing_the_payer_pay_each_member_once(ctx, monkeypatch):
    """Twenty members leave while the job pays the milestone they reached: each is paid once,
    whichever of the two came first, and neither waits on the other for ever."""
    goal_id = unique("race").lower()
    goal = {
        "id": goal_id,
        "kind": "crew",
        "name": "Forty orders",
        "goal": {"event": "purchase", "count": 40},
        "milestones": [{"at": 100, "reward": {"points": 9}}],
    }
    now = _now()
    crew = await new_members(ctx, 40, now - timedelta(days=30))
    team_id = await new_team(ctx, "crew", crew, now - timedelta(days=10))
    monkeypatch.setattr(team_goals, "PAY_INLINE", 0)
    monkeypatch.setattr(team_goals, "BATCH", 5)
    with serving_goals(ctx, [goal]):
        at = now - timedelta(seconds=1)
        await deliver(ctx, *(event(m, "purchase", at) for m in crew))
        await asyncio.gather(team_goals.pay_due(ctx), *(teams.leave(ctx, m, team_id) for m in crew[::2]))
        await settle(ctx)
        entries = await paid(ctx, crew, goal_id)
        assert {m: points(x) for m, x in entries.items()} == dict.fromkeys(crew, 9)
        assert (await verify(ctx)).problems == []
