"""The reaction pipeline: what each domain does when something happens, in the order of one list.

Each domain declares its part as data in its own `events.py` (a `Reactions`): the member events it
handles, the ledger entries it counts, the outbox effects it applies after commit and the event
types it tells the others about. `server.app.DOMAINS` lists the domains in the order they react;
`Pipeline(DOMAINS)` is what the process runs. Importing a module registers nothing: a reader sees
what reacts to what, and in which order, in the list and in the declarations it names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from server.content.loader import ContentKind, use_kinds
from server.outbox import Effect
from server.scheduler import Job

if TYPE_CHECKING:
    from server.context import Context


@dataclass(frozen=True)
class DomainEvent:
    event_id: str
    member_id: str
    type: str
    occurred_at: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    source: str = "api"

    def to_payload(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies the properties, for every event of a batch.
        return {
            "event_id": self.event_id,
            "member_id": self.member_id,
            "type": self.type,
            "occurred_at": self.occurred_at.isoformat(),
            "properties": self.properties,
            "source": self.source,
        }

    @classmethod
    def from_payload(cls, d: dict[str, Any]) -> DomainEvent:
        return cls(**{**d, "occurred_at": datetime.fromisoformat(d["occurred_at"])})


# A domain's handler of a run of events (in member order), inside the unit of work's transaction:
# it writes through services that take the session (the ledger's `post_many`), never commits.
EventsHandler = Callable[["Context", AsyncSession, list[DomainEvent]], Awaitable[None]]
# Which event types a handler wants under the content serving now.
Wants = Callable[["Context", str], bool]
# Members a handler will lock besides the events' own (the other side of a referral), named up
# front so that the unit of work holds every member in one order.
AlsoLock = Callable[["Context", AsyncSession, list[DomainEvent]], Awaitable[set[str]]]
# New ledger entries of a unit of work (`server.ledger.models.LedgerEntry`), in its transaction.
PostedHandler = Callable[["Context", AsyncSession, list[Any]], Awaitable[None]]
CurrencyWanted = Callable[["Context", str], bool]
PropertyCheck = Callable[[dict[str, Any]], str | None]
Mask = Callable[["Context", Any], Any]


def of_types(*event_types: str) -> Wants:
    """`wants` for a fixed set of event types, whatever the content."""
    wanted = frozenset(event_types)
    return lambda _ctx, event_type: event_type in wanted


@dataclass(frozen=True)
class OnEvents:
    """Member events of the types `wants` accepts go to `handle`, a run at a time."""

    handle: EventsHandler
    wants: Wants
    also_lock: AlsoLock | None = None


@dataclass(frozen=True)
class OnPosted:
    """New ledger entries of the currencies `wants` accepts go to `handle`, in the same transaction."""

    handle: PostedHandler
    wants: CurrencyWanted


@dataclass(frozen=True)
class Emits:
    """An event type only the server's own domains emit (the brand's systems cannot send it), with
    the type of each property it carries ('string', 'number', 'integer', 'boolean') so that content
    can filter on them and be checked, and how the app names one and several of them."""

    properties: Mapping[str, str] = field(default_factory=dict)
    nouns: tuple[str, str] | None = None


@dataclass(frozen=True)
class Reactions:
    """One domain's part in the pipeline (declared in its `events.py`)."""

    events: tuple[OnEvents, ...] = ()
    posted: tuple[OnPosted, ...] = ()
    # Outbox effects by kind: `async def f(ctx, items, retry)`, idempotent (see server.outbox).
    effects: Mapping[str, Effect] = field(default_factory=dict)
    emits: Mapping[str, Emits] = field(default_factory=dict)
    # What properties an event type from the brand's systems must carry: a reason, or None.
    properties: Mapping[str, PropertyCheck] = field(default_factory=dict)
    # Personal properties (a device id, an address) replaced by `mask(ctx, value)` on arrival.
    masked: Mapping[str, Mask] = field(default_factory=dict)


@dataclass(frozen=True)
class Domain:
    """A domain as the process runs it: its reactions, its kinds of content and its scheduled jobs."""

    name: str
    reactions: Reactions = Reactions()
    content: tuple[ContentKind, ...] = ()
    jobs: tuple[Job, ...] = ()


