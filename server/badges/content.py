"""Badges (content/badges/*.yaml) and the tier ladder (content/tiers.yaml) as content.

A badge is earned by one criterion, or granted by hand (`manual: true`):

    criteria: {goal: {event: purchase, count: 5}}          # the quest engine's goal language
    criteria: {quest: first-week}                          # a quest or chain completed
    criteria: {streak: 7}                                  # a check-in streak of 7 days
    criteria: {tier: gold}                                 # a tier reached
    criteria: {badges: {count: 5}}                         # other badges held (or `of: [...]`)

`levels` (bronze, silver, gold...) raise the criterion's number level by level; `available`
makes a limited edition; `hidden` keeps it out of the collection until earned; `repeatable`
starts it over once its last level is earned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

from pydantic import Field, model_validator

from server.content.goals import ID_RE, Goal, Strict, goal_phrase, shown
from server.content.ladder import tier_names
from server.content.loader import ContentIssue, ContentKind, ContentStore
from server.content.periods import Window
from server.events.catalog import EventCatalog, check_event_use

Rarity = Literal["common", "uncommon", "rare", "epic", "legendary"]
CriterionKind = Literal["goal", "quest", "streak", "tier", "badges"]
# The event each kind of criterion counts (a goal names its own).
CRITERION_EVENTS = {
    "quest": "quest.completed",
    "streak": "checkin.completed",
    "tier": "tier.changed",
    "badges": "badge.earned",
}


class Reward(Strict):
    points: int = Field(default=0, ge=0, le=1_000_000)
    growth: int = Field(default=0, ge=0, le=1_000_000)


class BadgeCount(Strict):
    count: int = Field(ge=1, le=1000)
    of: list[str] | None = Field(default=None, description="only these badges count (default: any other)")


class Criteria(Strict):
    goal: Goal | None = None
    quest: str | None = Field(default=None, pattern=ID_RE, description="a quest or chain completed")
    streak: int | None = Field(default=None, ge=1, le=3660, description="a check-in streak this long")
    tier: str | None = Field(default=None, max_length=32, description="a tier reached")
    badges: BadgeCount | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Criteria:
        given = [k for k in ("goal", "quest", "streak", "tier", "badges") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("criteria name exactly one of goal, quest, streak, tier or badges")
        return self

    @property
    def kind(self) -> CriterionKind:
        for k in ("goal", "quest", "streak", "tier", "badges"):
            if getattr(self, k) is not None:
                return k
        raise AssertionError("validated")

    @property
    def event(self) -> str:
        return self.goal.event if self.goal is not None else CRITERION_EVENTS[self.kind]

    def base_target(self) -> float:
        if self.goal is not None:
            return self.goal.goal_target
        if self.streak is not None:
            return float(self.streak)
        if self.badges is not None:
            return float(self.badges.count)
        return 1.0  # a quest completed once; a tier reached (its rank is checked, not a count)


class Level(Strict):
    name: str = Field(max_length=32, description="bronze, silver, gold...")
    target: float = Field(gt=0, le=1e12, description="the criterion's number for this level")
    reward: Reward = Reward()
    image: str | None = Field(default=None, max_length=500, description="the level's own picture (a URL)")


class Badge(Strict):
    id: str = Field(pattern=ID_RE)
    name: str = Field(max_length=100)
    description: str | None = Field(default=None, max_length=1000)
    image: str | None = Field(
        default=None,
        max_length=500,
        description="the brand's own picture, an absolute URL (https://...); without one, or with a "
        "path, the API points to one the server draws from the name, rarity and level",
    )
    rarity: Rarity = "common"
    criteria: Criteria | None = None
    manual: bool = Field(default=False, description="granted by managers, the brand's systems or a quest")
    levels: list[Level] | None = Field(default=None, min_length=1, max_length=10)
    available: Window | None = Field(default=None, description="a limited edition: earnable only inside")
    hidden: bool = Field(default=False, description="out of the collection until earned")
    repeatable: bool = Field(default=False, description="starts over once its last level is earned")
    reward: Reward = Reward()

    @model_validator(mode="after")
    def _shape(self) -> Badge:
        if self.manual == (self.criteria is not None):
            raise ValueError("a badge has `criteria`, or is `manual: true` (granted by hand), not both")
        if self.levels is not None:
            if self.manual:
                raise ValueError("a manual badge has no levels")
            if self.criteria is not None and self.criteria.kind == "tier":
                raise ValueError("a tier badge has no levels: one badge per tier")
            names = [lv.name for lv in self.levels]
            if len(set(names)) != len(names):
                raise ValueError("level names are unique within a badge")
            targets = [lv.target for lv in self.levels]
            if any(b <= a for a, b in pairwise(targets)):
                raise ValueError("each level's target is above the one before")
            if self.criteria is not None and self.criteria.kind in ("quest", "badges", "streak"):
                if any(not float(t).is_integer() for t in targets):
                    raise ValueError(f"a {self.criteria.kind} badge's level targets are whole numbers")
        if self.repeatable and self.criteria is not None and self.criteria.kind in ("tier", "badges"):
            raise ValueError(
                f"a {self.criteria.kind} badge cannot be repeatable (it would be earned again at once)"
            )
        targets = (
            [lv.target for lv in self.levels]
            if self.levels
            else ([self.criteria.base_target()] if self.criteria is not None else [1.0])
        )
        counting = None
        if self.criteria is not None and self.criteria.goal is not None:
            # The goal counts up to the last level (a distinct goal keeps that many values).
            goal = self.criteria.goal
            kind = goal.kind
            number: Any = int(targets[-1]) if kind in ("count", "streak") else targets[-1]
            data = goal.model_dump(exclude_none=True)
            data.update(
                {"count": number}
                if kind == "count"
                else {"streak": number}
                if kind == "streak"
                else {"target": number}
            )
            counting = Goal(**data)
        self.__dict__.update(_targets=targets, _goal=counting)
        return self

    @property
    def targets(self) -> list[float]:
        """The number each level needs, lowest first (one level for a badge without levels)."""
        return self.__dict__["_targets"]

    @property
    def counting_goal(self) -> Goal | None:
        """The goal criterion as the engine counts it: up to the last level's target."""
        return self.__dict__["_goal"]

    @property
    def level_count(self) -> int:
        return len(self.targets)

    def level_name(self, level: int) -> str | None:
        """bronze, silver... for level 1, 2...; None for a badge without levels."""
        if not self.levels or not 1 <= level <= len(self.levels):
            return None
        return self.levels[level - 1].name

    def level_reward(self, level: int) -> Reward:
        """What a level pays: its own reward, and the badge's reward with the last level."""
        own = self.levels[level - 1].reward if self.levels else Reward()
        if level == self.level_count:
            return Reward(points=own.points + self.reward.points, growth=own.growth + self.reward.growth)
        return own

    def level_image(self, level: int) -> str | None:
        if self.levels and 1 <= level <= len(self.levels) and self.levels[level - 1].image:
            return self.levels[level - 1].image
        return self.image

    def narrative(self, events: EventCatalog, level: int = 1) -> str:
        """What it takes, in one sentence (for the credential's criteria and the collection), in
        the events catalog's words."""
        if self.criteria is None:
            return "Granted by the program for something done outside the app's counting."
        target = self.targets[max(0, min(level, self.level_count) - 1)]
        n = shown(target)
        c = self.criteria
        if c.goal is not None:
            g = c.goal
            what = goal_phrase(events, g, target)
            if g.kind != "count":  # name what is counted: "5 different products across reviews"
                what += f" {'of' if g.kind == 'streak' else 'across'} {events.nouns_for(g.event)[1]}"
            if g.where:
                what += " (with conditions)"
            text = f"Reach {what}"
        elif c.quest is not None:
            text = f"Complete the quest `{c.quest}`" + (f" {n} times" if target != 1 else "")
        elif c.streak is not None:
            text = f"Keep a check-in streak of {n} days"
        elif c.tier is not None:
            text = f"Reach the {c.tier} tier"
        else:
            text = f"Hold {n} other badges"
        if self.available is not None and (self.available.start or self.available.end):
            text += " during the limited-edition window"
        return text + "."

    def open_at(self, at: Any) -> bool:
        w = self.available
        return w is None or not (w.opens_after(at) or w.closed_at(at))


