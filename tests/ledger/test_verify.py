"""Tampering with stored ledger rows is detected by `engage ledger verify`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import sqlalchemy as sa

from server.ledger import service as ledger
from server.ledger.models import LedgerAccount, LedgerEntry
from server.members.service import ensure_member
from tests.conftest import server_env
from tests.support import ROOT, unique


async def _member_with_entries(ctx, n: int = 3) -> str:
    member_id = unique("audit")
    async with ctx.db.transaction() as session:
        await ensure_member(session, member_id)
    for i in range(n):
        await ledger.award(
            ctx,
            member_id,
            amounts={"points": 10 * (i + 1), "growth": 1},
            reason="t",
            source="test",
            idempotency_key=f"v{i}",
        )
    return member_id


async def _cli_verify(settings) -> subprocess.CompletedProcess[str]:
    """`engage ledger verify` as an operator runs it, off the event loop that serves the app."""
    env = {**os.environ, **server_env(settings)}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "server.cli", "ledger", "verify"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_clean_ledger_verifies(ctx):
    await _member_with_entries(ctx)
    report = await ledger.verify(ctx)
    assert report.problems == []
    assert report.entries >= 6


async def test_altered_amount_is_reported(ctx, settings):
    member_id = await _member_with_entries(ctx)
    async with ctx.db.transaction() as session:
        await session.execute(
            sa.update(LedgerEntry)
            .where(LedgerEntry.member_id == member_id, LedgerEntry.seq == 2)
            .values(amount=LedgerEntry.amount + 1000)
        )
    try:
        report = await ledger.verify(ctx)
        mine = [p for p in report.problems if member_id in p]
        assert any("seq 2" in p and "altered" in p for p in mine), mine
        result = await _cli_verify(settings)
        assert result.returncode == 1
        assert member_id in result.stdout and "altered" in result.stdout
    finally:
        async with ctx.db.transaction() as session:
            await session.execute(
                sa.update(LedgerEntry)
                .where(LedgerEntry.member_id == member_id, LedgerEntry.seq == 2)
                .values(amount=LedgerEntry.amount - 1000)
            )
    assert not [p for p in (await ledger.verify(ctx)).problems if member_id in p]


async def test_altered_balance_and_deleted_entry_are_reported(ctx):
    member_id = await _member_with_entries(ctx, 4)
    async with ctx.db.transaction() as session:
        await session.execute(
            sa.update(LedgerAccount)
            .where(LedgerAccount.member_id == member_id)
            .values(points=LedgerAccount.points + 5)
        )
        await session.execute(
            sa.delete(LedgerEntry).where(LedgerEntry.member_id == member_id, LedgerEntry.seq == 3)
        )
    report = await ledger.verify(ctx)
    mine = [p for p in report.problems if member_id in p]
    assert any("sequence gap" in p for p in mine)
    assert any("does not chain" in p for p in mine)
    assert any("stored points balance" in p for p in mine)
    # Leave the shared database verifiable for the other tests: remove this member's ledger.
    async with ctx.db.transaction() as session:
        await session.execute(sa.delete(LedgerEntry).where(LedgerEntry.member_id == member_id))
        await session.execute(sa.delete(LedgerAccount).where(LedgerAccount.member_id == member_id))


async def test_cli_reports_ok_on_a_clean_ledger(settings, ctx):
    await _member_with_entries(ctx)
    result = await _cli_verify(settings)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout
