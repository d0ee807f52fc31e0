from __future__ import annotations

import msgspec


class RejectedEvent(msgspec.Struct):
    index: int
    event_id: str | None
    code: str
    reason: str


class EventsOut(msgspec.Struct):
    accepted: int
    duplicates: int
    rejected: list[RejectedEvent]
    duplicate_event_ids: list[str]
