"""Tasks and quest chains as content (content/quests/*.yaml), with the checks across files.

A task is a quest with one `goal`; a chain is a quest with `steps`, each unlocking when the steps
it requires (by default the step before it) are done. Goals count member events:

    goal: {event: purchase, count: 3, where: "channel == 'online'"}
    goal: {event: purchase, sum: amount, target: 500}
    goal: {event: product_viewed, distinct: category, target: 5}
    goal: {event: checkin.completed, streak: 3}          # on 3 consecutive local days
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from server.content.loader import ContentIssue, ContentKind, ContentStore, register_kind
from server.events.catalog import check_event_use
from server.members.service import DEFAULT_TIERS
from server.tasks.where import Where, check_where, compile_where

ID_RE = r"^[a-z0-9][a-z0-9_-]{0,63}$"
PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 31}  # the most local days a period holds
Period = Literal["once", "daily", "weekly", "monthly"]
GoalKind = Literal["count", "sum", "distinct", "streak"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Goal(_Strict):
    event: str = Field(max_length=64)
    count: int | None = Field(default=None, ge=1, le=1_000_000)
    sum: str | None = Field(default=None, max_length=64, description="the numeric property to add up")
    distinct: str | None = Field(default=None, max_length=64, description="the property to collect")
    streak: int | None = Field(default=None, ge=1, le=366, description="consecutive local days")
    target: float | None = Field(default=None, gt=0, le=1e12, description="for sum and distinct")
    where: str | dict[str, Any] | None = Field(
        default=None, description="a filter on the event's properties, e.g. \"channel == 'online'\""
    )

    _where_parses = field_validator("where")(check_where)

    @model_validator(mode="after")
    def _one_kind(self) -> Goal:
        given = [k for k in ("count", "sum", "distinct", "streak") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a goal has exactly one of count, sum, distinct or streak")
        if given[0] in ("sum", "distinct"):
            if self.target is None:
                raise ValueError(f"a {given[0]} goal needs a target")
            if given[0] == "distinct" and not (float(self.target).is_integer() and self.target <= 10_000):
                raise ValueError("a distinct goal's target is a whole number, at most 10,000")
        elif self.target is not None:
            raise ValueError(f"a {given[0]} goal takes its target from `{given[0]}`; drop `target`")
        # What the event path reads for every event, worked out once. Kept in the instance's
        # dict beside the fields (out of the schema, the dumps and comparisons): plain attribute
        # reads, where pydantic's private attributes would cost a method call each.
        where = compile_where(self.where)
        target = self.count or self.streak or self.target
        assert target is not None
        self.__dict__.update(
            _where=where,
            _matches=where.matches,
            _kind=given[0],
            _target=float(target),
            _property=self.sum or self.distinct,
        )
        return self

    @property
    def kind(self) -> GoalKind:
        return self.__dict__["_kind"]  # type: ignore[no-any-return]

    @property
    def goal_target(self) -> float:
        return self.__dict__["_target"]  # type: ignore[no-any-return]

    @property
    def compiled_where(self) -> Where:
        return self.__dict__["_where"]  # type: ignore[no-any-return]

    @property  # last: below it, `property` in this class body would mean this one
    def property(self) -> str | None:
        return self.__dict__["_property"]  # type: ignore[no-any-return]

    def accepts(self, event_type: str, properties: dict[str, Any]) -> bool:
        return event_type == self.event and self.__dict__["_matches"](properties)


class Reward(_Strict):
    points: int = Field(default=0, ge=0, le=1_000_000)
    growth: int = Field(default=0, ge=0, le=1_000_000)
    badge: str | None = Field(default=None, max_length=64)

    @property
    def empty(self) -> bool:
        return not (self.points or self.growth or self.badge)


TEMPLATE_FIELDS = ("remaining", "target", "progress")


def check_template(text: str) -> str:
    """A remaining_text may name {remaining}, {target} and {progress}, and nothing else."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"remaining_text: {exc} (write {{{{ and }}}} for literal braces)") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or spec or conversion:
            raise ValueError(
                f"remaining_text may use {{remaining}}, {{target}} and {{progress}}; not {{{name}}}"
            )
    return text


Template = Annotated[str, Field(max_length=200), AfterValidator(check_template)]


class RemainingText(_Strict):
    one: Template
    other: Template


def _text_or_plural(value: Any) -> str:
    return "plural" if isinstance(value, dict | RemainingText) else "text"


# One sentence, or one for the singular and one for the plural.
TextOrPlural = Annotated[
    Annotated[Template, Tag("text")] | Annotated[RemainingText, Tag("plural")],
    Discriminator(_text_or_plural),
]


