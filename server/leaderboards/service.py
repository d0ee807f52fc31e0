"""Board scores: written in SQL by the transaction that earned them, indexed in Redis after commit.

A domain reports what a member did (`record`): points earned, an event counted. In the same
transaction the member's score row of each board and period it counts on is created or updated,
by the board's operator, and an outbox row carries the *absolute* score to Redis (`index.py`), so
that a replayed or late row changes nothing. Reads come from Redis while a period is live, and
from the archived standings in SQL once it is archived.

On a board that ranks teams, what a member does is counted for the team of the board's kind they
are in now: the same transaction adds it to the team's score row (the team's id in place of a
member's) and to the member's share of it (`leaderboard_team_shares`).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from server.db import after_commit, insert_ignore, utcnow
from server.leaderboards import keys
from server.leaderboards.content import Board, LeaderboardsFile, team_kind_of
from server.leaderboards.leagues import levels_of, place
from server.leaderboards.models import BoardPeriod, BoardScore, TeamShare
from server.leaderboards.periods import Span, previous_span, span_at, status_of
from server.leaderboards.schemas import BoardOut, BoardsOut, LeagueOut, PeriodOut
from server.members import service as members

if TYPE_CHECKING:
    from server.context import Context

SCORES = BoardScore.__table__
SHARES = TeamShare.__table__
_EMPTY = LeaderboardsFile()


def boards(ctx: Context) -> LeaderboardsFile:
    """The boards of the content serving now."""
    content = getattr(ctx, "content", None)
    found = content.get("leaderboards") if content is not None else None
    return found if found is not None else _EMPTY


def team_kind(ctx: Context, board: Board) -> str:
    """The kind of team the board ranks, or scopes its `team` scope by (see `team_kind_of`)."""
    content = getattr(ctx, "content", None)
    return team_kind_of(board, content.get("teams") if content is not None else None)


# --- what the boards show of teams ----------------------------------------------------------------


@dataclass(frozen=True)
class TeamFacts:
    """What a board shows of a team: its name, its kind and how many members it has now."""

    name: str
    kind: str
    size: int


# The teams domain (above the boards) says what a team is called: `server.app` installs it.
TeamDirectory = Callable[["Context", list[str]], Awaitable[dict[str, TeamFacts]]]
_directory: list[TeamDirectory] = []
TEAM_FACTS_KEPT_SECONDS = 10.0


def use_team_directory(directory: TeamDirectory) -> None:
    """Name the teams of boards that rank teams through `directory` (the teams domain's)."""
    _directory[:] = [directory]


async def team_facts(ctx: Context, team_ids: list[str]) -> dict[str, TeamFacts]:
    """The facts of the teams known (those the directory knows), kept a few seconds per instance:
    the top of a team board is read far more often than a team is renamed or joined."""
    if not _directory or not team_ids:
        return {}
    kept: dict[str, tuple[float, TeamFacts | None]] = ctx.extras.setdefault("lb_team_facts", {})
    now = time.monotonic()
    missing = sorted({t for t in team_ids if t not in kept or kept[t][0] <= now})
    if missing:
        if len(kept) > 100_000:
            kept.clear()
        found = await _directory[0](ctx, missing)
        for t in missing:
            kept[t] = (now + TEAM_FACTS_KEPT_SECONDS, found.get(t))
    out = {}
    for t in team_ids:
        facts = kept[t][1] if t in kept else None
        if facts is not None:
            out[t] = facts
    return out


@dataclass
class Observation:
    """Something a member did that a board counts: `amount` at `at`."""

    board: Board
    member_id: str
    amount: float
    at: datetime


@dataclass
class _Write:
    board: Board
    span: Span
    member_id: str
    score: int
    at: datetime


@dataclass(frozen=True)
class Profile:
    """What a board shows of a member and scopes them by: their teams by kind (the board's kind
    picks one)."""

    display_name: str | None
    tier: str | None
    teams: Mapping[str, str]
    signed_up_at: datetime | None


NOBODY = Profile(None, None, {}, None)  # what a team's score row shows of a member: nothing


def _merge(w: _Write, score: int, at: datetime) -> None:
    """Two amounts for one member, board and period in one run: combined by the board's operator."""
    board = w.board
    if board.operator == "increment":
        w.score += score
        w.at = max(w.at, at)
    elif board.operator == "best":
        better = score > w.score if board.order == "desc" else score < w.score
        if better:
            w.score, w.at = score, at
    elif at >= w.at:
        w.score, w.at = score, at


def _upsert(dialect: str, operator: str, order: str) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE applying the board's operator, for one dialect."""
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(SCORES)
    new, old = insert.excluded, SCORES.c
    if operator == "increment":
        changed = new.score != 0
        score = old.score + new.score
        later = sa.and_(changed, new.reached_at > old.reached_at)
    elif operator == "best":
        changed = new.score > old.score if order == "desc" else new.score < old.score
        score = sa.case((changed, new.score), else_=old.score)
        later = changed
    else:
        newer = new.reached_at >= old.reached_at
        changed = sa.and_(newer, new.score != old.score)
        score = sa.case((newer, new.score), else_=old.score)
        later = changed
    return insert.on_conflict_do_update(
        index_elements=[SCORES.c.board_id, SCORES.c.period, SCORES.c.member_id],
        set_={
            "score": score,
            "reached_at": sa.case((later, new.reached_at), else_=old.reached_at),
            "tiebreak": sa.case((later, new.tiebreak), else_=old.tiebreak),
            "version": old.version + 1,
            "tier": new.tier,
            "team": new.team,
            "cohort": sa.func.coalesce(old.cohort, new.cohort),
            "signed_up_at": new.signed_up_at,
            "updated_at": new.updated_at,
        },
    ).returning(
        SCORES.c.board_id,
        SCORES.c.period,
        SCORES.c.member_id,
        SCORES.c.score,
        SCORES.c.tiebreak,
        SCORES.c.version,
        SCORES.c.cohort,
    )


_STATEMENTS: dict[tuple[str, str, str], Any] = {}


def _statement(dialect: str, operator: str, order: str) -> Any:
    key = (dialect, operator, order)
    if key not in _STATEMENTS:
        _STATEMENTS[key] = _upsert(dialect, operator, order)
    return _STATEMENTS[key]


async def profiles(ctx: Context, session: AsyncSession, member_ids: list[str]) -> dict[str, Profile]:
    """What the boards show and scope by, for each member (one not known yet too), from the
    members' profiles."""
    found = await members.profiles(ctx, session, member_ids)
    return {m: Profile(p.display_name, p.tier, p.teams, p.signed_up_at) for m, p in found.items()}


def is_rookie(board: Board, profile: Profile, at: datetime) -> bool:
    if board.rookie is None or profile.signed_up_at is None:
        return False
    return profile.signed_up_at >= at - timedelta(days=board.rookie.days)


async def _note_periods(ctx: Context, session: AsyncSession, spans: set[tuple[str, Span]]) -> None:
    """Each period that receives scores has a row, so that the archive job knows to close it."""
    known: set[tuple[str, str]] = ctx.extras.setdefault("lb_periods", set())
    fresh = [(b, s) for b, s in spans if (b, s.key) not in known]
    if not fresh:
        return
    await session.execute(
        insert_ignore(session, BoardPeriod.__table__),
        [
            {
                "board_id": b,
                "period": s.key,
                "starts_at": s.start,
                "ends_at": s.end,
                "status": "open",
                "entries": 0,
            }
            for b, s in sorted(fresh, key=lambda x: (x[0], x[1].key))
        ],
    )

    async def remember() -> None:
        known.update((b, s.key) for b, s in fresh)

    after_commit(session, remember)


def expire_at(ctx: Context, span: Span) -> int:
    """When a period's keys may leave Redis (epoch seconds; 0: never)."""
    if span.end is None:
        return 0
    return _expiry(
        span.end, ctx.settings.leaderboard_grace_seconds + ctx.settings.leaderboard_redis_keep_seconds
    )


@functools.lru_cache(maxsize=256)
def _expiry(end: datetime, keep: float) -> int:
    return int((end + timedelta(seconds=keep)).timestamp())


def index_payload(
    ctx: Context, board: Board, span: Span, row: Any, profile: Profile, now: datetime
) -> dict[str, Any]:
    """What the outbox carries to Redis for one score row (its member_id, score, tiebreak,
    version and cohort): everything absolute. A team's row carries no name (a team's is read
    beside the board) and no scopes."""
    rookie = is_rookie(board, profile, now)
    team = profile.teams.get(team_kind(ctx, board))
    return {
        "b": board.id,
        "p": span.key,
        "m": row.member_id,
        "v": row.version,
        "c": keys.encode(row.score, row.tiebreak, board.order),
        "o": board.order[0],
        "sc": ",".join(keys.scope_keys(profile.tier, team, row.cohort, rookie, board.scopes)),
        "s": row.score,
        "n": " ".join((profile.display_name or "").split()),  # one line, no tabs: fields are on lines
        "x": expire_at(ctx, span),
        "j": int(profile.signed_up_at.timestamp() * 1000) if rookie and profile.signed_up_at else "",
    }


def _share_upsert(dialect: str) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE adding to a member's share of a team's score."""
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(SHARES)
    new, old = insert.excluded, SHARES.c
    later = sa.and_(new.score != 0, new.reached_at > old.reached_at)
    return insert.on_conflict_do_update(
        index_elements=[old.board_id, old.period, old.team_id, old.member_id],
        set_={
            "score": old.score + new.score,
            "reached_at": sa.case((later, new.reached_at), else_=old.reached_at),
            "updated_at": new.updated_at,
        },
    )


_SHARE_STATEMENTS: dict[str, Any] = {}


def _share_statement(dialect: str) -> Any:
    if dialect not in _SHARE_STATEMENTS:
        _SHARE_STATEMENTS[dialect] = _share_upsert(dialect)
    return _SHARE_STATEMENTS[dialect]


async def record(
    ctx: Context, session: AsyncSession, observations: list[Observation], now: datetime | None = None
) -> None:
    """Count what members did on the boards, in the caller's transaction (which holds the members).

    Amounts count in the period holding the moment they happened (no later than now); a period
    takes amounts until `leaderboard_grace_seconds` after its end, then it is archived and closed.
    Scores are whole numbers: fractions round down. On a board that ranks teams, an amount counts
    for the member's team of the board's kind (none: it counts for nobody), as the team's score
    and as the member's share of it.
    """
    if not observations:
        return
    now = now or utcnow()
    grace = timedelta(seconds=ctx.settings.leaderboard_grace_seconds)
    writes: dict[tuple[str, str, str], _Write] = {}
    brought: dict[tuple[str, str, str], _Write] = {}  # members' amounts on boards that rank teams
    for o in observations:
        at = min(o.at, now)
        span = span_at(o.board, at)
        if span is None or (span.end is not None and now >= span.end + grace):
            continue
        if not math.isfinite(o.amount):
            continue
        score = math.floor(o.amount)
        key = (o.board.id, span.key, o.member_id)
        into = brought if o.board.ranks_teams else writes
        w = into.get(key)
        if w is None:
            into[key] = _Write(o.board, span, o.member_id, score, at)
        else:
            _merge(w, score, at)
    if not writes and not brought:
        return
    members = await profiles(ctx, session, sorted({k[2] for k in writes} | {k[2] for k in brought}))
    shares = _team_writes(ctx, brought, members, writes, now)
    if not writes:
        return
    await _note_periods(ctx, session, {(w.board.id, w.span) for w in writes.values()})
    league_writes = [w for w in writes.values() if w.board.league is not None]
    cohorts: dict[tuple[str, str, str], str] = {}
    if league_writes:
        cohorts = await place(ctx, session, league_writes)
    dialect = session.get_bind().dialect.name
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for key in sorted(writes):
        w = writes[key]
        p = NOBODY if w.board.ranks_teams else members[w.member_id]
        groups.setdefault((w.board.operator, w.board.order), []).append(
            {
                "board_id": w.board.id,
                "period": w.span.key,
                "member_id": w.member_id,
                "score": w.score,
                "reached_at": w.at,
                "tiebreak": keys.slot_of(w.span, w.at),
                "version": 1,
                "tier": p.tier,
                "team": p.teams.get(team_kind(ctx, w.board)),
                "cohort": cohorts.get(key),
                "signed_up_at": p.signed_up_at,
                "updated_at": now,
            }
        )
    connection = await session.connection()
    for (operator, order), rows in groups.items():
        result = await connection.execute(_statement(dialect, operator, order), rows)
        for r in result:
            w = writes[(r.board_id, r.period, r.member_id)]
            p = NOBODY if w.board.ranks_teams else members[r.member_id]
            ctx.outbox.add(
                session,
                "leaderboard.score",
                index_payload(ctx, w.board, w.span, r, p, now),
            )
    if shares:
        await connection.execute(_share_statement(dialect), shares)


def _team_writes(
    ctx: Context,
    brought: dict[tuple[str, str, str], _Write],
    members: dict[str, Profile],
    writes: dict[tuple[str, str, str], _Write],
    now: datetime,
) -> list[dict[str, Any]]:
    """Members' amounts on boards that rank teams, added to their teams' writes (in `writes`, by
    team id); returns the members' share rows."""
    shares = []
    for (board_id, period, member_id), b in sorted(brought.items()):
        team_id = members[member_id].teams.get(team_kind(ctx, b.board))
        if team_id is None:
            continue
        shares.append(
            {
                "board_id": board_id,
                "period": period,
                "team_id": team_id,
                "member_id": member_id,
                "score": b.score,
                "reached_at": b.at,
                "updated_at": now,
            }
        )
        key = (board_id, period, team_id)
        w = writes.get(key)
        if w is None:
            writes[key] = _Write(b.board, b.span, team_id, b.score, b.at)
        else:
            _merge(w, b.score, b.at)
    return shares


async def members_changed(ctx: Context, session: AsyncSession, member_ids: list[str]) -> None:
    """Members' names, tiers, teams or sign-up dates changed: their live scores move with them,
    on every live board, in one statement for all of them."""
    now = utcnow()
    live: dict[tuple[str, str], tuple[Board, Span]] = {}
    for board in boards(ctx).boards:
        span = span_at(board, now)
        # A team's score stays as it is: what a member brought stays with the team they were in.
        if span is not None and not board.ranks_teams:
            live[(board.id, span.key)] = (board, span)
    if not live or not member_ids:
        return
    found = await profiles(ctx, session, sorted(set(member_ids)))
    member = SCORES.c.member_id
    rows = await session.execute(
        sa.update(SCORES)
        .where(member.in_(sorted(found)), sa.tuple_(SCORES.c.board_id, SCORES.c.period).in_(sorted(live)))
        .values(
            tier=sa.case({m: p.tier for m, p in found.items()}, value=member),
            team=_teams_by_board(ctx, [b for b, _ in live.values()], found),
            signed_up_at=sa.case(
                {m: p.signed_up_at for m, p in found.items() if p.signed_up_at is not None},
                value=member,
                else_=None,
            )
            if any(p.signed_up_at is not None for p in found.values())
            else None,
            version=SCORES.c.version + 1,
            updated_at=now,
        )
        .returning(
            SCORES.c.board_id,
            SCORES.c.period,
            member,
            SCORES.c.score,
            SCORES.c.tiebreak,
            SCORES.c.version,
            SCORES.c.cohort,
        )
        .execution_options(synchronize_session=False)
    )
    for row in sorted(rows, key=lambda r: (r.board_id, r.period, r.member_id)):
        board, span = live[(row.board_id, row.period)]
        ctx.outbox.add(
            session, "leaderboard.score", index_payload(ctx, board, span, row, found[row.member_id], now)
        )


def _teams_by_board(ctx: Context, live: list[Board], found: dict[str, Profile]) -> Any:
    """The team of each member on each board, as one SQL expression: their team of the board's kind."""
    by_kind: dict[str, set[str]] = {}
    for board in live:
        by_kind.setdefault(team_kind(ctx, board), set()).add(board.id)
    whens = []
    for kind, board_ids in sorted(by_kind.items()):
        teams = {m: p.teams[kind] for m, p in found.items() if kind in p.teams}
        if teams:
            whens.append(
                (
                    SCORES.c.board_id.in_(sorted(board_ids)),
                    sa.case(teams, value=SCORES.c.member_id, else_=None),
                )
            )
    return sa.case(*whens, else_=None) if whens else None


async def list_boards(ctx: Context, member_id: str) -> BoardsOut:
    """Every board, with its current and previous periods and, on league boards, the member's league."""

    now = utcnow()
    out = []
    async with ctx.db.session() as session:
        archived = {
            (r.board_id, r.period)
            for r in await session.execute(
                sa.select(col(BoardPeriod.board_id), col(BoardPeriod.period)).where(
                    col(BoardPeriod.status) == "archived",
                    col(BoardPeriod.ends_at) >= now - timedelta(days=400),
                )
            )
        }
        for board in boards(ctx).boards:
            current, previous = span_at(board, now), previous_span(board, now)
            previous_period = (
                PeriodOut(
                    previous.key,
                    previous.start,
                    previous.end,
                    status_of(previous, now, (board.id, previous.key) in archived),
                )
                if previous
                else None
            )
            league = None
            if board.league is not None:
                level = min(
                    (await levels_of(session, board.id, [member_id])).get(member_id, 0),
                    len(board.league.levels) - 1,
                )
                league = LeagueOut(
                    board.league.levels,
                    board.league.size,
                    board.league.promote,
                    board.league.demote,
                    level,
                    board.league.levels[level],
                )
            metric = board.event_metric.event if board.event_metric is not None else str(board.metric)
            out.append(
                BoardOut(
                    board_id=board.id,
                    name=board.name,
                    description=board.description,
                    metric=metric,
                    operator=board.operator,
                    order=board.order,
                    period_kind=board.period,
                    zone=board.zone,
                    scopes=[
                        *board.scopes,
                        *(["rookie"] if board.rookie else []),
                        *(["league"] if board.league else []),
                    ],
                    current_period=PeriodOut(current.key, current.start, current.end) if current else None,
                    previous_period=previous_period,
                    rookie_days=board.rookie.days if board.rookie else None,
                    league=league,
                    ranks=board.ranks,
                    team_kind=team_kind(ctx, board) if board.uses_teams else None,
                )
            )
    return BoardsOut(boards=out)
