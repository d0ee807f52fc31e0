"""The badge engine: member events earn badges; managers and the brand's systems grant the manual ones.

Events reach `progress_badges` through the same dispatch as quests: a run of them in one
transaction, each event once. For every badge whose criterion counts the event's type, the
member's progress row is created-and-locked in one statement, the event is counted, and each
level reached is awarded once: a `member_badges` row unique per level and round, the level's
reward through the ledger (keys that name the badge, the round and the level), a live
`badge.earned` message and a `badge.earned` event for what counts badges (quests, other badges).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from server.badges.content import Badge, BadgeCatalog, Reward
from server.badges.images import image_url
from server.badges.models import BadgeProgress, MemberBadge
from server.content.goals import advance, goal_phrase, number, shown, step_progress
from server.content.periods import local_day
from server.db import insert_ignore, insert_or_touch, utcnow
from server.errors import ProblemError
from server.events.catalog import EventCatalog
from server.events.dispatch import DomainEvent, emit
from server.ledger import service as ledger
from server.members import service as members
from server.members.service import check_member_id, ensure_member, tier_ladder
from server.realtime.hub import send_live

if TYPE_CHECKING:
    from server.context import Context

FINISHED_KEPT = 200_000  # (member, badge) pairs known finished per process
RARITY_SECONDS = 60.0  # how long an instance reuses the holders' counts


def catalog_of(ctx: Context) -> BadgeCatalog:
    catalog: BadgeCatalog | None = ctx.content.get("badges")
    return catalog if catalog is not None else BadgeCatalog()


def wants(ctx: Context, event_type: str) -> bool:
    catalog: BadgeCatalog | None = ctx.content.get("badges")
    return catalog is not None and event_type in catalog.by_event


# --- counting one event -------------------------------------------------------------------------


def accepts(badge: Badge, event: DomainEvent, ladder: list[str]) -> bool:
    """Whether the badge's criterion counts this event (its type is indexed already)."""
    c = badge.criteria
    assert c is not None
    props = event.properties
    if c.goal is not None:
        return c.goal.accepts(event.type, props)
    if c.quest is not None:
        return props.get("quest_id") == c.quest
    if c.streak is not None:
        return isinstance(props.get("streak"), int)
    if c.tier is not None:
        return props.get("tier") in ladder
    assert c.badges is not None
    other = props.get("badge_id")
    return other != badge.id and (c.badges.of is None or other in c.badges.of)


def count(badge: Badge, st: dict[str, Any], event: DomainEvent, day: date, ladder: list[str]) -> None:
    """Apply one accepted event to the badge's progress state."""
    c = badge.criteria
    assert c is not None
    props = event.properties
    if c.goal is not None:
        goal = badge.counting_goal
        assert goal is not None
        advance(goal, st, props, day)
    elif c.quest is not None:
        st["n"] = st.get("n", 0) + 1
    elif c.streak is not None:
        st["n"] = max(st.get("n", 0), props["streak"])
    elif c.tier is not None:
        st["n"] = max(st.get("n", 0), ladder.index(props["tier"]) + 1)
    else:
        seen: list[str] = st.setdefault("vals", [])
        if props["badge_id"] not in seen:
            seen.append(props["badge_id"])


def progress_of(badge: Badge, st: dict[str, Any], ladder: list[str]) -> float:
    """Where the member stands on the criterion's number (a tier badge: 1 once the tier is reached)."""
    c = badge.criteria
    if c is None:
        return 0.0
    if c.goal is not None:
        goal = badge.counting_goal
        assert goal is not None
        return step_progress(goal, st)
    if c.tier is not None:
        needed = ladder.index(c.tier) + 1 if c.tier in ladder else len(ladder) + 1
        return 1.0 if st.get("n", 0) >= needed else 0.0
    if c.badges is not None:
        return float(len(st.get("vals", ())))
    return float(st.get("n", 0))


