"""The boards' truth in SQL: score rows per board, period and member (or team); periods; archived
standings; what each member brought to their team; league levels and seat counters. Redis holds
only an index of these, rebuilt from them at will.

A board that ranks teams keeps its teams in the same score and standing rows as a board of
members, the team's id where a member's would be (`member_id`): one index, archive and rebuild
serve both. What each member brought to a team is in `leaderboard_team_shares`."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import BigInteger, Column, Field

from server.db import TableModel, UTCDateTime


class BoardScore(TableModel, table=True):
    __tablename__ = "leaderboard_scores"
    __table_args__ = (
        sa.Index("ix_leaderboard_scores_order", "board_id", "period", "score", "tiebreak"),
        sa.Index("ix_leaderboard_scores_updated", "board_id", "period", "updated_at"),
        sa.Index("ix_leaderboard_scores_member", "member_id"),
    )

    board_id: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=64)
    member_id: str = Field(primary_key=True, max_length=64)
    score: int = Field(sa_column=Column(BigInteger(), nullable=False))
    # When the member reached this score, and the same as a slot of the period (24 bits): ties go
    # to the earlier slot, in SQL and in Redis alike.
    reached_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    tiebreak: int
    # Bumped by every write: Redis takes a write only if it is newer than what it holds.
    version: int = Field(sa_column=Column(BigInteger(), nullable=False))
    tier: str | None = Field(default=None, max_length=32)
    team: str | None = Field(default=None, max_length=64)
    cohort: str | None = Field(default=None, max_length=32)  # leagues: "<level>:<n>"
    signed_up_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class TeamShare(TableModel, table=True):
    """What a member brought to a team on a board that ranks teams, in one period: the team's
    score row is the sum of these. Kept with the team the member was in when they brought it."""

    __tablename__ = "leaderboard_team_shares"

    board_id: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=64)
    team_id: str = Field(primary_key=True, max_length=64)
    member_id: str = Field(primary_key=True, max_length=64)
    score: int = Field(sa_column=Column(BigInteger(), nullable=False))
    reached_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class BoardPeriod(TableModel, table=True):
    """A period that received scores; archived once, after it ends."""

    __tablename__ = "leaderboard_periods"

    board_id: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=64)
    starts_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    ends_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), index=True))
    status: str = Field(default="open", max_length=16)  # open | archived
    archived_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    entries: int = 0


class Standing(TableModel, table=True):
    """A member's final place in an archived period, in every scope they were part of."""

    __tablename__ = "leaderboard_standings"
    __table_args__ = (
        sa.Index("ix_leaderboard_standings_member", "board_id", "period", "member_id", unique=True),
    )

    board_id: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=64)
    rank: int = Field(primary_key=True)
    member_id: str = Field(max_length=64)
    score: int = Field(sa_column=Column(BigInteger(), nullable=False))
    tier: str | None = Field(default=None, max_length=32)
    team: str | None = Field(default=None, max_length=64)
    cohort: str | None = Field(default=None, max_length=32)
    signed_up_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    tier_rank: int | None = None
    team_rank: int | None = None
    cohort_rank: int | None = None


class LeagueMember(TableModel, table=True):
    """The league a member plays in on a league board (0 = the first); moved at each weekly reset."""

    __tablename__ = "league_members"

    board_id: str = Field(primary_key=True, max_length=64)
    member_id: str = Field(primary_key=True, max_length=64)
    level: int = 0
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class LeagueSeats(TableModel, table=True):
    """Seats handed out in a week's league: the n-th member to act at a level sits in cohort n // size."""

    __tablename__ = "league_seats"

    board_id: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=64)
    level: int = Field(primary_key=True)
    seats: int = 0
