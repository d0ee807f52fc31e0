"""The catalogue of member events (content/events.yaml): which types exist and what they carry.

The brand's systems may only send the types named here, with properties of the declared types;
the server's own domains declare their event types in code (`declare_internal`). Quests and
badges name event types and properties, and the content checks hold them to this catalogue.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from server.content.goals import Strict
from server.content.loader import ContentIssue, ContentKind, ContentStore
from server.events import dispatch

if TYPE_CHECKING:
    from server.content.where import Where

PropertyType = Literal["string", "number", "integer", "boolean"]
MAX_NUMBER = 1e15  # far beyond any spend or count; keeps sums exact enough and floats finite
# Names are checked as keys, so that every bad name and every bad entry is reported at once.
TypeName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.]{0,63}$")]
PropertyName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]


class PropertySpec(Strict):
    type: PropertyType
    required: bool = False
    description: str | None = None
    values: list[str | int | float] | None = Field(default=None, min_length=1, max_length=200)
    min: float | None = None
    max: float | None = None
    max_length: int = Field(default=200, ge=1, le=10_000)
    # How a sentence names the property's values: "product" / "products" for a product id ("5 more
    # different products"), "spend" for an amount added up ("1,000 more in spend").
    noun: str | None = Field(default=None, max_length=40)
    nouns: str | None = Field(default=None, max_length=40)
    unit: str | None = Field(
        default=None,
        max_length=8,
        description="the unit of an amount: a sign goes before it (`€` gives €50), a word after (50 EUR)",
    )

    @model_validator(mode="after")
    def _fits_type(self) -> PropertySpec:
        if (self.min is not None or self.max is not None) and self.type not in ("number", "integer"):
            raise ValueError("min and max apply to number and integer properties only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max")
        if self.values is not None and self.type == "boolean":
            raise ValueError("a boolean property takes no list of values")
        return self

    def problem(self, name: str, value: Any) -> str | None:
        """Why `value` does not fit, or None."""
        if self.type == "string":
            if not isinstance(value, str):
                return f"`{name}` is a string."
            if len(value) > self.max_length:
                return f"`{name}` is at most {self.max_length} characters."
        elif self.type == "boolean":
            if not isinstance(value, bool):
                return f"`{name}` is true or false."
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"`{name}` is a number."
            if isinstance(value, float) and not math.isfinite(value):
                return f"`{name}` is a finite number."
            if abs(value) > MAX_NUMBER:
                return f"`{name}` is beyond ±{MAX_NUMBER:,.0f}."
            if self.type == "integer" and not (isinstance(value, int) or value.is_integer()):
                return f"`{name}` is a whole number."
            if self.min is not None and value < self.min:
                return f"`{name}` is at least {self.min:g}."
            if self.max is not None and value > self.max:
                return f"`{name}` is at most {self.max:g}."
        if self.values is not None and value not in self.values:
            return f"`{name}` is one of {', '.join(map(str, self.values))}."
        return None


class EventType(Strict):
    description: str | None = None
    # How the app says one and several of these: "order" / "orders" (used in "2 more orders").
    noun: str | None = Field(default=None, max_length=40)
    nouns: str | None = Field(default=None, max_length=40)
    properties: dict[PropertyName, PropertySpec] = Field(default_factory=dict)

    def problem(self, properties: dict[str, Any]) -> str | None:
        for name, spec in self.properties.items():
            if name not in properties or properties[name] is None:
                if spec.required:
                    return f"`{name}` is required."
                continue
            reason = spec.problem(name, properties[name])
            if reason:
                return reason
        return None


def _default_types() -> dict[str, EventType]:
    return {
        "purchase": EventType(
            description="A purchase in a shop, online or in the app.",
            noun="order",
            nouns="orders",
            properties={
                "amount": PropertySpec(type="number", required=True, min=0, noun="spend"),
                "category": PropertySpec(type="string", noun="category", nouns="categories"),
                "channel": PropertySpec(type="string"),
            },
        )
    }


class EventCatalog(Strict):
    types: dict[TypeName, EventType] = Field(default_factory=_default_types)

    def knows(self, event_type: str) -> bool:
        return event_type in self.types or dispatch.is_internal(event_type)

    def property_type(self, event_type: str, name: str) -> str | None:
        """The declared type of a property of an event type (from content or from a domain)."""
        if event_type in self.types:
            spec = self.types[event_type].properties.get(name)
            return spec.type if spec else None
        return dispatch.internal_properties(event_type).get(name)

    def property_values(self, event_type: str, name: str) -> list[str | int | float] | None:
        """The values a property may take, when the catalogue lists them."""
        t = self.types.get(event_type)
        spec = t.properties.get(name) if t else None
        return spec.values if spec else None

    def nouns_for(self, event_type: str) -> tuple[str, str]:
        t = self.types.get(event_type)
        if t and t.noun:
            return t.noun, t.nouns or f"{t.noun}s"
        own = dispatch.internal_nouns(event_type)
        if own:
            return own
        label = event_type.replace(".", " ").replace("_", " ")
        return f"{label} event", f"{label} events"

    def property_nouns(self, event_type: str, name: str) -> tuple[str, str]:
        """How a sentence names one and several values of a property: the catalogue's nouns, else
        words made from the name (`product_id`: "product", "products")."""
        t = self.types.get(event_type)
        spec = t.properties.get(name) if t else None
        if spec is not None and spec.noun:
            return spec.noun, spec.nouns or plural(spec.noun)
        words = name.removesuffix("_id").replace("_", " ").replace(".", " ").strip() or name
        return words, plural(words)

    def property_unit(self, event_type: str, name: str) -> str | None:
        t = self.types.get(event_type)
        spec = t.properties.get(name) if t else None
        return spec.unit if spec else None


def plural(noun: str) -> str:
    """An English plural good enough for a noun made from a name ("category": "categories")."""
    if noun.endswith("y") and noun[-2:-1] not in ("", *"aeiou"):
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    return noun + "s"


_LITERAL_TYPES = {"string": (str,), "number": (int, float), "integer": (int, float), "boolean": (bool,)}


def check_event_use(
    store: ContentStore,
    rel: str,
    loc: tuple[str | int, ...],
    event: str,
    *,
    prop: str | None = None,
    prop_key: str = "value",
    needs_number: bool = False,
    where: Where | None = None,
) -> list[ContentIssue]:
    """Problems with content that counts events of type `event` (a quest goal, a board's metric):
    the type must be known, `prop` (named under `prop_key`) carried, and the filter `where` must
    compare properties the event carries with values of their type. `loc` is the mapping holding
    `event`, `prop_key` and `where`."""
    events: EventCatalog = store.get("events")
    if not events.knows(event):
        names = sorted([*events.types])
        return [
            store.issue(
                rel,
                (*loc, "event"),
                f"unknown event type `{event}` (content/events.yaml names: {', '.join(names)};"
                " or one of the server's own, like checkin.completed)",
            )
        ]
    issues = []
    if prop is not None:
        ptype = events.property_type(event, prop)
        if ptype is None:
            issues.append(store.issue(rel, (*loc, prop_key), f"`{event}` has no property `{prop}`"))
        elif needs_number and ptype not in ("number", "integer"):
            issues.append(
                store.issue(rel, (*loc, prop_key), f"`{prop}` is a {ptype}; a {prop_key} needs a number")
            )
    for ref in where.refs if where is not None else ():
        top = ref.property.split(".")[0]
        ptype = events.property_type(event, top)
        if ptype is None:
            issues.append(store.issue(rel, (*loc, "where"), f"`{event}` has no property `{ref.property}`"))
            continue
        if "." in ref.property:
            issues.append(
                store.issue(
                    rel,
                    (*loc, "where"),
                    f"`{top}` is a {ptype}: it has no `{ref.property[len(top) + 1 :]}` inside",
                )
            )
            continue
        allowed = _LITERAL_TYPES[ptype]
        known = events.property_values(event, top)
        for value in ref.values:
            fits = isinstance(value, allowed) and (ptype == "boolean" or not isinstance(value, bool))
            if not fits:
                issues.append(
                    store.issue(
                        rel,
                        (*loc, "where"),
                        f"`{ref.property}` is a {ptype}; it is compared with {value!r}",
                    )
                )
            elif known is not None and ref.op in ("==", "!=", "in", "not in") and value not in known:
                issues.append(
                    store.issue(
                        rel,
                        (*loc, "where"),
                        f"`{ref.property}` is never {value!r} (its values: {', '.join(map(str, known))})",
                    )
                )
    return issues


def _check(store: ContentStore) -> list[ContentIssue]:
    catalog: EventCatalog = store.get("events")
    return [
        store.issue(
            "events.yaml",
            ("types", name),
            f"`{name}` is an event of the server's own; it cannot be declared here",
        )
        for name in catalog.types
        if dispatch.is_internal(name)
    ]


EVENTS_KIND = ContentKind(name="events", filename="events.yaml", model=EventCatalog, check=_check)
