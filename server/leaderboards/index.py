"""The Redis index of the boards: applied from the outbox, told to members, rebuilt and checked.

Each outbox row carries a member's absolute score and the row's version; Redis takes it only if
it is newer than what it holds, so replays and rows applied out of order change nothing. After a
write, the members whose rank crossed a threshold that matters (entering the top 10, being pushed
out of it, passing a friend or being passed by one) get `leaderboard.rank_changed`, at most one
per member and board every `notify.every_seconds`. On a board that ranks teams, a team's members
are told alike when their team's rank crosses a threshold, at most once per team and board every
`notify.every_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

import sqlalchemy as sa
import structlog
from redis.exceptions import RedisError
from sqlmodel import col

from server.db import utcnow
from server.leaderboards import keys
from server.leaderboards.content import Board
from server.leaderboards.models import BoardPeriod, BoardScore
from server.leaderboards.periods import Span, span_at, span_of_key
from server.leaderboards.service import Profile, boards, expire_at, index_payload, team_facts, team_kind
from server.leaderboards.standings import forget_pages
from server.members import service as members
from server.realtime.hub import LiveMessage, TeamMessage

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)
SCORES = BoardScore.__table__


async def apply_scores(ctx: Context, items: list[tuple[int, dict[str, Any]]], retry: bool) -> None:
    """Index absolute scores in Redis (newer versions only), then tell members whose rank moved."""
    all_boards = boards(ctx)
    calls = []
    payloads = [p for _, p in items]
    for p in payloads:
        b = keys.base(ctx, p["b"], p["p"])
        board = all_boards.get(p["b"])
        tops = ",".join(str(t) for t in board.notify.top) if board is not None else ""
        args = [b, p["m"], p["v"], p["c"], p["sc"], f"{p['s']}\t{p['n']}", p["x"], p["j"], tops, p["o"]]
        calls.append(([b + ":m", b + ":g"], args))
    # Together in one pipeline (the auto-pipeline gathers the calls of this moment).
    auto = ctx.redis.boards_auto
    results = await asyncio.gather(*(auto.evalsha(keys.APPLY_SHA, keys.APPLY, k, a) for k, a in calls))
    for p in payloads:
        forget_pages(ctx, p["b"], p["p"])
    try:
        await _tell(ctx, payloads, results)
    except Exception:  # the scores are in; a lost rank message is not worth a replay
        log.warning("rank_messages_failed", exc_info=True)


@dataclass
class _Note:
    member_id: str
    board: Board
    period: str
    data: dict[str, Any]


def _rank(value: int) -> int | None:
    return value + 1 if value >= 0 else None


async def _tell(ctx: Context, payloads: list[dict[str, Any]], results: list[Any]) -> None:
    all_boards = boards(ctx)
    notes: list[_Note] = []
    team_notes: list[_Note] = []
    movers: list[tuple[dict[str, Any], Board, int, int, float | None]] = []
    for p, r in zip(payloads, results, strict=True):
        if not r or int(r[0]) == -2:
            continue
        board = all_boards.get(p["b"])
        if board is None:
            continue
        old, new = int(r[0]), int(r[1])
        old_comp = float(r[2]) if r[2] not in ("", None) else None
        pairs = r[3:]
        if board.ranks_teams:
            team_notes += _threshold_notes(p, board, old, new, pairs, {"by_team_id": p["m"]})
            continue
        notes += _threshold_notes(
            p, board, old, new, pairs, {"by_member_id": p["m"], "by_display_name": p["n"] or None}
        )
        if (old == -1 or new < old) and board.notify.friends and "friends" in board.scopes:
            movers.append((p, board, old, new, old_comp))
    if movers:
        notes += await _friend_notes(ctx, movers)
    if team_notes:
        await _tell_teams(ctx, await _throttled(ctx, team_notes, keys.team_rate_key))
    if not notes:
        return
    now = utcnow()
    told = await _throttled(ctx, notes, keys.rate_key)
    named = {m for n in told for m in [*n.data.get("friend_ids", ()), n.data.get("by_member_id")] if m}
    handle_of = await members.handles(ctx, sorted(named)) if named else {}
    messages = [
        LiveMessage(
            n.member_id,
            "leaderboard.rank_changed",
            {
                "board_id": n.board.id,
                "board_name": n.board.name,
                "period": n.period,
                **_public(n.data, handle_of),
            },
            now,
        )
        for n in told
    ]
    if messages:
        await ctx.hub.publish_many(messages)


async def _throttled(ctx: Context, notes: list[_Note], rate_key: Callable[..., str]) -> list[_Note]:
    """One message per member (or team) and board in a run, and at most one every `every_seconds`."""
    firsts: dict[tuple[str, str], _Note] = {}
    for n in notes:
        firsts.setdefault((n.member_id, n.board.id), n)
    chosen = list(firsts.values())
    limited = [n for n in chosen if n.board.notify.every_seconds > 0]
    allowed = set()
    if limited:
        pipe = ctx.redis.r.pipeline(transaction=False)
        for n in limited:
            pipe.set(
                rate_key(ctx, n.board.id, n.member_id),
                "1",
                nx=True,
                px=n.board.notify.every_seconds * 1000,
            )
        for n, ok in zip(limited, await pipe.execute(), strict=True):
            if ok:
                allowed.add(id(n))
    return [n for n in chosen if n.board.notify.every_seconds == 0 or id(n) in allowed]


def _threshold_notes(
    p: dict[str, Any], board: Board, old: int, new: int, pairs: list[Any], by: dict[str, Any]
) -> list[_Note]:
    """A rank crossed thresholds: whoever entered one is told, and so is each one it pushed out of
    one (`by`: how those are told who passed them). On a board that ranks teams, these are teams
    (`member_id` holds the team's id)."""
    if not pairs:
        return []
    notes = [
        _Note(
            p["m"],
            board,
            p["p"],
            {
                "reason": "entered_top",
                "threshold": int(pairs[0]),
                "rank": new + 1,
                "previous_rank": _rank(old),
            },
        )
    ]
    for t, pushed in zip(pairs[::2], pairs[1::2], strict=True):
        if pushed and pushed != p["m"]:
            notes.append(
                _Note(
                    pushed,
                    board,
                    p["p"],
                    {
                        "reason": "overtaken",
                        "threshold": int(t),
                        "rank": int(t) + 1,
                        "previous_rank": int(t),
                        **by,
                    },
                )
            )
    return notes


async def _tell_teams(ctx: Context, notes: list[_Note]) -> None:
    """`leaderboard.rank_changed` to the members of each team told, with the teams' names: one
    publish on the team's channel, whatever the team's size."""
    if not notes:
        return
    teams = {n.member_id for n in notes} | {n.data["by_team_id"] for n in notes if "by_team_id" in n.data}
    facts = await team_facts(ctx, sorted(teams))
    now = utcnow()

    def name(team_id: str) -> str:
        f = facts.get(team_id)
        return f.name if f is not None else team_id

    messages = []
    for n in notes:
        data = {
            "board_id": n.board.id,
            "board_name": n.board.name,
            "period": n.period,
            "team_id": n.member_id,
            "team_name": name(n.member_id),
            **n.data,
        }
        if "by_team_id" in n.data:
            data["by_team_name"] = name(n.data["by_team_id"])
        messages.append(TeamMessage(n.member_id, "leaderboard.rank_changed", data, now))
    await ctx.hub.publish_team_many(messages)


def _public(data: dict[str, Any], handle_of: dict[str, str]) -> dict[str, Any]:
    """A note as its member may read it: the others it names by handle, never by member id."""
    out = {k: v for k, v in data.items() if k not in ("by_member_id", "friend_ids")}
    if "by_member_id" in data:
        out["by_handle"] = handle_of.get(data["by_member_id"])
    if "friend_ids" in data:
        out["friend_handles"] = [handle_of[f] for f in data["friend_ids"] if f in handle_of]
    return out


async def _friend_notes(
    ctx: Context, movers: list[tuple[dict[str, Any], Board, int, int, float | None]]
) -> list[_Note]:
    """Friends a member passed with this write: both sides are told."""
    friends = await _friend_lists(ctx, {p["m"] for p, *_ in movers})
    todo = [(m, friends[m[0]["m"]]) for m in movers if friends.get(m[0]["m"])]
    if not todo:
        return []
    client = ctx.redis.boards
    pipe = client.pipeline(transaction=False)
    for (p, *_), their in todo:
        pipe.zmscore(keys.base(ctx, p["b"], p["p"]) + ":g", their)
    scored = await pipe.execute()
    notes: list[_Note] = []
    for ((p, board, old, new, old_comp), their), comps in zip(todo, scored, strict=True):
        new_comp = float(p["c"])
        passed = []
        for friend, comp in zip(their, comps, strict=True):
            if comp is None:
                continue
            if board.order == "desc":
                hit = comp < new_comp and (old_comp is None or comp > old_comp)
            else:
                hit = comp > new_comp and (old_comp is None or comp < old_comp)
            if hit:
                passed.append(friend)
        if not passed:
            continue
        notes.append(
            _Note(
                p["m"],
                board,
                p["p"],
                {
                    "reason": "passed_friend",
                    "friend_ids": passed[:20],
                    "rank": new + 1,
                    "previous_rank": _rank(old),
                },
            )
        )
        for friend in passed:
            notes.append(
                _Note(
                    friend,
                    board,
                    p["p"],
                    {
                        "reason": "overtaken_by_friend",
                        "by_member_id": p["m"],
                        "by_display_name": p["n"] or None,
                    },
                )
            )
    return notes


FRIENDS_KEPT_SECONDS = 30.0


async def _friend_lists(ctx: Context, member_ids: set[str]) -> dict[str, list[str]]:
    """Friend lists for rank messages, kept for a while per instance (a message about a friend
    added a few seconds ago may be missed; the friends board itself always reads SQL)."""
    kept: dict[str, tuple[float, list[str]]] = ctx.extras.setdefault("lb_friends", {})
    now = time.monotonic()
    missing = sorted(m for m in member_ids if m not in kept or kept[m][0] <= now)
    if missing:
        if len(kept) > 100_000:
            kept.clear()
        async with ctx.db.session() as session:
            found = await members.friend_lists(session, missing)
        for m, their in found.items():
            kept[m] = (now + FRIENDS_KEPT_SECONDS, their)
    return {m: kept[m][1] for m in member_ids if kept[m][1]}


# --- recovery -------------------------------------------------------------------------------------

# The catch-up after a rebuild reaches back this far before it began: a score row carries the
# moment of its unit of work, which commits (and is applied to Redis) a little later.
IN_FLIGHT = timedelta(seconds=30)


async def live_periods(
    ctx: Context, board_ids: list[str] | None = None, *, with_next: bool = False
) -> list[tuple[Board, Span]]:
    """Each board's periods that Redis serves: the current one and any finished but not archived
    (`with_next`: and the one after the current, so that it is marked complete before it begins)."""
    now = utcnow()
    chosen = [b for b in boards(ctx).boards if board_ids is None or b.id in board_ids]
    out: list[tuple[Board, Span]] = []
    async with ctx.db.session() as session:
        open_rows = (
            await session.execute(
                sa.select(col(BoardPeriod.board_id), col(BoardPeriod.period)).where(
                    col(BoardPeriod.status) == "open"
                )
            )
        ).all()
    for board in chosen:
        spans: dict[str, Span] = {}
        current = span_at(board, now)
        if current is not None:
            spans[current.key] = current
            upcoming = span_at(board, current.end) if with_next and current.end is not None else None
            if upcoming is not None and upcoming.key != current.key:
                spans[upcoming.key] = upcoming
        for board_id, period in open_rows:
            if board_id == board.id and period not in spans:
                span = span_of_key(board, period)
                if span is not None:
                    spans[period] = span
        out += [(board, s) for s in sorted(spans.values(), key=lambda s: s.start)]
    return out


def _rows_query(board: Board, span: Span, since: Any = None) -> Any:
    q = sa.select(
        SCORES.c.member_id,
        SCORES.c.score,
        SCORES.c.tiebreak,
        SCORES.c.version,
        SCORES.c.tier,
        SCORES.c.team,
        SCORES.c.cohort,
        SCORES.c.signed_up_at,
    ).where(SCORES.c.board_id == board.id, SCORES.c.period == span.key)
    if since is not None:
        q = q.where(SCORES.c.updated_at >= since)
    return q


def _payload(ctx: Context, board: Board, span: Span, row: Any, name: str | None, now: Any) -> dict[str, Any]:
    teams = {team_kind(ctx, board): row.team} if row.team else {}
    profile = Profile(name, row.tier, teams, row.signed_up_at)
    return index_payload(ctx, board, span, row, profile, now)


async def _names(ctx: Context, board: Board, rows: Any) -> dict[str, str | None]:
    """The display names of the members of some score rows, from their profiles (none for teams:
    a team's name is read beside the board)."""
    if board.ranks_teams:
        return dict.fromkeys((r.member_id for r in rows), None)
    async with ctx.db.session() as session:
        found = await members.profiles(ctx, session, [r.member_id for r in rows])
    return {m: p.display_name for m, p in found.items()}


@dataclass
class Rebuilt:
    board_id: str
    period: str
    members: int
    caught_up: int


async def count_rows(ctx: Context, periods: list[tuple[Board, Span]]) -> int:
    total = 0
    async with ctx.db.session() as session:
        for board, span in periods:
            total += (
                await session.execute(
                    sa.select(sa.func.count())
                    .select_from(SCORES)
                    .where(SCORES.c.board_id == board.id, SCORES.c.period == span.key)
                )
            ).scalar_one()
    return int(total)


async def rebuild(
    ctx: Context,
    periods: list[tuple[Board, Span]],
    advance: Callable[[int], None] | None = None,
    chunk: int = 5000,
) -> list[Rebuilt]:
    """Restore the Redis index of these board periods from SQL, and mark each one complete.

    Each period is built under keys of its own, then swapped in one key at a time (reads see the
    old index, then the new one, never a half-built one). Scores written meanwhile are applied
    again afterwards; being newer they win, and replayed ones change nothing. One process at a
    time rebuilds a period: this waits for one already at it (an instance restoring what Redis
    lost), then rebuilds anyway.
    """
    done: list[Rebuilt] = []
    for board, span in periods:
        lock = await _Lock.take(ctx, keys.base(ctx, board.id, span.key), wait=True)
        assert lock is not None
        done.append(await lock.hold_then_mark(_rebuild_period(ctx, board, span, advance, chunk), span))
    return done


async def _rebuild_period(
    ctx: Context, board: Board, span: Span, advance: Callable[[int], None] | None, chunk: int
) -> Rebuilt:
    client = ctx.redis.boards
    started = utcnow()
    b = keys.base(ctx, board.id, span.key)
    tmp = b + ":rb"
    # The clients decode responses, so set members are str (redis-py types them bytes | str).
    leftovers = cast("set[str]", await client.smembers(tmp + ":k"))
    for k in [*(f"{tmp}:{s}" for s in leftovers), tmp + ":g", tmp + ":m", tmp + ":rj", tmp + ":k"]:
        await client.delete(k)
    built: set[str] = set()
    count = 0
    async with ctx.db.session() as session:
        result = await session.stream(_rows_query(board, span).execution_options(yield_per=chunk))
        async for rows in result.partitions(chunk):
            count += await _write_chunk(ctx, board, span, tmp, rows, built, started)
            if advance is not None:
                advance(len(rows))
    live_scopes = cast("set[str]", await client.smembers(b + ":k"))
    expire = expire_at(ctx, span)
    suffixes = ["g", "m", "rj", "k", *sorted(built)]
    pipe = client.pipeline(transaction=False)
    for suffix in suffixes:
        pipe.exists(f"{tmp}:{suffix}")
    present = await pipe.execute()
    # One key at a time (cluster pipelines refuse RENAME); each swap is atomic.
    for suffix, there in zip(suffixes, present, strict=True):
        target = f"{b}:{suffix}"
        if there:
            await client.rename(f"{tmp}:{suffix}", target)
            if expire:
                await client.expireat(target, expire)
        else:
            await client.delete(target)
    for scope in sorted(set(live_scopes) - built):
        await client.delete(f"{b}:{scope}")
    caught = await _catch_up(ctx, board, span, started - IN_FLIGHT)
    forget_pages(ctx, board.id, span.key)
    return Rebuilt(board.id, span.key, count, caught)


async def _write_chunk(
    ctx: Context, board: Board, span: Span, tmp: str, rows: Any, built: set[str], now: Any
) -> int:
    by_key: dict[str, dict[str, int]] = {}
    hashes: dict[str, str] = {}
    joined: dict[str, int] = {}
    names = await _names(ctx, board, rows)
    for row in rows:
        p = _payload(ctx, board, span, row, names[row.member_id], now)
        by_key.setdefault("g", {})[row.member_id] = p["c"]
        for scope in filter(None, p["sc"].split(",")):
            by_key.setdefault(scope, {})[row.member_id] = p["c"]
        if p["j"] != "":
            joined[row.member_id] = p["j"]
        hashes[row.member_id] = f"{p['v']}\t{p['sc']}\t{p['s']}\t{p['n']}"
    client = ctx.redis.boards
    pipe = client.pipeline(transaction=False)
    for suffix, mapping in by_key.items():
        pipe.zadd(f"{tmp}:{suffix}", mapping)
        if suffix != "g":
            built.add(suffix)
            pipe.sadd(f"{tmp}:k", suffix)
    if joined:
        pipe.zadd(f"{tmp}:rj", joined)
    # redis-py types `mapping` as Mapping[FieldT, ...], which refuses dict[str, str]: keys are invariant.
    pipe.hset(f"{tmp}:m", mapping=hashes)  # type: ignore[arg-type]
    await pipe.execute()
    return len(hashes)


async def _catch_up(ctx: Context, board: Board, span: Span, since: Any) -> int:
    """Apply again the rows written since the rebuild began (the version check keeps the newest)."""
    now = utcnow()
    async with ctx.db.session() as session:
        rows = (await session.execute(_rows_query(board, span, since))).all()
    names = await _names(ctx, board, rows)
    payloads = [_payload(ctx, board, span, r, names[r.member_id], now) for r in rows]
    for i in range(0, len(payloads), 500):
        part = payloads[i : i + 500]
        await apply_scores(ctx, [(0, p) for p in part], True)
    return len(payloads)


# --- lost and restored ---------------------------------------------------------------------------

T = TypeVar("T")


class IndexLockLost(RuntimeError):
    """A rebuild's lock vanished before it was done (it expired, or Redis lost it): another process
    may be rebuilding the period, so this one neither swaps more keys nor marks it complete."""


# KEYS: lock, marker. ARGV: token, expire-at (0: never). Marks the period complete and releases
# the lock, if this process still holds it.
_MARK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
if tonumber(ARGV[2]) > 0 then redis.call('EXPIREAT', KEYS[2], ARGV[2]) end
redis.call('DEL', KEYS[1])
return 1
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class _Lock:
    """The one process rebuilding a board period: a key in the period's slot that lives while its
    holder renews it, so that a holder that dies frees the period within `TTL_MS`."""

    TTL_MS = 30_000

    def __init__(self, ctx: Context, base: str, token: str) -> None:
        self.client = ctx.redis.boards
        self.ctx = ctx
        self.key = keys.rebuild_lock_key(base)
        self.marker = keys.built_key(base)
        self.token = token

    @classmethod
    async def take(cls, ctx: Context, base: str, wait: bool) -> _Lock | None:
        """The lock, or None if another process holds it (with `wait`, once it is free)."""
        token = uuid.uuid4().hex
        while not await ctx.redis.boards.set(keys.rebuild_lock_key(base), token, nx=True, px=cls.TTL_MS):
            if not wait:
                return None
            await asyncio.sleep(0.2)
        return cls(ctx, base, token)

    async def _renew(self) -> bool:
        return bool(await self.client.eval(_RENEW, 1, self.key, self.token, self.TTL_MS))

    async def hold_then_mark(self, work: Awaitable[T], span: Span) -> T:
        """Run `work` holding the lock; then mark the period complete and let the lock go."""
        task = asyncio.ensure_future(work)
        marked = False
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=self.TTL_MS / 3000)
                if not task.done() and not await self._renew():
                    raise IndexLockLost(self.key)
            result = task.result()
            args = (self.token, expire_at(self.ctx, span))
            marked = bool(await self.client.eval(_MARK, 2, self.key, self.marker, *args))
            if not marked:
                raise IndexLockLost(self.key)
            return result
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            if not marked:
                with contextlib.suppress(RedisError, OSError):
                    await self.client.eval(_RELEASE, 1, self.key, self.token)


