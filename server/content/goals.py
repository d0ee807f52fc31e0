"""Goals over member events, their progress, rewards and the "what is left" sentence.

The game's shared language for what a member must do: quests, badges and the later domains
write their goals in it, so a manager learns one language.

    goal: {event: purchase, count: 3, where: "channel == 'online'"}
    goal: {event: purchase, sum: amount, target: 500}
    goal: {event: product_viewed, distinct: category, target: 5}
    goal: {event: checkin.completed, streak: 3}          # on 3 consecutive local days
"""

from __future__ import annotations

import string
from datetime import date
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from server.content.where import Where, check_where, compile_where

ID_RE = r"^[a-z0-9][a-z0-9_-]{0,63}$"
GoalKind = Literal["count", "sum", "distinct", "streak"]
# Local days kept for a streak goal beyond its length (late events may fill an older gap).
STREAK_SLACK = 7


class Strict(BaseModel):
    """Content models refuse unknown fields: a misspelt key is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")


class Goal(Strict):
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
        return self.__dict__["_kind"]

    @property
    def goal_target(self) -> float:
        return self.__dict__["_target"]

    @property
    def compiled_where(self) -> Where:
        return self.__dict__["_where"]

    @property  # last: below it, `property` in this class body would mean this one
    def property(self) -> str | None:
        return self.__dict__["_property"]

    def accepts(self, event_type: str, properties: dict[str, Any]) -> bool:
        return event_type == self.event and self.__dict__["_matches"](properties)


class Reward(Strict):
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


class RemainingText(Strict):
    one: Template
    other: Template


def _text_or_plural(value: Any) -> str:
    return "plural" if isinstance(value, dict | RemainingText) else "text"


# One sentence, or one for the singular and one for the plural.
TextOrPlural = Annotated[
    Annotated[Template, Tag("text")] | Annotated[RemainingText, Tag("plural")],
    Discriminator(_text_or_plural),
]


# --- a goal's progress -------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float: not a spend worth counting
        return None


def _streak_run(days: list[str]) -> int:
    """Consecutive local days ending at the latest one seen."""
    if not days:
        return 0
    ordered = sorted({date.fromisoformat(d) for d in days}, reverse=True)
    run = 1
    for a, b in pairwise(ordered):
        if (a - b).days != 1:
            break
        run += 1
    return run


def step_progress(goal: Goal, st: dict[str, Any], today: date | None = None) -> float:
    kind = goal.kind
    if kind in ("count", "sum"):
        return float(st.get("n", 0))
    if kind == "distinct":
        return float(len(st.get("vals", ())))
    days = st.get("days", [])
    if today is not None and days and (today - date.fromisoformat(max(days))).days > 1:
        return 0.0  # the run is broken: it starts again with the next day
    return float(_streak_run(days))


def advance(goal: Goal, st: dict[str, Any], properties: dict[str, Any], day: date) -> None:
    """Apply one accepted event to a step's state."""
    kind = goal.kind
    if kind == "count":
        st["n"] = st.get("n", 0) + 1
    elif kind == "sum":
        value = _number(properties.get(goal.property or ""))
        if value is not None and value > 0:
            total = st.get("n", 0) + value
            st["n"] = int(total) if float(total).is_integer() else total
    elif kind == "distinct":
        value = properties.get(goal.property or "")
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            vals: list[Any] = st.setdefault("vals", [])
            if value not in vals and len(vals) < goal.goal_target:
                vals.append(value)
    else:
        days: list[str] = st.setdefault("days", [])
        key = day.isoformat()
        if key not in days:
            days.append(key)
            days.sort()
            del days[: max(0, len(days) - (int(goal.goal_target) + STREAK_SLACK))]


def number(x: float) -> int | float:
    """Whole numbers as integers, for the app's "2 / 3"."""
    return int(x) if float(x).is_integer() else x


def shown(x: float) -> str:
    """An amount as a sentence shows it: whole numbers bare, fractions to two places, thousands
    grouped ("1,000")."""
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.2f}".rstrip("0").rstrip(".")


def goal_phrase(events: Any, goal: Goal, amount: float, *, more: bool = False) -> str:
    """An amount of what a goal counts, in the game's words ("3 orders", "1,000 in spend",
    "5 different products", "4 days in a row"); with `more`, what is left of it ("3 more orders").
    `events` is the events catalog: it names the events and properties in nouns and units, so no
    event type or property name reaches a member."""
    one = amount == 1
    value = shown(amount)
    extra = " more" if more else ""
    if goal.kind == "count":
        noun, nouns = events.nouns_for(goal.event)
        return f"{value}{extra} {noun if one else nouns}"
    if goal.kind == "sum":
        noun, _ = events.property_nouns(goal.event, goal.property or "")
        return f"{with_unit(value, events.property_unit(goal.event, goal.property or ''))}{extra} in {noun}"
    if goal.kind == "distinct":
        noun, nouns = events.property_nouns(goal.event, goal.property or "")
        return f"{value}{extra} different {noun if one else nouns}"
    return f"{value}{extra} {'day' if one else 'days'} in a row"


def with_unit(value: str, unit: str | None) -> str:
    """An amount with its unit: a sign before it ("€50"), a word after it ("50 EUR")."""
    if not unit:
        return value
    return f"{unit}{value}" if len(unit) == 1 and not unit.isalnum() else f"{value} {unit}"


def remaining_text(events: Any, goal: Goal, template: str | RemainingText | None, progress: float) -> str:
    """What is left of a goal, for the app: the content's template ("{remaining} more orders to
    unlock the coupon"), else a sentence made from the goal in the events catalog's words."""
    target = goal.goal_target
    remaining = max(0.0, target - progress)
    if remaining <= 0:
        return "Done"
    values = {"remaining": shown(remaining), "target": shown(target), "progress": shown(progress)}
    if isinstance(template, RemainingText):
        template = template.one if remaining == 1 else template.other
    if template:
        try:
            return template.format(**values)
        except Exception:  # content checks the templates; an unforeseen one shows as written
            return template
    return goal_phrase(events, goal, remaining, more=True)
