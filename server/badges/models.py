from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, BigInteger, Column, Field

from server.db import TableModel, UTCDateTime


class BadgeProgress(TableModel, table=True):
    """A member's way to one badge: what its criteria counted so far, the level reached and, for a
    repeatable badge, how many times it was earned. The row is locked while an event moves it."""

    __tablename__ = "badge_progress"

    member_id: str = Field(primary_key=True, max_length=64)
    badge_id: str = Field(primary_key=True, max_length=64)
    state: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    level: int = 0  # levels earned in the round under way (0: none yet)
    times: int = 0  # rounds completed (a repeatable badge starts over after its last level)
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class MemberBadge(TableModel, table=True):
    """One badge (one level of it, one round of it) held by a member. Never updated.

    The unique keys make an award happen once whatever runs at the same time: the level and round
    for what criteria earn, the caller's idempotency key for what is granted by hand. The id is
    the badge's public credential id.
    """

    __tablename__ = "member_badges"
    __table_args__ = (
        sa.UniqueConstraint("member_id", "badge_id", "level", "round", name="uq_member_badge_level"),
        sa.UniqueConstraint("member_id", "badge_id", "idempotency_key", name="uq_member_badge_key"),
        sa.Index("ix_member_badges_badge", "badge_id", "member_id"),
    )

    id: str = Field(primary_key=True, max_length=32)
    member_id: str = Field(max_length=64, index=True)
    badge_id: str = Field(max_length=64)
    level: int = 1
    round: int = 1
    earned_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    source: str = Field(max_length=16)  # criteria | manual | quest
    reason: str = Field(default="", max_length=200)
    idempotency_key: str = Field(max_length=200)


class BadgeSigningKey(TableModel, table=True):
    """The key the server signs badge credentials with; created once, on first need."""

    __tablename__ = "badge_signing_keys"

    kid: str = Field(primary_key=True, max_length=64)
    algorithm: str = Field(max_length=16)
    private_pem: str = Field(sa_column=Column(sa.Text, nullable=False))
    public_jwk: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    active: bool = True
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class TierGrowth(TableModel, table=True):
    """Growth a member earned in one calendar month (UTC), per dimension of the ladder
    (spend, frequency, interaction, social): the qualification window adds up months."""

    __tablename__ = "tier_growth"

    member_id: str = Field(primary_key=True, max_length=64)
    month: str = Field(primary_key=True, max_length=7)
    dimension: str = Field(primary_key=True, max_length=32)
    amount: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class TierStatus(TableModel, table=True):
    """Where a member stands with the ladder's re-evaluation: the period last evaluated, and a
    pending drop announced ahead (`notice_tier` on `drop_on` unless the member qualifies again)."""

    __tablename__ = "tier_status"

    member_id: str = Field(primary_key=True, max_length=64)
    evaluated_period: str | None = Field(default=None, max_length=16)
    notice_tier: str | None = Field(default=None, max_length=32)
    notice_given_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    drop_on: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True, index=True))
    changed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