# --- awarding -----------------------------------------------------------------------------------


@dataclass
class Earned:
    """A badge level a member just earned (or, on a replayed grant, already held)."""

    member_id: str
    badge: Badge
    level: int
    round: int
    key: str
    source: str
    reason: str
    earned_at: datetime
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: bool = True

    @property
    def reward(self) -> Reward:
        """What the award pays: the level's reward when criteria earned it, the badge's when granted."""
        return self.badge.level_reward(self.level) if self.source == "criteria" else self.badge.reward


def _criteria_key(badge: Badge, round_: int, level: int) -> str:
    return f"badge:{badge.id}:{round_}:{level}"


async def _record(ctx: Context, session: AsyncSession, earned: list[Earned]) -> list[Earned]:
    """Write the awards (each once: the unique keys decide), then their rewards, messages and events."""
    if not earned:
        return []
    table = MemberBadge.__table__
    created = set(
        (
            await session.execute(
                insert_ignore(session, table).returning(table.c.id),
                [
                    {
                        "id": e.id,
                        "member_id": e.member_id,
                        "badge_id": e.badge.id,
                        "level": e.level,
                        "round": e.round,
                        "earned_at": e.earned_at,
                        "source": e.source,
                        "reason": e.reason,
                        "idempotency_key": e.key,
                    }
                    for e in earned
                ],
            )
        ).scalars()
    )
    fresh = [e for e in earned if e.id in created]
    postings: list[ledger.Posting] = []
    for e in fresh:
        reward = e.reward
        details = {"rule": f"badge:{e.badge.id}", "badge_id": e.badge.id, "level": e.level, "round": e.round}
        for currency, amount in (("points", reward.points), ("growth", reward.growth)):
            if amount:
                postings.append(
                    ledger.Posting(e.member_id, currency, amount, "badge_earned", "badge", e.key, details)
                )
    await ledger.post_many(ctx, session, postings)
    shares = rarity_cached(ctx)
    for e in fresh:
        send_live(ctx, session, e.member_id, "badge.earned", earned_message(ctx, e, shares), at=e.earned_at)
        emit(
            ctx,
            session,
            DomainEvent(
                event_id=f"badge:{e.member_id}:{e.badge.id}:{e.round}:{e.level}",
                member_id=e.member_id,
                type="badge.earned",
                occurred_at=e.earned_at,
                properties={"badge_id": e.badge.id, "level": e.level, "round": e.round},
                source="badges",
            ),
        )
    return fresh


def earned_message(ctx: Context, e: Earned, shares: dict[str, float]) -> dict[str, Any]:
    """What the app needs to celebrate a badge: a bigger moment than a points toast."""
    badge = e.badge
    reward = e.reward
    next_level = None
    if e.level < badge.level_count and badge.levels:
        nxt = badge.levels[e.level]
        next_level = {"level": e.level + 1, "name": nxt.name, "target": number(nxt.target)}
    base = ctx.settings.public_base_url.rstrip("/")
    return {
        "badge_id": badge.id,
        "name": badge.name,
        "description": badge.description,
        "image": image_url(ctx, badge, e.level),
        "rarity": badge.rarity,
        "holders_share": shares.get(badge.id),
        "level": e.level,
        "level_name": badge.level_name(e.level),
        "levels": badge.level_count,
        "next_level": next_level,
        "round": e.round,
        "repeatable": badge.repeatable,
        "was_hidden": badge.hidden,
        "reward": {"points": reward.points, "growth": reward.growth},
        "earned_at": e.earned_at.isoformat(),
        "credential_id": e.id,
        "share_url": f"{base}/credentials/{e.id}",
        "celebration": "badge",
    }


# --- the event path -----------------------------------------------------------------------------


@dataclass
class _Progress:
    state: dict[str, Any]
    level: int
    times: int
    dirty: bool = False


