"""The in-process registry through which domains react to member events.

Events reach handlers through the outbox after the transaction that stored them commits, so a
handler may run more than once for one event (after a crash or an outage): handlers must be
idempotent, which awards are when their idempotency key names the event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

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
        d = asdict(self)
        d["occurred_at"] = self.occurred_at.isoformat()
        return d

    @classmethod
    def from_payload(cls, d: dict[str, Any]) -> DomainEvent:
        return cls(**{**d, "occurred_at": datetime.fromisoformat(d["occurred_at"])})


# Handlers run inside the dispatch transaction: they write through services that take the session
# (the ledger's `post`) and never commit themselves.
Handler = Callable[["Context", AsyncSession, DomainEvent], Awaitable[None]]
PropertyCheck = Callable[[dict[str, Any]], str | None]

_handlers: dict[str, list[Handler]] = {}
_property_checks: dict[str, PropertyCheck] = {}
_internal: set[str] = set()


def on(*event_types: str) -> Callable[[Handler], Handler]:
    """Register a handler for these event types ('*' for every type)."""

    def register(fn: Handler) -> Handler:
        for t in event_types:
            if fn not in _handlers.setdefault(t, []):
                _handlers[t].append(fn)
        return fn

    return register


def declare_properties(event_type: str, check: PropertyCheck) -> None:
    """A domain states what properties an event type must carry; `check` returns a reason or None."""
    _property_checks[event_type] = check


def declare_internal(*event_types: str) -> None:
    """Event types only the server's own domains emit: the brand's systems cannot send them."""
    _internal.update(event_types)


def is_internal(event_type: str) -> bool:
    return event_type in _internal


def check_properties(event_type: str, properties: dict[str, Any]) -> str | None:
    check = _property_checks.get(event_type)
    return check(properties) if check else None


def handlers_for(event_type: str) -> list[Handler]:
    return [*_handlers.get(event_type, []), *_handlers.get("*", [])]


def emit(ctx: Context, session: AsyncSession, event: DomainEvent) -> None:
    """Hand an event to every domain after the caller's transaction commits."""
    ctx.outbox.add(session, "dispatch", event.to_payload())


@effect("dispatch")
async def _apply_dispatch(ctx: Context, items: list[tuple[int, dict[str, Any]]], retry: bool) -> None:
    """Hand events to their handlers, a run of events in one transaction.

    Events are taken member by member (in order within a member) so that two runs lock members'
    rows in the same order and cannot deadlock.
    """
    events = sorted(
        (e for e in (DomainEvent.from_payload(p) for _, p in items) if handlers_for(e.type)),
        key=lambda e: e.member_id,
    )
    if not events:
        return  # nobody listens to these yet
    async with ctx.db.transaction() as session:
        for event in events:
            for handler in handlers_for(event.type):
                await handler(ctx, session, event)
