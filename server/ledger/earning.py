"""Earning rules: how many points and growth a member event is worth (content/earning.yaml).

Purchases earn per currency unit spent (and, for frequency, a fixed growth per order); named
events earn fixed amounts. Multipliers then apply: by tier, by weekday for some tiers (in the
member's local time), by frequency ("the 3rd purchase in a week earns x3"), and boosts other
domains grant for a time (a converted referral). Factors multiply, up to `max_factor`. Every
ledger entry records the rule, the base amount and each multiplier that produced it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pydantic import Field, field_validator, model_validator
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from server.content.goals import Strict
from server.content.ladder import tier_names
from server.content.loader import ContentIssue, ContentKind, ContentStore
from server.content.periods import period_key
from server.content.where import check_where, compile_where
from server.db import execute_counting, insert_ignore, utcnow
from server.errors import ProblemError
from server.events.catalog import check_event_use
from server.events.dispatch import DomainEvent
from server.ledger import service as ledger
from server.ledger.models import CURRENCIES, EarningBoost, EarningCount
from server.members.service import profiles as member_profiles
from server.members.service import tier_ladder

if TYPE_CHECKING:
    from server.context import Context

# A frequency's period, named as the quest engine names its periods (one key format for both).
_PERIODS = {"day": "daily", "week": "weekly", "month": "monthly"}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
Currency = Literal["points", "growth"]
Dimension = Literal["spend", "frequency", "interaction", "social"]
MAX_BOOST = 10.0
BOOSTED = ("points", "growth")  # what a boost multiplies (tickets come from draws' own rules)


class PurchaseRule(Strict):
    points_per_unit: Decimal = Field(default=Decimal(1), ge=0, le=10_000)
    growth_per_unit: Decimal = Field(default=Decimal(1), ge=0, le=10_000)
    growth_per_order: int = Field(default=0, ge=0, le=1_000_000, description="frequency growth per purchase")


class EventRule(Strict):
    event: str = Field(max_length=64)
    points: int = Field(default=0, ge=0, le=1_000_000)
    growth: int = Field(default=0, ge=0, le=1_000_000)
    dimension: Dimension = Field(default="interaction", description="what the growth counts as for tiers")
    where: str | dict[str, Any] | None = None

    _where_parses = field_validator("where")(check_where)

    @model_validator(mode="after")
    def _compiled(self) -> EventRule:
        if self.event == "purchase":
            raise ValueError("purchases earn by the `purchase` rule; name other events here")
        if not (self.points or self.growth):
            raise ValueError("an event rule awards points, growth or both")
        self.__dict__["_matches"] = compile_where(self.where).matches
        return self

    def accepts(self, properties: dict[str, Any]) -> bool:
        return self.__dict__["_matches"](properties)


class Frequency(Strict):
    nth: int = Field(ge=2, le=1000, description="the nth event of its type in the period")
    per: Literal["day", "week", "month"] = "week"
    and_after: bool = Field(default=False, description="the nth and every one after it in the period")


def _points_only() -> list[Currency]:
    return ["points"]


class Multiplier(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    factor: float = Field(gt=0, le=MAX_BOOST)
    tiers: list[str] | None = Field(default=None, description="only members of these tiers")
    weekdays: list[Weekday] | None = Field(default=None, description="only on these local weekdays")
    frequency: Frequency | None = None
    events: list[str] | None = Field(default=None, description="only these event types (default: all)")
    currencies: list[Currency] = Field(default_factory=_points_only)

    @property
    def kind(self) -> str:
        if self.frequency is not None:
            return "frequency"
        if self.weekdays is not None:
            return "weekday"
        if self.tiers is not None:
            return "tier"
        return "always"

    def applies(self, event_type: str, tier: str, weekday: str, nth: int | None) -> bool:
        if self.events is not None and event_type not in self.events:
            return False
        if self.tiers is not None and tier not in self.tiers:
            return False
        if self.weekdays is not None and weekday not in self.weekdays:
            return False
        if self.frequency is not None:
            f = self.frequency
            return nth is not None and (nth >= f.nth if f.and_after else nth == f.nth)
        return True


class ExpiryRule(Strict):
    after_days: int | None = Field(
        default=365, ge=1, le=3650, description="points expire this long after they were earned; null: never"
    )
    warn_days: int = Field(
        default=30, ge=0, le=365, description="the 'expiring soon' message goes out this long before"
    )


class EarningContent(Strict):
    purchase: PurchaseRule = PurchaseRule()
    events: list[EventRule] = Field(default_factory=list, description="fixed awards for named events")
    multipliers: list[Multiplier] = Field(default_factory=list)
    max_factor: float = Field(default=10, ge=1, le=100, description="the most all multipliers together give")
    expiry: ExpiryRule = ExpiryRule()

    @model_validator(mode="after")
    def _unique(self) -> EarningContent:
        types = [r.event for r in self.events]
        dup = sorted({t for t in types if types.count(t) > 1})
        if dup:
            raise ValueError(f"one rule per event type: {', '.join(dup)} named twice")
        ids = [m.id for m in self.multipliers]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"multiplier ids are unique: {', '.join(dup)}")
        self.__dict__["_by_event"] = {r.event: r for r in self.events}
        self.__dict__["_counted"] = {
            t
            for m in self.multipliers
            if m.frequency is not None
            for t in (m.events if m.events is not None else ["purchase", *types])
        }
        return self

    def rule_for(self, event_type: str) -> EventRule | None:
        return self.__dict__["_by_event"].get(event_type)

    @property
    def counted_types(self) -> set[str]:
        """Event types some frequency multiplier counts per period."""
        return self.__dict__["_counted"]


def _check(store: ContentStore) -> list[ContentIssue]:
    """Events named by rules and multipliers exist; tiers named are on the ladder."""
    earning: EarningContent = store.get("earning")
    rel = "earning.yaml"
    issues: list[ContentIssue] = []
    for i, rule in enumerate(earning.events):
        issues += check_event_use(store, rel, ("events", i), rule.event, where=compile_where(rule.where))
    ladder = tier_names(store)
    earning_types = {"purchase", *(r.event for r in earning.events)}
    for i, m in enumerate(earning.multipliers):
        for tier in m.tiers or []:
            if tier not in ladder:
                issues.append(
                    store.issue(
                        rel,
                        ("multipliers", i, "tiers"),
                        f"unknown tier `{tier}` (tiers: {', '.join(ladder)})",
                    )
                )
        for event_type in m.events or []:
            if event_type not in earning_types:
                issues.append(
                    store.issue(
                        rel,
                        ("multipliers", i, "events"),
                        f"`{event_type}` earns nothing by these rules"
                        f" (earning: {', '.join(sorted(earning_types))})",
                    )
                )
    return issues


EARNING_KIND = ContentKind(name="earning", filename="earning.yaml", model=EarningContent, check=_check)


def check_purchase(properties: dict[str, Any]) -> str | None:
    amount = properties.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        return "a purchase carries a numeric `amount` (the spend in currency units)."
    if not math.isfinite(amount) or amount < 0:
        return "a purchase `amount` is a finite number, zero or more."
    if amount > 1_000_000:
        return "a purchase `amount` above 1,000,000 is refused."
    return None


def purchase_amounts(rule: PurchaseRule, amount: float) -> dict[str, int]:
    """Whole points and growth for a spend; fractions are rounded down."""
    spend = Decimal(str(amount))
    return {
        "points": int(spend * rule.points_per_unit),
        "growth": int(spend * rule.growth_per_unit),
    }


# --- boosts -------------------------------------------------------------------------------------


async def grant_boost(
    ctx: Context,
    session: AsyncSession,
    member_id: str,
    *,
    key: str,
    factor: float,
    duration: timedelta,
    source: str,
    reason: str,
    currencies: tuple[str, ...] = ("points",),
    starts_at: datetime | None = None,
) -> EarningBoost:
    """Multiply what a member earns by the earning rules by `factor` for `duration`, in the
    caller's transaction (for other domains: a converted referral, a campaign). The same key
    granted again returns the first boost unchanged."""
    if not 1 < factor <= MAX_BOOST:
        raise ProblemError(400, "invalid_factor", f"A boost's factor is above 1 and at most {MAX_BOOST:g}.")
    if not timedelta(minutes=1) <= duration <= timedelta(days=366):
        raise ProblemError(400, "invalid_duration", "A boost lasts from a minute to a year.")
    if not key.strip() or len(key) > 200 or any(c not in BOOSTED for c in currencies) or not currencies:
        raise ProblemError(
            400, "invalid_boost", "A boost has a key of 1 to 200 characters and names points or growth."
        )
    start = starts_at or utcnow()
    t = EarningBoost.__table__
    await session.execute(
        insert_ignore(session, t).values(
            member_id=member_id,
            key=key,
            factor=float(factor),
            currencies=list(currencies),
            starts_at=start,
            ends_at=start + duration,
            source=source,
            reason=reason,
        )
    )
    row = (
        await session.execute(sa.select(EarningBoost).where(t.c.member_id == member_id, t.c.key == key))
    ).scalar_one()
    return row


async def end_boost(session: AsyncSession, member_id: str, key: str, at: datetime | None = None) -> bool:
    """Stop a boost now (a referral rejected after it was granted); earnings already made under
    it stay. False when there is no such boost still running."""
    at = at or utcnow()
    t = EarningBoost.__table__
    ended = await execute_counting(
        session,
        sa.update(t)
        .where(t.c.member_id == member_id, t.c.key == key, t.c.ends_at > at)
        .values(ends_at=sa.case((t.c.starts_at > at, t.c.starts_at), else_=at)),
    )
    return bool(ended)


async def active_boosts(
    session: AsyncSession, member_id: str, at: datetime | None = None
) -> list[dict[str, Any]]:
    """The member's boosts running at `at` (now), for the app."""
    at = at or utcnow()
    boost = EarningBoost.__table__.c
    rows = await session.execute(
        sa.select(EarningBoost).where(boost.member_id == member_id, boost.starts_at <= at, boost.ends_at > at)
    )
    return [
        {
            "key": b.key,
            "factor": b.factor,
            "currencies": b.currencies,
            "source": b.source,
            "reason": b.reason,
            "ends_at": b.ends_at.isoformat(),
        }
        for b in rows.scalars()
    ]


