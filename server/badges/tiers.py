"""The tier ladder: qualifying growth over a rolling window, promotions at once, drops with notice.

Growth is counted, as the ledger posts it, into monthly buckets per dimension (spend, frequency,
interaction, social). A member's qualifying growth is the weighted sum of the buckets of the
window's months. Crossing a threshold promotes the member in the same transaction. Drops happen
only at re-evaluation (a scheduled job, once per member per period): a member below their tier is
told ahead, and drops one tier at most once the notice has run out without qualifying again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from server.badges.content import DIMENSIONS, TierLadder
from server.badges.models import TierGrowth, TierStatus
from server.db import insert_ignore, utcnow
from server.ledger import service as ledger
from server.members import service as members
from server.members.service import change_tier, change_tiers
from server.realtime.hub import send_live

if TYPE_CHECKING:
    from server.context import Context

PAGE = 500


def ladder_of(ctx: Context) -> TierLadder | None:
    """The ladder from content; None when the brand runs tiers itself (no content/tiers.yaml)."""
    content = getattr(ctx, "content", None)
    return content.get("tiers") if content is not None else None


def month_of(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m")


def window_months(ladder: TierLadder, now: datetime) -> list[str]:
    """The calendar months (UTC) the window counts, oldest first, ending with the current one."""
    year, month = now.astimezone(UTC).year, now.astimezone(UTC).month
    out = []
    for _ in range(ladder.window_months):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return out[::-1]


def review_period(ladder: TierLadder, now: datetime) -> str:
    """The re-evaluation period `now` falls in: 2026-W48, 2026-11 or 2026-Q4."""
    now = now.astimezone(UTC)
    every = ladder.reevaluation.every
    if every == "weekly":
        year, week, _ = now.isocalendar()
        return f"{year}-W{week:02d}"
    if every == "quarterly":
        return f"{now.year}-Q{(now.month - 1) // 3 + 1}"
    return f"{now.year}-{now.month:02d}"


@dataclass
class Standing:
    """Where a member stands on the ladder now."""

    tier: str
    index: int
    qualifying: int
    by_dimension: dict[str, int] = field(default_factory=dict)

    def earned(self, ladder: TierLadder) -> int:
        return ladder.earned_index(self.qualifying)


def qualifying(ladder: TierLadder, buckets: dict[str, int]) -> int:
    """The weighted sum of a member's growth per dimension (fractions rounded down)."""
    return int(sum(ladder.weight(dim) * amount for dim, amount in buckets.items()))


async def standings(
    ctx: Context, session: AsyncSession, member_ids: list[str], now: datetime | None = None
) -> dict[str, Standing]:
    """Each member's tier and qualifying growth over the window, in two statements."""
    ladder = ladder_of(ctx)
    assert ladder is not None
    now = now or utcnow()
    t = TierGrowth.__table__
    rows = await session.execute(
        sa.select(t.c.member_id, t.c.dimension, sa.func.sum(t.c.amount))
        .where(t.c.member_id.in_(member_ids), t.c.month.in_(window_months(ladder, now)))
        .group_by(t.c.member_id, t.c.dimension)
    )
    buckets: dict[str, dict[str, int]] = defaultdict(dict)
    for member_id, dimension, amount in rows:
        buckets[member_id][dimension] = int(amount or 0)
    found = await members.profiles(ctx, session, list(member_ids))
    out = {}
    for member_id in member_ids:
        tier = found[member_id].tier
        b = buckets.get(member_id, {})
        out[member_id] = Standing(tier, ladder.index(tier), qualifying(ladder, b), b)
    return out


# --- growth counted as it is posted -------------------------------------------------------------


def counting(ctx: Context, currency: str) -> bool:
    return currency == "growth" and ladder_of(ctx) is not None


def _add_statement(session: AsyncSession) -> Any:
    t = TierGrowth.__table__
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(t)
    return stmt.on_conflict_do_update(
        index_elements=["member_id", "month", "dimension"], set_={"amount": t.c.amount + stmt.excluded.amount}
    )