class Step(_Strict):
    id: str = Field(pattern=ID_RE)
    title: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    goal: Goal
    # Steps that must be done first; by default the step before it (none for the first).
    requires: list[str] | None = None
    reward: Reward = Reward()
    # What is left, for the app: "{remaining} more orders to unlock the coupon" ({target} and
    # {progress} too); `one` / `other` for the singular and the plural.
    remaining_text: TextOrPlural | None = None


# Local times are written without an offset (the window's zone applies): not JSON Schema's date-time.
_TIME_SCHEMA = WithJsonSchema(
    {
        "anyOf": [
            {
                "type": "string",
                "pattern": r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$",
            },
            {"type": "null"},
        ],
        "description": "a time in the window's zone (an offset, if given, wins)",
    }
)


class Window(_Strict):
    start: Annotated[datetime | None, _TIME_SCHEMA] = None
    end: Annotated[datetime | None, _TIME_SCHEMA] = None
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"`{value}` is not an IANA time zone (like Europe/Paris)") from None
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        zone = ZoneInfo(self.timezone)
        if self.start is not None and self.start.tzinfo is None:
            self.start = self.start.replace(tzinfo=zone)
        if self.end is not None and self.end.tzinfo is None:
            self.end = self.end.replace(tzinfo=zone)
        if self.start and self.end and self.end <= self.start:
            raise ValueError("the window ends before it starts")
        return self

    def opens_after(self, at: datetime) -> bool:
        return self.start is not None and at < self.start

    def closed_at(self, at: datetime) -> bool:
        return self.end is not None and at >= self.end


class Quest(_Strict):
    id: str = Field(pattern=ID_RE)
    title: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    period: Period = Field(default="once", description="progress resets each local day, week or month")
    times: int = Field(default=1, ge=1, le=1000, description="completions allowed per period")
    available: Window | None = None
    tiers: list[str] | None = Field(default=None, description="only members of these tiers")
    requires: list[str] = Field(default_factory=list, description="quests to complete first")
    goal: Goal | None = None
    steps: list[Step] | None = Field(default=None, min_length=1, max_length=50)
    reward: Reward = Reward()
    remaining_text: TextOrPlural | None = None

    @model_validator(mode="after")
    def _task_or_chain(self) -> Quest:
        if (self.goal is None) == (self.steps is None):
            raise ValueError("a quest has either a `goal` (a task) or `steps` (a chain)")
        if self.steps is not None:
            if self.remaining_text is not None:
                raise ValueError("a chain's steps carry their own remaining_text")
            ids = [s.id for s in self.steps]
            dup = sorted({i for i in ids if ids.count(i) > 1})
            if dup:
                raise ValueError(f"step ids are unique within a quest: {', '.join(dup)}")
            steps = self.steps
        else:
            assert self.goal is not None
            steps = [Step(id=self.id, title=self.title, goal=self.goal, remaining_text=self.remaining_text)]
        # Worked out once, beside the fields (see Goal): read for every event.
        requires = [
            step.requires if step.requires is not None else ([steps[i - 1].id] if i else [])
            for i, step in enumerate(steps)
        ]
        self.__dict__.update(_steps=steps, _requires=requires)
        return self

    @property
    def is_chain(self) -> bool:
        return self.steps is not None

    @property
    def all_steps(self) -> list[Step]:
        """The steps; a task is one step that bears the quest's id."""
        return self.__dict__["_steps"]  # type: ignore[no-any-return]

    def step_requires(self, index: int) -> list[str]:
        """The steps that must be done first (by default the step before)."""
        return self.__dict__["_requires"][index]  # type: ignore[no-any-return]

    def open_at(self, at: datetime) -> bool:
        w = self.available
        return w is None or not (w.opens_after(at) or w.closed_at(at))


class QuestFile(_Strict):
    quests: list[Quest] = Field(default_factory=list)


@dataclass
class QuestCatalog:
    """Every quest of every file, in file order, with an index by the event types they count."""

    quests: dict[str, Quest] = field(default_factory=dict)
    # Where each quest is written: (file, its location within the file).
    places: dict[str, tuple[str, tuple[str | int, ...]]] = field(default_factory=dict)
    duplicates: list[tuple[str, tuple[str | int, ...], str]] = field(default_factory=list)
    by_event: dict[str, list[Quest]] = field(default_factory=dict)

    def get(self, quest_id: str) -> Quest | None:
        return self.quests.get(quest_id)