_PROGRESS = BadgeProgress.__table__
_LOCK: dict[str, Any] = {}
_SAVE = (
    sa.update(_PROGRESS)
    .where(_PROGRESS.c.member_id == sa.bindparam("m"), _PROGRESS.c.badge_id == sa.bindparam("b"))
    .values(
        state=sa.bindparam("s"),
        level=sa.bindparam("l"),
        times=sa.bindparam("t"),
        updated_at=sa.bindparam("u"),
    )
    .execution_options(synchronize_session=False)
)


async def _lock_progress(
    session: AsyncSession, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], _Progress]:
    """Create-and-lock each member's progress row of each badge, in key order, in one statement.

    Rows locked earlier in the unit of work (a badge earned by a purchase, then counted again by
    the follow-on events of the same unit) are taken as this unit left them, with no statement."""
    held: dict[tuple[str, str], _Progress] = session.info.setdefault("badge_progress_held", {})
    missing = [k for k in keys if k not in held]
    if missing:
        held.update(await _lock_rows(session, missing))
    return {k: held[k] for k in keys}


async def _lock_rows(session: AsyncSession, keys: list[tuple[str, str]]) -> dict[tuple[str, str], _Progress]:
    dialect = session.get_bind().dialect.name
    stmt = _LOCK.get(dialect)
    if stmt is None:
        t = _PROGRESS
        stmt = _LOCK[dialect] = insert_or_touch(
            session, t, ["member_id", "badge_id"], "updated_at"
        ).returning(t.c.member_id, t.c.badge_id, t.c.state, t.c.level, t.c.times)
    now = utcnow()
    rows = await session.execute(
        stmt,
        [
            {"member_id": m, "badge_id": b, "state": {}, "level": 0, "times": 0, "updated_at": now}
            for m, b in keys
        ],
    )
    return {(r.member_id, r.badge_id): _Progress(dict(r.state or {}), r.level, r.times) for r in rows}


def _finished(ctx: Context) -> set[tuple[str, str]]:
    """Badges this process has seen a member finish (every level, not repeatable): events for
    them need no lock and no write."""
    finished: set[tuple[str, str]] | None = ctx.extras.get("badges_finished")
    if finished is None or len(finished) > FINISHED_KEPT:
        finished = ctx.extras["badges_finished"] = set()
    return finished


def _done(badge: Badge, p: _Progress) -> bool:
    return not badge.repeatable and p.times >= 1


def _climb(member_id: str, badge: Badge, p: _Progress, ladder: list[str], out: list[Earned]) -> None:
    """Award each level the progress reaches; a repeatable badge starts over after its last."""
    progress = progress_of(badge, p.state, ladder)
    now = utcnow()
    while p.level < badge.level_count and progress >= badge.targets[p.level]:
        p.level += 1
        round_ = p.times + 1
        out.append(
            Earned(
                member_id, badge, p.level, round_, _criteria_key(badge, round_, p.level), "criteria", "", now
            )
        )
        if p.level == badge.level_count:
            p.times += 1
            if badge.repeatable:
                p.level, p.state = 0, {}
            break


