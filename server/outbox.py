"""The outbox: effects outside SQL (live messages, board writes, dispatch, webhooks).

A domain writes outbox rows in the same transaction as its SQL changes. After commit the rows are
applied at once by the process that wrote them (it holds a claim on them); if an effect fails (Redis
down) the row stays, and the drain job on any instance applies it later. Every effect is idempotent,
so applying a row twice after a crash harms nothing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import JSON, BigInteger, Column, Field, col

from server.db import TableModel, UTCDateTime, after_commit, before_commit, insert_many, utcnow
from server.metrics import OUTBOX_APPLIED, OUTBOX_FAILED
from server.scheduler import Job

if TYPE_CHECKING:
    from server.config import Settings
    from server.db import Database


class Runtime(Protocol):
    """What the outbox uses of the process context (`server.context.Context`, which holds the
    outbox: typed by what is used, so that neither module imports the other)."""

    settings: Settings
    db: Database
    outbox: Outbox
    pipeline: Any  # server.events.pipeline.Pipeline: its `effects`


log = structlog.get_logger(__name__)

# An effect applies a run of consecutive rows of its kind, [(row id, payload), ...]:
# `async def f(ctx, items, retry)`, idempotent, taking the process context. The rows are in order,
# so that an effect can apply many in one round trip (one transaction, one Redis pipeline); `retry`
# is true when they may have been applied before (a drain after a failure or a crash, or one by
# one after their run failed). The domains declare their effects in the reaction pipeline
# (`server.events.pipeline.Reactions.effects`).
Effect = Callable[[Any, list[tuple[int, dict[str, Any]]], bool], Awaitable[None]]
# The effects members see (a member's and a team's live messages, and which teams a member's
# sockets hear), applied before the others, each kind still in the order it was first queued.
SEEN_FIRST = frozenset({"live", "team_membership", "team_live"})


class OutboxRow(TableModel, table=True):
    __tablename__ = "outbox"

    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    kind: str = Field(max_length=64)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    # While in the future, one process owns the row; the drain takes rows whose claim has lapsed.
    claimed_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), index=True))
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)


@dataclass
class Held:
    """An outbox row this process wrote and holds the claim on: what `apply` needs of it."""

    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int = 0


class Outbox:
    def __init__(self, ctx: Runtime, effects: Mapping[str, Effect] | None = None) -> None:
        self.ctx = ctx
        # The effects the domains declare (the context's pipeline), unless given.
        self.effects = dict(ctx.pipeline.effects if effects is None else effects)
        self.claim = timedelta(seconds=ctx.settings.outbox_claim_seconds)
        # Applied rows are deleted in batches, a moment later: one small write for many requests.
        # A row applied but not yet deleted when the process dies is applied again by the drain,
        # which every effect tolerates.
        self._applied: list[int] = []
        self._flusher: asyncio.Task[None] | None = None

    def add(self, session: AsyncSession, kind: str, payload: dict[str, Any]) -> None:
        """Queue an effect in the caller's transaction; it is applied right after commit.

        The effects of one transaction are written together at its end, in one statement.
        """
        if kind not in self.effects:
            raise KeyError(f"no outbox effect '{kind}'")
        if not session.info.get("unit_of_work"):
            # Only `Database.transaction` writes the queued rows (just before it commits).
            raise RuntimeError("outbox effects are queued inside ctx.db.transaction()")
        queued: list[tuple[str, dict[str, Any]]] | None = session.info.get("outbox_queued")
        if queued is None:
            queued = session.info["outbox_queued"] = []
            written: list[Held] = []

            async def write_before_commit() -> None:
                written.extend(await self._write(session, queued))

            async def apply_after_commit() -> None:
                await self.apply(written)

            before_commit(session, write_before_commit)
            after_commit(session, apply_after_commit)
        queued.append((kind, payload))

    async def _write(self, session: AsyncSession, queued: list[tuple[str, dict[str, Any]]]) -> list[Held]:
        now = utcnow()
        ids = await insert_many(
            session,
            OutboxRow.__table__,
            [
                {
                    "kind": kind,
                    "payload": payload,
                    "created_at": now,
                    "claimed_until": now + self.claim,
                    "attempts": 0,
                }
                for kind, payload in queued
            ],
        )
        return [Held(row_id, kind, payload) for row_id, (kind, payload) in zip(ids, queued, strict=True)]

    async def apply(self, rows: Sequence[OutboxRow | Held], retry: bool = False) -> None:
        """Apply rows this process holds; keep the ones that fail for the drain.

        The rows of each kind go to their effect together, in their order (effects of different
        kinds do not depend on each other's order: a unit of work of many members interleaves
        their live messages, scores and events, and each kind is still one round trip). If a run
        fails, each of its rows is tried alone, so that one bad row does not hold the others back.
        """
        done: list[int] = []
        failed: list[tuple[int, int, str]] = []
        first_seen: dict[str, int] = {}
        for r in rows:
            first_seen.setdefault(r.kind, len(first_seen))
        # Live messages first: they are what members wait for; board writes and dispatch can follow.
        ordered = sorted(rows, key=lambda r: (r.kind not in SEEN_FIRST, first_seen[r.kind]))  # stable
        for kind, group in itertools.groupby(ordered, key=lambda r: r.kind):
            run = list(group)
            items = [(r.id, r.payload) for r in run]
            try:
                await self.effects[kind](self.ctx, items, retry)
            except Exception as exc:
                if len(run) == 1:
                    failed.append(self._failure(run[0], exc))
                    continue
                for row in run:
                    try:
                        await self.effects[kind](self.ctx, [(row.id, row.payload)], True)
                    except Exception as exc_one:
                        failed.append(self._failure(row, exc_one))
                    else:
                        done.append(row.id)  # type: ignore[arg-type]
            else:
                done.extend(r.id for r in run)  # type: ignore[misc]
        OUTBOX_APPLIED.inc(len(done))
        if done:
            self._applied.extend(done)
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())
        if not failed:
            return
        async with self.ctx.db.transaction() as session:
            now = utcnow()
            for row_id, attempts, error in failed:
                # Up to a minute apart at first; a row that keeps failing is tried hourly, and said loudly.
                backoff = timedelta(seconds=min(2 ** min(attempts, 6), 60) if attempts < 20 else 3600)
                if attempts >= 20:
                    log.error("outbox_row_failing", row=row_id, attempts=attempts, error=error)
                await session.execute(
                    sa.update(OutboxRow)
                    .where(col(OutboxRow.id) == row_id)
                    .values(attempts=attempts, last_error=error, claimed_until=now + backoff)
                )

    async def _flush_soon(self) -> None:
        await asyncio.sleep(0.05)
        await self.flush()

    async def flush(self) -> None:
        """Delete the rows applied so far."""
        while self._applied:
            batch, self._applied = self._applied[:1000], self._applied[1000:]
            try:
                async with self.ctx.db.transaction() as session:
                    await session.execute(sa.delete(OutboxRow).where(col(OutboxRow.id).in_(batch)))
            except Exception:
                # SQL unavailable: the rows stay and are applied again later, harmlessly.
                log.warning("outbox_flush_failed", rows=len(batch))
                return

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.flush()

    @staticmethod
    def _failure(row: OutboxRow | Held, exc: Exception) -> tuple[int, int, str]:
        OUTBOX_FAILED.labels(row.kind).inc()
        log.warning("outbox_effect_failed", kind=row.kind, row=row.id, error=type(exc).__name__)
        assert row.id is not None
        return row.id, row.attempts + 1, f"{type(exc).__name__}: {exc}"[:500]

    async def drain(self, limit: int = 200) -> int:
        """Claim rows whose claim has lapsed (their writer died or their effect failed) and apply them."""
        total = 0
        row = OutboxRow.__table__.c
        while True:
            now = utcnow()
            lapsed = sa.or_(row.claimed_until.is_(None), row.claimed_until < now)
            # Most ticks find nothing: look before taking a writer's transaction (on SQLite the
            # database's one write lock, which every tick would otherwise take).
            async with self.ctx.db.session() as session:
                waiting = (await session.execute(sa.select(row.id).where(lapsed).limit(1))).first()
            if waiting is None:
                return total
            async with self.ctx.db.transaction() as session:
                ids = (
                    (await session.execute(sa.select(row.id).where(lapsed).order_by(row.id).limit(limit)))
                    .scalars()
                    .all()
                )
                if not ids:
                    return total
                # The conditional update is the claim: a row another instance took meanwhile is skipped.
                claimed = (
                    (
                        await session.execute(
                            sa.update(OutboxRow)
                            .where(row.id.in_(ids))
                            .where(lapsed)
                            .values(claimed_until=now + self.claim)
                            .returning(row.id)
                        )
                    )
                    .scalars()
                    .all()
                )
                rows = (
                    (await session.execute(sa.select(OutboxRow).where(row.id.in_(claimed)).order_by(row.id)))
                    .scalars()
                    .all()
                )
            await self.apply(list(rows), retry=True)
            total += len(rows)
            if len(ids) < limit:
                return total

    async def pending(self) -> int:
        async with self.ctx.db.session() as session:
            return int(
                (await session.execute(sa.select(sa.func.count()).select_from(OutboxRow))).scalar_one()
            )


async def drain_outbox(ctx: Runtime, _period: str) -> None:
    """On every instance: apply what a failed effect or a dead process left behind."""
    applied = await ctx.outbox.drain()
    if applied:
        log.info("outbox_drained", rows=applied)


DRAIN = Job(
    "outbox.drain", drain_outbox, lambda ctx: ctx.settings.outbox_drain_seconds, once_per_period=False
)