async def _boosts_for(
    session: AsyncSession, member_ids: list[str], since: datetime
) -> dict[str, list[EarningBoost]]:
    boost = EarningBoost.__table__.c
    rows = await session.execute(
        sa.select(EarningBoost).where(boost.member_id.in_(member_ids), boost.ends_at > since)
    )
    out: dict[str, list[EarningBoost]] = {}
    for b in rows.scalars():
        out.setdefault(b.member_id, []).append(b)
    return out


# --- applying the rules to events ---------------------------------------------------------------


_COUNTS = EarningCount.__table__
_LOCK_COUNTS: dict[str, Any] = {}
_SAVE_COUNTS = (
    sa.update(_COUNTS)
    .where(
        _COUNTS.c.member_id == sa.bindparam("m"),
        _COUNTS.c.event_type == sa.bindparam("e"),
        _COUNTS.c.period == sa.bindparam("p"),
    )
    .values(n=sa.bindparam("c"))
    .execution_options(synchronize_session=False)
)


async def _count_events(
    session: AsyncSession, keys: list[tuple[str, str, str]]
) -> dict[tuple[str, str, str], int]:
    """Create-and-lock the counts of each member, event type and period, in key order; returns
    them as they were (a new row starts at 0; on conflict the row is locked and left as it is)."""
    dialect_name = session.get_bind().dialect.name
    stmt = _LOCK_COUNTS.get(dialect_name)
    if stmt is None:
        t = _COUNTS
        insert = (postgresql if dialect_name == "postgresql" else sqlite).insert(t)
        stmt = _LOCK_COUNTS[dialect_name] = insert.on_conflict_do_update(
            index_elements=["member_id", "event_type", "period"], set_={"n": t.c.n}
        ).returning(t.c.member_id, t.c.event_type, t.c.period, t.c.n)
    rows = await session.execute(
        stmt, [{"member_id": m, "event_type": e, "period": p, "n": 0} for m, e, p in keys]
    )
    return {(r.member_id, r.event_type, r.period): r.n for r in rows}


