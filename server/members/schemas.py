from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import msgspec
from litestar.params import Parameter

from server.text import Text

# What a member id is (`members.service.MEMBER_ID_RE` is compiled from it).
MEMBER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,63}$"
# A member id in a path: stated for the description; the service checks it, with its own code
# (`invalid_member_id`).
MemberIdPath = Annotated[str, Parameter(schema_extra={"pattern": MEMBER_ID_PATTERN, "maxLength": 64})]


# A name people see, as stated: 1 to 100 characters, not all blank, no control, format,
# private-use or separator characters (`invalid_display_name` otherwise).
_SHOWN_NAME = {
    "minLength": 1,
    "maxLength": 100,
    "allOf": [
        {"pattern": r"\S"},
        {
            "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f\\xad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890\\u0891"
            "\\u08e2\\u115f\\u1160\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u206f\\u3164"
            "\\ud800-\\uf8ff\\ufeff\\uffa0\\ufff9-\\ufffb]*$"
        },
    ],
}


class MemberIn(msgspec.Struct, forbid_unknown_fields=True):
    # Cleaned by the service: a name people see has stricter rules (server.text.clean_name).
    display_name: Annotated[str, msgspec.Meta(extra_json_schema=_SHOWN_NAME)] | None = None
    timezone: Text | None = None
    birthday: date | None = None
    # With a UTC offset: stated here, checked by the service (`invalid_signed_up_at`).
    signed_up_at: Annotated[datetime, msgspec.Meta(extra_json_schema={"format": "date-time"})] | None = None
    tier: Text | None = None
    # The member's team of the content's `brand_kind` (teams.yaml): a new id creates that
    # assigned team; "" takes the member out of it.
    team_id: Text | None = None


class MemberOut(msgspec.Struct):
    member_id: str
    handle: str  # what other members see of this one (never the id)
    display_name: str | None
    timezone: str
    tier: str  # a member without one is on the ladder's first tier
    team_id: str | None  # the member's team of the content's `brand_kind`
    birthday: date | None
    signed_up_at: datetime | None
    created_at: datetime
    updated_at: datetime


class MeOut(msgspec.Struct):
    member_id: str
    handle: str  # what other members see of this one (never the id)
    display_name: str | None
    timezone: str
    tier: str  # a member without one is on the ladder's first tier
    points: int
    growth: int
    streak: int
    birthday: date | None
    signed_up_at: datetime | None
    tickets: int = 0  # draw tickets (friends' help earns them)


class FriendsIn(msgspec.Struct, forbid_unknown_fields=True):
    friends: list[
        Annotated[Text, msgspec.Meta(extra_json_schema={"allOf": [{"pattern": MEMBER_ID_PATTERN}]})]
    ]


class FriendsOut(msgspec.Struct):
    member_id: str
    friends: list[str]
