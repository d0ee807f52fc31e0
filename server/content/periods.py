"""Periods in the member's local time, and the windows that open and close content."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import WithJsonSchema, field_validator, model_validator

from server.content.goals import Strict

Period = Literal["once", "daily", "weekly", "monthly"]
PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 31}  # the most local days a period holds


def check_zone(value: str) -> str:
    """A zone content names (a window's, a period's): an IANA name, else a content error."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"`{value}` is not an IANA time zone (like Europe/Paris)") from None
    return value


def local_day(zone: str, at: datetime) -> date:
    return at.astimezone(ZoneInfo(zone)).date()


def period_key(period: str, day: date) -> str:
    if period == "daily":
        return day.isoformat()
    if period == "weekly":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "monthly":
        return f"{day.year}-{day.month:02d}"
    return "all"


def period_end(period: str, day: date, zone: str) -> datetime | None:
    """When the period containing `day` ends (the next local midnight that starts a new one)."""
    if period == "daily":
        nxt = day + timedelta(days=1)
    elif period == "weekly":
        nxt = day + timedelta(days=7 - day.weekday())
    elif period == "monthly":
        nxt = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
    else:
        return None
    return datetime.combine(nxt, time(0), ZoneInfo(zone)).astimezone(UTC)


# Local times are written without an offset (the window's zone applies): not JSON Schema's date-time.
_TIME_SCHEMA = WithJsonSchema(
    {
        "anyOf": [
            {
                "type": "string",
                "pattern": r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$",
            },
            {"type": "null"},
        ],
        "description": "a time in the window's zone (an offset, if given, wins)",
    }
)


class Window(Strict):
    start: Annotated[datetime | None, _TIME_SCHEMA] = None
    end: Annotated[datetime | None, _TIME_SCHEMA] = None
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        zone = ZoneInfo(self.timezone)
        if self.start is not None and self.start.tzinfo is None:
            self.start = self.start.replace(tzinfo=zone)
        if self.end is not None and self.end.tzinfo is None:
            self.end = self.end.replace(tzinfo=zone)
        if self.start and self.end and self.end <= self.start:
            raise ValueError("the window ends before it starts")
        return self

    def opens_after(self, at: datetime) -> bool:
        return self.start is not None and at < self.start

    def closed_at(self, at: datetime) -> bool:
        return self.end is not None and at >= self.end
