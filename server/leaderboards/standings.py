"""Reading the boards: the top of a scope with a cursor, a member among their neighbours, from
Redis while a period is live and from the archived standings once it is archived.

Ranks are 1-based and unique: ties are ordered by who reached the score first (`keys.py`).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from redis.exceptions import RedisError
from sqlmodel import col

from server.db import utcnow
from server.errors import ProblemError
from server.leaderboards import keys
from server.leaderboards.content import Board
from server.leaderboards.models import BoardPeriod, Standing, TeamShare
from server.leaderboards.periods import Span, resolve, span_at
from server.leaderboards.service import boards, team_facts, team_kind
from server.members import service as members
from server.members.service import friends_of

if TYPE_CHECKING:
    from server.context import Context

MAX_LIMIT = 100
MAX_AROUND = 50


@dataclass
class Row:
    rank: int
    member_id: str
    display_name: str | None
    score: int
    handle: str | None = None  # what other members see instead of member_id


@dataclass
class Page:
    board: Board
    span: Span
    scope: str
    archived: bool
    total: int
    rows: list[Row]
    next_cursor: str | None = None
    me: Row | None = None
    my_handle: str | None = None


def board_of(ctx: Context, board_id: str) -> Board:
    board = boards(ctx).get(board_id)
    if board is None:
        raise ProblemError(404, "board_not_found", f"No leaderboard '{board_id[:64]}'.")
    return board


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("o"):
            raise ValueError
        offset = int(raw[1:])
        if not 0 < offset <= 10_000_000:
            raise ValueError
        return offset
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProblemError(400, "invalid_cursor", "The cursor is not one this server gave out.") from exc


@dataclass(frozen=True)
class Scope:
    kind: str  # global | tier | team | friends | rookie | league
    value: str | None = None

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.value}" if self.value and self.kind in ("tier", "team") else self.kind


async def _member_profile(ctx: Context, member_id: str) -> members.Profile:
    async with ctx.db.session() as session:
        return await members.profile(ctx, session, member_id)


async def resolve_scope(ctx: Context, board: Board, text: str | None, member_id: str) -> Scope:
    """`global`, `tier` (the member's, or `tier:<name>`), `team` (likewise), `friends`, `rookie`,
    and `league` (the member's cohort; the default of a league board)."""
    text = (text or "").strip() or ("league" if board.league else "global")
    kind, _, value = text.partition(":")
    allowed = list(board.scopes) + (["rookie"] if board.rookie else []) + (["league"] if board.league else [])
    if kind not in allowed or (value and kind not in ("tier", "team")):
        raise ProblemError(
            400,
            "invalid_scope",
            f"Board '{board.id}' ranks by scope {', '.join(allowed)}; '{text[:40]}' is not one of them.",
        )
    if kind == "tier":
        if not value:
            value = (await _member_profile(ctx, member_id)).tier
        elif value not in members.tier_ladder(ctx):
            raise ProblemError(400, "invalid_scope", f"'{value[:40]}' is not a tier.")
    if kind == "team" and not value:
        team = team_kind(ctx, board)
        value = (await _member_profile(ctx, member_id)).teams.get(team, "")
        if not value:
            raise ProblemError(
                404, "no_team", f"You are not in a team of kind '{team}': there is no team board to show."
            )
    return Scope(kind, value or None)


async def _is_archived(ctx: Context, board: Board, span: Span) -> bool:
    known: set[tuple[str, str]] = ctx.extras.setdefault("lb_archived", set())
    if (board.id, span.key) in known:
        return True
    async with ctx.db.session() as session:
        status = (
            await session.execute(
                sa.select(col(BoardPeriod.status)).where(
                    col(BoardPeriod.board_id) == board.id, col(BoardPeriod.period) == span.key
                )
            )
        ).scalar_one_or_none()
    if status == "archived":
        known.add((board.id, span.key))
        return True
    return False


def _current(ctx: Context, board: Board, now: datetime) -> Span | None:
    """The board's current period, worked out again only when it ends (or the content changes)."""
    known: dict[str, tuple[Board, Span]] = ctx.extras.setdefault("lb_current", {})
    held = known.get(board.id)
    if (
        held is not None
        and held[0] is board
        and held[1].start <= now
        and (held[1].end is None or now < held[1].end)
    ):
        return held[1]
    span = span_at(board, now)
    if span is not None:
        known[board.id] = (board, span)
    return span


async def _where(ctx: Context, board: Board, period: str | None) -> tuple[Span, bool]:
    """The period a request reads, and whether it is read from the archive."""
    now = utcnow()
    current = _current(ctx, board, now)
    if period in (None, "", "current") and current is not None:
        return current, False
    span = resolve(board, period or "current", now)
    if current is not None and current.key == span.key:
        return span, False
    return span, await _is_archived(ctx, board, span)


def _redis_scope(scope: Scope) -> str:
    if scope.kind == "global":
        return ""
    if scope.kind == "tier":
        return f"t:{scope.value}"
    if scope.kind == "team":
        return f"team:{scope.value}"
    if scope.kind == "rookie":
        return "r"
    return "cohort"


def _row(rank: int, member_id: str, value: str) -> Row:
    parts = value.split("\t", 3) if value else []
    score = int(parts[2]) if len(parts) > 2 else 0
    name = parts[3] if len(parts) > 3 and parts[3] else None
    return Row(rank, member_id, name, score)


def _unavailable() -> ProblemError:
    """Redis cannot be reached: the boards cannot be read, and no score is lost meanwhile."""
    return ProblemError(
        503,
        "leaderboards_unavailable",
        "Leaderboards are briefly unavailable; scores are kept, try again shortly.",
    )


def _rookie_cutoff(board: Board, now: datetime) -> int:
    days = board.rookie.days if board.rookie else 0
    return int((now - timedelta(days=days)).timestamp() * 1000)


async def _live(
    ctx: Context, board: Board, span: Span, scope: Scope, mode: str, anchor: str | int, count: int, me: str
) -> tuple[int, list[Row]]:
    b = keys.base(ctx, board.id, span.key)
    cutoff = _rookie_cutoff(board, utcnow()) if scope.kind == "rookie" else 0
    args = [b, mode, anchor, count, board.order[0], _redis_scope(scope), cutoff, me]
    try:
        # Pipelined with the other requests' Redis calls of this moment (the rate limit's too).
        out = await ctx.redis.boards_auto.evalsha(keys.READ_SHA, keys.READ, [b + ":m", b + ":g"], args)
    except (RedisError, OSError) as exc:
        raise _unavailable() from exc
    total, first = int(out[0]), int(out[1])
    lines = out[2].split("\n") if len(out) > 2 and out[2] else []
    return total, [_row(first + i + 1, *line.split("\t", 1)) for i, line in enumerate(lines)]


async def _live_friends(ctx: Context, board: Board, span: Span, member_id: str) -> list[Row]:
    """The member and their friends, ranked among themselves."""
    async with ctx.db.session() as session:
        group = [member_id, *(await friends_of(session, member_id))]
    b = keys.base(ctx, board.id, span.key)
    client = ctx.redis.boards
    try:
        pipe = client.pipeline(transaction=False)
        pipe.zmscore(b + ":g", group)
        pipe.hmget(b + ":m", group)
        comps, values = await pipe.execute()
    except (RedisError, OSError) as exc:
        raise _unavailable() from exc
    scored = [(c, m, v) for m, c, v in zip(group, comps, values, strict=True) if c is not None]
    # The order Redis would give them in one sorted set: ties in a slot by member id.
    if board.order == "desc":
        scored.sort(key=lambda x: (x[0], x[1]), reverse=True)
    else:
        scored.sort(key=lambda x: (x[0], x[1]))
    return [_row(i + 1, m, v or "") for i, (_, m, v) in enumerate(scored)]


def _archived_scope(
    board: Board, span: Span, scope: Scope, member_cohort: str | None, friends: list[str]
) -> Any:
    """The archived standings of one scope as (member_id, score, r), r its rank in the scope."""
    s = Standing.__table__.c
    base = sa.and_(s.board_id == board.id, s.period == span.key)
    if scope.kind == "global":
        return sa.select(s.member_id, s.score, s.rank.label("r")).where(base).subquery()
    if scope.kind == "tier":
        return (
            sa.select(s.member_id, s.score, s.tier_rank.label("r"))
            .where(base, s.tier == scope.value)
            .subquery()
        )
    if scope.kind == "team":
        return (
            sa.select(s.member_id, s.score, s.team_rank.label("r"))
            .where(base, s.team == scope.value)
            .subquery()
        )
    if scope.kind == "league":
        return (
            sa.select(s.member_id, s.score, s.cohort_rank.label("r"))
            .where(base, s.cohort == (member_cohort or ""))
            .subquery()
        )
    if scope.kind == "rookie":
        assert board.rookie is not None and span.end is not None
        since = span.end - timedelta(days=board.rookie.days)
        cond = sa.and_(base, s.signed_up_at >= since)
    else:
        cond = sa.and_(base, s.member_id.in_(friends))
    return (
        sa.select(s.member_id, s.score, sa.func.row_number().over(order_by=s.rank).label("r"))
        .where(cond)
        .subquery()
    )


async def _archived(
    ctx: Context, board: Board, span: Span, scope: Scope, member_id: str, mode: str, offset: int, count: int
) -> tuple[int, list[Row]]:
    s = Standing.__table__.c
    """A scope's archived standings: from `offset`, or around `member_id` (on a board that ranks
    teams, the rows are teams and `member_id` the team's id)."""
    async with ctx.db.session() as session:
        cohort = None
        if scope.kind == "league":
            cohort = (
                await session.execute(
                    sa.select(s.cohort).where(
                        s.board_id == board.id, s.period == span.key, s.member_id == member_id
                    )
                )
            ).scalar_one_or_none()
        friends = [member_id, *(await friends_of(session, member_id))] if scope.kind == "friends" else []
        sub = _archived_scope(board, span, scope, cohort, friends)
        total = int((await session.execute(sa.select(sa.func.count()).select_from(sub))).scalar_one())
        if mode == "around":
            mine = (
                await session.execute(sa.select(sub.c.r).where(sub.c.member_id == member_id))
            ).scalar_one_or_none()
            if mine is None:
                return total, []
            low, high = max(mine - count, 1), mine + count
        else:
            low, high = offset + 1, offset + count
        rows = (
            await session.execute(
                sa.select(sub.c.r, sub.c.member_id, sub.c.score)
                .where(sub.c.r >= low, sub.c.r <= high)
                .order_by(sub.c.r)
            )
        ).all()
        if board.ranks_teams:  # a team's name is read beside the board
            return total, [Row(int(r.r), r.member_id, None, int(r.score)) for r in rows]
        names = await members.profiles(ctx, session, [r.member_id for r in rows])
        return total, [
            Row(int(r.r), r.member_id, names[r.member_id].display_name, int(r.score)) for r in rows
        ]


async def _with_handles(ctx: Context, rows: list[Row], *more: str) -> tuple[list[Row], dict[str, str]]:
    """The rows with their members' handles (new rows: a cached page is shared), and the handles
    found, of `more` members too."""
    found = await members.handles(ctx, [*(r.member_id for r in rows), *more])
    return [replace(r, handle=found.get(r.member_id)) for r in rows], found


def forget_pages(ctx: Context, board_id: str, period: str) -> None:
    """A score of this board period changed here: its pages are read again."""
    pages: dict[tuple[str, str], dict[Any, Any]] = ctx.extras.setdefault("lb_pages", {})
    pages.pop((board_id, period), None)


async def _shared_top(
    ctx: Context, board: Board, span: Span, scope: Scope, offset: int, limit: int, member_id: str
) -> tuple[int, list[Row]]:
    """A page every member sees alike (the top of a board is the hottest read there is): read
    from Redis at most once per `leaderboard_page_cache_seconds` per instance, and again at once
    after a score of the board period changes on this instance."""
    ttl = ctx.settings.leaderboard_page_cache_seconds
    if ttl <= 0:
        return await _live(ctx, board, span, scope, "top", offset, limit, member_id)
    pages: dict[tuple[str, str], dict[Any, Any]] = ctx.extras.setdefault("lb_pages", {})
    mine = pages.setdefault((board.id, span.key), {})
    key = (scope.kind, scope.value, offset, limit)
    now = time.monotonic()
    held = mine.get(key)
    if held is not None and held[0] > now:
        return held[1], held[2]
    total, rows = await _live(ctx, board, span, scope, "top", offset, limit, member_id)
    if len(mine) > 1000:
        mine.clear()
    # Not if a score changed while the page was read (its board period's pages were dropped).
    if pages.get((board.id, span.key)) is mine:
        mine[key] = (now + ttl, total, rows)
    return total, rows


async def top(
    ctx: Context,
    member_id: str,
    board_id: str,
    period: str | None,
    scope_text: str | None,
    limit: int,
    cursor: str | None,
) -> Page:
    """The standings of a scope from its top (or from a cursor), `limit` rows."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ProblemError(400, "invalid_limit", f"limit is between 1 and {MAX_LIMIT}.")
    offset = decode_cursor(cursor) if cursor else 0
    board = board_of(ctx, board_id)
    span, archived = await _where(ctx, board, period)
    scope = await resolve_scope(ctx, board, scope_text, member_id)
    if archived:
        total, rows = await _archived(ctx, board, span, scope, member_id, "top", offset, limit)
    elif scope.kind == "friends":
        ranked = await _live_friends(ctx, board, span, member_id)
        total, rows = len(ranked), ranked[offset : offset + limit]
    elif scope.kind == "league":
        total, rows = await _live(ctx, board, span, scope, "top", offset, limit, member_id)
    else:
        total, rows = await _shared_top(ctx, board, span, scope, offset, limit, member_id)
    nxt = encode_cursor(offset + limit) if offset + limit < total and rows else None
    rows, _ = await _with_handles(ctx, rows)
    return Page(board, span, scope.name, archived, total, rows, nxt)


async def around(
    ctx: Context, member_id: str, board_id: str, period: str | None, scope_text: str | None, k: int
) -> Page:
    """The member's rank and score, and `k` members either side of them."""
    if not 0 <= k <= MAX_AROUND:
        raise ProblemError(400, "invalid_around", f"around is between 0 and {MAX_AROUND}.")
    board = board_of(ctx, board_id)
    span, archived = await _where(ctx, board, period)
    scope = await resolve_scope(ctx, board, scope_text, member_id)
    if archived:
        total, rows = await _archived(ctx, board, span, scope, member_id, "around", 0, k)
    elif scope.kind == "friends":
        ranked = await _live_friends(ctx, board, span, member_id)
        total = len(ranked)
        mine = next((r.rank for r in ranked if r.member_id == member_id), None)
        rows = ranked[max(mine - 1 - k, 0) : mine + k] if mine is not None else []
    else:
        total, rows = await _live(ctx, board, span, scope, "around", member_id, k, member_id)
    rows, found = await _with_handles(ctx, rows, member_id)
    me = next((r for r in rows if r.member_id == member_id), None)
    return Page(board, span, scope.name, archived, total, rows, None, me, found.get(member_id))


# --- boards that rank teams -----------------------------------------------------------------------


@dataclass
class TeamRow:
    rank: int
    team_id: str
    name: str
    score: int
    size: int | None  # None: a team the teams service does not know


@dataclass
class TeamPage:
    board: Board
    span: Span
    scope: str
    archived: bool
    total: int
    rows: list[TeamRow]
    next_cursor: str | None = None
    my_team: str | None = None
    me: TeamRow | None = None


def team_board_of(ctx: Context, board_id: str) -> Board:
    board = board_of(ctx, board_id)
    if not board.ranks_teams:
        raise ProblemError(
            404, "not_a_team_board", f"Board '{board.id}' ranks members, not teams: it has no team breakdown."
        )
    return board


async def _named(ctx: Context, rows: list[Row]) -> list[TeamRow]:
    """Teams' rows with their names and sizes (a team the teams service does not know: its id)."""
    facts = await team_facts(ctx, [r.member_id for r in rows])
    out = []
    for r in rows:
        f = facts.get(r.member_id)
        out.append(TeamRow(r.rank, r.member_id, f.name if f else r.member_id, r.score, f.size if f else None))
    return out


async def team_top(
    ctx: Context,
    member_id: str,
    board: Board,
    period: str | None,
    scope_text: str | None,
    limit: int,
    cursor: str | None,
) -> TeamPage:
    """The teams of a board that ranks teams, from the top (or from a cursor), `limit` rows."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ProblemError(400, "invalid_limit", f"limit is between 1 and {MAX_LIMIT}.")
    offset = decode_cursor(cursor) if cursor else 0
    span, archived = await _where(ctx, board, period)
    scope = await resolve_scope(ctx, board, scope_text, member_id)
    if archived:
        total, rows = await _archived(ctx, board, span, scope, member_id, "top", offset, limit)
    else:
        total, rows = await _shared_top(ctx, board, span, scope, offset, limit, member_id)
    nxt = encode_cursor(offset + limit) if offset + limit < total and rows else None
    return TeamPage(board, span, scope.name, archived, total, await _named(ctx, rows), nxt)


async def team_around(
    ctx: Context, member_id: str, board: Board, period: str | None, scope_text: str | None, k: int
) -> TeamPage:
    """The member's team of the board's kind, its rank and score, and `k` teams either side."""
    if not 0 <= k <= MAX_AROUND:
        raise ProblemError(400, "invalid_around", f"around is between 0 and {MAX_AROUND}.")
    span, archived = await _where(ctx, board, period)
    scope = await resolve_scope(ctx, board, scope_text, member_id)
    mine = (await _member_profile(ctx, member_id)).teams.get(team_kind(ctx, board))
    # Without a team, the board's size alone (no team has an empty id).
    anchor = mine or ""
    if archived:
        total, rows = await _archived(ctx, board, span, scope, anchor, "around", 0, k)
    else:
        total, rows = await _live(ctx, board, span, scope, "around", anchor, k, member_id)
    named = await _named(ctx, rows)
    me = next((r for r in named if r.team_id == mine), None)
    return TeamPage(board, span, scope.name, archived, total, named, None, mine, me)


@dataclass
class Breakdown:
    board: Board
    span: Span
    archived: bool
    team_id: str
    name: str
    rank: int | None
    score: int
    size: int | None
    total: int
    rows: list[Row]
    next_cursor: str | None


async def team_breakdown(
    ctx: Context,
    member_id: str,
    board_id: str,
    team_id: str,
    period: str | None,
    limit: int,
    cursor: str | None,
) -> Breakdown:
    """What each member brought to a team in a period, the most first (on an ascending board, the
    least), from SQL; with the team's rank. Members who left the team keep their row."""
    board = team_board_of(ctx, board_id)
    if not 1 <= limit <= MAX_LIMIT:
        raise ProblemError(400, "invalid_limit", f"limit is between 1 and {MAX_LIMIT}.")
    offset = decode_cursor(cursor) if cursor else 0
    span, archived = await _where(ctx, board, period)
    kind = team_kind(ctx, board)
    facts = (await team_facts(ctx, [team_id])).get(team_id)
    if facts is not None and facts.kind != kind:
        raise ProblemError(
            404,
            "team_not_found",
            f"Team '{team_id}' is a team of kind '{facts.kind}'; "
            f"board '{board.id}' ranks teams of kind '{kind}'.",
        )
    t = TeamShare.__table__.c
    of_team = sa.and_(t.board_id == board.id, t.period == span.key, t.team_id == team_id)
    most = t.score.desc() if board.order == "desc" else t.score.asc()
    async with ctx.db.session() as session:
        summed = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(t.score), 0)).where(of_team)
        total, score = (await session.execute(summed)).one()
        if facts is None and not total:
            raise ProblemError(404, "team_not_found", f"No team '{team_id[:64]}' on board '{board.id}'.")
        found = (
            await session.execute(
                sa.select(t.member_id, t.score)
                .where(of_team)
                .order_by(most, t.reached_at, t.member_id)
                .offset(offset)
                .limit(limit)
            )
        ).all()
        names = await members.profiles(ctx, session, [r.member_id for r in found])
    rows = [
        Row(offset + i + 1, r.member_id, names[r.member_id].display_name, int(r.score))
        for i, r in enumerate(found)
    ]
    rows, _ = await _with_handles(ctx, rows)
    if archived:
        _, placed = await _archived(ctx, board, span, Scope("global"), team_id, "around", 0, 0)
    else:
        _, placed = await _live(ctx, board, span, Scope("global"), "around", team_id, 0, member_id)
    rank = placed[0].rank if placed else None
    nxt = encode_cursor(offset + limit) if offset + limit < total and rows else None
    return Breakdown(
        board,
        span,
        archived,
        team_id,
        facts.name if facts else team_id,
        rank,
        int(score),
        facts.size if facts else None,
        int(total),
        rows,
        nxt,
    )
