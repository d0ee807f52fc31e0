"""The ledger: the only code that writes balances.

Each posting locks the member's account row, so postings for one member are serialized on every
database; an idempotency key already used returns the entry it produced, so retries and concurrent
duplicates never award twice. Entries are chained by hash per member: altering any stored field of
any entry breaks the chain, which `verify` reports.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from server import audit
from server.db import GroupCommit, insert_many, utcnow
from server.errors import ProblemError
from server.ledger.models import CURRENCIES, LedgerAccount
from server.ledger.models import LedgerEntry as LedgerEntry  # what listeners of posted entries receive
from server.ledger.schemas import MAX_AMOUNT, EntryOut
from server.metrics import LEDGER_ENTRIES, LEDGER_REPLAYS
from server.realtime.hub import send_live

if TYPE_CHECKING:
    from server.context import Context


MAX_ID = 2**31 - 1
SOURCE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass
class Posted:
    entry: LedgerEntry
    created: bool


def entry_hash(e: LedgerEntry) -> str:
    """sha256 over every stored field of the entry and the hash of the member's previous entry."""
    canonical = json.dumps(
        [
            "v1",
            e.member_id,
            e.seq,
            e.currency,
            e.amount,
            e.balance_after,
            e.reason,
            e.source,
            e.idempotency_key,
            e.details,
            e.reverses_entry_id,
            e.created_at.isoformat(timespec="microseconds"),
            e.prev_hash,
        ],
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def to_out(e: LedgerEntry) -> EntryOut:
    assert e.id is not None
    return EntryOut(
        entry_id=e.id,
        member_id=e.member_id,
        currency=e.currency,
        amount=e.amount,
        balance_after=e.balance_after,
        reason=e.reason,
        source=e.source,
        idempotency_key=e.idempotency_key,
        details=e.details,
        reverses_entry_id=e.reverses_entry_id,
        created_at=e.created_at,
        hash=e.hash,
    )


@dataclass
class _Account:
    """The locked account row as this transaction sees it."""

    points: int
    growth: int
    tickets: int
    seq: int
    head_hash: str


async def entry_for_key(session: AsyncSession, member_id: str, currency: str, key: str) -> LedgerEntry | None:
    """The entry an idempotency key produced, if any."""
    return (
        await session.execute(
            sa.select(LedgerEntry).where(
                col(LedgerEntry.member_id) == member_id,
                col(LedgerEntry.currency) == currency,
                col(LedgerEntry.idempotency_key) == key,
            )
        )
    ).scalar_one_or_none()


def _replay(existing: LedgerEntry, amount: int, reverses_entry_id: int | None, key: str) -> Posted:
    if existing.amount != amount or existing.reverses_entry_id != reverses_entry_id:
        raise ProblemError(
            409,
            "idempotency_key_reused",
            f"Idempotency key '{key}' was already used for a different movement.",
            entry_id=existing.id,
        )
    LEDGER_REPLAYS.inc()
    return Posted(existing, created=False)


def _check_posting(
    currency: str, amount: int, reason: str, source: str, idempotency_key: str, reverses_entry_id: int | None
) -> None:
    if currency not in CURRENCIES:
        raise ProblemError(400, "invalid_currency", f"Currency is one of {', '.join(CURRENCIES)}.")
    if amount == 0 or abs(amount) > MAX_AMOUNT:
        raise ProblemError(400, "invalid_amount", f"An amount is a non-zero whole number up to {MAX_AMOUNT}.")
    if currency == "growth" and amount < 0 and reverses_entry_id is None and source != "adjustment":
        raise ProblemError(400, "invalid_amount", "Growth is never spent; only adjustments lower it.")
    if not reason.strip() or len(reason) > 200:
        raise ProblemError(400, "invalid_reason", "A reason is 1 to 200 characters.")
    if not SOURCE_RE.match(source):
        raise ProblemError(400, "invalid_source", "A source is 1 to 64 lower-case letters, digits or '_'.")
    if not idempotency_key.strip() or len(idempotency_key) > 200:
        raise ProblemError(400, "invalid_idempotency_key", "An idempotency key is 1 to 200 characters.")


async def post(
    ctx: Context,
    session: AsyncSession,
    member_id: str,
    *,
    currency: str,
    amount: int,
    reason: str,
    source: str,
    idempotency_key: str,
    details: dict[str, Any] | None = None,
    reverses_entry_id: int | None = None,
) -> Posted:
    """Post one movement in the caller's transaction; the live message goes out after commit.

    Refuses (409 `insufficient_balance`) a movement that would take the balance below zero, and
    (409 `idempotency_key_reused`) a key already used for a different movement.
    """
    posting = Posting(
        member_id, currency, amount, reason, source, idempotency_key, details or {}, reverses_entry_id
    )
    return (await post_many(ctx, session, [posting]))[0]


@dataclass(frozen=True)
class Posting:
    """One movement of a run posted together (`post_many`)."""

    member_id: str
    currency: str
    amount: int
    reason: str
    source: str
    idempotency_key: str
    details: dict[str, Any] = field(default_factory=dict)
    reverses_entry_id: int | None = None
    audited_by: str | None = None  # who the audit log names for a new entry (a brand system)


@functools.cache
def _lock_statement(dialect_name: str) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE ... RETURNING of accounts, built once per dialect."""
    table = LedgerAccount.__table__
    insert = (postgresql if dialect_name == "postgresql" else sqlite).insert(table)
    return insert.on_conflict_do_update(
        index_elements=[table.c.member_id], set_={"member_id": insert.excluded.member_id}
    ).returning(
        table.c.member_id, table.c.points, table.c.growth, table.c.tickets, table.c.seq, table.c.head_hash
    )


async def _lock_accounts(session: AsyncSession, member_ids: list[str]) -> dict[str, _Account]:
    """Create-and-lock the accounts of these members, in order, in one statement.

    `ON CONFLICT DO UPDATE` takes the row lock on PostgreSQL (SQLite's writer holds the database).
    Locked once per transaction; later postings in it use what this one saw and wrote.
    """
    locked: dict[str, _Account] = session.info.setdefault("locked_accounts", {})
    missing = sorted({m for m in member_ids if m not in locked})
    if missing:
        stmt = _lock_statement(session.get_bind().dialect.name)
        rows = await (await session.connection()).execute(
            stmt, [dict(member_id=m, points=0, growth=0, tickets=0, seq=0, head_hash="") for m in missing]
        )
        for r in rows:
            locked[r.member_id] = _Account(r.points, r.growth, r.tickets, r.seq, r.head_hash)
    return locked


async def post_many(ctx: Context, session: AsyncSession, postings: list[Posting]) -> list[Posted]:
    """Post a run of movements in the caller's transaction, in a few statements whatever their
    number: the accounts locked together, the keys used before looked up together, the entries
    and the accounts written together. Each answers like `post` (a key used before is a replay);
    a movement that would take a balance below zero refuses the whole run (409).
    """
    answers = await post_each(ctx, session, postings, whole=True)
    return [a for a in answers if isinstance(a, Posted)]


async def post_each(
    ctx: Context, session: AsyncSession, postings: list[Posting], *, whole: bool = False
) -> list[Posted | ProblemError]:
    """`post_many` for postings that answer separately (concurrent requests sharing a unit of work):
    a movement refused (a balance below zero, a key used for another movement) is answered with
    its problem and changes nothing, the others are posted. With `whole`, the first problem
    refuses the run."""
    for p in postings:
        _check_posting(p.currency, p.amount, p.reason, p.source, p.idempotency_key, p.reverses_entry_id)
    if not postings:
        return []
    with session.no_autoflush:
        accounts = await _lock_accounts(session, [p.member_id for p in postings])
        used = await _used_keys(session, postings)
        answers: list[Posted | ProblemError | None] = []
        fresh: list[LedgerEntry] = []
        for p in postings:
            try:
                answers.append(_decide(accounts, used, p, fresh))
            except ProblemError as problem:
                if whole:
                    raise
                answers.append(problem)
        await _write_entries(session, accounts, fresh)
        # The domains that count what members earn (the boards, the tiers) see the new entries
        # in the same transaction, in the pipeline's order.
        await ctx.pipeline.handle_posted(ctx, session, fresh)
        created = iter(fresh)
        out: list[Posted | ProblemError] = []
        for answer in answers:
            if answer is not None:
                out.append(answer)
                continue
            entry = next(created)
            LEDGER_ENTRIES.labels(entry.currency, entry.source).inc()
            type_, data = _live(entry)
            send_live(ctx, session, entry.member_id, type_, data, at=entry.created_at)
            out.append(Posted(entry, created=True))
        return out


async def _used_keys(
    session: AsyncSession, postings: list[Posting]
) -> dict[tuple[str, str, str], LedgerEntry]:
    """The entries the postings' idempotency keys produced before. Under the accounts' locks a key
    is either used already (committed) or free."""
    keys = sorted({(p.member_id, p.currency, p.idempotency_key) for p in postings})
    t = LedgerEntry.__table__
    found = await session.execute(
        sa.select(LedgerEntry).where(sa.tuple_(t.c.member_id, t.c.currency, t.c.idempotency_key).in_(keys))
    )
    return {(e.member_id, e.currency, e.idempotency_key): e for e in found.scalars()}


def _decide(
    accounts: dict[str, _Account],
    used: dict[tuple[str, str, str], LedgerEntry],
    p: Posting,
    fresh: list[LedgerEntry],
) -> Posted | None:
    """A replay's answer, or None with the new entry appended to `fresh` and the account moved."""
    key = (p.member_id, p.currency, p.idempotency_key)
    if key in used:
        # A retried spend is answered from its entry even when it could not be made again.
        return _replay(used[key], p.amount, p.reverses_entry_id, p.idempotency_key)
    account = accounts[p.member_id]
    entry = _next_entry(
        account,
        p.member_id,
        p.currency,
        p.amount,
        p.reason,
        p.source,
        p.idempotency_key,
        p.details,
        p.reverses_entry_id,
    )
    setattr(account, p.currency, entry.balance_after)
    account.seq, account.head_hash = entry.seq, entry.hash
    used[key] = entry  # the same key twice in one run: the second is a replay
    fresh.append(entry)
    return None


async def _write_entries(
    session: AsyncSession, accounts: dict[str, _Account], fresh: list[LedgerEntry]
) -> None:
    """The new entries and the accounts they moved, one statement each (Core, the same transaction)."""
    if not fresh:
        return
    ids = await insert_many(session, LedgerEntry.__table__, [e.model_dump(exclude={"id"}) for e in fresh])
    for entry, entry_id in zip(fresh, ids, strict=True):
        entry.id = entry_id
    touched = sorted({e.member_id for e in fresh})
    await (await session.connection()).execute(
        _SAVE_ACCOUNTS,
        [
            {
                "m": m,
                "p": accounts[m].points,
                "g": accounts[m].growth,
                "t": accounts[m].tickets,
                "s": accounts[m].seq,
                "h": accounts[m].head_hash,
            }
            for m in touched
        ],
    )


_SAVE_ACCOUNTS = (
    sa.update(LedgerAccount.__table__)
    .where(LedgerAccount.__table__.c.member_id == sa.bindparam("m"))
    .values(
        points=sa.bindparam("p"),
        growth=sa.bindparam("g"),
        tickets=sa.bindparam("t"),
        seq=sa.bindparam("s"),
        head_hash=sa.bindparam("h"),
    )
    .execution_options(synchronize_session=False)
)


def _next_entry(
    account: _Account,
    member_id: str,
    currency: str,
    amount: int,
    reason: str,
    source: str,
    idempotency_key: str,
    details: dict[str, Any],
    reverses_entry_id: int | None,
) -> LedgerEntry:
    """The entry that follows the account's head, hashed; refused if the balance would go below zero."""
    before = getattr(account, currency)
    if before + amount < 0:
        raise ProblemError(
            409,
            "insufficient_balance",
            f"This would take the {currency} balance below zero: it is {before}, the movement is {amount}.",
            balance=before,
            currency=currency,
        )
    entry = LedgerEntry(
        member_id=member_id,
        seq=account.seq + 1,
        currency=currency,
        amount=amount,
        balance_after=before + amount,
        reason=reason,
        source=source,
        idempotency_key=idempotency_key,
        details=details,
        reverses_entry_id=reverses_entry_id,
        created_at=utcnow(),
        prev_hash=account.head_hash,
        hash="",
    )
    entry.hash = entry_hash(entry)
    return entry


def _live(entry: LedgerEntry) -> tuple[str, dict[str, Any]]:
    """The live message of a posting: `points.awarded`, `growth.deducted`, ..."""
    verb = "awarded" if entry.amount > 0 else "deducted"
    return f"{entry.currency}.{verb}", {
        "entry_id": entry.id,
        "currency": entry.currency,
        "amount": entry.amount,
        "balance_after": entry.balance_after,
        "reason": entry.reason,
        "source": entry.source,
    }


async def post_alone(
    ctx: Context,
    member_id: str,
    *,
    currency: str,
    amount: int,
    reason: str,
    source: str,
    idempotency_key: str,
    details: dict[str, Any] | None = None,
    audited_by: str | None = None,
) -> Posted:
    """One posting in a unit of work of its own (what `POST /v1/members/{id}/points` does); a new
    entry is audited as `points.adjust` by `audited_by` when given, in the same transaction.

    Postings that arrive while others are being written go together in the next unit of work
    (group commit): each is answered as if alone (its entry, a replay, or its own 409), and a unit
    costs a few statements however many it holds.
    """
    _check_posting(currency, amount, reason, source, idempotency_key, None)
    posting = Posting(
        member_id, currency, amount, reason, source, idempotency_key, details or {}, audited_by=audited_by
    )
    units: GroupCommit[Posting, Posted] = GroupCommit.shared(
        ctx, "ledger_units", lambda postings: _post_together(ctx, postings)
    )
    return await units.submit(posting)


async def _post_together(ctx: Context, postings: list[Posting]) -> list[Posted | BaseException]:
    async with ctx.db.transaction() as session:
        answers = await post_each(ctx, session, postings)
        await audit.record_many(
            session,
            [
                _audited("points.adjust", p.audited_by, answer.entry)
                for p, answer in zip(postings, answers, strict=True)
                if p.audited_by and isinstance(answer, Posted) and answer.created
            ],
        )
        return list(answers)


def _audited(action: str, actor: str, entry: LedgerEntry) -> dict[str, Any]:
    """The audit record of an entry a brand system made."""
    return {
        "actor": actor,
        "action": action,
        "target": f"member:{entry.member_id}",
        "reason": entry.reason,
        "details": {
            "entry_id": entry.id,
            "currency": entry.currency,
            "amount": entry.amount,
            "balance_after": entry.balance_after,
            "source": entry.source,
            "idempotency_key": entry.idempotency_key,
        },
    }


async def award(
    ctx: Context,
    member_id: str,
    *,
    amounts: dict[str, int],
    reason: str,
    source: str,
    idempotency_key: str,
    details: dict[str, Any] | None = None,
) -> list[Posted]:
    """Credit one or both currencies in one transaction under one idempotency key."""
    async with ctx.db.transaction() as session:
        return [
            await post(
                ctx,
                session,
                member_id,
                currency=currency,
                amount=amount,
                reason=reason,
                source=source,
                idempotency_key=idempotency_key,
                details=details,
            )
            for currency, amount in amounts.items()
            if amount
        ]


async def reverse(
    ctx: Context,
    session: AsyncSession,
    member_id: str,
    entry_id: int,
    reason: str,
    *,
    audited_by: str | None = None,
) -> Posted:
    """A new entry cancelling `entry_id`; reversing twice returns the first reversal. A new
    reversal is audited as `points.reverse` by `audited_by` when given."""
    original = await session.get(LedgerEntry, entry_id) if 0 < entry_id <= 2**63 - 1 else None
    if original is None or original.member_id != member_id:
        raise ProblemError(404, "entry_not_found", f"Member '{member_id}' has no ledger entry {entry_id}.")
    if original.reverses_entry_id is not None:
        raise ProblemError(409, "cannot_reverse_reversal", "A reversal cannot itself be reversed.")
    posted = await post(
        ctx,
        session,
        member_id,
        currency=original.currency,
        amount=-original.amount,
        reason=reason,
        source="reversal",
        idempotency_key=f"reversal:{entry_id}",
        details={"reversed_reason": original.reason},
        reverses_entry_id=entry_id,
    )
    if audited_by and posted.created:
        await audit.record_many(session, [_audited("points.reverse", audited_by, posted.entry)])
    return posted


async def balances(session: AsyncSession, member_id: str) -> dict[str, int]:
    account = await session.get(LedgerAccount, member_id)
    if account is None:
        return {c: 0 for c in CURRENCIES}
    return {c: getattr(account, c) for c in CURRENCIES}


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("s"):
            raise ValueError
        seq = int(raw[1:])
        if not 0 < seq <= MAX_ID:
            raise ValueError
        return seq
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProblemError(400, "invalid_cursor", "The cursor is not one this server gave out.") from exc


async def history(
    session: AsyncSession, member_id: str, cursor: str | None, limit: int
) -> tuple[list[LedgerEntry], str | None]:
    """The member's entries, newest first, `limit` at a time."""
    if not 1 <= limit <= 200:
        raise ProblemError(400, "invalid_limit", "limit is between 1 and 200.")
    entry = LedgerEntry.__table__.c
    q = sa.select(LedgerEntry).where(entry.member_id == member_id)
    if cursor:
        q = q.where(entry.seq < decode_cursor(cursor))
    rows = list((await session.execute(q.order_by(entry.seq.desc()).limit(limit + 1))).scalars().all())
    next_cursor = encode_cursor(rows[limit - 1].seq) if len(rows) > limit else None
    return rows[:limit], next_cursor


@dataclass
class VerifyReport:
    members: int = 0
    entries: int = 0
    problems: list[str] = field(default_factory=list)


async def _entries_by_member(session: AsyncSession) -> AsyncIterator[LedgerEntry]:
    result = await session.stream(
        sa.select(LedgerEntry)
        .order_by(col(LedgerEntry.member_id), col(LedgerEntry.seq))
        .execution_options(yield_per=2000)
    )
    async for entry in result.scalars():
        yield entry


async def verify(ctx: Context) -> VerifyReport:
    """Recompute every member's chain and balances from the entries and compare with what is stored."""
    report = VerifyReport()
    async with ctx.db.session() as session:
        if session.get_bind().dialect.name == "postgresql":
            # One snapshot for the accounts and the entries, so that postings meanwhile are not alarms.
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        accounts = {a.member_id: a for a in (await session.execute(sa.select(LedgerAccount))).scalars()}
        seen: set[str] = set()
        current: str | None = None
        prev_hash = ""
        expected_seq = 0
        running: dict[str, int] = {}

        def close_member(member_id: str) -> None:
            account = accounts.get(member_id)
            if account is None:
                report.problems.append(f"member {member_id}: entries but no account row")
                return
            for c in CURRENCIES:
                if getattr(account, c) != running.get(c, 0):
                    report.problems.append(
                        f"member {member_id}: stored {c} balance {getattr(account, c)} "
                        f"but entries sum to {running.get(c, 0)}"
                    )
            if account.head_hash != prev_hash or account.seq != expected_seq:
                report.problems.append(f"member {member_id}: account head does not match the last entry")

        async for e in _entries_by_member(session):
            if e.member_id != current:
                if current is not None:
                    close_member(current)
                current, prev_hash, expected_seq, running = e.member_id, "", 0, {}
                seen.add(e.member_id)
                report.members += 1
            report.entries += 1
            expected_seq += 1
            where = f"member {e.member_id} entry {e.id} (seq {e.seq})"
            if e.seq != expected_seq:
                report.problems.append(f"{where}: sequence gap, expected seq {expected_seq}")
                expected_seq = e.seq
            if e.prev_hash != prev_hash:
                report.problems.append(f"{where}: does not chain to the previous entry")
            if entry_hash(e) != e.hash:
                report.problems.append(f"{where}: content does not match its hash (altered)")
            running[e.currency] = running.get(e.currency, 0) + e.amount
            if running[e.currency] != e.balance_after:
                report.problems.append(
                    f"{where}: balance_after {e.balance_after} but the running {e.currency} total is "
                    f"{running[e.currency]}"
                )
            if running[e.currency] < 0:
                report.problems.append(f"{where}: {e.currency} balance below zero")
            prev_hash = e.hash
        if current is not None:
            close_member(current)
        for member_id, account in accounts.items():
            if member_id not in seen and (account.seq or any(getattr(account, c) for c in CURRENCIES)):
                report.problems.append(f"member {member_id}: balances but no entries")
    return report


async def lock_account(session: AsyncSession, member_id: str) -> dict[str, int]:
    """Lock the member's account until the transaction ends (creating it at zero if need be) and
    return its balances as this transaction sees them.

    For rules computed from the member's entries before posting (points expiry): under the lock no
    other posting for the member can land between the reading and the posting.
    """
    account = (await _lock_accounts(session, [member_id]))[member_id]
    return {c: getattr(account, c) for c in CURRENCIES}
