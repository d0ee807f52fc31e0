from __future__ import annotations

import secrets
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Column, Field

from server.db import TableModel, UTCDateTime, utcnow

# Crockford's base32 in lower case: no i, l, o or u to misread.
HANDLE_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
HANDLE_LENGTH = 12  # 60 random bits


def new_handle() -> str:
    """A member's public handle: random, so that nothing about the member (their id, which may be
    an e-mail address) can be read from it or guessed."""
    return "".join(secrets.choice(HANDLE_ALPHABET) for _ in range(HANDLE_LENGTH))


class Member(TableModel, table=True):
    __tablename__ = "members"
    __table_args__ = (sa.Index("ix_members_handle", "handle", unique=True),)

    id: str = Field(primary_key=True, max_length=64)
    # What other members see of this one instead of the id; made once, never changed. Every
    # insert that names none (a bulk load too) draws one.
    handle: str = Field(max_length=16, sa_column_kwargs={"default": new_handle})
    display_name: str | None = Field(default=None, max_length=100)
    timezone: str = Field(default="UTC", max_length=64)
    # Set by the tier ladder, or by the brand's systems where they run their own.
    tier: str | None = Field(default=None, max_length=32)
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


class MemberTeam(TableModel, table=True):
    """A member's place in a team (`server.teams` keeps the teams themselves).

    Kept with the member, like their tier and friends, so that every domain reads a member's
    teams through the members service. A community team (every member) has no rows at all.
    """

    __tablename__ = "member_teams"
    __table_args__ = (
        sa.Index("ix_member_teams_team", "team_id", "joined_at"),
        sa.Index("ix_member_teams_kind", "member_id", "kind"),
    )

    member_id: str = Field(primary_key=True, max_length=64)
    team_id: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=64)
    role: str = Field(default="member", max_length=16)  # captain | member
    joined_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
