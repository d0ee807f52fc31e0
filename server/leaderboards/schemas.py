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
    ranks: str = "members"  # members | teams
    team_kind: str | None = None  # the kind of team ranked, or of the `team` scope


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


class TeamEntryOut(msgspec.Struct):
    """A row of a board that ranks teams. `size`: the team's members now (None for a team the
    teams service does not know). The caller's own team is the `team_id` of `/me`."""

    rank: int
    team_id: str
    name: str
    score: int
    size: int | None


class StandingsOut(msgspec.Struct):
    """A page of standings: members' rows in `entries`, or on a board that ranks teams
    (`ranks: teams`), teams' rows in `teams` (and `entries` empty)."""

    board_id: str
    period: PeriodOut
    scope: str
    total: int
    entries: list[EntryOut]
    next_cursor: str | None
    ranks: str = "members"  # members | teams
    teams: list[TeamEntryOut] | None = None


class MyStandingOut(msgspec.Struct):
    """The caller's place: on a board that ranks teams, their team's (`team_id`, `rank`, `score`)
    with the teams around it in `teams`."""

    board_id: str
    period: PeriodOut
    scope: str
    member_id: str
    rank: int | None  # None: no score in this period and scope (or no team of the board's kind)
    score: int | None
    total: int
    entries: list[EntryOut]
    handle: str | None  # the caller's own, as the others see it
    ranks: str = "members"  # members | teams
    team_id: str | None = None  # the caller's team of the board's kind, on a board that ranks teams
    teams: list[TeamEntryOut] | None = None


class TeamBreakdownOut(msgspec.Struct):
    """What each member brought to a team on a board that ranks teams, in one period, most first.
    Members who left the team since keep their row: what they brought stays with the team."""

    board_id: str
    period: PeriodOut
    team_id: str
    name: str
    rank: int | None  # the team's rank in the period (None: it has no score)
    score: int  # the team's score: the members' shares added up
    size: int | None  # the team's members now
    total: int  # members who brought something
    members: list[EntryOut]
    next_cursor: str | None
