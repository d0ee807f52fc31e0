"""The teams API's bodies and answers.

Members see each other by `handle` and `display_name`, never by id (the brand's, maybe an e-mail
address): only the caller's own row (`is_me`) carries `member_id`, as on the boards. A brand
system sees every member's id.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from litestar.params import Parameter

from server.text import Text

if TYPE_CHECKING:
    from server.teams.service import Placed, TeamView

# A team id in a path: stated for the description; the service checks it (`invalid_team_id`).
TEAM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$"
TeamIdPath = Annotated[str, Parameter(schema_extra={"pattern": TEAM_ID_PATTERN, "maxLength": 64})]
KindPath = Annotated[str, Parameter(max_length=64)]
HandlePath = Annotated[str, Parameter(max_length=16, description="the member's public handle")]

_NAME = msgspec.Meta(
    min_length=1, max_length=60, description="1 to 60 characters people see (no invisible characters)"
)
_DESCRIPTION = msgspec.Meta(max_length=300, description="up to 300 characters, on one line")


class TeamIn(msgspec.Struct, forbid_unknown_fields=True):
    """A team a member makes: of a kind members make (open or invite-only)."""

    kind: Annotated[Text, msgspec.Meta(max_length=64)]
    name: Annotated[Text, _NAME]
    description: Annotated[Text, _DESCRIPTION] = ""


class AssignedTeamIn(msgspec.Struct, forbid_unknown_fields=True):
    """An assigned team (a store, a region) under the brand's own id."""

    kind: Annotated[Text, msgspec.Meta(max_length=64)]
    name: Annotated[Text, _NAME]
    description: Annotated[Text, _DESCRIPTION] = ""


class JoinIn(msgspec.Struct, forbid_unknown_fields=True):
    invite: (
        Annotated[Text, msgspec.Meta(max_length=32, description="an invite code (`/t/{code}`)")] | None
    ) = None


class InviteIn(msgspec.Struct, forbid_unknown_fields=True):
    days: (
        Annotated[int, msgspec.Meta(ge=1, le=90, description="how long the link works (default: content)")]
        | None
    ) = None
    uses: (
        Annotated[
            int, msgspec.Meta(ge=1, le=10_000, description="how many joins it admits (default: content)")
        ]
        | None
    ) = None


class CaptainIn(msgspec.Struct, forbid_unknown_fields=True):
    handle: Annotated[Text, msgspec.Meta(max_length=16, description="the new captain's handle")]


class PlacementIn(msgspec.Struct, forbid_unknown_fields=True):
    # To take a member out of a team, DELETE the placement (an empty id is not one).
    team_id: Annotated[str, msgspec.Meta(pattern=TEAM_ID_PATTERN, max_length=64)]


class TeamOut(msgspec.Struct):
    team_id: str
    kind: str
    kind_name: str
    policy: str  # open | invite | assigned | community
    name: str
    description: str
    size: int  # members now (a community team: every member)
    max_members: int | None  # None: a community team
    full: bool
    created_at: datetime | None  # None: a community team


class TeamsOut(msgspec.Struct):
    teams: list[TeamOut]
    next_cursor: str | None


class TeamMemberOut(msgspec.Struct, omit_defaults=True):
    handle: str | None
    display_name: str | None
    role: str  # captain | member
    joined_at: datetime
    is_me: bool
    member_id: str | None = None  # the caller's own row only (every row for a brand system)


class TeamDetailOut(msgspec.Struct):
    team: TeamOut
    captain: TeamMemberOut | None
    members: list[TeamMemberOut] | None  # None: a community team (every member); else the first 200
    my_role: str | None  # the caller's role in the team; None: not in it (or a brand system)


class MyTeamOut(msgspec.Struct):
    team: TeamOut
    role: str
    joined_at: datetime | None


class MyTeamsOut(msgspec.Struct):
    teams: list[MyTeamOut]


class JoinOut(msgspec.Struct):
    team: TeamOut
    status: str  # joined | requested | already_member | declined
    role: str | None


class InviteOut(msgspec.Struct):
    code: str
    link: str
    team_id: str
    expires_at: datetime
    uses_left: int


class TeamInviteOut(msgspec.Struct):
    code: str
    link: str
    team: TeamOut
    expires_at: datetime
    uses_left: int


class PersonOut(msgspec.Struct, omit_defaults=True):
    handle: str | None
    display_name: str | None
    is_me: bool
    member_id: str | None = None


class JoinRequestOut(msgspec.Struct):
    member: PersonOut
    requested_at: datetime


class JoinRequestsOut(msgspec.Struct):
    requests: list[JoinRequestOut]


class PostOut(msgspec.Struct):
    id: int
    type: str  # member_joined | member_left | captain_changed | goal posts ...
    at: datetime
    member: PersonOut | None  # None: a post of the team's own (a milestone reached)
    data: dict[str, Any]


class FeedOut(msgspec.Struct):
    posts: list[PostOut]
    next_cursor: str | None


class PlacementOut(msgspec.Struct):
    member_id: str
    kind: str
    team_id: str
    role: str | None
    joined_at: datetime | None
    moved_from: list[str]  # the teams of the kind the member was taken out of


class UnplacedOut(msgspec.Struct):
    member_id: str
    kind: str
    left: list[str]  # the teams the member was taken out of (none: nothing changed)


def team_out(team: TeamView) -> TeamOut:
    return TeamOut(
        team_id=team.id,
        kind=team.kind.id,
        kind_name=team.kind.name,
        policy=team.kind.policy,
        name=team.name,
        description=team.description,
        size=team.size,
        max_members=team.max_members,
        full=team.full,
        created_at=team.created_at,
    )


def placement_out(placed: Placed) -> PlacementOut:
    assert placed.team_id is not None
    return PlacementOut(
        placed.member_id, placed.kind, placed.team_id, placed.role, placed.joined_at, placed.moved_from
    )
