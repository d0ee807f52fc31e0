from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec


class PointsIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: int
    reason: str
    idempotency_key: str
    currency: Literal["points", "growth"] = "points"
    source: str = "adjustment"


class ReversalIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: str


class EntryOut(msgspec.Struct):
    id: int
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
