"""Points expiry: points expire `after_days` after they were earned, oldest first.

There is no table of lots: who owns which points is computed from the ledger itself. For a member
at a moment `now`, with the cutoff `now - after_days`:

- a *lot* is points earned at one moment: a credit, less its reversal if it was reversed. A
  reversal of an expiry (points given back) is a lot of its own, earned when it was posted;
- C(cutoff), the points *due*, is the sum of the lots earned at or before the cutoff;
- D, the points *used*, is every debit (spends, negative adjustments, earlier expiries) less the
  refunds of those debits (a reversal of a spend gives back the oldest points it took).

Debits consume the oldest points first, so `max(0, C - D)` points expire now. The expiry is one
ledger entry (source `expiry`), posted through the ledger under the account's lock, with the
idempotency key `expiry:<C>:<E>` where E is the total expired before it: the key names the state
it was computed from, so that a rerun replays instead of expiring twice, and E grows with each
expiry, so that points given back by a refund later still expire under a key of their own.

Members whose points expire within `warn_days` get one `points.expiring_soon` live message per
expiry date, claimed in `points_expiry_notices`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import execute_counting, insert_ignore, utcnow
from server.errors import ProblemError
from server.ledger import service as ledger
from server.ledger.earning import ExpiryRule
from server.ledger.models import LedgerAccount, LedgerEntry, PointsExpiryNotice
from server.realtime.hub import send_live

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)

EXPIRY_SOURCE = "expiry"
EXPIRY_REASON = "points_expired"
EXPIRING_SOON = "points.expiring_soon"
BATCH = 500  # candidate members read per page

_entries = LedgerEntry.__table__
_accounts = LedgerAccount.__table__
_notices = PointsExpiryNotice.__table__


@dataclass(frozen=True)
class _Summary:
    """A member's points as the expiry rule sees them, for two cutoffs."""

    due: int  # C at the expiry cutoff
    due_soon: int  # C at the warning cutoff
    used: int  # D
    expired: int  # E: every expiry so far (never lowered by a give-back)
    oldest_soon: datetime | None  # when the oldest lot not yet used nor due was earned

    @property
    def expiring(self) -> int:
        """What expires now."""
        return max(0, self.due - self.used)

    @property
    def expiring_soon(self) -> int:
        """What expires within the warning window, after what expires now."""
        return max(0, self.due_soon - max(self.used, self.due))