async def count_growth(ctx: Context, session: AsyncSession, entries: list[ledger.LedgerEntry]) -> None:
    """Growth posted goes into the member's month and dimension; a member who now qualifies for a
    higher tier moves up at once."""
    ladder = ladder_of(ctx)
    assert ladder is not None
    sums: dict[tuple[str, str, str], int] = defaultdict(int)
    for e in entries:
        dimension = e.details.get("dimension") or ladder.dimension_of(e.source)
        sums[(e.member_id, month_of(e.created_at), str(dimension))] += e.amount
    await session.execute(
        _add_statement(session),
        [
            {"member_id": m, "month": mo, "dimension": d, "amount": a}
            for (m, mo, d), a in sorted(sums.items())
        ],
    )
    risen = [e.member_id for e in entries if e.amount > 0]
    if not risen:
        return
    moves = {}
    for member_id, st in (await standings(ctx, session, sorted(set(risen)))).items():
        earned = st.earned(ladder)
        if earned > st.index:
            moves[member_id] = ladder.tiers[earned].id
    await _move(ctx, session, moves, "qualified")


async def _move(ctx: Context, session: AsyncSession, moves: dict[str, str], why: str) -> None:
    """Members up to the tiers they earned, together."""
    if not moves:
        return
    await change_tiers(ctx, session, moves, why)
    # A pending drop is moot once the member moved.
    await session.execute(
        sa.update(TierStatus.__table__)
        .where(TierStatus.__table__.c.member_id.in_(sorted(moves)))
        .values(notice_tier=None, notice_given_at=None, drop_on=None, changed_at=utcnow())
    )


# --- re-evaluation ------------------------------------------------------------------------------


@dataclass
class ReviewReport:
    period: str = ""
    evaluated: int = 0
    promoted: int = 0
    noticed: int = 0
    dropped: int = 0
    kept: int = 0


async def _decide(
    ctx: Context,
    session: AsyncSession,
    ladder: TierLadder,
    status: Any,
    st: Standing,
    now: datetime,
    report: ReviewReport,
) -> dict[str, Any]:
    """What re-evaluation does with one member; returns the status columns to write."""
    member_id = status.member_id
    earned = st.earned(ladder)
    if earned > st.index:
        await _move(ctx, session, {member_id: ladder.tiers[earned].id}, "qualified")
        report.promoted += 1
        return {"notice_tier": None, "notice_given_at": None, "drop_on": None}
    if earned == st.index or st.index == 0:
        if status.notice_tier is not None:
            send_live(ctx, session, member_id, "tier.kept", {"tier": st.tier})
            report.kept += 1
        return {"notice_tier": None, "notice_given_at": None, "drop_on": None}
    lower = ladder.tiers[st.index - 1]
    due = status.drop_on is not None and status.drop_on <= now
    if status.notice_tier is None and ladder.reevaluation.notice_days > 0:
        drop_on = now + timedelta(days=ladder.reevaluation.notice_days)
        send_live(
            ctx,
            session,
            member_id,
            "tier.notice",
            {
                "tier": st.tier,
                "drops_to": lower.id,
                "drop_on": drop_on.isoformat(),
                "qualifying_growth": st.qualifying,
                "growth_needed": ladder.tiers[st.index].growth - st.qualifying,
            },
        )
        report.noticed += 1
        return {"notice_tier": lower.id, "notice_given_at": now, "drop_on": drop_on}
    if due or ladder.reevaluation.notice_days == 0:
        # One tier at most, whatever the growth: the next review may take the next step.
        await change_tier(ctx, session, member_id, lower.id, "requalification")
        report.dropped += 1
        return {"notice_tier": None, "notice_given_at": None, "drop_on": None, "changed_at": now}
    return {}


