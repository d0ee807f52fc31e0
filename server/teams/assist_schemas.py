"""API shapes of friend help (`/v1/assists`) and friend quests (`/v1/friend-quests`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from server.members.schemas import MEMBER_ID_PATTERN
from server.text import Text

# Content ids: their pattern leaves no room for control characters.
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
_Signal = Annotated[Text, msgspec.Meta(min_length=1, max_length=500)]
AssistStatus = Literal["open", "completed", "expired"]
HelpStatus = Literal["counted", "held"]


class AssistIn(msgspec.Struct, forbid_unknown_fields=True):
    """What to ask help on: a quest (`quest_id`, and `step_id` for a chain's step; without it the
    step under way), a team goal (`goal_id`), or a draw ticket (`ticket: true`). Exactly one."""

    quest_id: _Id | None = None
    step_id: _Id | None = None
    goal_id: _Id | None = None
    ticket: bool = False
    device_id: Annotated[_Signal | None, msgspec.Meta(description="the app's device id (kept hashed)")] = None


def _named(field: str) -> dict[str, Any]:
    return {"required": [field], "properties": {field: {"type": "string"}}}


_TICKET = {"required": ["ticket"], "properties": {"ticket": {"const": True}}}

# Exactly one target (`step_id` only with `quest_id`): stated here, checked by the service
# (`invalid_assist_target`).
AssistBody = Annotated[
    AssistIn,
    msgspec.Meta(
        extra_json_schema={
            "oneOf": [
                {**_named("quest_id"), "not": {"anyOf": [_named("goal_id"), _TICKET]}},
                {**_named("goal_id"), "not": {"anyOf": [_named("quest_id"), _named("step_id"), _TICKET]}},
                {**_TICKET, "not": {"anyOf": [_named("quest_id"), _named("step_id"), _named("goal_id")]}},
            ]
        }
    ),
]


class HelpIn(msgspec.Struct, forbid_unknown_fields=True):
    device_id: Annotated[_Signal | None, msgspec.Meta(description="the app's device id (kept hashed)")] = None


class AssistOut(msgspec.Struct):
    """A call for help. `helps_left` is exactly how many friends' helps it still needs; nothing
    can be bought to make it fewer."""

    assist_id: str
    status: AssistStatus
    target: Literal["quest", "goal", "ticket"]
    what: str  # what help is asked on, in the game's words (a step's title, a goal's name)
    asker: str  # the asker's handle
    asker_name: str | None
    helps_needed: int
    helps: int
    helps_left: int
    expires_at: datetime
    completed_at: datetime | None
    link: str
    helpers: list[str]  # the handles of the friends whose helps counted, first first
    quest_id: str | None = None
    step_id: str | None = None
    goal_id: str | None = None
    tickets: int = 0  # what the completed request pays the asker
    mine: bool = False  # the caller asked
    helped_by_me: bool = False
    pending_helps: int | None = None  # the asker only: helps held for review (not counted, not paid)
    created_at: datetime | None = None


class AssistsOut(msgspec.Struct):
    assists: list[AssistOut]


class HelpRewardOut(msgspec.Struct):
    points: int
    growth: int


class HelpOut(msgspec.Struct):
    """A friend's help: `counted` (paid, and the asker moved on), or `held` for a check (neither
    counted nor paid until a manager clears it)."""

    assist_id: str
    status: HelpStatus
    helps: int
    helps_left: int
    assist_status: AssistStatus
    reward: HelpRewardOut  # what the helper earned (nothing while held)
    helps_left_today: int  # the helper's own helps still possible today
    referral_claimed: bool = False  # this help made the helper the asker's referral


class FriendQuestIn(msgspec.Struct, forbid_unknown_fields=True):
    """Invite a friend to a friend quest: by `friend_id` (one of the member's friends), by
    `handle` (any member), or neither (an open invitation: whoever has its id may accept)."""

    quest_id: _Id
    friend_id: Annotated[str, msgspec.Meta(pattern=MEMBER_ID_PATTERN, max_length=64)] | None = None
    handle: Annotated[Text, msgspec.Meta(min_length=1, max_length=64)] | None = None


class FriendOut(msgspec.Struct):
    handle: str | None
    display_name: str | None
    contribution: float
    is_me: bool


class FriendQuestOut(msgspec.Struct):
    """A pairing on a friend quest: one shared bar (`progress` of `target`) and each member's part."""

    pair_id: str
    quest_id: str
    name: str
    description: str
    status: Literal["invited", "active", "completed", "declined"]
    period: str
    ends_at: datetime | None
    progress: float
    target: float
    remaining_text: str
    members: list[FriendOut]  # the inviter first; the friend once they accepted
    reward: HelpRewardOut
    invited_by_me: bool
    created_at: datetime
    accepted_at: datetime | None
    completed_at: datetime | None


class FriendQuestOfferOut(msgspec.Struct):
    """A friend quest of the content, and whether the member is paired on it this period."""

    quest_id: str
    name: str
    description: str
    target: float
    period: str
    ends_at: datetime | None
    reward: HelpRewardOut
    paired: bool


class FriendQuestsOut(msgspec.Struct):
    pairs: list[FriendQuestOut]  # this period's pairings of the member, and invitations to them
    quests: list[FriendQuestOfferOut]
