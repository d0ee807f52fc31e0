from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Column, Field

from server.db import TableModel, UTCDateTime, utcnow


class Member(TableModel, table=True):
    __tablename__ = "members"

    id: str = Field(primary_key=True, max_length=64)
    display_name: str | None = Field(default=None, max_length=100)
    timezone: str = Field(default="UTC", max_length=64)
    # Set by the tier ladder, or by the brand's systems where they run their own.
    tier: str | None = Field(default=None, max_length=32)
    # Interim until a teams domain exists: the brand's team id for the member, set through the profile.
    team_id: str | None = Field(default=None, max_length=64)
    birthday: date | None = None
    signed_up_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class MemberFriend(TableModel, table=True):
    """One friend of a member, from the friend list the brand's systems set (one direction only).

    The friend need not be a member yet: a list may name people who have not played.
    """

    __tablename__ = "member_friends"

    member_id: str = Field(primary_key=True, max_length=64)
    friend_id: str = Field(primary_key=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
