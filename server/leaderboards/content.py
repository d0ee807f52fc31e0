"""Leaderboards as content (content/leaderboards.yaml): what each board counts and how it turns.

    boards:
      - id: weekly-points
        name: Top savers this week
        metric: points                      # points earned; or growth
        period: weekly                      # daily | weekly | monthly | season | all_time
        zone: Europe/Paris                  # where the period turns
        scopes: [global, tier, friends]
        rookie: {days: 30}                  # a rookie board beside the main one
      - id: longest-streak
        metric: {event: checkin.completed, value: streak}
        operator: best                      # increment (default) | best | set
      - id: weekly-spend
        metric: {event: purchase, value: amount, where: "channel == 'online'"}
      - id: squads-weekly
        ranks: teams                        # rank teams: each one's members' contributions added up
        team_kind: squad                    # the kind of team ranked (and the `team` scope's kind)
        metric: points

A metric over events counts each event as 1, or as its numeric property `value`; so any domain
that emits an event (a referral converted, a team goal reached) can be ranked without code here.

A board that ranks teams counts what a member does for the team of `team_kind` they are in at
that moment: a member who moves later leaves what they brought with the team they brought it to.
Members without a team of the kind add nothing to it. The `team` scope of a board that ranks
members is likewise the member's team of `team_kind`. Without `team_kind`, both use the teams
content's `brand_kind` (the kind the brand's `team_id` places members in).
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from server.content.goals import ID_RE, Strict
from server.content.loader import ContentIssue, ContentKind, ContentStore
from server.content.where import Where, check_where, compile_where
from server.events.catalog import check_event_use

PeriodKind = Literal["daily", "weekly", "monthly", "season", "all_time"]
Scope = Literal["global", "tier", "team", "friends"]
Ranks = Literal["members", "teams"]
# The kind team ids set through a member's profile had before teams had kinds (server.teams'
# LEGACY_KIND: the boards sit below the teams and cannot read it there).
LEGACY_TEAM_KIND = "team"
DEFAULT_LEVELS = ["Bronze", "Silver", "Gold", "Sapphire", "Ruby", "Emerald", "Diamond"]


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{value}' is not an IANA time zone (for example Europe/Paris)") from None
    return value


def _instant(value: date | datetime, zone: str) -> datetime:
    """A date is its local midnight; a time without offset is local to `zone`."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(0))
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    return value.astimezone(UTC)


class EventMetric(Strict):
    event: str = Field(max_length=64, description="the event type counted")
    value: str | None = Field(
        default=None, max_length=64, description="a numeric property to add up (else each event counts 1)"
    )
    where: str | dict[str, Any] | None = Field(
        default=None, description="a filter on the event's properties, e.g. \"channel == 'online'\""
    )

    _where_parses = field_validator("where")(check_where)

    @model_validator(mode="after")
    def _compiled(self) -> EventMetric:
        self.__dict__["_where"] = compile_where(self.where)
        return self

    @property
    def compiled_where(self) -> Where:
        return self.__dict__["_where"]

    def amount(self, properties: dict[str, Any]) -> float | None:
        """What one event adds, or None when the event does not count."""
        if not self.__dict__["_where"].matches(properties):
            return None
        if self.value is None:
            return 1
        v = properties.get(self.value)
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        return v


class Season(Strict):
    id: str = Field(pattern=ID_RE, description="the period's name in the API (period=<id>)")
    name: str | None = Field(default=None, max_length=100)
    start: date | datetime
    end: date | datetime = Field(description="excluded")


class Rookie(Strict):
    days: int = Field(
        default=30, ge=1, le=366, description="members who signed up this many days ago or less"
    )


class League(Strict):
    levels: list[str] = Field(default_factory=lambda: list(DEFAULT_LEVELS), min_length=2, max_length=20)
    size: int = Field(default=30, ge=2, le=500, description="members per weekly cohort")
    promote: int = Field(default=5, ge=0, le=250, description="top ranks that go up a league")
    demote: int = Field(default=5, ge=0, le=250, description="bottom ranks that go down a league")

    @model_validator(mode="after")
    def _fits(self) -> League:
        if self.promote + self.demote > self.size:
            raise ValueError("promote + demote is more than a cohort's size")
        return self


