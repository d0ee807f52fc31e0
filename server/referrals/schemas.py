from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from server.text import Text


class ClaimIn(msgspec.Struct, forbid_unknown_fields=True):
    code: Text
    # Brand systems claim for a member; the member app leaves it out (the token says who).
    member_id: Text | None = None
    # Signals for the fraud checks; only their keyed hashes are kept. The member app's own
    # address is taken from the connection; a brand system passes the member's.
    device_id: Text | None = None
    payment_fingerprint: Text | None = None
    ip: Text | None = None


class ClaimOut(msgspec.Struct):
    member_id: str
    code: str
    referrer_name: str | None
    status: str
    claimed_at: datetime
    convert_by: datetime
    qualifying_action: str
    reward: dict[str, Any]
    already_claimed: bool


class VanityIn(msgspec.Struct, forbid_unknown_fields=True):
    code: Text


class CodeOut(msgspec.Struct):
    code: str
    link: str
    generated_code: str
    vanity_code: str | None


class MyReferralsOut(msgspec.Struct):
    code: str
    link: str
    generated_code: str
    vanity_code: str | None
    clicks: int
    previews: int
    claims: int
    conversions: int
    waiting: int
    held: int
    pending_rewards: dict[str, int]
    earned_rewards: dict[str, int]
    rewards: dict[str, Any]
    qualifying_action: str
    milestones: list[dict[str, Any]]
    next_milestone: dict[str, Any] | None
    board: dict[str, Any] | None
    referred_by: dict[str, Any] | None
