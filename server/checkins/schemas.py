"""What the check-in and streak routes answer."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec


class Reward(msgspec.Struct):
    cycle_day: int
    points: int
    growth: int
    chest: bool


class CheckinOut(msgspec.Struct):
    date: dt.date
    already_checked_in: bool
    streak: int
    longest_streak: int
    cycle_day: int
    reward: Annotated[
        Reward | None,
        msgspec.Meta(
            description="What this check-in awarded; null when `already_checked_in` is true, "
            "since a repeat the same date awards nothing."
        ),
    ]
    freezes_held: int
    freezes_used: list[dt.date]
    timezone: str


class CalendarDay(msgspec.Struct):
    date: dt.date
    status: str  # checked_in | made_up | repaired | frozen | excused | missed


class RepairOffer(msgspec.Struct):
    broken_streak: int
    price: int
    until: dt.date


class CalendarOut(msgspec.Struct):
    month: str
    today: dt.date
    timezone: str
    days: list[CalendarDay]
    streak: int
    longest_streak: int
    freezes_held: int
    makeups_left: int
    next_reward: Reward
    checked_in_today: bool
    repair: RepairOffer | None


class StreakOut(msgspec.Struct):
    streak: int
    longest_streak: int
    freezes_held: int
    points_spent: int
    repaired_dates: list[dt.date] = []


class MakeupIn(msgspec.Struct, forbid_unknown_fields=True):
    date: dt.date
