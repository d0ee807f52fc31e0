"""Scheduled jobs. Domains declare them; each runs once per period however many instances run.

Every instance ticks every job. A tick takes a Redis lock for the job's current period (so that two
instances do not run it at the same moment), then claims the period in SQL (`scheduled_runs`,
unique per job and period) so that it never runs twice, even after a lock expired or with Redis
down. A run that failed, or whose owner died, may be claimed again within the same period.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]  # no type information
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]  # no type information
from redis.exceptions import RedisError
from sqlmodel import Column, Field

from server.db import TableModel, UTCDateTime, execute_counting, insert_ignore, utcnow
from server.metrics import JOB_RUNS

if TYPE_CHECKING:
    from server.config import Settings
    from server.db import Database
    from server.redis import RedisHandle


class Runtime(Protocol):
    """What the scheduler uses of the process context (`server.context.Context`, which holds the
    scheduler: typed by what is used, so that neither module imports the other)."""

    settings: Settings
    db: Database
    redis: RedisHandle
    pipeline: Any  # server.events.pipeline.Pipeline: its `jobs`


log = structlog.get_logger(__name__)

# A job takes the process context (`server.context.Context`) and the period it runs for.
JobFunc = Callable[[Any, str], Awaitable[None]]


class ScheduledRun(TableModel, table=True):
    __tablename__ = "scheduled_runs"

    job: str = Field(primary_key=True, max_length=100)
    period: str = Field(primary_key=True, max_length=64)
    status: str = Field(max_length=16)  # running | done | failed
    owner: str = Field(max_length=100)
    started_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


@dataclass(frozen=True)
class Job:
    """A scheduled job: `async def func(ctx, period)`, every `every(ctx)` seconds (read from the
    settings at start). With `once_per_period` the period is the start of the `every`-long slot
    (UTC) and one instance runs it; without it the job runs on every instance at each tick (for
    work that is itself claimed row by row). The domains list their jobs in `server.app.DOMAINS`."""

    name: str
    func: JobFunc
    every: Callable[[Any], float] | float
    once_per_period: bool = True
    stale_after: timedelta = timedelta(minutes=10)

    def seconds(self, ctx: Any) -> float:
        return self.every(ctx) if callable(self.every) else float(self.every)


def period_of(now: datetime, seconds: float) -> str:
    """The start of the slot containing `now`, as an ISO time: the period's name."""
    start = int(now.timestamp() // seconds * seconds)
    return datetime.fromtimestamp(start, UTC).isoformat()


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Scheduler:
    def __init__(self, ctx: Runtime, jobs: Mapping[str, Job] | None = None) -> None:
        self.ctx = ctx
        # The jobs the domains declare (the context's pipeline), unless given.
        self.jobs = dict(ctx.pipeline.jobs if jobs is None else jobs)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._aps = AsyncIOScheduler(timezone=UTC)

    def start(self) -> None:
        for j in self.jobs.values():
            seconds = j.seconds(self.ctx)
            if seconds <= 0:
                continue
            self._aps.add_job(
                self.tick,
                IntervalTrigger(seconds=seconds),
                args=[j.name],
                id=j.name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=int(max(seconds, 1)),
            )
        self._aps.start()

    async def stop(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)
        await asyncio.sleep(0)

    async def tick(self, name: str) -> bool:
        """Run job `name` for the current period unless some instance already did. True if it ran."""
        j = self.jobs[name]
        if not j.once_per_period:
            try:
                await j.func(self.ctx, "")
                JOB_RUNS.labels(name, "ok").inc()
            except Exception:
                JOB_RUNS.labels(name, "error").inc()
                log.exception("job_failed", job=name)
            return True
        period = period_of(utcnow(), j.seconds(self.ctx))
        return await self.run_once(j, period)

    async def run_once(self, j: Job, period: str) -> bool:
        lock_key = self.ctx.redis.key("sched", j.name, period)
        token = uuid.uuid4().hex
        locked = True
        try:
            got = await self.ctx.redis.r.set(
                lock_key, token, nx=True, px=int(j.stale_after.total_seconds() * 1000)
            )
            if not got:
                JOB_RUNS.labels(j.name, "skipped").inc()
                return False
        except (RedisError, OSError):
            locked = False  # Redis down: the SQL claim alone keeps the run single
        try:
            if not await self._claim(j, period):
                JOB_RUNS.labels(j.name, "skipped").inc()
                return False
            log.info("job_run", job=j.name, period=period, owner=self.owner)
            try:
                await j.func(self.ctx, period)
            except Exception:
                JOB_RUNS.labels(j.name, "error").inc()
                log.exception("job_failed", job=j.name, period=period)
                await self._finish(j, period, "failed")
                return True
            await self._finish(j, period, "done")
            JOB_RUNS.labels(j.name, "ok").inc()
            return True
        finally:
            if locked:
                try:
                    await self.ctx.redis.r.eval(_RELEASE, 1, lock_key, token)
                except (RedisError, OSError):
                    pass

    async def _claim(self, j: Job, period: str) -> bool:
        now = utcnow()
        async with self.ctx.db.transaction() as session:
            created = await execute_counting(
                session,
                insert_ignore(session, ScheduledRun.__table__).values(
                    job=j.name, period=period, status="running", owner=self.owner, started_at=now
                ),
            )
            if created:
                return True
            # Taken already: claim it again only if that run failed or its owner vanished mid-run.
            run = ScheduledRun.__table__.c
            retaken = await execute_counting(
                session,
                sa.update(ScheduledRun)
                .where(run.job == j.name, run.period == period)
                .where(
                    sa.or_(
                        run.status == "failed",
                        sa.and_(run.status == "running", run.started_at < now - j.stale_after),
                    )
                )
                .values(status="running", owner=self.owner, started_at=now, finished_at=None),
            )
            return bool(retaken)

    async def _finish(self, j: Job, period: str, status: str) -> None:
        run = ScheduledRun.__table__.c
        async with self.ctx.db.transaction() as session:
            await session.execute(
                sa.update(ScheduledRun)
                .where(run.job == j.name, run.period == period, run.owner == self.owner)
                .values(status=status, finished_at=utcnow())
            )
