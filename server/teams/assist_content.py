"""Friend help and friend quests as content (`assist` and `friend_quests` of content/teams.yaml).

    assist:
      enabled: true
      expiry_hours: 24          # a call for help stays open this long
      helps_needed: 3           # the default number of friends' helps a request needs
      daily_helps: 5            # the most helps one member gives per local day, all requests together
      helper_reward: {points: 5}
      referral_claim: true      # a friend who joins to help counts as the asker's referral
                                # (when the referral program's rules allow it; one level only)
      quests:                   # what a member may ask help on
        - {quest: explorer, progress: 1}                          # every step of a task or chain
        - {quest: first-week, step: check-in-3, progress: 1, helps_needed: 2}
      goals:                    # team goals that count `assist.helped`
        - {goal: squad-helping-hands, helps_needed: 3}
      tickets: {helps_needed: 5, tickets: 1}                      # a draw ticket
      page: {...}               # what the shared link's page says

    friend_quests:
      - id: duo-weekly-orders
        name: Two friends, six orders
        goal: {event: purchase, count: 6}
        period: weekly
        zone: Europe/Paris
        reward: {points: 100}

A help on a quest step adds `progress` to it (for a count goal, one help is one event; for a sum
goal, an amount). Nothing a member buys speeds a request up: only friends' helps count.
"""

from __future__ import annotations

import string
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from server.content.goals import ID_RE, Goal, Reward, Strict
from server.content.loader import ContentIssue, ContentStore
from server.content.periods import check_zone
from server.events.catalog import check_event_use

# The event a help is about the asker: team goals count it, the quests' steps take its amount.
HELPED = "assist.helped"


def _template(*fields: str) -> Any:
    """A text whose `{placeholders}` are only `fields` (checked when content loads)."""

    def check(text: str) -> str:
        try:
            parts = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"{exc} (write {{{{ and }}}} for literal braces)") from None
        for _, name, spec, conversion in parts:
            if name is not None and (name not in fields or spec or conversion):
                allowed = ", ".join(f"{{{f}}}" for f in fields)
                raise ValueError(f"this text may use {allowed}; not {{{name}}}")
        return text

    return AfterValidator(check)


# A page's texts may name the asker, what they ask help on and the helps still needed.
PageText = Annotated[str, Field(max_length=300), _template("asker", "what", "helps_left", "helps_needed")]
PageLink = Annotated[str, Field(max_length=500), _template("code")]
HelpsNeeded = Annotated[int, Field(ge=1, le=100, description="friends' helps the request needs")]


class HelpQuest(Strict):
    """A quest members may ask help on: one step of it, or every step (a task's one step)."""

    quest: str = Field(pattern=ID_RE)
    step: str | None = Field(default=None, pattern=ID_RE, description="a chain's step (none: every step)")
    progress: float = Field(
        default=1, gt=0, le=1_000_000, description="what one help adds to the step (one event of a count)"
    )
    helps_needed: HelpsNeeded | None = None


class HelpGoal(Strict):
    """A team goal members may ask help on: each help is an `assist.helped` event it counts."""

    goal: str = Field(pattern=ID_RE)
    helps_needed: HelpsNeeded | None = None


class HelpTickets(Strict):
    """A draw ticket members may ask help on: paid when the request completes."""

    helps_needed: HelpsNeeded | None = None
    tickets: int = Field(default=1, ge=1, le=100, description="tickets a completed request gives")


class AssistPage(Strict):
    """What the shared link (`/a/{code}`) opens, in the look of the referral landing page."""

    title: PageText = "{asker} needs your help"
    description: PageText = "Help {asker} with {what}: {helps_left} more helps needed."
    heading: PageText = "{asker} needs your help"
    body: PageText = (
        "Open the app and tap Help: {asker} needs {helps_left} more helps with {what}. "
        "New here? Sign up first, the request waits."
    )
    completed_body: PageText = "{asker} got all the help they needed with {what}. Thank you!"
    anonymous_name: str = Field(default="A friend", max_length=60, description="when the asker has no name")
    open_label: str = Field(default="Help in the app", max_length=60)
    deep_link: PageLink | None = Field(default=None, description="e.g. myapp://assist/{code}")
    not_found_title: str = Field(default="This call for help does not exist", max_length=200)
    expired_title: str = Field(default="This call for help has ended", max_length=200)
    ticket_name: str = Field(
        default="a draw ticket", max_length=60, description="how the page names a ticket"
    )