async def review_tiers(ctx: Context, now: datetime | None = None) -> ReviewReport:
    """Re-evaluate every member once in the current period, and carry out drops whose notice ran out.

    Each page of members is one transaction; a member's status row records the period evaluated,
    so that a second run (another instance, a retry) passes over them."""
    ladder = ladder_of(ctx)
    report = ReviewReport()
    if ladder is None:
        return report
    now = now or utcnow()
    period = report.period = review_period(ladder, now)
    s = TierStatus.__table__
    after = ""
    while True:
        async with ctx.db.transaction() as session:
            ids = await members.member_ids_after(session, after, PAGE)
            if not ids:
                break
            after = ids[-1]
            await session.execute(insert_ignore(session, s), [{"member_id": i} for i in ids])
            due = sa.or_(s.c.evaluated_period.is_(None), s.c.evaluated_period != period, s.c.drop_on <= now)
            rows = (
                await session.execute(
                    sa.select(s).where(s.c.member_id.in_(ids), due).order_by(s.c.member_id).with_for_update()
                )
            ).all()
            if rows:
                found = await standings(ctx, session, [r.member_id for r in rows], now)
                for row in rows:
                    fresh = row.evaluated_period != period
                    if not fresh and not (row.drop_on is not None and row.drop_on <= now):
                        continue
                    values = await _decide(ctx, session, ladder, row, found[row.member_id], now, report)
                    report.evaluated += fresh
                    await session.execute(
                        sa.update(s)
                        .where(s.c.member_id == row.member_id)
                        .values(evaluated_period=period, **values)
                    )
        if len(ids) < PAGE:
            break
    return report


# --- what a member sees -------------------------------------------------------------------------


async def member_tiers(ctx: Context, member_id: str, now: datetime | None = None) -> dict[str, Any]:
    """The ladder, the member's tier and qualifying growth by dimension, and what is left to the next."""
    from server.ledger.earning import active_boosts

    now = now or utcnow()
    ladder = ladder_of(ctx)
    if ladder is None:
        ids = members.tier_ladder(ctx)
        async with ctx.db.session() as session:
            tier = (await members.profile(ctx, session, member_id)).tier
            boosts = await active_boosts(session, member_id, now)
        return {
            "managed_by": "brand",
            "tiers": [{"tier": t, "name": t.title(), "growth": None, "benefits": []} for t in ids],
            "member": {"tier": tier, "name": tier.title(), "next_tier": None, "boosts": boosts},
        }
    async with ctx.db.session() as session:
        st = (await standings(ctx, session, [member_id], now))[member_id]
        status = await session.get(TierStatus, member_id)
        boosts = await active_boosts(session, member_id, now)
    months = window_months(ladder, now)
    current = ladder.tiers[st.index]
    nxt = ladder.tiers[st.index + 1] if st.index + 1 < len(ladder.tiers) else None
    dims = [*DIMENSIONS, *sorted(d for d in st.by_dimension if d not in DIMENSIONS)]
    notice = None
    if status is not None and status.notice_tier is not None and status.drop_on is not None:
        notice = {
            "drops_to": status.notice_tier,
            "drop_on": status.drop_on.isoformat(),
            "growth_needed": max(0, current.growth - st.qualifying),
        }
    return {
        "managed_by": "ladder",
        "tiers": [
            {"tier": t.id, "name": t.name, "growth": t.growth, "benefits": t.benefits, "image": t.image}
            for t in ladder.tiers
        ],
        "window": {
            "months": ladder.window_months,
            "from": f"{months[0]}-01",
            "every": ladder.reevaluation.every,
        },
        "member": {
            "tier": current.id,
            "name": current.name,
            "qualifying_growth": st.qualifying,
            "growth_by_dimension": [
                {
                    "dimension": d,
                    "growth": st.by_dimension.get(d, 0),
                    "weight": ladder.weight(d),
                    "counted": int(ladder.weight(d) * st.by_dimension.get(d, 0)),
                }
                for d in dims
            ],
            "next_tier": (
                {
                    "tier": nxt.id,
                    "name": nxt.name,
                    "growth": nxt.growth,
                    "growth_to_next": nxt.growth - st.qualifying,
                }
                if nxt
                else None
            ),
            "keeps_tier": st.earned(ladder) >= st.index,
            "notice": notice,
            "boosts": boosts,
        },
    }
