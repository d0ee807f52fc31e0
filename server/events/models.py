from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import JSON, Column, Field

from server.db import TableModel, UTCDateTime


class MemberEvent(TableModel, table=True):
    """Something a member did, stored once per event_id whatever the number of deliveries."""

    __tablename__ = "member_events"

    event_id: str = Field(primary_key=True, max_length=128)
    member_id: str = Field(max_length=64, index=True)
    type: str = Field(max_length=64, index=True)
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    properties: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    source: str = Field(max_length=64)
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class DispatchedEvent(TableModel, table=True):
    """An event handed to the domains: the receipt that makes a second delivery change nothing."""

    __tablename__ = "dispatched_events"

    event_id: str = Field(primary_key=True, max_length=200)
    dispatched_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
