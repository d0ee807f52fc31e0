"""The teams' tables. A member's place in a team is theirs (`server.members`' `member_teams`);
the teams themselves, what they ask and post, and what they reach together are kept here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, BigInteger, Column, Field

from server.db import TableModel, UTCDateTime, utcnow


def _id_column() -> Any:
    return Column(BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True)


# --- teams (0011) ------------------------------------------------------------------------------


class Team(TableModel, table=True):
    """A team of a kind (content/teams.yaml): made by a member where the kind allows, or by the
    brand's systems and managers (stores, regions). A community kind's one team is not stored."""

    __tablename__ = "teams"
    __table_args__ = (
        # Two teams of one kind cannot share a name, whatever its case or spacing.
        sa.Index("ix_teams_kind_name", "kind", "name_key", unique=True),
        sa.Index("ix_teams_kind_size", "kind", "size"),
    )

    id: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=64)
    name: str = Field(max_length=60)
    # The name casefolded (up to three characters a letter: ß is ss), for uniqueness and search.
    name_key: str = Field(max_length=180)
    description: str = Field(default="", max_length=300)
    created_by: str = Field(max_length=80)  # member:<id> | brand | manager:<id>
    captain_id: str | None = Field(default=None, max_length=64)
    size: int = 0  # members now (kept with every join and leave, under the team's row lock)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class TeamRequest(TableModel, table=True):
    """A member asking to join an invite-only team, until the captain answers."""

    __tablename__ = "team_requests"
    __table_args__ = (sa.Index("ix_team_requests_member", "member_id"),)

    team_id: str = Field(primary_key=True, max_length=64)
    member_id: str = Field(primary_key=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class TeamInvite(TableModel, table=True):
    """An invite link (`/t/{code}`): good until `expires_at` for `max_uses` joins."""

    __tablename__ = "team_invites"
    __table_args__ = (sa.Index("ix_team_invites_team", "team_id"),)

    code: str = Field(primary_key=True, max_length=16)
    team_id: str = Field(max_length=64)
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    max_uses: int
    uses: int = 0


class TeamPost(TableModel, table=True):
    """A post of the team's feed, written by the server (joins, leaves, contributions, milestones)."""

    __tablename__ = "team_posts"
    __table_args__ = (sa.Index("ix_team_posts_team", "team_id", "id"),)

    id: int | None = Field(default=None, sa_column=_id_column())
    team_id: str = Field(max_length=64)
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    type: str = Field(max_length=40)
    member_id: str | None = Field(default=None, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


# --- team goals (0012) -------------------------------------------------------------------------


class TeamGoalTotal(TableModel, table=True):
    """A team's progress on a goal in one period: its members' counted contributions added up,
    atomically by every unit of work that counts one (`total = total + excluded.total`)."""

    __tablename__ = "team_goal_totals"
    __table_args__ = (
        sa.Index("ix_team_goal_totals_rank", "goal_id", "period", "total"),
        sa.Index("ix_team_goal_totals_ends", "summarized", "ends_at"),
    )

    goal_id: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=32)
    team_id: str = Field(primary_key=True, max_length=64)
    total: float = 0.0
    contributors: int = 0  # members whose counted contribution is above zero
    starts_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    ends_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    summarized: bool = False  # the period's summary of top contributors is in the team's feed


class TeamGoalContribution(TableModel, table=True):
    """What one member counted towards a team's goal in one period (at most the goal's cap).
    Kept when the member leaves: it stays in the team's total for that period."""

    __tablename__ = "team_goal_contributions"
    __table_args__ = (sa.Index("ix_team_goal_contributions_rank", "goal_id", "period", "team_id", "amount"),)

    goal_id: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=32)
    team_id: str = Field(primary_key=True, max_length=64)
    member_id: str = Field(primary_key=True, max_length=64)
    amount: float = 0.0
    first_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class TeamGoalMilestone(TableModel, table=True):
    """A milestone a team reached in a period: inserted once (whoever inserts it pays it), then
    paid member by member after commit, in batches, from `cursor` on (`phase`: the contributors,
    then, for a community goal, every other member)."""

    __tablename__ = "team_goal_milestones"
    __table_args__ = (sa.Index("ix_team_goal_milestones_paying", "status", "claimed_until"),)

    goal_id: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=32)
    team_id: str = Field(primary_key=True, max_length=64)
    at: int = Field(primary_key=True)  # percent of the target
    reached_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    total: float  # the team's total when it was reached
    period_start: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    status: str = Field(default="paying", max_length=16)  # paying | paid
    phase: str = Field(default="team", max_length=16)  # team | others
    cursor: str = Field(default="", max_length=64)  # the last member id paid in this phase
    paid: int = 0  # members paid (a reward or the non-contributors' one)
    claimed_by: str | None = Field(default=None, max_length=40)
    claimed_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    paid_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