async def progress_badges(ctx: Context, session: AsyncSession, events: list[DomainEvent]) -> None:
    """Apply a run of member events (sorted by member, then time) to every badge that counts them."""
    catalog = catalog_of(ctx)
    ladder = tier_ladder(ctx)
    finished = _finished(ctx)
    plan: list[tuple[DomainEvent, Badge]] = []
    for event in events:
        for badge in catalog.by_event.get(event.type, ()):
            if (event.member_id, badge.id) in finished or not badge.open_at(event.occurred_at):
                continue
            if accepts(badge, event, ladder):
                plan.append((event, badge))
    if not plan:
        return
    zones: dict[str, str] = {}
    if any(b.counting_goal is not None and b.counting_goal.kind == "streak" for _, b in plan):
        found = await members.profiles(ctx, session, sorted({e.member_id for e, _ in plan}))
        zones = {m: p.timezone for m, p in found.items()}
    progress = await _lock_progress(session, sorted({(e.member_id, b.id) for e, b in plan}))
    written: set[tuple[str, str]] = session.info.setdefault("badge_progress_written", set())
    for key, p in progress.items():
        badge = catalog.badges[key[1]]
        if _done(badge, p) and key not in written:  # remembered only as committed
            finished.add(key)
    earned: list[Earned] = []
    for event, badge in plan:
        p = progress[(event.member_id, badge.id)]
        if _done(badge, p):
            continue
        count(badge, p.state, event, local_day(zones.get(event.member_id, "UTC"), event.occurred_at), ladder)
        p.dirty = True
        _climb(event.member_id, badge, p, ladder, earned)
    dirty = [(k, p) for k, p in progress.items() if p.dirty]
    if dirty:
        now = utcnow()
        await session.execute(
            _SAVE,
            [{"m": m, "b": b, "s": p.state, "l": p.level, "t": p.times, "u": now} for (m, b), p in dirty],
        )
        written.update(k for k, _ in dirty)
        for _, p in dirty:
            p.dirty = False
    await _record(ctx, session, earned)


# --- granting by hand ---------------------------------------------------------------------------


async def grant(
    ctx: Context,
    session: AsyncSession,
    member_id: str,
    badge_id: str,
    *,
    idempotency_key: str,
    reason: str = "",
    source: str = "manual",
    now: datetime | None = None,
) -> Earned:
    """Grant a manual badge (managers, the brand's systems, a quest's reward), in the caller's
    transaction. The same idempotency key, or a non-repeatable badge already held, answers with
    the award made before (`created` False). Refuses an unknown badge (404 `badge_not_found`),
    one earned by criteria (409 `badge_not_manual`) and one outside its window (409
    `badge_not_available`)."""
    check_member_id(member_id)
    now = now or utcnow()
    badge = catalog_of(ctx).get(badge_id)
    if badge is None:
        raise ProblemError(404, "badge_not_found", f"There is no badge '{badge_id}'.")
    if not badge.manual:
        raise ProblemError(
            409,
            "badge_not_manual",
            f"Badge '{badge_id}' is earned by its criteria and cannot be granted by hand.",
        )
    if not idempotency_key.strip() or len(idempotency_key) > 200:
        raise ProblemError(400, "invalid_idempotency_key", "An idempotency key is 1 to 200 characters.")
    if len(reason) > 200:
        raise ProblemError(400, "invalid_reason", "A reason is at most 200 characters.")
    await ensure_member(session, member_id)
    # The member's progress row on the badge serializes grants of it.
    progress = (await _lock_progress(session, [(member_id, badge_id)]))[(member_id, badge_id)]
    t = MemberBadge.__table__
    held = (
        await session.execute(
            sa.select(t)
            .where(t.c.member_id == member_id, t.c.badge_id == badge_id)
            .order_by(t.c.round.desc())
        )
    ).all()
    for row in held:
        if row.idempotency_key == idempotency_key or not badge.repeatable:
            return Earned(
                member_id,
                badge,
                row.level,
                row.round,
                row.idempotency_key,
                row.source,
                row.reason,
                row.earned_at,
                id=row.id,
                created=False,
            )
    if not badge.open_at(now):
        w = badge.available
        assert w is not None
        raise ProblemError(
            409,
            "badge_not_available",
            f"Badge '{badge_id}' can be granted only from {w.start.isoformat() if w.start else 'any time'}"
            f" until {w.end.isoformat() if w.end else 'any time'}.",
        )
    round_ = (held[0].round + 1) if held else 1
    earned = Earned(member_id, badge, 1, round_, idempotency_key, source, reason.strip(), now)
    await session.execute(
        sa.update(_PROGRESS)
        .where(_PROGRESS.c.member_id == member_id, _PROGRESS.c.badge_id == badge_id)
        .values(level=1, times=round_, updated_at=now)
    )
    progress.level, progress.times = 1, round_  # as the rest of the unit of work sees it
    await _record(ctx, session, [earned])
    return earned