async def restore_lost(ctx: Context, periods: list[tuple[Board, Span]]) -> list[Rebuilt]:
    """Rebuild from SQL the board periods whose index Redis lost (a restart without its data, a
    failover, a flush), each once however many instances look: the first to take its lock.

    A period is known complete while its marker is in Redis; a Redis that loses the index loses
    the marker with it (in the same cluster slot). Scores applied meanwhile are kept (the rebuild
    catches them up); a period without scores yet (one just begun) is only marked. Returns the
    periods this process rebuilt.
    """
    now = time.time()
    # Keys past their expiry are gone on purpose (the period is read from SQL by then).
    watched = [(board, span) for board, span in periods if not 0 < expire_at(ctx, span) <= now]
    if not watched:
        return []
    pipe = ctx.redis.boards.pipeline(transaction=False)
    for board, span in watched:
        pipe.exists(keys.built_key(keys.base(ctx, board.id, span.key)))
    marked = await pipe.execute()
    done: list[Rebuilt] = []
    for (board, span), there in zip(watched, marked, strict=True):
        if there:
            continue
        lock = await _Lock.take(ctx, keys.base(ctx, board.id, span.key), wait=False)
        if lock is None:
            continue  # another instance is at it
        rebuilt = await lock.hold_then_mark(_restore_period(ctx, board, span), span)
        if rebuilt is not None:
            log.warning(
                "leaderboard_index_restored",
                board=board.id,
                period=span.key,
                members=rebuilt.members,
                caught_up=rebuilt.caught_up,
            )
            done.append(rebuilt)
    return done


