"""Quest progress: one row per member, quest and period."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import JSON, Column, Field

from server.db import TableModel, UTCDateTime


class QuestRun(TableModel, table=True):
    """A member's progress on one quest in one period (the local day, week or month; "all" for once).

    `state` holds the round under way, step by step: the count or sum so far, the distinct values
    or local days seen, and when the step was done. `completions` counts the rounds finished in
    the period; the quest is complete for the period when it reaches the quest's `times`.
    """

    __tablename__ = "quest_runs"

    member_id: str = Field(primary_key=True, max_length=64)
    quest_id: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=16)
    completions: int = 0
    state: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    completed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
