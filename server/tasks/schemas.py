"""What the quest routes answer."""

from __future__ import annotations

from datetime import datetime

import msgspec


class QuestRewardOut(msgspec.Struct):
    points: int
    growth: int
    badge: str | None


class QuestStepOut(msgspec.Struct):
    step_id: str
    title: str
    description: str | None
    status: str  # locked / active / completed / expired
    progress: float  # whole numbers are sent as integers (3, not 3.0)
    target: float
    remaining_text: str
    requires: list[str]
    reward: QuestRewardOut


class QuestOut(msgspec.Struct):
    quest_id: str
    title: str
    description: str | None
    kind: str  # task / chain
    period: str  # once / daily / weekly / monthly
    period_key: str  # the period under way in the member's time zone: all, 2026-11-24, 2026-W48, 2026-11
    status: str  # locked / active / completed / expired
    locked_reason: str | None  # not_started / tier / requires
    progress: float  # a chain counts its steps
    target: float
    remaining_text: str
    times: int
    completions: int
    completed_at: datetime | None
    resets_at: datetime | None
    available_from: datetime | None
    available_until: datetime | None
    tiers: list[str] | None
    requires: list[str]
    reward: QuestRewardOut
    steps: list[QuestStepOut]


class QuestsOut(msgspec.Struct):
    quests: list[QuestOut]
    content_version: int | None