# --- what a member sees -------------------------------------------------------------------------


async def rarity(ctx: Context, session: AsyncSession) -> dict[str, float]:
    """Each badge's holders as a share of all members (0 to 1), counted now."""
    t = MemberBadge.__table__
    everyone = await members.member_count(session)
    rows = await session.execute(
        sa.select(t.c.badge_id, sa.func.count(sa.distinct(t.c.member_id))).group_by(t.c.badge_id)
    )
    shares = {badge_id: (n / everyone if everyone else 0.0) for badge_id, n in rows}
    ctx.extras["badge_rarity"] = (time.monotonic(), shares)
    return shares


def rarity_cached(ctx: Context) -> dict[str, float]:
    """The last counted shares (what a live message can carry without a query)."""
    cached = ctx.extras.get("badge_rarity")
    return cached[1] if cached else {}


async def shares(ctx: Context, session: AsyncSession) -> dict[str, float]:
    """The holders' shares, counted at most every RARITY_SECONDS per instance."""
    cached = ctx.extras.get("badge_rarity")
    if cached and time.monotonic() - cached[0] < RARITY_SECONDS:
        return cached[1]
    return await rarity(ctx, session)


async def held_badges(session: AsyncSession, member_id: str) -> list[MemberBadge]:
    return list(
        (
            await session.execute(
                sa.select(MemberBadge)
                .where(col(MemberBadge.member_id) == member_id)
                .order_by(col(MemberBadge.badge_id), col(MemberBadge.round), col(MemberBadge.level))
            )
        ).scalars()
    )


async def collection(ctx: Context, member_id: str, now: datetime | None = None) -> dict[str, Any]:
    """The member's collection: earned badges (date, level) and locked ones (progress and what is
    left); hidden badges only once earned; each with its rarity as the share of members holding it."""
    now = now or utcnow()
    catalog = catalog_of(ctx)
    ladder = tier_ladder(ctx)
    async with ctx.db.session() as session:
        held = await held_badges(session, member_id)
        rows = await session.execute(
            sa.select(BadgeProgress).where(col(BadgeProgress.member_id) == member_id)
        )
        progress = {p.badge_id: p for p in rows.scalars()}
        counted = await shares(ctx, session)
    by_badge: dict[str, list[MemberBadge]] = {}
    for row in held:
        by_badge.setdefault(row.badge_id, []).append(row)
    earned_out: list[dict[str, Any]] = []
    locked_out: list[dict[str, Any]] = []
    for badge in catalog.badges.values():
        rows_of = by_badge.get(badge.id, [])
        if badge.hidden and not rows_of:
            continue
        item = _badge_out(ctx, badge, rows_of, progress.get(badge.id), ladder, counted, now)
        (earned_out if rows_of else locked_out).append(item)
    earned_out.sort(key=lambda b: b["earned_at"], reverse=True)
    return {"earned": earned_out, "locked": locked_out, "total": len(catalog.badges)}


