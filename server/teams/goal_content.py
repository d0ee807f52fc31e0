"""Team goals as content (the `goals` of content/teams.yaml), in the quests' goal language.

    goals:
      - id: squad-weekly-orders
        kind: squad                           # a team kind of the same file
        name: 100 orders together this week
        goal: {event: purchase, count: 100}   # count | sum + target | distinct: member + target
        period: weekly                        # daily | weekly | monthly | once (with a window)
        zone: Europe/Paris                    # where the period turns
        min_contribution: 2                   # a late joiner earns a milestone only with this much
        member_cap: 30                        # at most this much of one member counts
        milestones:
          - {at: 40, reward: {points: 50}}    # percent of the target
          - {at: 100, name: Champions, reward: {points: 200}, non_contributor: {points: 10}}

A team's progress is what its members did while in the team, added up; `distinct: member`
counts the members who did it at least once. Streaks and other distinct properties are a
member's own measures and are not team goals.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, field_validator, model_validator

from server.content.goals import ID_RE, Goal, Reward, Strict, TextOrPlural
from server.content.loader import ContentIssue, ContentStore
from server.content.periods import Period, Window, check_zone
from server.events.catalog import check_event_use

# `distinct: member`: the members of the team who did it (at least once in the period).
MEMBER = "member"


class Milestone(Strict):
    at: int = Field(ge=1, le=100, description="percent of the target")
    name: str | None = Field(default=None, max_length=60)
    reward: Reward = Reward()
    non_contributor: Reward | None = Field(
        default=None, description="what the team's members who did not contribute get (often nothing)"
    )


class TeamGoal(Strict):
    id: str = Field(pattern=ID_RE)
    kind: str = Field(max_length=64, description="the team kind whose teams pursue it")
    name: str = Field(max_length=100)
    description: str = Field(default="", max_length=500)
    goal: Goal
    period: Period = Field(
        default="weekly", description="progress starts again each local day, week or month"
    )
    zone: str = Field(default="UTC", description="the IANA time zone the period turns in")
    window: Window | None = Field(default=None, description="when it runs (a dated event: `period: once`)")
    min_contribution: float | None = Field(
        default=None,
        gt=0,
        le=1e12,
        description="a member who joined after the period began earns a milestone only with this much",
    )
    member_cap: float | None = Field(
        default=None, gt=0, le=1e12, description="at most this much of one member counts"
    )
    milestones: list[Milestone] = Field(min_length=1, max_length=10)
    remaining_text: TextOrPlural | None = None

    @model_validator(mode="before")
    @classmethod
    def _window_in_zone(cls, data: Any) -> Any:
        # A window's times without a zone of their own are read in the goal's zone.
        if (
            isinstance(data, dict)
            and isinstance(data.get("window"), dict)
            and "timezone" not in data["window"]
        ):
            data = {**data, "window": {**data["window"], "timezone": data.get("zone", "UTC")}}
        return data

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    @model_validator(mode="after")
    def _consistent(self) -> TeamGoal:
        kind = self.goal.kind
        if kind == "streak":
            raise ValueError("a streak is a member's own; a team goal counts, sums or counts members")
        if kind == "distinct" and self.goal.distinct != MEMBER:
            raise ValueError("a team goal's `distinct` counts members who did it: write `distinct: member`")
        if kind == "distinct" and self.member_cap is not None:
            raise ValueError("with `distinct: member` each member counts once; drop `member_cap`")
        most = 1.0 if kind == "distinct" else self.member_cap
        if most is not None and self.min_contribution is not None and self.min_contribution > most:
            raise ValueError(
                f"min_contribution ({self.min_contribution:g}) is more than one member can count "
                f"({most:g}): a late joiner could never earn a milestone"
            )
        ats = [m.at for m in self.milestones]
        if any(b <= a for a, b in itertools.pairwise(ats)):
            raise ValueError("milestones go in ascending order of `at`, each once")
        if self.period == "once" and (self.window is None or self.window.end is None):
            raise ValueError("a goal of `period: once` is a dated event: give it a window with an end")
        return self

    @property
    def target(self) -> float:
        return self.goal.goal_target

    @property
    def counts_members(self) -> bool:
        return self.goal.kind == "distinct"

    def open_at(self, at: datetime) -> bool:
        w = self.window
        return w is None or not (w.opens_after(at) or w.closed_at(at))

    def threshold(self, milestone: Milestone) -> float:
        """The total at which a milestone is reached."""
        return self.target * milestone.at / 100

    def window_bounds(self) -> tuple[datetime | None, datetime | None]:
        w = self.window
        if w is None:
            return None, None
        return (w.start.astimezone(UTC) if w.start else None, w.end.astimezone(UTC) if w.end else None)


def check_goals(store: ContentStore, rel: str, content: Any) -> list[ContentIssue]:
    """Problems of the team goals across kinds of content: the events they count (with what
    their filters and sums name) and the badges their milestones give (manual ones only)."""
    issues: list[ContentIssue] = []
    badges = store.get("badges")
    for i, team_goal in enumerate(content.goals):
        base: tuple[str | int, ...] = ("goals", i)
        goal = team_goal.goal
        issues += check_event_use(
            store,
            rel,
            (*base, "goal"),
            goal.event,
            prop=goal.sum,
            prop_key="sum",
            needs_number=bool(goal.sum),
            where=goal.compiled_where,
        )
        for j, milestone in enumerate(team_goal.milestones):
            rewards = [("reward", milestone.reward)]
            if milestone.non_contributor is not None:
                rewards.append(("non_contributor", milestone.non_contributor))
            for name, reward in rewards:
                if reward.badge is None:
                    continue
                loc = (*base, "milestones", j, name, "badge")
                badge = badges.get(reward.badge) if badges is not None else None
                if badge is None:
                    issues.append(store.issue(rel, loc, f"unknown badge `{reward.badge}`"))
                elif not badge.manual:
                    why = f"badge `{reward.badge}` is earned by its criteria; rewards give manual badges only"
                    issues.append(store.issue(rel, loc, why))
        kind = content.kind(team_goal.kind)
        if kind is not None and not kind.community and team_goal.counts_members:
            # Fine for any kind; only a kind that caps teams below the target can never reach it.
            if kind.max_members < team_goal.target:
                issues.append(
                    store.issue(
                        rel,
                        (*base, "goal", "target"),
                        f"teams of `{kind.id}` hold at most {kind.max_members} members; "
                        f"{int(team_goal.target)} members can never do it",
                    )
                )
    return issues
