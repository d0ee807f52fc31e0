from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

# What a brand's adjustment may be labelled: never a source the server posts itself (`referral`,
# `quest`, `reversal`…), whose entries count by their own rules (tier dimensions, board
# corrections). `adjustment` alone may take back: lower growth, take points off the boards.
BrandSource = Literal["adjustment", "promotion", "service_recovery"]


class PointsIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: int
    reason: str
    idempotency_key: str
    currency: Literal["points", "growth"] = "points"
    source: BrandSource = "adjustment"


class ReversalIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: str


class EntryOut(msgspec.Struct):
    entry_id: int
    member_id: str
    currency: str
    amount: int
    balance_after: int
    reason: str
    source: str
    idempotency_key: str
    details: dict[str, Any]
    reverses_entry_id: int | None
    created_at: datetime
    hash: str


class LedgerPage(msgspec.Struct):
    entries: list[EntryOut]
    next_cursor: str | None
