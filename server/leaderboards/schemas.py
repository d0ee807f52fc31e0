from __future__ import annotations

from datetime import datetime

import msgspec


class PeriodOut(msgspec.Struct):
    key: str
    starts_at: datetime
    ends_at: datetime | None  # None: all-time
    status: str = "live"  # live | ended (over, final standings not archived yet) | archived


class LeagueOut(msgspec.Struct):
    levels: list[str]
    size: int
    promote: int
    demote: int
    level: int  # the member's league, 0 the first
    name: str


class BoardOut(msgspec.Struct):
    board_id: str
    name: str
    description: str | None
    metric: str  # points | growth | an event type
    operator: str
    order: str
    period_kind: str
    zone: str
    scopes: list[str]
    current_period: PeriodOut | None
    previous_period: PeriodOut | None
    rookie_days: int | None = None
    league: LeagueOut | None = None


class BoardsOut(msgspec.Struct):
    boards: list[BoardOut]


class EntryOut(msgspec.Struct, omit_defaults=True):
    """A row of a board. Members see each other by `handle` and `display_name` (null when the
    brand gave none: show the handle then), never by id, which is the brand's and may be an
    e-mail address; only the caller's own row (`is_me`) carries `member_id`."""

    rank: int
    handle: str | None  # None only for a score whose member is gone
    display_name: str | None
    score: int
    is_me: bool
    member_id: str | None = None


class StandingsOut(msgspec.Struct):
    board_id: str
    period: PeriodOut
    scope: str
    total: int
    entries: list[EntryOut]
    next_cursor: str | None


class MyStandingOut(msgspec.Struct):
    board_id: str
    period: PeriodOut
    scope: str
    member_id: str
    rank: int | None  # None: no score in this period and scope
    score: int | None
    total: int
    entries: list[EntryOut]
    handle: str | None  # the caller's own, as the others see it
