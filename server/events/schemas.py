from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from server.members.service import MEMBER_ID_RE

# What an event id and an event type are: the service checks each event of a batch against these.
EVENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,127}$"
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_.]{0,63}$"


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


# What a batch is, for the API description: the service reads the body itself, so that one bad
# event is rejected alone (`rejected`) instead of failing the batch.
class EventIn(msgspec.Struct, forbid_unknown_fields=True):
    """One member event, stored once per `event_id`."""

    event_id: Annotated[str, msgspec.Meta(pattern=EVENT_ID_PATTERN)]
    member_id: Annotated[str, msgspec.Meta(pattern=MEMBER_ID_RE.pattern)]
    type: Annotated[
        str,
        msgspec.Meta(
            pattern=EVENT_TYPE_PATTERN,
            description="An event type of the program's content (content/events.yaml).",
        ),
    ]
    occurred_at: Annotated[
        datetime, msgspec.Meta(description="With a UTC offset; from year 2000, at most minutes ahead.")
    ]
    properties: dict[str, Any] = {}


class EventsIn(msgspec.Struct):
    events: Annotated[
        list[Any],
        msgspec.Meta(
            description="At most `events_batch_max` (1,000 by default) events; more is a 413. "
            "Each is an `EventIn`; anything else is listed in `rejected` with a code, alone.",
            extra_json_schema={"items": {"anyOf": [{"$ref": "#/components/schemas/EventIn"}, {}]}},
        ),
    ]
