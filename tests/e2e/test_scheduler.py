"""Scheduled jobs run once per period however many instances run."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from server.config import Settings
from tests.conftest import server_env
from tests.e2e.helpers import json_lines, samples
from tests.support import ServerProcess

pytestmark = pytest.mark.e2e

RUN_FOR = 6.0


async def test_two_instances_run_each_audit_period_exactly_once(settings: Settings) -> None:
    env = server_env(settings, ENGAGE_LEDGER_AUDIT_SECONDS="1", ENGAGE_LOG_LEVEL="INFO")
    procs = [ServerProcess(env), ServerProcess(env)]
    since = datetime.now(UTC).replace(microsecond=0)
    try:
        for proc in procs:
            await asyncio.to_thread(proc.start)
        started = time.monotonic()
        await asyncio.sleep(RUN_FOR)
        # Both were up together for the whole time (neither crashed).
        assert all(p.proc is not None and p.proc.poll() is None for p in procs)
        assert time.monotonic() - started >= RUN_FOR
        pids = [p.proc.pid for p in procs if p.proc is not None]
        # What each process's ticks came to so far: ran the period, or found it taken.
        outcomes = [
            {
                dict(labels)["outcome"]: value
                for labels, value in (
                    await asyncio.to_thread(samples, p.base_url, "engage_job_runs_total")
                ).items()
                if dict(labels)["job"] == "ledger.audit"
            }
            for p in procs
        ]
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
    # Periods are one-second slots, named by their start. (A slot may go unrun when a loaded
    # machine delays both instances' tick past it: that is the scheduler's misfire rule, not a
    # double run, so the test does not ask for every second.)
    starts = sorted(datetime.fromisoformat(p) for p in per_period)
    assert all(s.microsecond == 0 and s.tzinfo is not None for s in starts)
    # Each process runs under one owner name of its own (host:pid:random).
    for n, pid in enumerate(pids):
        owners = {owner for _, owner, m in runs if m == n}
        assert len(owners) <= 1 and all(o.startswith(f"{socket.gethostname()}:{pid}:") for o in owners), (
            pid,
            owners,
        )
    # Both contended for every second they were up (one finds each period taken by the other,
    # whichever ticks first in the second wins it): neither sat out, and what ran was logged.
    for n, counts in enumerate(outcomes):
        ran = sum(1 for _, _, m in runs if m == n)
        assert counts.get("ok", 0) + counts.get("skipped", 0) >= 3, (n, counts, runs)
        assert counts.get("ok", 0) <= ran and not counts.get("error"), (n, counts, runs)
    assert sum(c.get("ok", 0) for c in outcomes) >= 3, outcomes
    # No audit found a problem.
    assert not [
        line for text in logs for line in json_lines(text) if line.get("event") == "ledger_audit_failed"
    ]

    # The claims in SQL say the same: one row per period since the test began, done, by the
    # owner that logged it.
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
    claimed = {
        row.period: (row.owner, row.status) for row in rows if datetime.fromisoformat(row.period) >= since
    }
    assert claimed == {period: (owner, "done") for period, owner, _ in runs}
