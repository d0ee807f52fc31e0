"""Ingestion of member events from the brand's systems: validated one by one, stored once, dispatched."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from server.db import insert_ignore, utcnow
from server.errors import ProblemError
from server.events.catalog import EventCatalog
from server.events.dispatch import DomainEvent, check_properties, emit, is_internal, masked
from server.events.models import MemberEvent
from server.events.schemas import EVENT_ID_PATTERN, EVENT_TYPE_PATTERN, EventsOut, RejectedEvent
from server.members.service import MEMBER_ID_RE, profiles
from server.metrics import EVENTS

if TYPE_CHECKING:
    from server.config import Settings
    from server.context import Context

EVENT_ID_RE = re.compile(EVENT_ID_PATTERN)
EVENT_TYPE_RE = re.compile(EVENT_TYPE_PATTERN)
FUTURE_SKEW = timedelta(minutes=5)
FIELDS = {"event_id", "member_id", "type", "occurred_at", "properties"}
# An event's properties as compact JSON; the body of a batch allows each event this and room for
# its other fields and the sender's whitespace, so that a full batch of full events fits.
PROPERTIES_MAX_BYTES = 8 * 1024
EVENT_MAX_BYTES = 12 * 1024


def body_limit(settings: Settings) -> int:
    """The most bytes a `POST /v1/events` body may hold: a full batch of the largest events."""
    return settings.events_batch_max * EVENT_MAX_BYTES


class _Reject(Exception):
    def __init__(self, code: str, reason: str) -> None:
        self.code, self.reason = code, reason


def _parse(raw: Any, now: datetime, catalog: EventCatalog) -> DomainEvent:
    if not isinstance(raw, dict):
        raise _Reject("invalid_event", "An event is a JSON object.")
    unknown = set(raw) - FIELDS
    if unknown:
        raise _Reject("unknown_field", f"Unknown field(s): {', '.join(sorted(unknown))}.")
    for name in ("event_id", "member_id", "type", "occurred_at"):
        if not isinstance(raw.get(name), str) or not raw[name]:
            raise _Reject(f"invalid_{name}", f"`{name}` is required and must be a string.")
    if not EVENT_ID_RE.fullmatch(raw["event_id"]):
        raise _Reject("invalid_event_id", "event_id is 1 to 128 letters, digits or . _ : @ -.")
    if not MEMBER_ID_RE.fullmatch(raw["member_id"]):
        raise _Reject("invalid_member_id", "member_id is 1 to 64 letters, digits or . _ : @ -.")
    if not EVENT_TYPE_RE.fullmatch(raw["type"]):
        raise _Reject("invalid_type", "type is lower case letters, digits, '_' and '.', like `purchase`.")
    if is_internal(raw["type"]):
        raise _Reject(
            "reserved_type", f"`{raw['type']}` events come from the server itself, not from outside."
        )
    event_type = catalog.types.get(raw["type"])
    if event_type is None:
        raise _Reject(
            "unknown_type",
            f"`{raw['type']}` is not an event type of this program (content/events.yaml names them).",
        )
    try:
        occurred_at = datetime.fromisoformat(raw["occurred_at"])
    except ValueError:
        raise _Reject("invalid_occurred_at", "occurred_at is an ISO 8601 time with an offset.") from None
    if occurred_at.tzinfo is None:
        raise _Reject(
            "invalid_occurred_at", "occurred_at needs a UTC offset, like 2026-11-24T09:30:00+01:00."
        )
    if occurred_at.year < 2000 or occurred_at.year > 9998:  # also keeps the UTC conversion in range
        raise _Reject("invalid_occurred_at", "occurred_at is not a plausible time (year 2000 or later).")
    if occurred_at > now + FUTURE_SKEW:
        raise _Reject("occurred_in_future", "occurred_at is in the future.")
    properties = raw.get("properties", {})
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        raise _Reject("invalid_properties", "properties is a JSON object.")
    encoded = msgspec.json.encode(properties)
    if len(encoded) > PROPERTIES_MAX_BYTES:
        raise _Reject(
            "properties_too_large", f"properties are at most {PROPERTIES_MAX_BYTES:,} bytes as compact JSON."
        )
    if b"\\u0000" in encoded and _holds_nul(properties):  # PostgreSQL cannot store NUL in JSON
        raise _Reject("invalid_properties", "properties hold a NUL (\\u0000) in a name or a value.")
    reason = event_type.problem(properties) or check_properties(raw["type"], properties)
    if reason:
        raise _Reject("invalid_properties", reason)
    return DomainEvent(
        event_id=raw["event_id"],
        member_id=raw["member_id"],
        type=raw["type"],
        occurred_at=occurred_at,
        properties=properties,
    )


def _holds_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return True
        elif isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


async def ingest(ctx: Context, body: Any, source: str) -> EventsOut:
    """Store each valid event once and dispatch the new ones; report duplicates and rejects per event."""
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise ProblemError(400, "invalid_batch", 'The body is {"events": [ ... ]}.')
    raw_events: list[Any] = body["events"]
    limit = ctx.settings.events_batch_max
    if len(raw_events) > limit:
        raise ProblemError(413, "batch_too_large", f"A batch holds at most {limit} events; send several.")
    now = utcnow()
    catalog: EventCatalog = ctx.content.get("events")
    rejected: list[RejectedEvent] = []
    valid: list[tuple[int, DomainEvent]] = []
    for index, raw in enumerate(raw_events):
        try:
            valid.append((index, masked(ctx, _parse(raw, now, catalog))))
        except _Reject as r:
            event_id = raw.get("event_id") if isinstance(raw, dict) else None
            rejected.append(
                RejectedEvent(index, event_id if isinstance(event_id, str) else None, r.code, r.reason)
            )
    fresh: dict[str, DomainEvent] = {}
    duplicates: list[str] = []
    accepted = 0
    if valid:
        async with ctx.db.transaction() as session:
            # Members are made by the brand (`PUT /v1/members/{id}`) or by their own first token,
            # never by an event: one for a member the server does not know is refused.
            found = await profiles(ctx, session, sorted({e.member_id for _, e in valid}))
            for index, event in valid:
                if not found[event.member_id].known:
                    rejected.append(_unknown_member(index, event))
                elif event.event_id in fresh:  # a repeat inside the batch: a duplicate of the first
                    duplicates.append(event.event_id)
                else:
                    fresh[event.event_id] = replace(event, source=source)
            rejected.sort(key=lambda r: r.index)
            if not fresh:
                return _answer(0, duplicates, rejected)
            # One statement, compiled once per process (the rows are parameters, not SQL).
            stored = set(
                (
                    await session.execute(
                        insert_ignore(session, MemberEvent.__table__).returning(
                            MemberEvent.__table__.c.event_id
                        ),
                        [
                            dict(
                                event_id=e.event_id,
                                member_id=e.member_id,
                                type=e.type,
                                occurred_at=e.occurred_at,
                                properties=e.properties,
                                source=source,
                                received_at=now,
                            )
                            for e in fresh.values()
                        ],
                    )
                ).scalars()
            )
            for event in fresh.values():
                if event.event_id in stored:
                    accepted += 1
                    emit(ctx, session, event)
                else:
                    duplicates.append(event.event_id)
    return _answer(accepted, duplicates, rejected)


def _unknown_member(index: int, event: DomainEvent) -> RejectedEvent:
    return RejectedEvent(
        index,
        event.event_id,
        "member_not_found",
        f"There is no member '{event.member_id}'; create them first (PUT /v1/members/{{member_id}}).",
    )


def _answer(accepted: int, duplicates: list[str], rejected: list[RejectedEvent]) -> EventsOut:
    EVENTS.labels("accepted").inc(accepted)
    EVENTS.labels("duplicate").inc(len(duplicates))
    EVENTS.labels("rejected").inc(len(rejected))
    return EventsOut(
        accepted=accepted, duplicates=len(duplicates), rejected=rejected, duplicate_event_ids=duplicates
    )
