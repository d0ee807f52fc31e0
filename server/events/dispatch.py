"""The in-process registry through which domains react to member events.

Events reach handlers through the outbox after the transaction that stored them commits, so a
handler may run more than once for one event (after a crash or an outage): handlers must be
idempotent, which awards are when their idempotency key names the event.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import insert_ignore, lock_members, utcnow
from server.events.models import DispatchedEvent
from server.events.pipeline import DomainEvent, installed

if TYPE_CHECKING:
    from server.context import Context

__all__ = ["DomainEvent", "apply_dispatch", "check_properties", "emit", "is_internal", "masked"]

log = structlog.get_logger(__name__)


def masked(ctx: Context, event: DomainEvent) -> DomainEvent:
    """The event with its personal properties (declared by the domains) masked."""
    masks = ctx.pipeline.masked
    props = event.properties
    if not masks or masks.keys().isdisjoint(props):
        return event
    out = dict(props)
    for name, mask in masks.items():
        if name in out:
            out[name] = mask(ctx, out[name])
    return replace(event, properties=out)


def is_internal(event_type: str) -> bool:
    """An event type only the server's own domains emit."""
    return event_type in installed().emits


def internal_properties(event_type: str) -> dict[str, str]:
    emitted = installed().emits.get(event_type)
    return dict(emitted.properties) if emitted else {}


def internal_nouns(event_type: str) -> tuple[str, str] | None:
    emitted = installed().emits.get(event_type)
    return emitted.nouns if emitted else None


def check_properties(event_type: str, properties: dict[str, Any]) -> str | None:
    """Why the properties of an event from the brand's systems are refused (a domain's rule), or None."""
    check = installed().properties.get(event_type)
    return check(properties) if check else None


def emit(ctx: Context, session: AsyncSession, event: DomainEvent) -> None:
    """Hand an event to every domain after the caller's transaction commits.

    A handler's own events about a member its run already holds (a quest completed by a
    purchase) are handled in the same transaction, right after the run: no second transaction.
    """
    inline: _Inline | None = session.info.get("dispatch_inline")
    if inline is not None and event.member_id in inline.members:
        inline.queue.append(event)
        return
    ctx.outbox.add(session, "dispatch", event.to_payload())


@dataclass
class _Inline:
    members: set[str]
    queue: list[DomainEvent] = field(default_factory=list)


# Rounds of events caused by events handled in one transaction; any further go through the outbox.
INLINE_ROUNDS = 8


async def apply_dispatch(ctx: Context, items: list[tuple[int, dict[str, Any]]], retry: bool) -> None:
    """Hand events to their handlers, a run of events in one transaction, each event once.

    Events are taken member by member (in order within a member), and the members are held in
    that order before anything else, so that two runs cannot deadlock. A receipt per event,
    written in the same transaction, makes a second delivery (a replayed outbox row, two
    instances draining at once) change nothing: the second finds the receipt and skips the event.
    """
    seen: set[str] = set()
    events: list[DomainEvent] = []
    for _, payload in items:
        event = DomainEvent.from_payload(payload)
        if event.event_id not in seen and ctx.pipeline.wanted(ctx, event.type):
            seen.add(event.event_id)
            events.append(event)
    if not events:
        return  # nobody listens to these
    events.sort(key=lambda e: (e.member_id, e.occurred_at, e.event_id))
    async with ctx.db.transaction() as session:
        # Handlers lock rows of several kinds per member (ledger account, quest runs) in orders
        # that depend on the events: holding the members first, in order, rules out deadlocks.
        members = {e.member_id for e in events}
        for reaction in ctx.pipeline.on_events:
            if reaction.also_lock is not None:
                wanted = [e for e in events if reaction.wants(ctx, e.type)]
                if wanted:
                    members |= await reaction.also_lock(ctx, session, wanted)
        await lock_members(session, sorted(members))
        inline = session.info["dispatch_inline"] = _Inline({e.member_id for e in events})
        for _ in range(INLINE_ROUNDS):
            await _handle(ctx, session, events)
            events = sorted(
                (e for e in inline.queue if ctx.pipeline.wanted(ctx, e.type)),
                key=lambda e: (e.member_id, e.occurred_at, e.event_id),
            )
            inline.queue = []
            if not events:
                break
        del session.info["dispatch_inline"]
        for event in events:  # a chain longer than INLINE_ROUNDS goes on after commit
            ctx.outbox.add(session, "dispatch", event.to_payload())


async def _handle(ctx: Context, session: AsyncSession, events: list[DomainEvent]) -> None:
    """One round: the receipts, then each handler, for the events not handled before."""
    now = utcnow()
    fresh = set(
        (
            await session.execute(
                insert_ignore(session, DispatchedEvent.__table__).returning(
                    DispatchedEvent.__table__.c.event_id
                ),
                [{"event_id": e.event_id, "dispatched_at": now} for e in events],
            )
        ).scalars()
    )
    await ctx.pipeline.handle_events(ctx, session, [e for e in events if e.event_id in fresh])
