from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from server.text import Text


class ProfileOut(msgspec.Struct):
    """An Open Badges 3.0 `Profile` (JSON-LD): the issuer of the server's credentials."""

    context: list[str] = msgspec.field(name="@context")
    id: str
    type: list[str]
    name: str
    url: str


class JwkOut(msgspec.Struct):
    kty: str
    n: str
    e: str
    kid: str  # the key's URL: what a credential's JOSE header names
    alg: str
    use: str


class JwksOut(msgspec.Struct):
    keys: list[JwkOut]


class CredentialOut(msgspec.Struct):
    credential_id: str
    credential: dict[str, Any]  # the OpenBadgeCredential (JSON-LD)
    jwt: str  # the same credential signed: a compact JWS (VC-JWT)
    verify_url: str  # the page to share
    verify_json_url: str
    issuer_url: str
    keys_url: str


class VerificationOut(msgspec.Struct):
    valid: bool
    credential_id: str
    credential: dict[str, Any]
    jwt: str
    issuer: dict[str, Any]
    badge_id: str
    level: int
    level_name: str | None
    earned_at: datetime
    verify_url: str


class BadgeGrantIn(msgspec.Struct):
    """A manual badge for a member, from the brand's systems or a manager's tool."""

    badge_id: Text
    idempotency_key: Text
    reason: Text = ""


class BadgeGrantOut(msgspec.Struct):
    member_id: str
    badge_id: str
    level: int
    round: int
    earned_at: datetime
    credential_id: str
    created: bool


class CollectionOut(msgspec.Struct):
    """Earned badges (newest first) and locked ones, each with rarity, levels and progress."""

    earned: list[dict[str, Any]]
    locked: list[dict[str, Any]]
    total: int


class TiersOut(msgspec.Struct):
    """The ladder, and where the member stands on it."""

    managed_by: str
    tiers: list[dict[str, Any]]
    member: dict[str, Any]
    window: dict[str, Any] | None = None
