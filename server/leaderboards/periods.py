"""A board's periods: their names, bounds in the board's zone, and how a request names one.

Names: daily `2026-11-24`, weekly `2026-W48` (ISO weeks, from Monday), monthly `2026-11`, a season
by its id, all-time `all`. A request may also give `current`, `previous` or a date: the period
that holds that local date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from server.errors import ProblemError
from server.leaderboards.content import Board

ALL_TIME_SPAN = timedelta(days=36_525)  # the stretch over which an all-time board orders ties
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Span:
    """One period of a board: its name and its bounds (start included, end excluded)."""

    key: str
    start: datetime
    end: datetime | None  # None: all-time

    @property
    def length(self) -> timedelta:
        return (self.end - self.start) if self.end is not None else ALL_TIME_SPAN


def _midnight(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(0), ZoneInfo(zone)).astimezone(UTC)


def _span_of_day(board: Board, day: date) -> Span | None:
    zone = board.zone
    if board.period == "daily":
        return Span(day.isoformat(), _midnight(day, zone), _midnight(day + timedelta(days=1), zone))
    if board.period == "weekly":
        monday = day - timedelta(days=day.weekday())
        year, week, _ = monday.isocalendar()
        return Span(
            f"{year}-W{week:02d}", _midnight(monday, zone), _midnight(monday + timedelta(days=7), zone)
        )
    if board.period == "monthly":
        first = day.replace(day=1)
        nxt = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
        return Span(f"{first.year}-{first.month:02d}", _midnight(first, zone), _midnight(nxt, zone))
    if board.period == "all_time":
        return Span("all", board.epoch_at, None)
    at = _midnight(day, zone)
    return season_at(board, at)


def season_at(board: Board, at: datetime) -> Span | None:
    for sid, start, end in board.season_spans():
        if start <= at < end:
            return Span(sid, start, end)
    return None


def span_at(board: Board, at: datetime) -> Span | None:
    """The period holding the instant `at` (None: a season board between seasons)."""
    if board.period == "season":
        return season_at(board, at)
    if board.period == "all_time":
        return Span("all", board.epoch_at, None)
    return _span_of_day(board, at.astimezone(ZoneInfo(board.zone)).date())


def status_of(span: Span, now: datetime, archived: bool) -> str:
    """What a period is at `now`: `live` while it runs, `ended` once over (its standings still read
    from the live index until archived, a few minutes after the end; a period nobody scored in has
    nothing to archive and stays `ended`), `archived` once its final standings are stored."""
    if archived:
        return "archived"
    if span.end is not None and span.end <= now:
        return "ended"
    return "live"


def previous_span(board: Board, now: datetime) -> Span | None:
    """The last period that has ended by `now` (None for all-time, or before the first season)."""
    if board.period == "all_time":
        return None
    if board.period == "season":
        ended = [s for s in board.season_spans() if s[2] <= now]
        return Span(*ended[-1]) if ended else None
    current = span_at(board, now)
    assert current is not None
    return span_at(board, current.start - timedelta(microseconds=1))


def span_of_key(board: Board, key: str) -> Span | None:
    """The period a name stands for, or None when it is not a name of this board's periods."""
    try:
        if board.period == "daily" and _DAY.match(key):
            return _span_of_day(board, date.fromisoformat(key))
        if board.period == "weekly" and (m := _WEEK.match(key)):
            return _span_of_day(board, date.fromisocalendar(int(m[1]), int(m[2]), 1))
        if board.period == "monthly" and (m := _MONTH.match(key)):
            return _span_of_day(board, date(int(m[1]), int(m[2]), 1))
    except ValueError:
        return None
    if board.period == "season":
        for sid, start, end in board.season_spans():
            if sid == key:
                return Span(sid, start, end)
    if board.period == "all_time" and key == "all":
        return Span("all", board.epoch_at, None)
    return None


def resolve(board: Board, text: str, now: datetime) -> Span:
    """The period a request names: `current`, `previous`, a period name or a local date."""
    text = text.strip()
    if text in ("", "current"):
        span = span_at(board, now)
        if span is None:
            raise ProblemError(
                404, "no_current_period", f"Board '{board.id}' has no season running now; ask for a past one."
            )
        return span
    if text == "previous":
        span = previous_span(board, now)
        if span is None:
            raise ProblemError(404, "period_not_found", f"Board '{board.id}' has no finished period yet.")
        return span
    span = span_of_key(board, text)
    if span is None and _DAY.match(text) and board.period != "daily":
        try:
            span = _span_of_day(board, date.fromisoformat(text))
        except ValueError:
            span = None
    if span is None:
        raise ProblemError(400, "invalid_period", _period_help(board, text))
    if span.start > now:
        raise ProblemError(
            400, "future_period", f"Period '{span.key}' of board '{board.id}' has not started yet."
        )
    return span


def _period_help(board: Board, text: str) -> str:
    names = {
        "daily": "a date such as 2026-11-24",
        "weekly": "a week such as 2026-W48, or a date",
        "monthly": "a month such as 2026-11, or a date",
        "season": "a season id ({}) or a date".format(", ".join(s[0] for s in board.season_spans())),
        "all_time": "all",
    }
    return (
        f"'{text[:40]}' is not a period of board '{board.id}': give current, previous, "
        f"or {names[board.period]}."
    )