class AssistRules(Strict):
    """Friend help: a member asks friends to help on a quest step, a team goal or a draw ticket."""

    enabled: bool = True
    expiry_hours: float = Field(default=24, ge=0.25, le=24 * 14, description="how long a request stays open")
    helps_needed: HelpsNeeded = 3
    daily_helps: int = Field(
        default=5, ge=1, le=1000, description="the most helps one member gives per local day, in all"
    )
    helper_reward: Reward = Field(default_factory=lambda: Reward(points=5), description="points and growth")
    referral_claim: bool = Field(
        default=False,
        description="a friend who joins to help is the asker's referral, when the referral program's "
        "rules allow the claim (one level only)",
    )
    quests: list[HelpQuest] = Field(default_factory=list, max_length=500)
    goals: list[HelpGoal] = Field(default_factory=list, max_length=500)
    tickets: HelpTickets | None = None
    page: AssistPage = AssistPage()

    @model_validator(mode="after")
    def _unique(self) -> AssistRules:
        seen: set[tuple[str, str | None]] = set()
        for q in self.quests:
            if (q.quest, q.step) in seen:
                raise ValueError(f"help on quest `{q.quest}` step `{q.step}` is listed twice")
            seen.add((q.quest, q.step))
        goals = [g.goal for g in self.goals]
        twice = sorted({g for g in goals if goals.count(g) > 1})
        if twice:
            raise ValueError(f"help on team goal {', '.join(twice)} is listed twice")
        return self

    def for_step(self, quest_id: str, step_id: str) -> HelpQuest | None:
        """How friends may help on a quest's step: the step's own entry, else the quest's."""
        found = {(q.quest, q.step): q for q in self.quests}
        return found.get((quest_id, step_id)) or found.get((quest_id, None))

    def for_goal(self, goal_id: str) -> HelpGoal | None:
        return next((g for g in self.goals if g.goal == goal_id), None)


class FriendQuest(Strict):
    """A goal two friends pursue together: both members' events count to one total, and both get
    the same reward when it completes."""

    id: str = Field(pattern=ID_RE)
    name: str = Field(max_length=100)
    description: str = Field(default="", max_length=500)
    goal: Goal
    period: Literal["daily", "weekly", "monthly"] = Field(
        default="weekly", description="a pairing lasts one period, turning in `zone`"
    )
    zone: str = Field(default="UTC", description="the IANA time zone the period turns in")
    reward: Reward = Reward()

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    @model_validator(mode="after")
    def _counts(self) -> FriendQuest:
        if self.goal.kind not in ("count", "sum"):
            raise ValueError("a friend quest counts events or adds up an amount (count or sum)")
        return self


def _reward_issues(
    store: ContentStore, rel: str, loc: tuple[str | int, ...], reward: Reward
) -> list[ContentIssue]:
    if reward.badge is not None:
        return [store.issue(rel, (*loc, "badge"), "this reward is points and growth, not a badge")]
    return []


def _quest_issues(store: ContentStore, rel: str, rules: AssistRules) -> list[ContentIssue]:
    catalog = store.get("quests")
    issues: list[ContentIssue] = []
    for i, entry in enumerate(rules.quests):
        loc: tuple[str | int, ...] = ("assist", "quests", i)
        quest = catalog.get(entry.quest) if catalog is not None else None
        if quest is None:
            issues.append(store.issue(rel, (*loc, "quest"), f"unknown quest `{entry.quest}`"))
            continue
        steps = [s for s in quest.all_steps if entry.step is None or s.id == entry.step]
        if not steps:
            issues.append(store.issue(rel, (*loc, "step"), f"quest `{quest.id}` has no step `{entry.step}`"))
        for step in steps:
            if step.goal.kind not in ("count", "sum"):
                issues.append(
                    store.issue(
                        rel,
                        loc,
                        f"step `{step.id}` is a {step.goal.kind} goal: help adds to a count or a sum only",
                    )
                )
            elif step.goal.kind == "count" and not float(entry.progress).is_integer():
                issues.append(store.issue(rel, (*loc, "progress"), "help on a count adds whole events"))
    return issues


def _goal_issues(store: ContentStore, rel: str, content: Any, rules: AssistRules) -> list[ContentIssue]:
    goals = {g.id: g for g in getattr(content, "goals", [])}
    issues: list[ContentIssue] = []
    for i, entry in enumerate(rules.goals):
        loc: tuple[str | int, ...] = ("assist", "goals", i, "goal")
        goal = goals.get(entry.goal)
        if goal is None:
            issues.append(store.issue(rel, loc, f"unknown team goal `{entry.goal}`"))
        elif getattr(getattr(goal, "goal", None), "event", HELPED) != HELPED:
            issues.append(
                store.issue(
                    rel, loc, f"team goal `{entry.goal}` does not count `{HELPED}`: helps would not count"
                )
            )
    return issues


def check_assists(store: ContentStore, rel: str, content: Any) -> list[ContentIssue]:
    """Problems of friend help and friend quests across kinds of content: the quests and steps
    help is offered on (which must count or sum), the team goals (which must count
    `assist.helped`), the friend quests' events, and rewards that are points and growth."""
    rules: AssistRules = content.assist
    issues = _quest_issues(store, rel, rules) + _goal_issues(store, rel, content, rules)
    issues += _reward_issues(store, rel, ("assist", "helper_reward"), rules.helper_reward)
    seen: set[str] = set()
    for i, fq in enumerate(getattr(content, "friend_quests", [])):
        loc: tuple[str | int, ...] = ("friend_quests", i)
        if fq.id in seen:
            issues.append(store.issue(rel, (*loc, "id"), f"friend quest `{fq.id}` is declared twice"))
        seen.add(fq.id)
        g = fq.goal
        issues += check_event_use(
            store,
            rel,
            (*loc, "goal"),
            g.event,
            prop=g.property,
            prop_key="sum",
            needs_number=bool(g.sum),
            where=g.compiled_where,
        )
        issues += _reward_issues(store, rel, (*loc, "reward"), fq.reward)
    return issues
