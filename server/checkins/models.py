"""Check-ins and streaks: a member's streak row and the dates it covers."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Column, Field

from server.db import TableModel, UTCDateTime

# What covers a date: a check-in, a paid make-up or repair, a held freeze, or a date skipped by a
# time-zone switch. Only the first three add to the streak; all of them keep it unbroken.
COUNTED = ("checked_in", "made_up", "repaired")


class StreakState(TableModel, table=True):
    """A member's streak; the row is locked while anything about the member's check-ins changes."""

    __tablename__ = "streaks"
    # The upkeep jobs look for live streaks whose last covered date is old.
    __table_args__ = (sa.Index("ix_streaks_live", "current", "last_date"),)

    member_id: str = Field(primary_key=True, max_length=64)
    current: int = 0
    longest: int = 0
    last_date: date | None = None  # the latest covered date
    freezes_held: int = 0
    freezes_bought: int = 0
    broken_on: date | None = None  # first uncovered date of the last break, while repairable
    broken_streak: int = 0
    # Dates are counted in `zone`; a member's new zone takes over at `pending_from` (see service).
    zone: str | None = Field(default=None, max_length=64)
    pending_zone: str | None = Field(default=None, max_length=64)
    pending_from: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    at_risk_sent_on: date | None = None


class CheckinDay(TableModel, table=True):
    """One covered local date of one member: at most one row per member and date."""

    __tablename__ = "checkin_days"

    member_id: str = Field(primary_key=True, max_length=64)
    day: date = Field(primary_key=True)
    kind: str = Field(max_length=16)
    streak: int = 0  # the streak once this date was covered
    cycle_day: int | None = None
    points: int = 0
    growth: int = 0
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
