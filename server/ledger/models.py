from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, BigInteger, Column, Field

from server.db import TableModel, UTCDateTime

# Points to spend, growth that ranks a member in the tiers, tickets to enter draws.
CURRENCIES = ("points", "growth", "tickets")


class LedgerAccount(TableModel, table=True):
    """A member's balances and the head of their hash chain; the row is locked while posting."""

    __tablename__ = "ledger_accounts"

    member_id: str = Field(primary_key=True, max_length=64)
    points: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    growth: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    tickets: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )
    seq: int = 0
    head_hash: str = Field(default="", max_length=64)


class LedgerEntry(TableModel, table=True):
    """One append-only movement of one currency. Never updated; corrections are reversals."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        sa.UniqueConstraint("member_id", "currency", "idempotency_key", name="uq_ledger_idempotency"),
        sa.UniqueConstraint("member_id", "seq", name="uq_ledger_member_seq"),
        sa.CheckConstraint("balance_after >= 0", name="ck_ledger_balance_not_negative"),
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    member_id: str = Field(max_length=64, index=True)
    seq: int
    currency: str = Field(max_length=16)
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    balance_after: int = Field(sa_column=Column(BigInteger, nullable=False))
    reason: str = Field(max_length=200)
    source: str = Field(max_length=64)
    idempotency_key: str = Field(max_length=200)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    reverses_entry_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class EarningBoost(TableModel, table=True):
    """A multiplier on what a member earns by the earning rules, for a time, granted by a domain
    (a converted referral, a campaign). Granting the same key twice keeps the first."""

    __tablename__ = "earning_boosts"
    __table_args__ = (sa.UniqueConstraint("member_id", "key", name="uq_earning_boost_key"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    member_id: str = Field(max_length=64, index=True)
    key: str = Field(max_length=200)
    factor: float
    currencies: list[str] = Field(default_factory=lambda: ["points"], sa_column=Column(JSON, nullable=False))
    starts_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    ends_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    source: str = Field(max_length=64)
    reason: str = Field(max_length=200)


class EarningCount(TableModel, table=True):
    """How many events of one type a member had in one local period (for "the 3rd purchase in a
    week"): counted once per event, in the dispatch that handles it."""

    __tablename__ = "earning_counts"

    member_id: str = Field(primary_key=True, max_length=64)
    event_type: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=16)
    n: int = 0


class PointsExpiryNotice(TableModel, table=True):
    """An "expiring soon" message claimed for a member and the date their oldest points expire:
    the message goes out once per date, however many instances or runs look."""

    __tablename__ = "points_expiry_notices"

    member_id: str = Field(primary_key=True, max_length=64)
    expires_on: date = Field(primary_key=True)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