class Notify(Strict):
    top: list[int] = Field(
        default_factory=lambda: [1, 3, 10], max_length=10, description="ranks whose crossing is told"
    )
    friends: bool = Field(
        default=True, description="tell members when they pass a friend or a friend passes them"
    )
    every_seconds: int = Field(
        default=60, ge=0, le=86_400, description="at most one rank message per member and board this often"
    )

    @field_validator("top")
    @classmethod
    def _ranks(cls, value: list[int]) -> list[int]:
        if any(not 1 <= v <= 1000 for v in value):
            raise ValueError("ranks are between 1 and 1000")
        return sorted(set(value))


def _global_only() -> list[Scope]:
    return ["global"]


class Board(Strict):
    id: str = Field(pattern=ID_RE)
    name: str = Field(min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=500)
    metric: Literal["points", "growth"] | EventMetric = Field(
        description="points or growth earned, or events counted: {event, value?, where?}"
    )
    operator: Literal["increment", "best", "set"] = Field(
        default="increment", description="add each amount, keep the best one, or keep the latest"
    )
    order: Literal["desc", "asc"] = Field(default="desc", description="desc: the highest score ranks first")
    period: PeriodKind = "weekly"
    zone: str = Field(default="UTC", description="the IANA zone in which the board's periods turn")
    seasons: list[Season] | None = Field(default=None, description="for period: season")
    epoch: date | datetime = Field(
        default=date(2020, 1, 1), description="for period: all_time, where ties start counting"
    )
    scopes: list[Scope] = Field(default_factory=_global_only, min_length=1)
    ranks: Ranks = Field(
        default="members",
        description="members, or teams: each team's score is what its members brought in the period",
    )
    team_kind: str | None = Field(
        default=None,
        pattern=ID_RE,
        description="the kind of team ranked, or of the `team` scope (default: the teams' brand_kind)",
    )
    rookie: Rookie | None = None
    league: League | None = None
    notify: Notify = Notify()

    @field_validator("zone")
    @classmethod
    def _zone_known(cls, value: str) -> str:
        return _zone(value)

    @model_validator(mode="after")
    def _consistent(self) -> Board:
        if self.period == "season":
            if not self.seasons:
                raise ValueError("a season board lists its seasons")
            spans = sorted(
                (_instant(s.start, self.zone), _instant(s.end, self.zone), s.id) for s in self.seasons
            )
            for start, end, sid in spans:
                if end <= start:
                    raise ValueError(f"season `{sid}` ends before it starts")
            for (_, end, a), (start, _, b) in itertools.pairwise(spans):
                if start < end:
                    raise ValueError(f"seasons `{a}` and `{b}` overlap")
            if len({s.id for s in self.seasons}) != len(self.seasons):
                raise ValueError("a season id is used twice")
        elif self.seasons:
            raise ValueError("seasons apply to period: season only")
        if self.league is not None and self.period != "weekly":
            raise ValueError("a league board turns weekly (period: weekly)")
        if self.league is not None and self.order != "desc":
            raise ValueError("a league ranks the highest score first (order: desc)")
        self.scopes = list(dict.fromkeys(self.scopes))
        if "global" not in self.scopes:
            self.scopes.insert(0, "global")
        if self.ranks == "teams":
            if self.scopes != ["global"]:
                raise ValueError("a board that ranks teams has the global scope only (scopes: [global])")
            if self.operator != "increment":
                raise ValueError("a board that ranks teams adds its members' amounts (operator: increment)")
            if self.rookie is not None or self.league is not None:
                raise ValueError("rookie and league boards rank members, not teams")
        elif self.team_kind is not None and "team" not in self.scopes:
            raise ValueError("team_kind applies to a board that ranks teams or has the team scope")
        return self

    @property
    def ranks_teams(self) -> bool:
        return self.ranks == "teams"

    @property
    def uses_teams(self) -> bool:
        """Whether the board reads members' teams: it ranks teams, or scopes by team."""
        return self.ranks_teams or "team" in self.scopes

    @property
    def event_metric(self) -> EventMetric | None:
        return self.metric if isinstance(self.metric, EventMetric) else None

    def season_spans(self) -> list[tuple[str, datetime, datetime]]:
        return sorted(
            ((s.id, _instant(s.start, self.zone), _instant(s.end, self.zone)) for s in self.seasons or []),
            key=lambda s: s[1],
        )

    @property
    def epoch_at(self) -> datetime:
        return _instant(self.epoch, self.zone)