class BadgeFile(Strict):
    badges: list[Badge] = Field(default_factory=list)


@dataclass
class BadgeCatalog:
    """Every badge of every file, in file order, with an index by the event types they count."""

    badges: dict[str, Badge] = field(default_factory=dict)
    places: dict[str, tuple[str, tuple[str | int, ...]]] = field(default_factory=dict)
    duplicates: list[tuple[str, tuple[str | int, ...], str]] = field(default_factory=list)
    by_event: dict[str, list[Badge]] = field(default_factory=dict)

    def get(self, badge_id: str) -> Badge | None:
        return self.badges.get(badge_id)

    def ids(self) -> list[str]:
        return list(self.badges)


def _combine(files: list[tuple[str, BadgeFile]]) -> BadgeCatalog:
    catalog = BadgeCatalog()
    for rel, bf in files:
        for i, badge in enumerate(bf.badges):
            loc: tuple[str | int, ...] = ("badges", i)
            if badge.id in catalog.badges:
                catalog.duplicates.append((rel, (*loc, "id"), badge.id))
                continue
            catalog.badges[badge.id] = badge
            catalog.places[badge.id] = (rel, loc)
            if badge.criteria is not None:
                catalog.by_event.setdefault(badge.criteria.event, []).append(badge)
    return catalog


