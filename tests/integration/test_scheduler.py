"""Once per period however many schedulers tick, with and without Redis."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from server.scheduler import Job, ScheduledRun, Scheduler, period_of
from tests.support import unique


def counting_job(name: str, runs: list[str], fail_first: bool = False) -> Job:
    async def work(ctx, period: str) -> None:
        runs.append(period)
        await asyncio.sleep(0.05)
        if fail_first and len(runs) == 1:
            raise RuntimeError("boom")

    return Job(name=name, func=work, every=lambda ctx: 60)


async def test_many_schedulers_one_run_per_period(ctx):
    runs: list[str] = []
    j = counting_job(unique("job"), runs)
    schedulers = [Scheduler(ctx) for _ in range(8)]
    results = await asyncio.gather(*(s.run_once(j, "2026-11-24T00:00:00+00:00") for s in schedulers))
    assert sum(results) == 1 and runs == ["2026-11-24T00:00:00+00:00"]
    # Later ticks of the same period do nothing; the next period runs.
    assert not await schedulers[0].run_once(j, "2026-11-24T00:00:00+00:00")
    assert await schedulers[1].run_once(j, "2026-11-24T00:01:00+00:00")
    async with ctx.db.session() as session:
        rows = (
            (await session.execute(sa.select(ScheduledRun).where(ScheduledRun.job == j.name))).scalars().all()
        )
    assert sorted((r.period, r.status) for r in rows) == [
        ("2026-11-24T00:00:00+00:00", "done"),
        ("2026-11-24T00:01:00+00:00", "done"),
    ]


async def test_a_failed_run_is_retried_in_its_period(ctx):
    runs: list[str] = []
    j = counting_job(unique("flaky"), runs, fail_first=True)
    s = Scheduler(ctx)
    assert await s.run_once(j, "p1")
    assert await s.run_once(j, "p1")
    assert not await s.run_once(j, "p1")
    assert runs == ["p1", "p1"]


async def test_without_redis_the_sql_claim_keeps_it_single(ctx, settings):
    from server.context import Context
    from server.redis import RedisHandle

    dead = RedisHandle(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    dead.start()
    offline = Context(settings, ctx.db, dead)
    runs: list[str] = []
    j = counting_job(unique("offline"), runs)
    results = await asyncio.gather(*(Scheduler(offline).run_once(j, "p") for _ in range(5)))
    assert sum(results) == 1 and runs == ["p"]
    await dead.close()


def test_period_names():
    from datetime import UTC, datetime

    assert period_of(datetime(2026, 11, 24, 10, 17, 42, tzinfo=UTC), 60) == "2026-11-24T10:17:00+00:00"
    assert period_of(datetime(2026, 11, 24, 10, 17, 42, tzinfo=UTC), 86400) == "2026-11-24T00:00:00+00:00"
