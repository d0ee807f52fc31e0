"""What the boards count: events from the dispatch, and points and growth from the ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from server.events.pipeline import DomainEvent, OnEvents, OnPosted, Reactions, of_types
from server.leaderboards.index import apply_scores
from server.leaderboards.service import Observation, boards, members_changed, record
from server.ledger import service as ledger  # the entries it counts

if TYPE_CHECKING:
    from server.context import Context

# Negative movements that lower what a member earned: corrections. Spends do not.
_CORRECTIONS = ("reversal", "adjustment")


def _wants_event(ctx: Context, event_type: str) -> bool:
    return bool(boards(ctx).for_event(event_type))


async def count_events(ctx: Context, session: AsyncSession, events: list[DomainEvent]) -> None:
    """Each event, on every board whose metric counts its type (and passes its filter)."""
    found = boards(ctx)
    seen: list[Observation] = []
    for event in events:
        for board in found.for_event(event.type):
            metric = board.event_metric
            assert metric is not None
            amount = metric.amount(event.properties)
            if amount is not None:
                seen.append(Observation(board, event.member_id, amount, event.occurred_at))
    await record(ctx, session, seen)


def _wants_currency(ctx: Context, currency: str) -> bool:
    return bool(boards(ctx).for_currency(currency))


async def count_earnings(ctx: Context, session: AsyncSession, entries: list[ledger.LedgerEntry]) -> None:
    """Points or growth earned (and corrections of them) on the boards that count that currency."""
    found = boards(ctx)
    seen = [
        Observation(board, e.member_id, e.amount, e.created_at)
        for e in entries
        if e.amount > 0 or e.source in _CORRECTIONS
        for board in found.for_currency(e.currency)
    ]
    await record(ctx, session, seen)


async def move_scores(ctx: Context, session: AsyncSession, events: list[DomainEvent]) -> None:
    """What the boards show and scope by moved: the members' live scores move with it."""
    await members_changed(ctx, session, [e.member_id for e in events])


REACTIONS = Reactions(
    events=(
        OnEvents(count_events, _wants_event),
        OnEvents(move_scores, of_types("member.profile_changed")),
    ),
    posted=(OnPosted(count_earnings, _wants_currency),),
    # After commit: absolute scores into the Redis index, rank changes to the members.
    effects={"leaderboard.score": apply_scores},
)