@dataclass
class _Earned:
    event: DomainEvent
    rule: str
    base: dict[str, int]
    details: dict[str, Any]
    dimension: str
    extra_growth: int = 0  # a purchase's frequency growth, posted apart


def wants(ctx: Context, event_type: str) -> bool:
    if event_type == "purchase":
        return True
    earning: EarningContent | None = ctx.content.get("earning")
    return earning is not None and earning.rule_for(event_type) is not None


async def earn_from_events(ctx: Context, session: AsyncSession, events: list[DomainEvent]) -> None:
    """Points and growth for a run of purchases and named events, multiplied, posted together."""
    earning: EarningContent = ctx.content.get("earning")
    found: list[_Earned] = []
    for event in events:
        if event.type == "purchase":
            amount = event.properties.get("amount")
            if not isinstance(amount, int | float) or isinstance(amount, bool):
                continue
            rule = earning.purchase
            found.append(
                _Earned(
                    event,
                    "earning.purchase",
                    purchase_amounts(rule, amount),
                    {
                        "spend": amount,
                        "points_per_unit": str(rule.points_per_unit),
                        "growth_per_unit": str(rule.growth_per_unit),
                    },
                    "spend",
                    rule.growth_per_order,
                )
            )
        else:
            named = earning.rule_for(event.type)
            if named is not None and named.accepts(event.properties):
                found.append(
                    _Earned(
                        event,
                        f"earning.event:{event.type}",
                        {"points": named.points, "growth": named.growth},
                        {},
                        named.dimension,
                    )
                )
    if not found:
        return
    members = sorted({f.event.member_id for f in found})
    profiles: dict[str, tuple[str, str | None]] = {}
    if earning.multipliers:
        profiles = {
            m: (p.timezone, p.tier) for m, p in (await member_profiles(ctx, session, members)).items()
        }
    boosts = await _boosts_for(session, members, min(f.event.occurred_at for f in found))
    lowest = tier_ladder(ctx)[0]
    # Frequency: the events' places in their member's local periods, counted once each.
    places: dict[str, int] = {}
    pers = sorted({m.frequency.per for m in earning.multipliers if m.frequency is not None})
    for per in pers:
        keyed = []
        for f in found:
            if f.event.type in earning.counted_types:
                zone = profiles.get(f.event.member_id, ("UTC", None))[0]
                day = f.event.occurred_at.astimezone(ZoneInfo(zone)).date()
                keyed.append(
                    (f, (f.event.member_id, f.event.type, f"{per}:{period_key(_PERIODS[per], day)}"))
                )
        if not keyed:
            continue
        counts = await _count_events(session, sorted({k for _, k in keyed}))
        for f, k in keyed:
            counts[k] += 1
            places[f"{per}:{f.event.event_id}"] = counts[k]
        await session.execute(
            _SAVE_COUNTS, [{"m": m, "e": e, "p": p, "c": n} for (m, e, p), n in sorted(counts.items())]
        )
    postings: list[ledger.Posting] = []
    for f in found:
        event = f.event
        zone, tier = profiles.get(event.member_id, ("UTC", None))
        local = event.occurred_at.astimezone(ZoneInfo(zone))
        weekday = WEEKDAYS[local.weekday()]
        key = f"event:{event.event_id}"
        for currency in CURRENCIES:
            base = f.base.get(currency, 0)
            if not base:
                continue
            applied = []
            factor = Decimal(1)
            for m in earning.multipliers:
                if currency not in m.currencies:
                    continue
                nth = places.get(f"{m.frequency.per}:{event.event_id}") if m.frequency else None
                if m.applies(event.type, tier or lowest, weekday, nth):
                    applied.append({"id": m.id, "kind": m.kind, "factor": m.factor})
                    factor *= Decimal(str(m.factor))
            for b in boosts.get(event.member_id, ()):
                if currency in b.currencies and b.starts_at <= event.occurred_at < b.ends_at:
                    applied.append({"id": b.key, "kind": "boost", "factor": b.factor, "source": b.source})
                    factor *= Decimal(str(b.factor))
            factor = min(factor, Decimal(str(earning.max_factor)))
            amount = int((Decimal(base) * factor).to_integral_value(rounding=ROUND_FLOOR))
            if amount <= 0:
                continue
            details = {
                "rule": f.rule,
                "event_id": event.event_id,
                **f.details,
                "base": base,
                "multipliers": applied,
                "factor": float(factor),
                "dimension": f.dimension,
                "local_weekday": weekday,
            }
            reason = "purchase" if event.type == "purchase" else event.type
            source = "purchase" if event.type == "purchase" else "event"
            postings.append(ledger.Posting(event.member_id, currency, amount, reason, source, key, details))
        if f.extra_growth:
            postings.append(
                ledger.Posting(
                    event.member_id,
                    "growth",
                    f.extra_growth,
                    "purchase_frequency",
                    "purchase",
                    f"{key}:order",
                    {"rule": "earning.purchase.order", "event_id": event.event_id, "dimension": "frequency"},
                )
            )
    await ledger.post_many(ctx, session, postings)
