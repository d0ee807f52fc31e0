from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from server.text import Text

# What a brand's adjustment may be labelled: never a source the server posts itself (`referral`,
# `quest`, `reversal`…), whose entries count by their own rules (tier dimensions, board
# corrections). `adjustment` alone may take back: lower growth, take points off the boards.
# The largest amount of one movement, either way.
MAX_AMOUNT = 10**12

# 1 to 200 characters, not all blank: stated here, checked by the service (`invalid_reason`, ...).
_WORDS_200 = {"minLength": 1, "maxLength": 200, "allOf": [{"pattern": r"\S"}]}

BrandSource = Literal["adjustment", "promotion", "service_recovery"]


class PointsIn(msgspec.Struct, forbid_unknown_fields=True):
    # Stated here, checked by the service with its own code (`invalid_amount`).
    amount: Annotated[
        int,
        msgspec.Meta(
            description="Credit (positive) or debit (negative); never zero.",
            extra_json_schema={"minimum": -MAX_AMOUNT, "maximum": MAX_AMOUNT, "not": {"const": 0}},
        ),
    ]
    reason: Annotated[Text, msgspec.Meta(extra_json_schema=_WORDS_200)]
    idempotency_key: Annotated[Text, msgspec.Meta(extra_json_schema=_WORDS_200)]
    currency: Literal["points", "growth"] = "points"
    source: BrandSource = "adjustment"


# Only an `adjustment` takes back (a negative amount): stated here, checked by the service
# (`invalid_amount`).
PointsBody = Annotated[
    PointsIn,
    msgspec.Meta(
        extra_json_schema={
            "if": {"required": ["amount"], "properties": {"amount": {"maximum": -1}}},
            "then": {"properties": {"source": {"const": "adjustment"}}},
        }
    ),
]


class ReversalIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[Text, msgspec.Meta(extra_json_schema=_WORDS_200)]


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