def _combine(files: list[tuple[str, QuestFile]]) -> QuestCatalog:
    catalog = QuestCatalog()
    for rel, qf in files:
        for i, quest in enumerate(qf.quests):
            loc: tuple[str | int, ...] = ("quests", i)
            if quest.id in catalog.quests:
                catalog.duplicates.append((rel, (*loc, "id"), quest.id))
                continue
            catalog.quests[quest.id] = quest
            catalog.places[quest.id] = (rel, loc)
            for event_type in {s.goal.event for s in quest.all_steps}:
                catalog.by_event.setdefault(event_type, []).append(quest)
    return catalog


def _step_loc(quest: Quest, base: tuple[str | int, ...], index: int) -> tuple[str | int, ...]:
    return (*base, "steps", index) if quest.is_chain else base


def _cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One cycle of the graph (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt in graph and state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _check_goal(store: ContentStore, rel: str, loc: tuple[str | int, ...], goal: Goal) -> list[ContentIssue]:
    return check_event_use(
        store,
        rel,
        (*loc, "goal"),
        goal.event,
        prop=goal.property,
        prop_key="sum" if goal.sum else "distinct",
        needs_number=bool(goal.sum),
        where=goal.compiled_where,
    )


def _known_badges(store: ContentStore) -> set[str]:
    badges = store.get("badges")
    return set(badges.ids()) if badges is not None else set()


def _known_tiers(store: ContentStore) -> list[str]:
    tiers = store.get("tiers")
    return list(tiers.ids()) if tiers is not None else list(DEFAULT_TIERS)


def _check_reward(
    store: ContentStore, rel: str, loc: tuple[str | int, ...], reward: Reward
) -> list[ContentIssue]:
    if reward.badge is None:
        return []
    if reward.badge not in _known_badges(store):
        return [store.issue(rel, (*loc, "reward", "badge"), f"unknown badge `{reward.badge}`")]
    if not store.get("badges").get(reward.badge).manual:
        message = f"badge `{reward.badge}` is earned by its own criteria; a quest gives only manual badges"
        return [store.issue(rel, (*loc, "reward", "badge"), message)]
    return []


def check(store: ContentStore) -> list[ContentIssue]:
    """The checks no single file can make: event types, steps, prerequisites, badges, tiers."""
    catalog: QuestCatalog = store.get("quests")
    issues = [
        store.issue(rel, loc, f"quest id `{qid}` is already used") for rel, loc, qid in catalog.duplicates
    ]
    tiers = _known_tiers(store)
    for quest in catalog.quests.values():
        rel, base = catalog.places[quest.id]
        step_ids = {s.id for s in quest.all_steps}
        longest = PERIOD_DAYS.get(quest.period)
        for i, step in enumerate(quest.all_steps):
            if longest and step.goal.streak and step.goal.streak > longest:
                issues.append(
                    store.issue(
                        rel,
                        (*_step_loc(quest, base, i), "goal", "streak"),
                        f"a {quest.period} quest cannot hold a streak of {step.goal.streak} days",
                    )
                )
        graph: dict[str, list[str]] = {}
        for i, step in enumerate(quest.all_steps):
            loc = _step_loc(quest, base, i)
            issues += _check_goal(store, rel, loc, step.goal)
            issues += _check_reward(store, rel, loc, step.reward)
            needs = quest.step_requires(i)
            graph[step.id] = needs
            for need in needs:
                if need not in step_ids:
                    issues.append(store.issue(rel, (*loc, "requires"), f"requires a missing step `{need}`"))
                elif need == step.id:
                    issues.append(store.issue(rel, (*loc, "requires"), "a step cannot require itself"))
        loop = _cycle(graph)
        if loop and len(loop) > 2:
            issues.append(
                store.issue(
                    rel, (*base, "steps"), f"steps require each other in a cycle: {' -> '.join(loop)}"
                )
            )
        issues += _check_reward(store, rel, base, quest.reward)
        for need in quest.requires:
            if need not in catalog.quests:
                issues.append(store.issue(rel, (*base, "requires"), f"requires a missing quest `{need}`"))
            elif need == quest.id:
                issues.append(store.issue(rel, (*base, "requires"), "a quest cannot require itself"))
        for tier in quest.tiers or []:
            if tier not in tiers:
                issues.append(
                    store.issue(rel, (*base, "tiers"), f"unknown tier `{tier}` (tiers: {', '.join(tiers)})")
                )
    loop = _cycle({q.id: [r for r in q.requires if r != q.id] for q in catalog.quests.values()})
    if loop:
        rel, base = catalog.places[loop[0]]
        issues.append(
            store.issue(
                rel, (*base, "requires"), f"quests require each other in a cycle: {' -> '.join(loop)}"
            )
        )
    return issues


register_kind(ContentKind(name="quests", filename="quests/", model=QuestFile, check=check, combine=_combine))