def _merged(
    domains: Sequence[Domain], what: str, part: Callable[[Domain], Mapping[str, Any]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in domains:
        for name, value in part(d).items():
            if name in out:
                raise ValueError(f"{what} '{name}' is declared twice (again by {d.name})")
            out[name] = value
    return out


class Pipeline:
    """The domains' reactions in the list's order, with indexes by event type and currency."""

    def __init__(self, domains: Sequence[Domain]) -> None:
        self.domains = tuple(domains)
        self.on_events = tuple(r for d in domains for r in d.reactions.events)
        self.on_posted = tuple(r for d in domains for r in d.reactions.posted)
        self.effects: dict[str, Effect] = _merged(domains, "outbox effect", lambda d: d.reactions.effects)
        self.emits: dict[str, Emits] = _merged(domains, "event type", lambda d: d.reactions.emits)
        self.properties: dict[str, PropertyCheck] = _merged(
            domains, "property check", lambda d: d.reactions.properties
        )
        self.masked: dict[str, Mask] = _merged(domains, "masked property", lambda d: d.reactions.masked)
        self.kinds: dict[str, ContentKind] = _merged(
            domains, "content kind", lambda d: {k.name: k for k in d.content}
        )
        self.jobs: dict[str, Job] = _merged(domains, "job", lambda d: {j.name: j for j in d.jobs})
        # For the content served (what `wants` reads), by event type and by currency: the
        # handlers that want it. Forgotten whenever another content is served.
        self._indexed: object = None
        self._by_type: dict[str, tuple[OnEvents, ...]] = {}
        self._by_currency: dict[str, tuple[OnPosted, ...]] = {}

    def _index(self, ctx: Context) -> None:
        content = getattr(ctx, "content", None)
        if content is not self._indexed or len(self._by_type) > 10_000:
            self._indexed = content
            self._by_type = {}
            self._by_currency = {}

    def for_event(self, ctx: Context, event_type: str) -> tuple[OnEvents, ...]:
        """The handlers that want events of this type under the content serving now, in order."""
        self._index(ctx)
        found = self._by_type.get(event_type)
        if found is None:
            found = self._by_type[event_type] = tuple(r for r in self.on_events if r.wants(ctx, event_type))
        return found

    def for_currency(self, ctx: Context, currency: str) -> tuple[OnPosted, ...]:
        self._index(ctx)
        found = self._by_currency.get(currency)
        if found is None:
            found = self._by_currency[currency] = tuple(r for r in self.on_posted if r.wants(ctx, currency))
        return found

    def wanted(self, ctx: Context, event_type: str) -> bool:
        return bool(self.for_event(ctx, event_type))

    async def handle_events(self, ctx: Context, session: AsyncSession, events: list[DomainEvent]) -> None:
        """Each domain in the list's order, with the run of these events it wants."""
        for reaction, run in _runs(self.on_events, events, lambda e: self.for_event(ctx, e.type)):
            await reaction.handle(ctx, session, run)

    async def handle_posted(self, ctx: Context, session: AsyncSession, entries: list[Any]) -> None:
        """Each domain in the list's order, with the new ledger entries of the currencies it counts."""
        for reaction, run in _runs(self.on_posted, entries, lambda e: self.for_currency(ctx, e.currency)):
            await reaction.handle(ctx, session, run)

    def describe(self) -> list[str]:
        """What reacts to what, in order: one line per domain (for `engage pipeline`)."""
        lines = []
        for d in self.domains:
            r = d.reactions
            parts = [
                *(f"events→{h.handle.__qualname__}" for h in r.events),
                *(f"posted→{h.handle.__qualname__}" for h in r.posted),
                *(f"effect {k}" for k in r.effects),
                *(f"emits {k}" for k in r.emits),
                *(f"content {k.name}" for k in d.content),
                *(f"job {j.name}" for j in d.jobs),
            ]
            lines.append(f"{d.name}: " + (", ".join(parts) or "-"))
        return lines

    def install(self) -> Pipeline:
        """Make this the process's pipeline: the content kinds it reads and the event vocabulary
        that content is checked against (which the loader and the catalogue read without a context)."""
        global _installed
        use_kinds(self.kinds.values())
        _installed = self
        return self


R = TypeVar("R")
Item = TypeVar("Item")


def _runs(
    ordered: tuple[R, ...], items: list[Item], wanting: Callable[[Item], tuple[R, ...]]
) -> list[tuple[R, list[Item]]]:
    """The items each reaction wants (looked up through the index), in the reactions' order."""
    runs: dict[int, list[Item]] = {}
    for item in items:
        for reaction in wanting(item):
            runs.setdefault(id(reaction), []).append(item)
    return [(r, runs[id(r)]) for r in ordered if id(r) in runs]


_installed: Pipeline | None = None


def installed() -> Pipeline:
    if _installed is None:
        raise RuntimeError("no pipeline installed: server.app.install() (create_app does it)")
    return _installed


def each_event(handle: Callable[[Context, AsyncSession, DomainEvent], Awaitable[None]]) -> EventsHandler:
    """A handler of one event at a time, for rare events (a member's zone changed)."""

    async def handle_run(ctx: Context, session: AsyncSession, events: list[DomainEvent]) -> None:
        for event in events:
            await handle(ctx, session, event)

    handle_run.__qualname__ = handle.__qualname__
    return handle_run