async def _restore_period(ctx: Context, board: Board, span: Span) -> Rebuilt | None:
    if await ctx.redis.boards.exists(keys.built_key(keys.base(ctx, board.id, span.key))):
        return None  # restored by the process that held the lock a moment ago
    if not await count_rows(ctx, [(board, span)]):
        return None  # nothing scored: nothing Redis could have lost
    return await _rebuild_period(ctx, board, span, None, 5000)


@dataclass
class Drift:
    board_id: str
    period: str
    in_sql: int
    in_redis: int
    missing: int = 0
    wrong: int = 0
    extra: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.wrong or self.extra)


async def check(ctx: Context, periods: list[tuple[Board, Span]], chunk: int = 2000) -> list[Drift]:
    """Compare each board period's Redis index with its SQL rows."""
    client = ctx.redis.boards
    out: list[Drift] = []
    now = utcnow()
    for board, span in periods:
        b = keys.base(ctx, board.id, span.key)
        drift = Drift(board.id, span.key, 0, int(await client.zcard(b + ":g")))
        found = 0
        async with ctx.db.session() as session:
            result = await session.stream(_rows_query(board, span).execution_options(yield_per=chunk))
            async for rows in result.partitions(chunk):
                members = [r.member_id for r in rows]
                pipe = client.pipeline(transaction=False)
                pipe.zmscore(b + ":g", members)
                pipe.hmget(b + ":m", members)
                comps, values = await pipe.execute()
                for row, comp, value in zip(rows, comps, values, strict=True):
                    drift.in_sql += 1
                    if comp is None:
                        drift.missing += 1
                        if len(drift.examples) < 10:
                            drift.examples.append(f"{row.member_id}: missing")
                        continue
                    found += 1
                    p = _payload(ctx, board, span, row, None, now)
                    # Score and tie-break, version and scopes (a name shown is not a standing).
                    expected = f"{p['v']}\t{p['sc']}\t{p['s']}\t"
                    if int(comp) != p["c"] or not (value or "").startswith(expected):
                        drift.wrong += 1
                        if len(drift.examples) < 10:
                            held = (value or "").split("\t")
                            drift.examples.append(
                                f"{row.member_id}: SQL score {row.score} version {row.version}, "
                                f"Redis {held[2] if len(held) > 2 else None} version {held[0] or None}"
                            )
        drift.extra = max(drift.in_redis - found, 0)
        out.append(drift)
    return out