def _badge_out(
    ctx: Context,
    badge: Badge,
    rows: list[MemberBadge],
    p: BadgeProgress | None,
    ladder: list[str],
    counted: dict[str, float],
    now: datetime,
) -> dict[str, Any]:
    state = p.state if p else {}
    level_now = p.level if p else 0
    times = len({r.round for r in rows if r.level == badge.level_count}) if badge.criteria else len(rows)
    finished = bool(rows) and not badge.repeatable and (badge.manual or times >= 1)
    latest = max(rows, key=lambda r: (r.round, r.level)) if rows else None
    w = badge.available
    status = _badge_status(badge, bool(rows), bool(state), finished, now)
    events = ctx.content.get("events")
    progress, target, remaining_text = _badge_progress(
        events, badge, rows, state, level_now, finished, ladder, now
    )
    base = ctx.settings.public_base_url.rstrip("/")
    return {
        "badge_id": badge.id,
        "name": badge.name,
        "description": badge.description,
        "image": image_url(ctx, badge, latest.level if latest else 1),
        "rarity": badge.rarity,
        "holders_share": round(counted.get(badge.id, 0.0), 4),
        "status": status,
        "hidden": badge.hidden,
        "manual": badge.manual,
        "repeatable": badge.repeatable,
        "earned_at": latest.earned_at.isoformat() if latest else None,
        "first_earned_at": min(r.earned_at for r in rows).isoformat() if rows else None,
        "level": latest.level if latest else 0,
        "level_name": badge.level_name(latest.level) if latest else None,
        "times": times,
        "levels": _levels_out(badge, rows),
        "progress": number(progress),
        "target": number(target),
        "remaining_text": remaining_text,
        "available_from": w.start.astimezone(UTC).isoformat() if w and w.start else None,
        "available_until": w.end.astimezone(UTC).isoformat() if w and w.end else None,
        "criteria": badge.narrative(events, min(level_now + 1, badge.level_count)),
        "credential_url": f"{base}/v1/badges/{badge.id}/credential" if rows else None,
    }


def _badge_status(badge: Badge, held: bool, started: bool, finished: bool, now: datetime) -> str:
    """earned, expired (a limited edition closed), upcoming, in_progress or locked."""
    w = badge.available
    if finished:
        return "earned"
    if w is not None and w.closed_at(now):
        return "expired"
    if w is not None and w.opens_after(now):
        return "upcoming"
    if badge.manual:
        return "earned" if held else "locked"
    return "in_progress" if held or started else "locked"


def _badge_progress(
    events: EventCatalog,
    badge: Badge,
    rows: list[MemberBadge],
    state: dict[str, Any],
    level_now: int,
    finished: bool,
    ladder: list[str],
    now: datetime,
) -> tuple[float, float, str | None]:
    """Progress towards the next level, its target, and what is left in a sentence."""
    if badge.criteria is not None and not finished:
        progress = progress_of(badge, state, ladder)
        if badge.criteria.goal is not None and badge.criteria.goal.kind == "streak":
            progress = step_progress(badge.counting_goal, state, local_day("UTC", now))  # type: ignore[arg-type]
        target = badge.targets[min(level_now, badge.level_count - 1)]
        return progress, target, _remaining(events, badge, progress, target, level_now)
    if badge.manual and not rows:
        return 0.0, 0.0, "Granted by the program"
    return 0.0, 0.0, None


def _levels_out(badge: Badge, rows: list[MemberBadge]) -> list[dict[str, Any]]:
    """Each level with its target and when the member first earned it (none without levels)."""
    if not badge.levels:
        return []
    by_round = sorted(rows, key=lambda r: r.round)
    return [
        {
            "level": i + 1,
            "name": badge.level_name(i + 1),
            "target": number(t),
            "earned_at": next((r.earned_at.isoformat() for r in by_round if r.level == i + 1), None),
        }
        for i, t in enumerate(badge.targets)
    ]


def _remaining(events: EventCatalog, badge: Badge, progress: float, target: float, level_now: int) -> str:
    left = max(0.0, target - progress)
    c = badge.criteria
    assert c is not None
    where = f" for {badge.level_name(level_now + 1)}" if badge.levels else ""
    if c.tier is not None:
        return f"Reach the {c.tier} tier"
    if c.streak is not None:
        return f"A check-in streak of {int(target)} days{where}"
    if c.quest is not None:
        return f"{shown(left)} more completion{'s' if left != 1 else ''} of the quest{where}"
    if c.badges is not None:
        return f"{shown(left)} more badge{'s' if left != 1 else ''}{where}"
    assert c.goal is not None
    return goal_phrase(events, c.goal, left, more=True) + where
