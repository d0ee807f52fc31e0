"""Scheduled jobs run once per period however many instances run."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from server.config import Settings
from tests.conftest import server_env
from tests.e2e.helpers import json_lines
from tests.support import ServerProcess

pytestmark = pytest.mark.e2e

RUN_FOR = 6.0


async def test_two_instances_run_each_audit_period_exactly_once(settings: Settings) -> None:
    env = server_env(settings, ENGAGE_LEDGER_AUDIT_SECONDS="1", ENGAGE_LOG_LEVEL="INFO")
    procs = [ServerProcess(env), ServerProcess(env)]
    try:
        for proc in procs:
            await asyncio.to_thread(proc.start)
        started = time.monotonic()
        await asyncio.sleep(RUN_FOR)
        # Both were up together for the whole time (neither crashed).
        assert all(p.proc is not None and p.proc.poll() is None for p in procs)
        assert time.monotonic() - started >= RUN_FOR
    finally:
        for proc in procs:
            await asyncio.to_thread(proc.stop)
    logs = [proc.log() for proc in procs]
    for proc in procs:
        proc.log_path.unlink(missing_ok=True)

    runs = [
        (line["period"], line["owner"], n)
        for n, text in enumerate(logs)
        for line in json_lines(text)
        if line.get("event") == "job_run" and line.get("job") == "ledger.audit"
    ]
    per_period = Counter(period for period, _, _ in runs)
    twice = {period: count for period, count in per_period.items() if count > 1}
    assert not twice, f"periods run more than once: {twice}\n{runs}"
    assert len(per_period) >= 3, f"only {len(per_period)} periods ran in {RUN_FOR} s: {runs}"
    # Periods are one-second slots, named by their start.
    starts = sorted(datetime.fromisoformat(p) for p in per_period)
    assert all(s.microsecond == 0 and s.tzinfo is not None for s in starts)
    # Each process has one owner name, and the two differ.
    owners = {n: {owner for _, owner, m in runs if m == n} for n in (0, 1)}
    assert all(len(o) <= 1 for o in owners.values()), owners
    assert not (owners[0] & owners[1]), owners
    # No audit found a problem.
    assert not [
        line for text in logs for line in json_lines(text) if line.get("event") == "ledger_audit_failed"
    ]

    # The claims in SQL say the same: one row per period, done, by the owner that logged it.
    engine = create_async_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.text("SELECT period, owner, status FROM scheduled_runs WHERE job = 'ledger.audit'")
                )
            ).all()
    finally:
        await engine.dispose()
    claimed = {row.period: (row.owner, row.status) for row in rows}
    for period, owner, _ in runs:
        assert claimed.get(period) == (owner, "done"), (period, claimed.get(period))
