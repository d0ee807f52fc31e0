"""The teams' scheduled work."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.scheduler import Job
from server.teams import goals

if TYPE_CHECKING:
    from server.context import Context


async def pay_goal_milestones(ctx: Context, period: str) -> None:
    """On every instance: go on paying the milestones a payer left unfinished (a community
    goal's million members, a crash between two batches); each is claimed by one payer."""
    await goals.pay_due(ctx)


async def summarize_goal_periods(ctx: Context, period: str) -> None:
    """Once a minute: each ended period's summary of top contributors in its team's feed."""
    await goals.summarize_ended(ctx)


JOBS: tuple[Job, ...] = (
    Job("teams.goal_payouts", pay_goal_milestones, 2.0, once_per_period=False),
    Job("teams.goal_summaries", summarize_goal_periods, 60.0),
)
