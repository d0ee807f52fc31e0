from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, BigInteger, Column, Field

from server.db import TableModel, UTCDateTime


def _id_column() -> Any:
    return Column(BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True)


class ReferralCode(TableModel, table=True):
    """A member's code: the generated one, and any vanity codes they chose. A code is kept and
    looked up by its skeleton (upper case, '-' dropped, 0/O and 1/I/L folded together), so that
    'anna-runs', 'ANNARUNS' and 'ANNA-RUNS' are one code, and 'J0HN' cannot pass for 'JOHN'."""

    __tablename__ = "referral_codes"
    __table_args__ = (sa.Index("ix_referral_codes_member", "member_id", "kind"),)

    code: str = Field(primary_key=True, max_length=32)  # the skeleton
    display: str = Field(max_length=32)  # as generated or as the member wrote it
    member_id: str = Field(max_length=64)
    kind: str = Field(max_length=16)  # generated | vanity
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    # A vanity code replaced by another: reserved for its member, no longer claimable.
    retired_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


class ReferralClick(TableModel, table=True):
    """A landing page view: when, the referrer, a keyed hash of the address and the user agent."""

    __tablename__ = "referral_clicks"
    __table_args__ = (sa.Index("ix_referral_clicks_referrer", "referrer_id", "at"),)

    id: int | None = Field(default=None, sa_column=_id_column())
    code: str = Field(max_length=32)
    referrer_id: str = Field(max_length=64)
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    ip_hash: str = Field(max_length=32)
    user_agent: str = Field(max_length=300)
    bot: bool = False  # a link preview (a chat app fetching the card), not a person


class Referral(TableModel, table=True):
    """Who referred a member: one referrer per member, set by the claim.

    status: claimed (waiting for the qualifying action) -> converted; or held (for review, its
    rewards pending) -> converted (approved) or rejected; or expired (no qualifying action in time).
    """

    __tablename__ = "referrals"
    __table_args__ = (
        sa.Index("ix_referrals_referrer", "referrer_id", "status"),
        sa.Index("ix_referrals_status", "status", "claimed_at"),
        # The fraud checks' bursts: claims per referrer, and per source, in a recent window.
        sa.Index("ix_referrals_referrer_claimed", "referrer_id", "claimed_at"),
        sa.Index("ix_referrals_ip_claimed", "ip_hash", "claimed_at"),
        sa.Index("ix_referrals_device_claimed", "device_hash", "claimed_at"),
    )

    friend_id: str = Field(primary_key=True, max_length=64)
    referrer_id: str = Field(max_length=64)
    code: str = Field(max_length=32)
    status: str = Field(max_length=16)
    claimed_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    claimed_by: str = Field(max_length=120)  # member | api_key:<name> | manager:<email>
    convert_by: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    ip_hash: str | None = Field(default=None, max_length=32)
    device_hash: str | None = Field(default=None, max_length=32)
    risk_score: int = 0
    risk_signals: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    converted_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    conversion_event_id: str | None = Field(default=None, max_length=128)
    paid_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    held_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    reviewed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    reviewed_by: str | None = Field(default=None, max_length=120)
    review_reason: str | None = Field(default=None, max_length=500)


class ReferralReward(TableModel, table=True):
    """One reward of a referral in one currency, for one side: pending while the referral is
    held, earned once posted to the ledger (under `key`), reversed when a rejection takes it back."""

    __tablename__ = "referral_rewards"
    __table_args__ = (
        sa.UniqueConstraint("member_id", "key", "currency", name="uq_referral_reward_key"),
        sa.Index("ix_referral_rewards_friend", "friend_id"),
    )

    id: int | None = Field(default=None, sa_column=_id_column())
    friend_id: str = Field(max_length=64)  # the referral it belongs to
    member_id: str = Field(max_length=64)  # who receives it
    role: str = Field(max_length=24)  # referrer | friend | milestone
    milestone: int | None = None
    key: str = Field(max_length=200)  # the ledger's idempotency key
    currency: str = Field(max_length=16)  # points | growth | badge
    amount: int = 0
    badge_id: str | None = Field(default=None, max_length=64)
    status: str = Field(max_length=16)  # pending | earned | reversed | dropped
    ledger_entry_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    settled_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


class MemberFingerprint(TableModel, table=True):
    """A keyed hash of a device, a payment means or an address seen for a member (from claims and
    events), compared between the two sides of a referral. Never the raw value."""

    __tablename__ = "member_fingerprints"
    __table_args__ = (sa.Index("ix_member_fingerprints_value", "kind", "value"),)

    member_id: str = Field(primary_key=True, max_length=64)
    kind: str = Field(primary_key=True, max_length=16)  # device | payment | ip
    value: str = Field(primary_key=True, max_length=32)
    first_seen: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_seen: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
