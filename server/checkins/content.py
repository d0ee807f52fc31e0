"""The check-in cycle as content (content/checkin.yaml)."""

from __future__ import annotations

from pydantic import Field, model_validator

from server.content.goals import Strict
from server.content.loader import ContentKind


class DayReward(Strict):
    day: int = Field(ge=1)
    points: int = Field(default=0, ge=0, le=1_000_000)
    growth: int = Field(default=0, ge=0, le=1_000_000)
    chest: bool = False


class Cycle(Strict):
    length: int = Field(default=7, ge=1, le=366)
    rewards: list[DayReward] = Field(
        default_factory=lambda: (
            [DayReward(day=d, points=5, growth=1) for d in range(1, 7)]
            + [DayReward(day=7, points=50, growth=10, chest=True)]
        )
    )

    @model_validator(mode="after")
    def _one_reward_per_day(self) -> Cycle:
        days = [r.day for r in self.rewards]
        if sorted(days) != list(range(1, self.length + 1)):
            raise ValueError(f"rewards must name each day 1..{self.length} exactly once (found days {days})")
        self.rewards.sort(key=lambda r: r.day)
        return self

    def reward_for(self, cycle_day: int) -> DayReward:
        return self.rewards[cycle_day - 1]


class Freeze(Strict):
    price: int = Field(default=50, ge=0)
    max_held: int = Field(default=2, ge=0, le=30)


class Repair(Strict):
    grace_days: int = Field(default=2, ge=0, le=30)
    price: int = Field(default=100, ge=0)


class Makeup(Strict):
    per_month: int = Field(default=2, ge=0, le=31)
    price: int = Field(default=30, ge=0)


class AtRisk(Strict):
    hours_before_midnight: float = Field(default=3, ge=0, le=23)


class CheckinContent(Strict):
    cycle: Cycle = Cycle()
    freeze: Freeze = Freeze()
    repair: Repair = Repair()
    makeup: Makeup = Makeup()
    at_risk: AtRisk = AtRisk()


CHECKIN_KIND = ContentKind(name="checkin", filename="checkin.yaml", model=CheckinContent)
