"""What the check-in and streak routes answer."""

from __future__ import annotations

from datetime import date

import msgspec


class Reward(msgspec.Struct):
    cycle_day: int
    points: int
    growth: int
    chest: bool


class CheckinOut(msgspec.Struct):
    date: date
    already_checked_in: bool
    streak: int
    longest_streak: int
    cycle_day: int
    reward: Reward
    freezes_held: int
    freezes_used: list[date]
    timezone: str


class CalendarDay(msgspec.Struct):
    date: date
    status: str  # checked_in | made_up | repaired | frozen | excused | missed


class RepairOffer(msgspec.Struct):
    broken_streak: int
    price: int
    until: date


class CalendarOut(msgspec.Struct):
    month: str
    today: date
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
    repaired_dates: list[date] = []


class MakeupIn(msgspec.Struct, forbid_unknown_fields=True):
    date: date
