from __future__ import annotations

from datetime import date, datetime

import msgspec


class MemberIn(msgspec.Struct, forbid_unknown_fields=True):
    display_name: str | None = None
    timezone: str | None = None
    birthday: date | None = None
    signed_up_at: datetime | None = None
    tier: str | None = None
    # Interim until a teams domain exists; "" clears it.
    team_id: str | None = None


class MemberOut(msgspec.Struct):
    member_id: str
    display_name: str | None
    timezone: str
    tier: str  # a member without one is on the ladder's first tier
    team_id: str | None
    birthday: date | None
    signed_up_at: datetime | None
    created_at: datetime
    updated_at: datetime


class MeOut(msgspec.Struct):
    member_id: str
    display_name: str | None
    timezone: str
    tier: str  # a member without one is on the ladder's first tier
    points: int
    growth: int
    streak: int
    birthday: date | None
    signed_up_at: datetime | None


class FriendsIn(msgspec.Struct, forbid_unknown_fields=True):
    friends: list[str]


class FriendsOut(msgspec.Struct):
    member_id: str
    friends: list[str]
