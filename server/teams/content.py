"""Team kinds, team goals, friend help and friend quests as content (content/teams.yaml).

    brand_kind: store               # the kind `PUT /v1/members/{id}` `team_id` places members in
    invites: {days: 7, uses: 20}    # an invite link's default life and uses
    kinds:
      - {id: store, name: Stores, policy: assigned, max_members: 500}
      - {id: squad, name: Squads, policy: open, max_members: 30}
      - {id: everyone, name: All members, policy: community}

A kind's `policy`: `open` (anyone joins), `invite` (join by an invite link, or ask and the captain
accepts), `assigned` (the brand's systems and managers place members: stores, regions) or
`community` (one team of every member, kept without a row per member). A member is in one team
of a kind at a time unless the kind says `several: true`.
"""

from __future__ import annotations

import string
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from server.content.goals import ID_RE, Strict
from server.content.loader import ContentIssue, ContentKind, ContentStore
from server.teams.assist_content import AssistRules, FriendQuest, check_assists
from server.teams.goal_content import TeamGoal, check_goals

Policy = Literal["open", "invite", "assigned", "community"]
# The kind `PUT /v1/members/{id}` team ids were placed in before teams had kinds.
LEGACY_KIND = "team"


class TeamKind(Strict):
    id: str = Field(pattern=ID_RE)
    name: str = Field(max_length=60)
    description: str = Field(default="", max_length=300)
    policy: Policy = "open"
    max_members: int = Field(default=50, ge=1, le=100_000)
    several: bool = Field(default=False, description="may a member be in several teams of this kind at once")
    member_created: bool | None = Field(
        default=None, description="may members create teams of this kind (default: open and invite kinds)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> TeamKind:
        if self.member_created is None:
            self.member_created = self.policy in ("open", "invite")
        elif self.member_created and self.policy in ("assigned", "community"):
            raise ValueError(f"members cannot create teams of an {self.policy} kind")
        if self.policy == "community" and self.several:
            raise ValueError("a community kind has one team of every member: `several` does not apply")
        return self

    @property
    def community(self) -> bool:
        return self.policy == "community"


def _template(*fields: str) -> Any:
    """A text whose `{placeholders}` are only `fields`: checked when content loads, not when a
    friend opens the page."""

    def check(text: str) -> str:
        try:
            parts = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"{exc} (write {{{{ and }}}} for literal braces)") from None
        for _, name, spec, conversion in parts:
            if name is not None and (name not in fields or spec or conversion):
                allowed = ", ".join(f"{{{f}}}" for f in fields)
                raise ValueError(f"this text may use {allowed}; not {{{name}}}")
        return text

    return AfterValidator(check)


# What an invite page says may name the team, its kind, its size, who invites and the code.
InviteText = Annotated[str, Field(max_length=300), _template("team", "kind", "size", "inviter", "code")]
InviteLink = Annotated[str, Field(max_length=500), _template("code", "team_id")]


class InviteDefaults(Strict):
    """Invite links (`/t/{code}`): how long they work, how many joins they admit, and the page
    they open (in the look of the referral landing page: content/referrals.yaml `landing`)."""

    days: int = Field(default=7, ge=1, le=90, description="how long an invite link works")
    uses: int = Field(default=20, ge=1, le=10_000, description="how many joins an invite link admits")
    deep_link: InviteLink | None = Field(
        default=None,
        description="the app's link that opens the team with the invite kept, "
        "e.g. myapp://teams/{team_id}/join?invite={code}",
    )
    title: InviteText = "{inviter} invited you to {team}"
    description: InviteText = "Join {team} ({kind}, {size} members) with the invite code {code}."
    body: InviteText = (
        "Open the app and join {team} with the code {code}; new here? Sign up first, the invite waits."
    )
    open_label: str = Field(default="Join the team", max_length=60)
    not_found_title: str = Field(default="This team invite does not work", max_length=200)
    expired_title: str = Field(default="This team invite has expired", max_length=200)
    used_up_title: str = Field(default="This team invite has been used up", max_length=200)


class TeamsContent(Strict):
    brand_kind: str | None = Field(
        default=None,
        description="the kind `team_id` of PUT /v1/members/{id} means (default: the first assigned kind)",
    )
    invites: InviteDefaults = InviteDefaults()
    kinds: list[TeamKind] = Field(default_factory=list, max_length=100)
    goals: list[TeamGoal] = Field(default_factory=list, max_length=500)
    assist: AssistRules = AssistRules()
    friend_quests: list[FriendQuest] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _unique(self) -> TeamsContent:
        seen: set[str] = set()
        for k in self.kinds:
            if k.id in seen:
                raise ValueError(f"team kind `{k.id}` is declared twice")
            seen.add(k.id)
        if self.brand_kind is not None:
            kind = self.kind(self.brand_kind)
            if kind is None:
                raise ValueError(f"brand_kind `{self.brand_kind}` is not one of the kinds")
            if kind.community:
                raise ValueError("brand_kind cannot be a community kind: every member is in it already")
        goal_ids: set[str] = set()
        for g in self.goals:
            if g.id in goal_ids:
                raise ValueError(f"team goal `{g.id}` is declared twice")
            goal_ids.add(g.id)
            if g.kind not in seen:
                raise ValueError(f"team goal `{g.id}` names `{g.kind}`, which is not one of the kinds")
        return self

    def kind(self, kind_id: str) -> TeamKind | None:
        return next((k for k in self.kinds if k.id == kind_id), None)

    @property
    def brand_kind_id(self) -> str:
        """The kind the brand's `team_id` places members in."""
        if self.brand_kind is not None:
            return self.brand_kind
        return next((k.id for k in self.kinds if k.policy == "assigned"), LEGACY_KIND)


def _check(store: ContentStore) -> list[ContentIssue]:
    content: TeamsContent | None = store.get("teams")
    if content is None:
        return []
    rel = "teams.yaml"
    return [*check_goals(store, rel, content), *check_assists(store, rel, content)]


TEAMS_KIND = ContentKind(name="teams", filename="teams.yaml", model=TeamsContent, optional=True, check=_check)
_DEFAULTS = TeamsContent()


def teams_content(ctx: object) -> TeamsContent:
    """The teams' content serving now (no kinds, no goals without content/teams.yaml)."""
    content = getattr(ctx, "content", None)
    found: TeamsContent | None = content.get("teams") if content is not None else None
    return found if found is not None else _DEFAULTS
