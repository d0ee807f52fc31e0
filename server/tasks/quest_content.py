"""Tasks and quest chains as content (content/quests/*.yaml), with the checks across files.

A task is a quest with one `goal`; a chain is a quest with `steps`, each unlocking when the steps
it requires (by default the step before it) are done. Goals count member events:

    goal: {event: purchase, count: 3, where: "channel == 'online'"}
    goal: {event: purchase, sum: amount, target: 500}
    goal: {event: product_viewed, distinct: category, target: 5}
    goal: {event: checkin.completed, streak: 3}          # on 3 consecutive local days
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pydantic import Field, model_validator

from server.content.goals import ID_RE, Goal, Reward, Strict, TextOrPlural
from server.content.ladder import tier_names
from server.content.loader import ContentIssue, ContentKind, ContentStore
from server.content.periods import PERIOD_DAYS, Period, Window
from server.events.catalog import check_event_use


class Step(Strict):
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


class Quest(Strict):
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
        return self.__dict__["_steps"]

    def step_requires(self, index: int) -> list[str]:
        """The steps that must be done first (by default the step before)."""
        return self.__dict__["_requires"][index]

    def open_at(self, at: datetime) -> bool:
        w = self.available
        return w is None or not (w.opens_after(at) or w.closed_at(at))


class QuestFile(Strict):
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
    tiers = tier_names(store)
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


QUESTS_KIND = ContentKind(name="quests", filename="quests/", model=QuestFile, check=check, combine=_combine)
