"""What a team sees of its goals: `team.goal_progress` (coalesced, the last value always sent),
`team.milestone_reached`, and the feed's posts about contributions, milestones and the period."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from server.members import service as members
from server.teams import goals as team_goals
from server.teams.models import TeamPost
from tests.support import unique
from tests.teams.goal_support import deliver, event, new_members, new_team, serving_goals, settle


async def _team_messages(ctx, team_id: str) -> list[dict[str, Any]]:
    """The team's live messages, from its short history in Redis (what sockets were sent)."""
    entries = await ctx.redis.r.xrange(ctx.hub.team_history_key(team_id))
    return [json.loads("{" + fields["t"]) for _, fields in entries]


async def _posts(ctx, team_id: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    async with ctx.db.session() as session:
        rows = await session.execute(
            sa.select(TeamPost.type, TeamPost.member_id, TeamPost.data)
            .where(TeamPost.team_id == team_id)
            .order_by(TeamPost.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_progress_is_coalesced_and_the_last_value_arrives(ctx):
    goal_id = unique("live").lower()
    goal = {
        "id": goal_id,
        "kind": "crew",
        "name": "Ten orders",
        "goal": {"event": "purchase", "count": 10},
        "milestones": [{"at": 50, "name": "Halfway", "reward": {"points": 5}}],
    }
    now = datetime.now(UTC)
    crew = await new_members(ctx, 3, now - timedelta(days=30))
    team_id = await new_team(ctx, "crew", crew, now - timedelta(days=10))
    with serving_goals(ctx, [goal]):
        at = now - timedelta(seconds=1)
        for i in range(4):  # four units of work within the few seconds of one message
            await deliver(ctx, event(crew[i % 3], "purchase", at, amount=1))
        await deliver(ctx, event(crew[0], "purchase", at, amount=1))  # 5 of 10: the milestone
        await deliver(ctx, event(crew[1], "purchase", at, amount=1))  # 6: waits for the gate
        await settle(ctx)
        await team_goals.flush_progress(ctx)
        await ctx.outbox.flush()
        messages = await _team_messages(ctx, team_id)
    progress = [m["data"]["progress"] for m in messages if m["type"] == "team.goal_progress"]
    # The first at once, the milestone's at once, and the last value when the gate opened.
    assert progress == [1, 5, 6], messages
    reached = [m["data"] for m in messages if m["type"] == "team.milestone_reached"]
    assert [(r["at"], r["name"], r["team_id"], r["reward"]["points"]) for r in reached] == [
        (50, "Halfway", team_id, 5)
    ]
    last = next(m["data"] for m in reversed(messages) if m["type"] == "team.goal_progress")
    assert last["percent"] == 60 and last["reached"] == [50]
    assert last["remaining_text"] == "4 more orders"

    posts = await _posts(ctx, team_id)
    firsts = [(member, data["amount"]) for kind, member, data in posts if kind == "goal_contribution"]
    assert sorted(firsts) == sorted((m, 1) for m in crew)  # one post per member's first contribution
    assert [data["at"] for kind, _, data in posts if kind == "milestone_reached"] == [50]


async def test_the_end_of_a_period_posts_its_top_contributors(ctx):
    goal_id = unique("summary").lower()
    goal = {
        "id": goal_id,
        "kind": "crew",
        "name": "Spend together",
        "goal": {"event": "purchase", "sum": "amount", "target": 1000},
        "period": "daily",
        "zone": "Asia/Tokyo",
        "milestones": [{"at": 100, "reward": {"points": 5}}],
    }
    crew = await new_members(ctx, 4, datetime(2026, 10, 1, tzinfo=UTC))
    team_id = await new_team(ctx, "crew", crew, datetime(2026, 11, 1, tzinfo=UTC))
    with serving_goals(ctx, [goal]):
        day = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)  # 12:00 in Tokyo
        await deliver(ctx, *(event(m, "purchase", day, amount=10 * (i + 1)) for i, m in enumerate(crew)))
        # The day has ended in Tokyo (midnight is 15:00 UTC).
        assert await team_goals.summarize_ended(ctx, now=datetime(2026, 11, 20, 14, 59, tzinfo=UTC)) == 0
        while await team_goals.summarize_ended(ctx, now=datetime(2026, 11, 20, 15, 0, tzinfo=UTC)):
            pass
        await asyncio.sleep(0)
    (summary,) = [data for kind, _, data in await _posts(ctx, team_id) if kind == "goal_summary"]
    assert summary["period"] == "2026-11-20" and summary["total"] == 100 and summary["percent"] == 10
    # Read by the team's members: handles, never member ids.
    handles = await members.handles(ctx, crew)
    assert summary["top"] == [
        {"handle": handles[crew[3]], "display_name": None, "amount": 40},
        {"handle": handles[crew[2]], "display_name": None, "amount": 30},
        {"handle": handles[crew[1]], "display_name": None, "amount": 20},
    ]
    assert not any(m in json.dumps(summary) for m in crew)
