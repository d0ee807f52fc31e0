"""The admin domain's tables: community managers and their sessions. The audit log's table is
`server.audit`'s, so that every domain can write to it; it is named here for the admin domain's
readers."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Column, Field

from server.audit import AuditRecord
from server.db import TableModel, UTCDateTime

__all__ = ["AuditRecord", "Manager", "ManagerSession"]


class Manager(TableModel, table=True):
    """A community manager's account for the admin console. Only an argon2 hash of the password
    is stored; a disabled manager can no longer log in and their sessions end."""

    __tablename__ = "managers"
    __table_args__ = (sa.UniqueConstraint("email", name="uq_managers_email"),)

    id: str = Field(primary_key=True, max_length=16)
    email: str = Field(max_length=200)  # lower-cased
    display_name: str = Field(max_length=100)
    role: str = Field(max_length=16)  # viewer | editor | owner
    password_hash: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    disabled_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))

    @property
    def actor(self) -> str:
        """How the audit log names this manager."""
        return f"manager:{self.email}"


class ManagerSession(TableModel, table=True):
    """One login. The token is `em_<id>_<secret>`; only its sha256 is stored."""

    __tablename__ = "manager_sessions"

    id: str = Field(primary_key=True, max_length=16)
    manager_id: str = Field(max_length=16, index=True)
    token_hash: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
