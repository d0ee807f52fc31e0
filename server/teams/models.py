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