class TeamGoalLevel(TableModel, table=True):
    """How many members of a team contributed exactly `amount` in a period: a member's rank in a
    community team (a million contributors) is read from these few rows, not counted row by row."""

    __tablename__ = "team_goal_levels"

    goal_id: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=32)
    team_id: str = Field(primary_key=True, max_length=64)
    amount: float = Field(primary_key=True)
    members: int = 0


# --- friend help (0013) ------------------------------------------------------------------------


class Assist(TableModel, table=True):
    """A member's call for friends' help on a quest step, a team goal or a draw ticket. Its id is
    unguessable: the share link names it. Open until `expires_at`, complete at `helps_needed`."""

    __tablename__ = "assists"
    __table_args__ = (
        sa.Index("ix_assists_member", "member_id", "created_at"),
        sa.Index("ix_assists_member_target", "member_id", "target_key", "expires_at"),
    )

    id: str = Field(primary_key=True, max_length=24)
    member_id: str = Field(max_length=64)  # the asker
    target: str = Field(max_length=16)  # quest | goal | ticket
    # One open request per target: quest:<id>:<step>, goal:<id>, ticket.
    target_key: str = Field(max_length=200)
    quest_id: str | None = Field(default=None, max_length=64)
    step_id: str | None = Field(default=None, max_length=64)
    period: str | None = Field(default=None, max_length=32)  # the quest's or the goal's period asked in
    goal_id: str | None = Field(default=None, max_length=64)
    team_id: str | None = Field(default=None, max_length=64)
    amount: float = 0.0  # what one help adds to the quest step
    tickets: int = 0  # what the completed request pays
    helps_needed: int
    helps: int = 0  # helps counted (never above helps_needed)
    held: int = 0  # helps held for review: not counted, not paid
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    completed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


class AssistHelp(TableModel, table=True):
    """One friend's help on one request: counted, or held (shared device, address or payment
    means with the asker, or one of a burst of new accounts), then approved or rejected."""

    __tablename__ = "assist_helps"
    __table_args__ = (
        sa.Index("ix_assist_helps_helper_day", "helper_id", "day"),
        sa.Index("ix_assist_helps_asker", "asker_id", "at"),
        sa.Index("ix_assist_helps_status", "status", "at"),
    )

    assist_id: str = Field(primary_key=True, max_length=24)
    helper_id: str = Field(primary_key=True, max_length=64)
    asker_id: str = Field(max_length=64)
    day: str = Field(max_length=10)  # the helper's local day, for the daily cap
    status: str = Field(max_length=16)  # counted | held | approved | rejected
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    new_member: bool = False  # the helper joined after the request was made
    helper_joined_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    risk_score: int = 0
    risk_signals: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    reviewed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    reviewed_by: str | None = Field(default=None, max_length=120)


class FriendQuestPair(TableModel, table=True):
    """Two friends on one friend quest for one period: invited by the first, accepted by the
    second; both members' events add to one total. The id is unguessable (an open invitation
    is accepted by whoever has it)."""

    __tablename__ = "friend_quest_pairs"
    __table_args__ = (sa.Index("ix_friend_quest_pairs_invited", "invited_id", "status"),)

    id: str = Field(primary_key=True, max_length=24)
    quest_id: str = Field(max_length=64)
    period: str = Field(max_length=32)
    inviter_id: str = Field(max_length=64)
    invited_id: str | None = Field(default=None, max_length=64)  # None: whoever has the id may accept
    friend_id: str | None = Field(default=None, max_length=64)  # who accepted
    status: str = Field(max_length=16)  # invited | active | completed | declined
    inviter_progress: float = 0.0
    friend_progress: float = 0.0
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    accepted_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    completed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


class FriendQuestSeat(TableModel, table=True):
    """A member's one pairing per friend quest and period (as the inviter or the friend)."""

    __tablename__ = "friend_quest_seats"
    __table_args__ = (sa.Index("ix_friend_quest_seats_pair", "pair_id"),)

    member_id: str = Field(primary_key=True, max_length=64)
    quest_id: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=32)
    pair_id: str = Field(max_length=24)
