"""What the admin API takes and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from server.text import Text


class LoginIn(msgspec.Struct):
    email: Annotated[Text, msgspec.Meta(max_length=320)]
    password: Annotated[Text, msgspec.Meta(max_length=1024)]


class ManagerOut(msgspec.Struct):
    id: str
    email: str
    display_name: str
    role: str  # viewer | editor | owner


class SessionOut(msgspec.Struct):
    """A new admin session: send `token` as `Authorization: Bearer <token>` until `expires_at`."""

    token: str
    expires_at: datetime
    manager: ManagerOut


class AuditRecordOut(msgspec.Struct):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    reason: str
    details: dict[str, Any]


class AuditOut(msgspec.Struct):
    """The newest records first; `next_cursor` pages on (`?cursor=`), null on the last page."""

    records: list[AuditRecordOut]
    next_cursor: str | None = None


# --- the review of held referrals


class HeldOut(msgspec.Struct):
    referrals: list[dict[str, Any]]
    next_cursor: str | None


# 1 to 500 characters, not all blank: stated here, checked by the service (`invalid_reason`).
_REASON = msgspec.Meta(extra_json_schema={"minLength": 1, "maxLength": 500, "allOf": [{"pattern": r"\S"}]})


class ReviewIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[Text, _REASON]


class ReassignIn(msgspec.Struct, forbid_unknown_fields=True):
    code: Text
    reason: Annotated[Text, _REASON]


class ReviewOut(msgspec.Struct):
    friend_id: str
    referrer_id: str
    status: str
    risk_score: int
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_reason: str | None
    undone: dict[str, Any] | None = None