def check(store: ContentStore) -> list[ContentIssue]:
    """The checks no single file can make: events, quests, tiers and badges named."""
    catalog: BadgeCatalog = store.get("badges")
    issues = [
        store.issue(rel, loc, f"badge id `{bid}` is already used") for rel, loc, bid in catalog.duplicates
    ]
    quests = store.get("quests")
    quest_ids = set(quests.quests) if quests is not None else set()
    ladder = tier_names(store)
    for badge in catalog.badges.values():
        rel, base = catalog.places[badge.id]
        c = badge.criteria
        if c is None:
            continue
        loc = (*base, "criteria")
        if c.goal is not None:
            g = c.goal
            issues += check_event_use(
                store,
                rel,
                (*loc, "goal"),
                g.event,
                prop=g.property,
                prop_key="sum" if g.sum else "distinct",
                needs_number=bool(g.sum),
                where=g.compiled_where,
            )
        elif c.quest is not None and c.quest not in quest_ids:
            issues.append(store.issue(rel, (*loc, "quest"), f"unknown quest `{c.quest}`"))
        elif c.tier is not None and c.tier not in ladder:
            issues.append(
                store.issue(rel, (*loc, "tier"), f"unknown tier `{c.tier}` (tiers: {', '.join(ladder)})")
            )
        elif c.badges is not None:
            for other in c.badges.of or []:
                if other == badge.id:
                    issues.append(store.issue(rel, (*loc, "badges", "of"), "a badge cannot count itself"))
                elif other not in catalog.badges:
                    issues.append(store.issue(rel, (*loc, "badges", "of"), f"unknown badge `{other}`"))
            pool = len(c.badges.of) if c.badges.of else len(catalog.badges) - 1
            if badge.targets[-1] > pool:
                issues.append(
                    store.issue(
                        rel,
                        (*loc, "badges", "count"),
                        f"needs {int(badge.targets[-1])} other badges but only {pool} can count",
                    )
                )
    return issues


BADGES_KIND = ContentKind(name="badges", filename="badges/", model=BadgeFile, check=check, combine=_combine)