class LeaderboardsFile(Strict):
    boards: list[Board] = Field(default_factory=list)

    @model_validator(mode="after")
    def _index(self) -> LeaderboardsFile:
        by_event: dict[str, list[Board]] = {}
        for board in self.boards:
            if board.event_metric is not None:
                by_event.setdefault(board.event_metric.event, []).append(board)
        self.__dict__["_by_id"] = {b.id: b for b in self.boards}
        self.__dict__["_by_event"] = by_event
        return self

    def get(self, board_id: str) -> Board | None:
        return self.__dict__["_by_id"].get(board_id)

    def for_event(self, event_type: str) -> list[Board]:
        return self.__dict__["_by_event"].get(event_type, [])

    def for_currency(self, currency: str) -> list[Board]:
        return [b for b in self.boards if b.metric == currency]


def team_kind_of(board: Board, teams: Any) -> str:
    """The kind of team a board ranks or scopes by: its own `team_kind`, else the teams content's
    brand kind (`teams`: that content, or None without it), else the legacy kind."""
    if board.team_kind is not None:
        return board.team_kind
    if teams is not None:
        return str(teams.brand_kind_id)
    return LEGACY_TEAM_KIND


def _check_team_kind(store: ContentStore, board: Board, loc: tuple[str | int, ...]) -> list[ContentIssue]:
    """A board's kind of team is declared, has teams to rank (not the one community team), and
    names one team per member (not a kind of which a member may be in several)."""
    teams = store.get("teams")  # read as data: the teams sit above the boards
    kind_id = team_kind_of(board, teams)
    kind = teams.kind(kind_id) if teams is not None else None
    at = (*loc, "team_kind")
    if kind is None:
        if kind_id == LEGACY_TEAM_KIND:
            return []  # the teams of members' profiles before kinds: known without content
        return [store.issue("leaderboards.yaml", at, f"team kind `{kind_id}` is not declared in teams.yaml")]
    if kind.community:
        return [
            store.issue(
                "leaderboards.yaml",
                at,
                f"team kind `{kind_id}` is one community of every member: nothing to rank or scope by",
            )
        ]
    if kind.several:
        return [
            store.issue(
                "leaderboards.yaml",
                at,
                f"team kind `{kind_id}` lets a member be in several teams: a board needs one team per member"
                + ("" if board.team_kind else " (name a team_kind)"),
            )
        ]
    return []


def _check(store: ContentStore) -> list[ContentIssue]:
    """Ids used once; metrics on events the catalogue knows, with numeric values and sound filters;
    the kind of team of a board that reads teams, one it can use."""
    boards: LeaderboardsFile = store.get("leaderboards")
    issues: list[ContentIssue] = []
    seen: set[str] = set()
    for i, board in enumerate(boards.boards):
        loc: tuple[str | int, ...] = ("boards", i)
        if board.id in seen:
            issues.append(
                store.issue("leaderboards.yaml", (*loc, "id"), f"board id `{board.id}` is already used")
            )
        seen.add(board.id)
        if board.uses_teams:
            issues += _check_team_kind(store, board, loc)
        metric = board.event_metric
        if metric is not None:
            issues += check_event_use(
                store,
                "leaderboards.yaml",
                (*loc, "metric"),
                metric.event,
                prop=metric.value,
                prop_key="value",
                needs_number=True,
                where=metric.compiled_where,
            )
    return issues


LEADERBOARDS_KIND = ContentKind(
    name="leaderboards", filename="leaderboards.yaml", model=LeaderboardsFile, check=_check
)
