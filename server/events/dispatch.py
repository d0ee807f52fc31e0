"""The in-process registry through which domains react to member events.

Events reach handlers through the outbox after the transaction that stored them commits, so a
handler may run more than once for one event (after a crash or an outage): handlers must be
idempotent, which awards are when their idempotency key names the event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import insert_ignore, lock_members, utcnow
from server.events.models import DispatchedEvent
from server.outbox import effect

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DomainEvent:
    event_id: str
    member_id: str
    type: str
    occurred_at: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    source: str = "api"

    def to_payload(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies the properties, for every event of a batch.
        return {
            "event_id": self.event_id,
            "member_id": self.member_id,
            "type": self.type,
            "occurred_at": self.occurred_at.isoformat(),
            "properties": self.properties,
            "source": self.source,
        }

    @classmethod
    def from_payload(cls, d: dict[str, Any]) -> DomainEvent:
        return cls(**{**d, "occurred_at": datetime.fromisoformat(d["occurred_at"])})


# Handlers run inside the dispatch transaction: they write through services that take the session
# (the ledger's `post`) and never commit themselves.
Handler = Callable[["Context", AsyncSession, DomainEvent], Awaitable[None]]
# A handler that takes a run of events at once (in member order), and says which types it wants
# under the content serving now.
BatchHandler = Callable[["Context", AsyncSession, list[DomainEvent]], Awaitable[None]]
Wants = Callable[["Context", str], bool]
PropertyCheck = Callable[[dict[str, Any]], str | None]

# Members a handler will lock besides the events' own (the other side of a referral), named up
# front so that dispatch holds every member of the run in one order.
AlsoLock = Callable[["Context", AsyncSession, list[DomainEvent]], Awaitable[set[str]]]
Mask = Callable[["Context", Any], Any]

_handlers: dict[str, list[Handler]] = {}
_batch_handlers: list[tuple[BatchHandler, Wants]] = []
_also_lock: list[tuple[AlsoLock, Wants]] = []
_masks: dict[str, Mask] = {}
_property_checks: dict[str, PropertyCheck] = {}
_internal: dict[str, dict[str, str]] = {}
_internal_nouns: dict[str, tuple[str, str]] = {}


def on(*event_types: str) -> Callable[[Handler], Handler]:
    """Register a handler for these event types ('*' for every type)."""

    def register(fn: Handler) -> Handler:
        for t in event_types:
            if fn not in _handlers.setdefault(t, []):
                _handlers[t].append(fn)
        return fn

    return register


def on_batch(wants: Wants, also_lock: AlsoLock | None = None) -> Callable[[BatchHandler], BatchHandler]:
    """Register a handler for runs of events of the types `wants(ctx, type)` accepts. A handler
    that works on members other than the events' own names them with `also_lock`: the dispatch
    then holds them with the others, in one order, before any handler runs."""

    def register(fn: BatchHandler) -> BatchHandler:
        if all(fn is not h for h, _ in _batch_handlers):
            _batch_handlers.append((fn, wants))
            if also_lock is not None:
                _also_lock.append((also_lock, wants))
        return fn

    return register


def declare_masked(prop: str, mask: Mask) -> None:
    """A property the brand's systems send that is personal (a device id, an address): replaced
    by `mask(ctx, value)` when the event arrives, before it is stored or handed to any domain."""
    _masks[prop] = mask


def masked(ctx: Context, event: DomainEvent) -> DomainEvent:
    props = event.properties
    if not _masks or _masks.keys().isdisjoint(props):
        return event
    out = dict(props)
    for name, mask in _masks.items():
        if name in out:
            out[name] = mask(ctx, out[name])
    return replace(event, properties=out)


def declare_properties(event_type: str, check: PropertyCheck) -> None:
    """A domain states what properties an event type must carry; `check` returns a reason or None."""
    _property_checks[event_type] = check


def declare_internal(
    event_type: str, properties: dict[str, str] | None = None, nouns: tuple[str, str] | None = None
) -> None:
    """An event type only the server's own domains emit (the brand's systems cannot send it),
    with the type of each property it carries ('string', 'number', 'integer', 'boolean'), so that
    content (quests, badges) can filter on them and be checked, and how the app names one and
    several of them ("check-in", "check-ins")."""
    _internal[event_type] = dict(properties or {})
    if nouns:
        _internal_nouns[event_type] = nouns


def is_internal(event_type: str) -> bool:
    return event_type in _internal


def internal_properties(event_type: str) -> dict[str, str]:
    return _internal.get(event_type, {})


def internal_nouns(event_type: str) -> tuple[str, str] | None:
    return _internal_nouns.get(event_type)


def check_properties(event_type: str, properties: dict[str, Any]) -> str | None:
    check = _property_checks.get(event_type)
    return check(properties) if check else None


def handlers_for(event_type: str) -> list[Handler]:
    return [*_handlers.get(event_type, []), *_handlers.get("*", [])]


def _wanted(ctx: Context, event_type: str) -> bool:
    return bool(handlers_for(event_type)) or any(w(ctx, event_type) for _, w in _batch_handlers)


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


@effect("dispatch")
async def _apply_dispatch(ctx: Context, items: list[tuple[int, dict[str, Any]]], retry: bool) -> None:
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
        if event.event_id not in seen and _wanted(ctx, event.type):
            seen.add(event.event_id)
            events.append(event)
    if not events:
        return  # nobody listens to these
    events.sort(key=lambda e: (e.member_id, e.occurred_at, e.event_id))
    async with ctx.db.transaction() as session:
        # Handlers lock rows of several kinds per member (ledger account, quest runs) in orders
        # that depend on the events: holding the members first, in order, rules out deadlocks.
        members = {e.member_id for e in events}
        for also, wants in _also_lock:
            wanted = [e for e in events if wants(ctx, e.type)]
            if wanted:
                members |= await also(ctx, session, wanted)
        await lock_members(session, sorted(members))
        inline = session.info["dispatch_inline"] = _Inline({e.member_id for e in events})
        for _ in range(INLINE_ROUNDS):
            await _handle(ctx, session, events)
            events = sorted(
                (e for e in inline.queue if _wanted(ctx, e.type)),
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
    events = [e for e in events if e.event_id in fresh]
    for event in events:
        for handler in handlers_for(event.type):
            await handler(ctx, session, event)
    for batch_handler, wants in _batch_handlers:
        wanted = [e for e in events if wants(ctx, e.type)]
        if wanted:
            await batch_handler(ctx, session, wanted)
