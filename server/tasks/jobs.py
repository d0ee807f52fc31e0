"""Quest upkeep: old periods' progress is forgotten."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
import structlog

from server.db import execute_counting, utcnow
from server.scheduler import Job
from server.tasks.models import QuestRun

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)
# Runs of past days, weeks and months are kept a little over a year (for "last year's" questions);
# one-off quests ("all") are kept: they decide prerequisites and what a member already did.
QUEST_RUNS_KEPT = timedelta(days=400)


async def prune_quest_runs(ctx: Context, period: str) -> None:
    """Forget the progress of periods that ended more than QUEST_RUNS_KEPT ago."""
    table = QuestRun.__table__
    async with ctx.db.transaction() as session:
        prune = sa.delete(table).where(
            table.c.period != "all", table.c.updated_at < utcnow() - QUEST_RUNS_KEPT
        )
        rows = await execute_counting(session, prune)
    log.info("quest_runs_pruned", period=period, rows=rows)


JOBS = (Job("quests.prune", prune_quest_runs, 24 * 3600),)