# --- the tier ladder ----------------------------------------------------------------------------

Dimension = Literal["spend", "frequency", "interaction", "social"]
DIMENSIONS: tuple[Dimension, ...] = ("spend", "frequency", "interaction", "social")


class Tier(Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    name: str = Field(max_length=64)
    growth: int = Field(ge=0, le=10**12, description="qualifying growth over the window to reach it")
    benefits: list[str] = Field(default_factory=list, description="what the app shows the tier gives")
    image: str | None = Field(default=None, max_length=500)


class DimensionRule(Strict):
    weight: float = Field(default=1.0, ge=0, le=100, description="how much a unit of this growth counts")
    sources: list[str] = Field(
        default_factory=list, description="ledger sources whose growth is of this kind"
    )


def _default_dimensions() -> dict[Dimension, DimensionRule]:
    return {
        "spend": DimensionRule(sources=["purchase"]),
        "frequency": DimensionRule(sources=["checkin"]),
        "interaction": DimensionRule(sources=["quest", "badge", "event"]),
        "social": DimensionRule(sources=["referral", "team"]),
    }


class Reevaluation(Strict):
    every: Literal["weekly", "monthly", "quarterly"] = "monthly"
    notice_days: int = Field(default=30, ge=0, le=365, description="a drop is announced this long before")


class TierLadder(Strict):
    tiers: list[Tier] = Field(min_length=1, max_length=20)
    window_months: int = Field(default=12, ge=1, le=60, description="qualifying growth counts these months")
    dimensions: dict[Dimension, DimensionRule] = Field(default_factory=_default_dimensions)
    reevaluation: Reevaluation = Reevaluation()

    @model_validator(mode="after")
    def _progressive(self) -> TierLadder:
        ids = [t.id for t in self.tiers]
        if len(set(ids)) != len(ids):
            raise ValueError("tier ids are unique")
        if self.tiers[0].growth != 0:
            raise ValueError("the first tier is where everyone starts: its growth is 0")
        steps = [b.growth - a.growth for a, b in zip(self.tiers, self.tiers[1:], strict=False)]
        if any(s <= 0 for s in steps):
            raise ValueError("each tier needs more growth than the one below it")
        if any(b < a for a, b in pairwise(steps)):
            raise ValueError(
                "thresholds are progressive: each step up needs at least as much growth as the step before "
                f"(steps: {', '.join(str(s) for s in steps)})"
            )
        taken: dict[str, str] = {}
        for dim, rule in self.dimensions.items():
            for source in rule.sources:
                if source in taken:
                    raise ValueError(f"source `{source}` is in both {taken[source]} and {dim}")
                taken[source] = dim
        self.__dict__["_by_source"] = taken
        return self

    def ids(self) -> list[str]:
        return [t.id for t in self.tiers]

    def get(self, tier_id: str | None) -> Tier | None:
        return next((t for t in self.tiers if t.id == tier_id), None)

    def index(self, tier_id: str | None) -> int:
        """The tier's place on the ladder (0 for the first, and for a member without a tier)."""
        for i, t in enumerate(self.tiers):
            if t.id == tier_id:
                return i
        return 0

    def dimension_of(self, source: str) -> str:
        """The dimension growth from this ledger source counts in ('other' if none names it)."""
        return self.__dict__["_by_source"].get(source, "other")

    def weight(self, dimension: str) -> float:
        rule = self.dimensions.get(dimension)  # type: ignore[call-overload]
        return rule.weight if rule is not None else 1.0

    def earned_index(self, qualifying: int) -> int:
        """The highest tier this much qualifying growth reaches."""
        reached = 0
        for i, t in enumerate(self.tiers):
            if qualifying >= t.growth:
                reached = i
        return reached


# Without content/tiers.yaml the brand's systems set tiers themselves (on the default ladder).
TIERS_KIND = ContentKind(name="tiers", filename="tiers.yaml", model=TierLadder, optional=True)
