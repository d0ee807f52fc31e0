"""What the team goals' routes answer."""

from __future__ import annotations

from datetime import datetime

import msgspec


class RewardOut(msgspec.Struct):
    points: int
    growth: int
    badge: str | None


class MyMilestoneOut(msgspec.Struct):
    """What the member gets of a reached milestone, and why not the reward when they do not."""

    outcome: str  # reward | non_contributor | nothing
    reward: RewardOut | None
    reason: str | None  # not_contributed | below_min_contribution | joined_after
    paid: bool  # the milestone's payment to the team is finished


class MilestoneOut(msgspec.Struct):
    at: int  # percent of the target
    name: str | None
    threshold: float  # the team's progress at which it is reached
    reward: RewardOut
    non_contributor: RewardOut | None
    reached_at: datetime | None
    mine: MyMilestoneOut | None  # None until it is reached


class ContributionOut(msgspec.Struct):
    handle: str | None  # what other members see of a member
    amount: float
    rank: int | None  # 1 + how many contributed more; None without a contribution
    me: bool
    in_team: bool  # False: a member who contributed and left (it stays in the team's total)


class TeamGoalOut(msgspec.Struct):
    goal_id: str
    name: str
    description: str
    measure: str  # count | sum | members
    status: str  # active | upcoming | ended
    period: str  # daily | weekly | monthly | once
    period_key: str  # 2026-12-07, 2026-W50, 2026-12, once
    starts_at: datetime
    ends_at: datetime | None
    progress: float  # whole numbers are sent as integers
    target: float
    percent: float  # of the target, past 100 when the team does more
    remaining_text: str
    min_contribution: float | None
    member_cap: float | None
    milestones: list[MilestoneOut]
    contributors: int
    my_contribution: float
    my_share: float  # my contribution over the team's progress, 0 to 1
    my_rank: int | None
    members: list[ContributionOut]  # a community team: the top ten, and me


class TeamGoalsOut(msgspec.Struct):
    team_id: str
    kind: str
    goals: list[TeamGoalOut]