def _summaries_statement(
    member_ids: Sequence[str], due_before: datetime, soon_before: datetime
) -> sa.Select[Any]:
    """One statement: for each member, C at both cutoffs, D, E and the oldest lot due soon."""
    e = _entries.alias("e")
    o = _entries.alias("o")  # the entry a reversal cancels
    moves = e.outerjoin(o, o.c.id == e.c.reverses_entry_id)
    points_of = sa.and_(e.c.member_id.in_(member_ids), e.c.currency == "points")
    gives_back_expiry = o.c.source == EXPIRY_SOURCE
    earns = sa.and_(e.c.amount > 0, sa.or_(e.c.reverses_entry_id.is_(None), gives_back_expiry))
    cancels_credit = sa.and_(e.c.amount < 0, o.c.amount > 0)
    # Each credit and the reversal of it, under the credit's id and time; grouped below into lots.
    parts = (
        sa.select(
            e.c.member_id,
            sa.case((cancels_credit, o.c.id), else_=e.c.id).label("lot_id"),
            sa.case((cancels_credit, o.c.created_at), else_=e.c.created_at).label("earned_at"),
            e.c.amount,
        )
        .select_from(moves)
        .where(points_of, sa.or_(earns, cancels_credit))
        .subquery("parts")
    )
    lots = (
        sa.select(
            parts.c.member_id,
            parts.c.lot_id,
            sa.func.min(parts.c.earned_at).label("earned_at"),
            sa.func.sum(parts.c.amount).label("amount"),
        )
        .group_by(parts.c.member_id, parts.c.lot_id)
        .having(sa.func.sum(parts.c.amount) > 0)
        .subquery("lots")
    )
    # Lots oldest first, with the points earned up to and including each.
    ranked = (
        sa.select(
            lots.c.member_id,
            lots.c.earned_at,
            lots.c.amount,
            sa.func.sum(lots.c.amount)
            .over(partition_by=lots.c.member_id, order_by=(lots.c.earned_at, lots.c.lot_id))
            .label("running"),
        )
        .where(lots.c.earned_at <= soon_before)
        .subquery("ranked")
    )
    debit = sa.and_(e.c.amount < 0, e.c.reverses_entry_id.is_(None))
    refund = sa.and_(e.c.amount > 0, o.c.amount < 0, sa.not_(gives_back_expiry))
    expiry = sa.and_(debit, e.c.source == EXPIRY_SOURCE)
    used = (
        sa.select(
            e.c.member_id,
            sa.func.sum(sa.case((debit, -e.c.amount), (refund, -e.c.amount), else_=0)).label("used"),
            sa.func.sum(sa.case((expiry, -e.c.amount), else_=0)).label("expired"),
        )
        .select_from(moves)
        .where(points_of)
        .group_by(e.c.member_id)
        .subquery("used")
    )
    # Running totals only grow, so the first lot past both D and the expiry cutoff is the oldest
    # one still held once what is due now has expired.
    oldest_soon = sa.case(
        (sa.and_(ranked.c.earned_at > due_before, ranked.c.running > used.c.used), ranked.c.earned_at)
    )
    return (
        sa.select(
            ranked.c.member_id,
            sa.func.sum(sa.case((ranked.c.earned_at <= due_before, ranked.c.amount), else_=0)).label("due"),
            sa.func.sum(ranked.c.amount).label("due_soon"),
            sa.func.max(used.c.used).label("used"),
            sa.func.max(used.c.expired).label("expired"),
            sa.func.min(oldest_soon).label("oldest_soon"),
        )
        .select_from(ranked.join(used, used.c.member_id == ranked.c.member_id))
        .group_by(ranked.c.member_id)
    )


async def _summaries(
    session: AsyncSession, member_ids: Sequence[str], due_before: datetime, soon_before: datetime
) -> dict[str, _Summary]:
    if not member_ids:
        return {}
    rows = await session.execute(_summaries_statement(member_ids, due_before, soon_before))
    return {
        r.member_id: _Summary(int(r.due), int(r.due_soon), int(r.used), int(r.expired), r.oldest_soon)
        for r in rows
    }


@dataclass
class ExpiryReport:
    """What one run of `expire_points` did."""

    members: int = 0  # members holding points old enough to expire or to be warned about
    expired_members: int = 0
    expired_points: int = 0
    warned: int = 0  # `points.expiring_soon` messages sent
    refused: list[str] = field(default_factory=list)  # members the ledger refused, and why


@dataclass(frozen=True)
class _Cutoffs:
    now: datetime
    after: timedelta
    due_before: datetime  # points earned at or before this expire now
    soon_before: datetime  # ... and those earned at or before this within the warning window


def _cutoffs(rule: ExpiryRule, now: datetime) -> _Cutoffs | None:
    if rule.after_days is None:
        return None
    after = timedelta(days=rule.after_days)
    due_before = now - after
    return _Cutoffs(now, after, due_before, due_before + timedelta(days=rule.warn_days))


async def expire_points(
    ctx: Context, now: datetime | None = None, *, member_ids: Sequence[str] | None = None
) -> ExpiryReport:
    """Expire the points earned more than `after_days` before `now` (content `earning.expiry`),
    oldest first, and warn the members whose points expire within `warn_days`.

    Each member is settled in a short transaction of its own, under the account's lock; running
    this twice, or on two instances at once, expires nothing twice and warns once per date.
    `member_ids` limits the run to those members (an operator's run, tests); `now` (aware) is the
    moment the rule is applied at, while the entries are posted at the real time.
    """
    now = now or utcnow()
    report = ExpiryReport()
    cut = _cutoffs(ctx.content.get("earning").expiry, now)
    if cut is None:
        return report
    await _prune_notices(ctx, now, member_ids)
    after = ""
    while True:
        page, todo = await _page(ctx, cut, after, member_ids)
        report.members += len(page)
        for member_id in todo:
            try:
                expired, warned = await _settle(ctx, member_id, cut)
            except ProblemError as exc:
                # One member's refusal (a key taken by another movement) must not stop the others.
                log.warning("points_expiry_refused", member_id=member_id, code=exc.code, detail=exc.detail)
                report.refused.append(f"{member_id}: {exc.detail}")
                continue
            report.expired_members += bool(expired)
            report.expired_points += expired
            report.warned += warned
        if len(page) < BATCH:
            return report
        after = page[-1]


async def _page(
    ctx: Context, cut: _Cutoffs, after: str, member_ids: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """The next page of candidates (members holding points earned by the warning cutoff), and
    those of them with something to do: points to expire, or a warning not claimed yet.

    Read without locks: what a member needs is computed again under the lock before acting.
    """
    earned_by = sa.exists().where(
        _entries.c.member_id == _accounts.c.member_id,
        _entries.c.currency == "points",
        _entries.c.amount > 0,
        _entries.c.created_at <= cut.soon_before,
    )
    q = sa.select(_accounts.c.member_id).where(
        _accounts.c.points > 0, _accounts.c.member_id > after, earned_by
    )
    if member_ids is not None:
        q = q.where(_accounts.c.member_id.in_(member_ids))
    async with ctx.db.session() as session:
        page = list((await session.execute(q.order_by(_accounts.c.member_id).limit(BATCH))).scalars())
        found = await _summaries(session, page, cut.due_before, cut.soon_before)
        notices = await session.execute(
            sa.select(_notices.c.member_id, _notices.c.expires_on).where(
                _notices.c.member_id.in_(page), _notices.c.expires_on >= cut.now.date()
            )
        )
        claimed = {(member_id, expires_on) for member_id, expires_on in notices}
    todo = []
    for member_id in page:
        s = found.get(member_id)
        if s is None:
            continue
        unwarned = (
            s.expiring_soon > 0
            and s.oldest_soon is not None
            and (member_id, (s.oldest_soon + cut.after).date()) not in claimed
        )
        if s.expiring or unwarned:
            todo.append(member_id)
    return page, todo


async def _settle(ctx: Context, member_id: str, cut: _Cutoffs) -> tuple[int, bool]:
    """Expire what is due and claim the warning, in one transaction: (points expired, warned)."""
    async with ctx.db.transaction() as session:
        points = (await ledger.lock_account(session, member_id))["points"]
        s = (await _summaries(session, [member_id], cut.due_before, cut.soon_before)).get(member_id)
        if s is None:
            return 0, False
        expired = 0
        if s.expiring:
            posted = await ledger.post(
                ctx,
                session,
                member_id,
                currency="points",
                amount=-s.expiring,
                reason=EXPIRY_REASON,
                source=EXPIRY_SOURCE,
                idempotency_key=f"expiry:{s.due}:{s.expired}",
                details={
                    "rule": "earning.expiry",
                    "after_days": cut.after.days,
                    "expired_earned_before": cut.due_before.isoformat(),
                },
            )
            expired = s.expiring if posted.created else 0
            points = posted.entry.balance_after
        soon = s.expiring_soon
        if not soon or s.oldest_soon is None:
            return expired, False
        expires_at = s.oldest_soon + cut.after
        claimed = await execute_counting(
            session,
            insert_ignore(session, _notices).values(
                member_id=member_id, expires_on=expires_at.date(), created_at=utcnow()
            ),
        )
        if not claimed:
            return expired, False
        send_live(
            ctx,
            session,
            member_id,
            EXPIRING_SOON,
            {"amount": soon, "expires_at": expires_at.isoformat(), "balance": points},
        )
        return expired, True


async def _prune_notices(ctx: Context, now: datetime, member_ids: Sequence[str] | None) -> None:
    """Forget the claims of dates gone by: points due soon always expire after `now`, so those
    dates are never claimed again."""
    q = sa.delete(_notices).where(_notices.c.expires_on < now.date())
    if member_ids is not None:
        q = q.where(_notices.c.member_id.in_(member_ids))
    async with ctx.db.transaction() as session:
        await session.execute(q)
