"""Team goals: what a team's members do together, counted on the event path, paid after commit.

Member events reach `count_contributions` through the spine's dispatch, a run of them in one
transaction whose members are held. For each goal that counts an event, the event counts for
every team of the goal's kind the member is in (a community kind: its one team, every member,
kept without a row per member), from the moment they joined. Per unit of work, whatever the
number of goals and teams: one read of the members' placements, one of their contributions so
far, one write of the contributions (each at most the goal's `member_cap`), one atomic addition
to the teams' totals (`total = total + excluded.total`, so parallel units for members of one
team add up exactly), and, when a total crosses a milestone, one insert-or-ignore of the
milestones: the unit whose row goes in is the one that pays it.

Paying is not done in the unit (it would hold every teammate's account from inside one
member's event): an outbox effect pays the milestone's members after commit, a batch of members
per transaction through the ledger, each posting keyed
`team:<goal>:<period>:<team>:<milestone>:<member>`, with the milestone row's cursor moved in the
same transaction. A batch repeated after a crash, a second payer or a replayed event pays
nothing twice; a payment cut short is taken up again by the `teams.goal_payouts` job.

Who is paid: the members in the team when the milestone was reached who contribute in the
period (one who joined after the period began: with at least `min_contribution`) get its
`reward`, whether their contribution came before the milestone or after it (a member whose
contribution comes later is paid in that unit of work: they are its own member); the others
get `non_contributor`, if the milestone names one, under a key of its own. A member who leaves
keeps what they were paid, and what they contributed stays in the team's total.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import structlog
from redis.exceptions import RedisError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from server.content.goals import Reward, number, remaining_text, shown
from server.content.periods import local_day, period_end, period_key
from server.db import insert_ignore, lock_members, utcnow
from server.errors import ProblemError, not_found
from server.events.pipeline import DomainEvent
from server.ledger import service as ledger
from server.members import service as members
from server.realtime.hub import send_team_live
from server.teams import service as teams
from server.teams.content import TeamsContent, teams_content
from server.teams.goal_content import Milestone, TeamGoal
from server.teams.goal_schemas import (
    ContributionOut,
    MilestoneOut,
    MyMilestoneOut,
    RewardOut,
    TeamGoalOut,
    TeamGoalsOut,
)
from server.teams.models import (
    TeamGoalContribution,
    TeamGoalLevel,
    TeamGoalMilestone,
    TeamGoalTotal,
    TeamPost,
)

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)

TOTALS = TeamGoalTotal.__table__
POSTS = TeamPost.__table__
CONTRIBUTIONS = TeamGoalContribution.__table__
LEVELS = TeamGoalLevel.__table__
MILESTONES = TeamGoalMilestone.__table__
SOURCE = "team_goal"
BATCH = 1000  # members paid per transaction
PAY_INLINE = 2  # batches the effect pays right after commit; the job pays the rest
CLAIM = timedelta(seconds=60)  # how long a payer holds a milestone between two batches
PROGRESS_EVERY = 3  # seconds: at most one team.goal_progress per goal and team in this time
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
TOP = 10  # the contributors a community team's page lists (beside the member)
ROSTER_LISTED = 100  # a team bigger than this lists its top contributors and the member, not everyone


# --- periods ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """A goal's period: its key and when it starts and ends (in UTC)."""

    key: str
    starts_at: datetime
    ends_at: datetime | None


def span_at(goal: TeamGoal, at: datetime) -> Span:
    """The period of the goal that `at` falls in, turning at midnight (and on Monday, and on the
    1st) in the goal's zone, within its window."""
    w_start, w_end = goal.window_bounds()
    if goal.period == "once":
        return Span("once", w_start or EPOCH, w_end)
    day = local_day(goal.zone, at)
    if goal.period == "daily":
        first = day
    elif goal.period == "weekly":
        first = day - timedelta(days=day.weekday())
    else:
        first = day.replace(day=1)
    start = datetime.combine(first, time(0), ZoneInfo(goal.zone)).astimezone(UTC)
    end = period_end(goal.period, day, goal.zone)
    if w_start is not None and w_start > start:
        start = w_start
    if w_end is not None and (end is None or w_end < end):
        end = w_end
    return Span(period_key(goal.period, day), start, end)


# --- the goals of the content serving now ------------------------------------------------------


def _by_event(content: TeamsContent) -> dict[str, list[TeamGoal]]:
    """The goals by the event type they count, worked out once per content (kept beside its
    fields, like the goals' compiled filters)."""
    found: dict[str, list[TeamGoal]] | None = content.__dict__.get("_goals_by_event")
    if found is None:
        found = {}
        for goal in content.goals:
            found.setdefault(goal.goal.event, []).append(goal)
        content.__dict__["_goals_by_event"] = found
    return found


def wants(ctx: Context, event_type: str) -> bool:
    return event_type in _by_event(teams_content(ctx))


def goal_of(ctx: Context, goal_id: str) -> TeamGoal | None:
    return next((g for g in teams_content(ctx).goals if g.id == goal_id), None)


def _is_community(content: TeamsContent, kind_id: str) -> bool:
    kind = content.kind(kind_id)
    return kind is not None and kind.community


def _amount(goal: TeamGoal, properties: dict[str, Any]) -> float:
    """What one accepted event adds to the member's contribution (before the cap)."""
    if goal.goal.kind != "sum":
        return 1.0
    value = properties.get(goal.goal.sum or "")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    try:
        return max(0.0, float(value))
    except OverflowError:
        return 0.0


def _cap(goal: TeamGoal) -> float | None:
    return 1.0 if goal.counts_members else goal.member_cap


def goal_remaining_text(ctx: Context, goal: TeamGoal, total: float) -> str:
    """What is left of a team's goal: the content's template, else the goal in the events
    catalog's words ("40 more check-ins"); a goal over members counts members ("3 more members")."""
    remaining = max(0.0, goal.target - total)
    if goal.counts_members and goal.remaining_text is None and remaining > 0:
        return f"{shown(remaining)} more {'member' if remaining == 1 else 'members'}"
    return remaining_text(ctx.content.get("events"), goal.goal, goal.remaining_text, total)


def percent(goal: TeamGoal, total: float) -> float:
    """The share of the target reached, in percent (past 100 when a team does more)."""
    return round(100 * total / goal.target, 2)


# --- counting on the event path ----------------------------------------------------------------

GoalKey = tuple[str, str, str]  # goal, period, team
MemberKey = tuple[str, str, str, str]  # goal, period, team, member


@dataclass
class _Count:
    raw: dict[MemberKey, float] = field(default_factory=dict)
    spans: dict[tuple[str, str], Span] = field(default_factory=dict)
    goals: dict[str, TeamGoal] = field(default_factory=dict)
    # When each member joined each team (a community team: when they joined the program).
    joined: dict[tuple[str, str], datetime | None] = field(default_factory=dict)


def _plan(
    ctx: Context, content: TeamsContent, events: list[DomainEvent]
) -> list[tuple[DomainEvent, TeamGoal]]:
    by_event = _by_event(content)
    return [
        (event, goal)
        for event in events
        for goal in by_event.get(event.type, ())
        if goal.open_at(event.occurred_at) and goal.goal.accepts(event.type, event.properties)
    ]


async def count_contributions(ctx: Context, session: AsyncSession, events: list[DomainEvent]) -> None:
    """Add a run of member events (in member order) to the team goals that count them."""
    content = teams_content(ctx)
    plan = _plan(ctx, content, events)
    if not plan:
        return
    count = _Count()
    community = {g.kind for _, g in plan if _is_community(content, g.kind)}
    placed: dict[str, list[members.Placement]] = {}
    if any(g.kind not in community for _, g in plan):
        placed = await members.placements(
            session, sorted({e.member_id for e, g in plan if g.kind not in community})
        )
    for event, goal in plan:
        amount = _amount(goal, event.properties)
        if amount <= 0:
            continue
        if goal.kind in community:
            team_ids = [goal.kind]
        else:
            # Only while in the team: an event from before the member joined counts for nobody.
            team_ids = []
            for p in placed.get(event.member_id, ()):
                if p.kind == goal.kind and p.joined_at <= event.occurred_at:
                    team_ids.append(p.team_id)
                    count.joined[(event.member_id, p.team_id)] = p.joined_at
        if not team_ids:
            continue
        span = span_at(goal, event.occurred_at)
        count.spans[(goal.id, span.key)] = span
        count.goals[goal.id] = goal
        for team_id in team_ids:
            key = (goal.id, span.key, team_id, event.member_id)
            count.raw[key] = count.raw.get(key, 0.0) + amount
    if count.raw:
        await _write(ctx, session, content, count, community)


async def _contributions(session: AsyncSession, keys: list[MemberKey]) -> dict[MemberKey, float]:
    c = CONTRIBUTIONS.c
    rows = await (await session.connection()).execute(
        sa.select(c.goal_id, c.period, c.team_id, c.member_id, c.amount).where(
            sa.tuple_(c.goal_id, c.period, c.team_id, c.member_id).in_(keys)
        )
    )
    return {(r.goal_id, r.period, r.team_id, r.member_id): r.amount for r in rows}


def _dialect(session: AsyncSession) -> Any:
    return postgresql if session.get_bind().dialect.name == "postgresql" else sqlite


async def _write(
    ctx: Context, session: AsyncSession, content: TeamsContent, count: _Count, community: set[str]
) -> None:
    keys = sorted(count.raw)
    before = await _contributions(session, keys)
    now = utcnow()
    rows: list[dict[str, Any]] = []
    added: dict[GoalKey, list[float]] = {}  # (amount added, new contributors)
    levels: dict[tuple[str, str, str, float], int] = {}
    firsts: list[tuple[MemberKey, float]] = []
    changes: list[tuple[MemberKey, float, float]] = []
    for key in keys:
        goal = count.goals[key[0]]
        old = before.get(key, 0.0)
        new = old + count.raw[key]
        cap = _cap(goal)
        if cap is not None:
            new = min(cap, new)
        if new <= old:
            continue  # at the cap already: the member's further events do not count
        changes.append((key, old, new))
        rows.append(
            {
                "goal_id": key[0],
                "period": key[1],
                "team_id": key[2],
                "member_id": key[3],
                "amount": new,
                "first_at": now,
                "updated_at": now,
            }
        )
        slot = added.setdefault(key[:3], [0.0, 0])
        slot[0] += new - old
        if old <= 0:
            slot[1] += 1
            firsts.append((key, new))
        if key[2] in community:  # a member's rank in a community team is read from the levels
            if old > 0:
                levels[(*key[:3], old)] = levels.get((*key[:3], old), 0) - 1
            levels[(*key[:3], new)] = levels.get((*key[:3], new), 0) + 1
    if not rows:
        return
    dialect = _dialect(session)
    connection = await session.connection()
    insert = dialect.insert(CONTRIBUTIONS)
    # The members are held by the unit of work: what was read of their rows is still theirs.
    await connection.execute(
        insert.on_conflict_do_update(
            index_elements=["goal_id", "period", "team_id", "member_id"],
            set_={"amount": insert.excluded.amount, "updated_at": insert.excluded.updated_at},
        ),
        rows,
    )
    insert = dialect.insert(TOTALS)
    totals = await connection.execute(
        insert.on_conflict_do_update(
            index_elements=["goal_id", "period", "team_id"],
            set_={
                "total": TOTALS.c.total + insert.excluded.total,
                "contributors": TOTALS.c.contributors + insert.excluded.contributors,
                "updated_at": insert.excluded.updated_at,
            },
        ).returning(TOTALS.c.goal_id, TOTALS.c.period, TOTALS.c.team_id, TOTALS.c.total),
        [
            {
                "goal_id": g,
                "period": p,
                "team_id": t,
                "total": amount,
                "contributors": joined,
                "starts_at": count.spans[(g, p)].starts_at,
                "ends_at": count.spans[(g, p)].ends_at,
                "updated_at": now,
                "summarized": False,
            }
            for (g, p, t), (amount, joined) in sorted(added.items())
        ],
    )
    after = {(r.goal_id, r.period, r.team_id): r.total for r in totals}
    if levels:
        insert = dialect.insert(LEVELS)
        await connection.execute(
            insert.on_conflict_do_update(
                index_elements=["goal_id", "period", "team_id", "amount"],
                set_={"members": LEVELS.c.members + insert.excluded.members},
            ),
            [
                {"goal_id": g, "period": p, "team_id": t, "amount": a, "members": n}
                for (g, p, t, a), n in sorted(levels.items())
                if n
            ],
        )
    feed: list[dict[str, Any]] = []
    reached = await _reached(ctx, session, count, added, after, now, feed)
    await _pay_latecomers(ctx, session, count, changes, added, after, reached, community)
    await _progress(
        ctx,
        session,
        [
            (count.goals[gk[0]], gk[1], gk[2], total, bool(reached.get(gk)))
            for gk, total in sorted(after.items())
        ],
    )
    for key, amount in firsts:
        if key[2] in community:
            continue  # a million members' first steps would bury the feed: the summary names the top
        goal = count.goals[key[0]]
        data = {"goal_id": goal.id, "goal_name": goal.name, "period": key[1], "amount": number(amount)}
        feed.append(_post_row(key[2], "goal_contribution", key[3], data, now))
    if feed:  # the unit's posts in one statement, however many teams they go to
        await connection.execute(sa.insert(POSTS), feed)


def _post_row(
    team_id: str, type_: str, member_id: str | None, data: dict[str, Any], at: datetime
) -> dict[str, Any]:
    """A system post of a team's feed (`server.teams.service.post`), as a row of a multi-row insert."""
    return {"team_id": team_id, "at": at, "type": type_, "member_id": member_id, "data": data}


async def _reached(
    ctx: Context,
    session: AsyncSession,
    count: _Count,
    added: dict[GoalKey, list[float]],
    after: dict[GoalKey, float],
    now: datetime,
    feed: list[dict[str, Any]],
) -> dict[GoalKey, list[Milestone]]:
    """The milestones the totals crossed, each recorded once; the unit that records one pays it."""
    crossed: list[dict[str, Any]] = []
    for gk, total in sorted(after.items()):
        goal = count.goals[gk[0]]
        previous = total - added[gk][0]
        for ms in goal.milestones:
            # Sums of decimal amounts carry float error (0.7 + 0.1 < 0.8): within a billionth of
            # the threshold counts as reached. Erring towards trying is safe: a milestone already
            # recorded is not recorded again (insert-ignore), so a near miss is never lost.
            threshold = goal.threshold(ms)
            slack = 1e-9 * max(1.0, abs(threshold))
            if previous < threshold + slack and threshold <= total + slack:
                crossed.append(
                    {
                        "goal_id": gk[0],
                        "period": gk[1],
                        "team_id": gk[2],
                        "at": ms.at,
                        "reached_at": now,
                        "total": total,
                        "period_start": count.spans[(gk[0], gk[1])].starts_at,
                        "status": "paying",
                        "phase": "team",
                        "cursor": "",
                        "paid": 0,
                    }
                )
    if not crossed:
        return {}
    m = MILESTONES.c
    won = await session.execute(
        insert_ignore(session, MILESTONES).returning(m.goal_id, m.period, m.team_id, m.at), crossed
    )
    reached: dict[GoalKey, list[Milestone]] = {}
    for r in won:
        goal = count.goals[r.goal_id]
        milestone = next(x for x in goal.milestones if x.at == r.at)
        gk = (r.goal_id, r.period, r.team_id)
        reached.setdefault(gk, []).append(milestone)
        data = {
            "goal_id": goal.id,
            "goal_name": goal.name,
            "period": r.period,
            "at": milestone.at,
            "name": milestone.name,
            "total": number(after[gk]),
            "target": number(goal.target),
            "reward": _reward_dict(milestone.reward),
        }
        feed.append(_post_row(r.team_id, "milestone_reached", None, data, now))
        send_team_live(ctx, session, r.team_id, "team.milestone_reached", data, at=now)
        ctx.outbox.add(
            session,
            "team_payout",
            {"goal_id": r.goal_id, "period": r.period, "team_id": r.team_id, "at": r.at},
        )
    return reached


async def _pay_latecomers(
    ctx: Context,
    session: AsyncSession,
    count: _Count,
    changes: list[tuple[MemberKey, float, float]],
    added: dict[GoalKey, list[float]],
    after: dict[GoalKey, float],
    reached_now: dict[GoalKey, list[Milestone]],
    community: set[str],
) -> None:
    """Members of this unit who earn, by what they just did, a milestone their team reached
    before (a first contribution, or a late joiner's reaching `min_contribution`): paid here,
    since they are this unit's own members. Whatever the order in which a team's units and its
    milestone's payment ran, every member who earns a milestone is paid it, once (its key).

    The units of a team are serialized on its total's row, so a milestone an earlier unit reached
    is committed, and seen here, by the time this unit has added to the total."""
    earlier = {
        gk
        for gk, total in after.items()
        if total - added[gk][0] >= count.goals[gk[0]].threshold(count.goals[gk[0]].milestones[0])
    }
    moved = [(key, old, new) for key, old, new in changes if key[:3] in earlier]
    if not moved:
        return
    m = MILESTONES.c
    rows = await session.execute(
        sa.select(m.goal_id, m.period, m.team_id, m.at, m.reached_at, m.period_start).where(
            sa.tuple_(m.goal_id, m.period, m.team_id).in_(sorted(earlier))
        )
    )
    fresh = {(gk, ms.at) for gk, mss in reached_now.items() for ms in mss}  # paid after commit
    milestones: dict[GoalKey, list[Any]] = {}
    for r in rows:
        gk = (r.goal_id, r.period, r.team_id)
        if (gk, r.at) not in fresh:
            milestones.setdefault(gk, []).append(r)
    if not milestones:
        return
    missing = sorted({key[3] for key, _, _ in moved if (key[3], key[2]) not in count.joined})
    if missing:  # a community team: members joined it when they joined the program
        found = await members.profiles(ctx, session, missing)
        for key, _, _ in moved:
            if key[2] in community:
                count.joined[(key[3], key[2])] = found[key[3]].joined_at
    postings: list[ledger.Posting] = []
    badges: list[tuple[str, str, str]] = []
    for key, old, new in moved:
        goal = count.goals[key[0]]
        joined = count.joined.get((key[3], key[2]))
        for r in milestones.get(key[:3], ()):
            milestone = next((x for x in goal.milestones if x.at == r.at), None)
            if milestone is None:
                continue
            was = decide(goal, milestone, old, joined, r.period_start, r.reached_at)
            now_ = decide(goal, milestone, new, joined, r.period_start, r.reached_at)
            if now_.outcome == "reward" and was.outcome != "reward":
                _queue_reward(postings, badges, key[:3], milestone.at, key[3], now_)
    await _post(ctx, session, postings, badges)


def _queue_reward(
    postings: list[ledger.Posting],
    badges: list[tuple[str, str, str]],
    gk: GoalKey,
    at: int,
    member_id: str,
    decision: Decision,
) -> None:
    """A member's payment of a milestone: the reward under the milestone's key, the
    non-contributors' one under a key of its own (a member who had not contributed when it was
    paid and contributes later in the period earns the reward as well)."""
    reward = decision.reward
    if reward is None or reward.empty:
        return
    key = payout_key(*gk, at, member_id)
    if decision.outcome != "reward":
        key += ":others"
    details = {"goal_id": gk[0], "period": gk[1], "team_id": gk[2], "at": at, "as": decision.outcome}
    for currency, value in (("points", reward.points), ("growth", reward.growth)):
        if value:
            postings.append(
                ledger.Posting(member_id, currency, value, "team_milestone", SOURCE, key, details)
            )
    if reward.badge:
        badges.append((member_id, reward.badge, key))


async def _post(
    ctx: Context, session: AsyncSession, postings: list[ledger.Posting], badges: list[tuple[str, str, str]]
) -> None:
    """Post a run of milestone payments: a key used before pays nothing again; one the content
    changed since (another amount under the same key) is logged, never paid twice."""
    for answer in await ledger.post_each(ctx, session, postings):
        if isinstance(answer, ProblemError):
            log.warning("team_milestone_not_paid", code=answer.code)
    for member_id, badge_id, grant_key in badges:
        await _give_badge(ctx, session, member_id, badge_id, grant_key)


def _reward_dict(reward: Reward) -> dict[str, Any]:
    return {"points": reward.points, "growth": reward.growth, "badge": reward.badge}


def reward_out(reward: Reward | None) -> RewardOut | None:
    if reward is None:
        return None
    return RewardOut(points=reward.points, growth=reward.growth, badge=reward.badge)


# --- live progress, coalesced ------------------------------------------------------------------

# KEYS: gate, last total sent, pending. ARGV: seconds, total, payload, force.
# 1: send now; 2: kept as the pending value, sent when the gate opens; 0: older than what was sent.
_COALESCE = """
local total = tonumber(ARGV[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '-1')
if total < last then return 0 end
if ARGV[4] == '1' or redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
  redis.call('SET', KEYS[2], ARGV[2], 'EX', 3000000)
  redis.call('DEL', KEYS[3])
  return 1
end
local p = redis.call('GET', KEYS[3])
if p then
  local pt = tonumber(string.match(p, '^([^|]+)|'))
  if pt and pt > total then return 2 end
end
redis.call('SET', KEYS[3], ARGV[2] .. '|' .. ARGV[3], 'EX', 600)
return 2
"""
# KEYS: gate, last, pending. ARGV: seconds. {1, payload}: send it now; {0, ms}: the gate is
# closed for ms more; {0, -1}: nothing is waiting.
_FLUSH = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then return {0, ttl} end
local p = redis.call('GET', KEYS[3])
if not p then return {0, -1} end
redis.call('DEL', KEYS[3])
local total = string.match(p, '^([^|]+)|')
local last = tonumber(redis.call('GET', KEYS[2]) or '-1')
if tonumber(total) < last then return {0, -1} end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
redis.call('SET', KEYS[2], total, 'EX', 3000000)
return {1, string.sub(p, #total + 2)}
"""
_COALESCE_SHA = hashlib.sha1(_COALESCE.encode()).hexdigest()
_FLUSH_SHA = hashlib.sha1(_FLUSH.encode()).hexdigest()


def _progress_keys(ctx: Context, goal_id: str, period: str, team_id: str) -> list[str]:
    base = ctx.redis.key("teams", "progress", goal_id, period, team_id)
    return [base + ":gate", base + ":last", base + ":pending"]


def progress_data(ctx: Context, goal: TeamGoal, period: str, total: float) -> dict[str, Any]:
    """What `team.goal_progress` carries."""
    return {
        "goal_id": goal.id,
        "goal_name": goal.name,
        "period": period,
        "progress": number(total),
        "target": number(goal.target),
        "percent": percent(goal, total),
        "remaining_text": goal_remaining_text(ctx, goal, total),
        "reached": [m.at for m in goal.milestones if goal.threshold(m) <= total],
    }


async def _progress(
    ctx: Context, session: AsyncSession, moved: list[tuple[TeamGoal, str, str, float, bool]]
) -> None:
    """`team.goal_progress` to each team that moved: at once on a milestone, else at most one per
    goal and team every few seconds, the newest value sent when the time is up (so the last
    always arrives). One Redis round trip for all of them. The units of one team are serialized
    on its total's row, so their calls reach Redis in the order of the totals."""
    datas = [progress_data(ctx, goal, period, total) for goal, period, _, total, _ in moved]
    calls = [
        ctx.redis.auto.evalsha(
            _COALESCE_SHA,
            _COALESCE,
            _progress_keys(ctx, goal.id, period, team_id),
            [PROGRESS_EVERY, repr(float(total)), json.dumps(data), "1" if force else "0"],
        )
        for (goal, period, team_id, total, force), data in zip(moved, datas, strict=True)
    ]
    try:
        answers = await asyncio.wait_for(asyncio.gather(*calls), timeout=0.5)
    except (RedisError, OSError, TimeoutError):
        answers = [1] * len(moved)  # Redis unreachable: send (the outbox delivers when it is back)
    for (goal, period, team_id, _, _), data, answer in zip(moved, datas, answers, strict=True):
        if answer == 1:
            send_team_live(ctx, session, team_id, "team.goal_progress", data)
        elif answer == 2:
            _flush_later(ctx, goal.id, period, team_id)


def _flush_later(ctx: Context, goal_id: str, period: str, team_id: str) -> None:
    """Send the pending value of a goal and team when its gate opens (once per process and key)."""
    waiting: dict[GoalKey, asyncio.Task[None]] = ctx.extras.setdefault("team_progress_flush", {})
    key = (goal_id, period, team_id)
    if key in waiting and not waiting[key].done():
        return
    waiting[key] = asyncio.get_running_loop().create_task(_flush(ctx, key))


async def _flush(ctx: Context, key: GoalKey) -> None:
    keys = _progress_keys(ctx, *key)
    delay = PROGRESS_EVERY * 1000
    try:
        for _ in range(20):
            await asyncio.sleep(delay / 1000 + 0.02)
            sent, value = await ctx.redis.auto.evalsha(_FLUSH_SHA, _FLUSH, keys, [PROGRESS_EVERY])
            if sent == 1:
                # Published at once, without the outbox's SQL transaction: a coalesced progress
                # lost to a Redis outage is carried by the next one (a milestone's, which must
                # arrive, always goes through the outbox).
                data = {"team_id": key[2], **json.loads(value)}  # as send_team_live's messages
                await ctx.hub.publish_team(key[2], "team.goal_progress", data)
                return
            if int(value) < 0:
                return
            delay = int(value)
    except Exception as exc:  # the next progress of this team sends again
        log.warning("team_progress_flush_failed", goal_id=key[0], team_id=key[2], error=type(exc).__name__)


async def flush_progress(ctx: Context) -> None:
    """Wait for the pending progress messages of this process (tests, shutdown)."""
    waiting: dict[GoalKey, asyncio.Task[None]] = ctx.extras.get("team_progress_flush", {})
    await asyncio.gather(*waiting.values(), return_exceptions=True)


# --- paying milestones -------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What a member gets of a reached milestone, and why."""

    outcome: str  # reward | non_contributor | nothing
    reward: Reward | None
    reason: str | None  # why not the reward: not_contributed | below_min_contribution | joined_after


def decide(
    goal: TeamGoal,
    milestone: Milestone,
    contribution: float,
    joined_at: datetime | None,
    period_start: datetime,
    reached_at: datetime,
) -> Decision:
    """The fairness rules of a milestone for one member: in the team when it was reached, a
    contributor gets the reward (one who joined after the period began only with at least
    `min_contribution`), everyone else the `non_contributor` reward if the milestone names one."""
    if joined_at is None or joined_at > reached_at:
        return Decision("nothing", None, "joined_after")
    reason = None
    if contribution <= 0:
        reason = "not_contributed"
    elif (
        joined_at > period_start
        and goal.min_contribution is not None
        and contribution < goal.min_contribution
    ):
        reason = "below_min_contribution"
    if reason is None:
        return Decision("reward", milestone.reward, None)
    if milestone.non_contributor is not None and not milestone.non_contributor.empty:
        return Decision("non_contributor", milestone.non_contributor, reason)
    return Decision("nothing", None, reason)


KEY_MAX = 200 - len(":others")  # the ledger's and the badges' keys are at most 200 characters


def payout_key(goal_id: str, period: str, team_id: str, at: int, member_id: str) -> str:
    key = f"team:{goal_id}:{period}:{team_id}:{at}:{member_id}"
    if len(key) <= KEY_MAX:
        return key
    # Ids near their 64 characters: the team and the member by a digest of the whole key (the
    # key of a shorter one stays as it always was).
    return f"team:{goal_id}:{period}:{hashlib.sha256(key.encode()).hexdigest()[:48]}:{at}"


async def apply_payouts(ctx: Context, items: list[tuple[int, dict[str, Any]]], retry: bool) -> None:
    """Outbox effect: pay the milestones just reached, a few batches now and the rest by the job
    (a community team's, all by the job: the request whose event reached it does not wait).

    The milestones a unit of work reached are paid together: their first batches in one
    transaction, so that a unit that reached ten costs about what ten members' awards cost, not
    ten payments' statements each."""
    content = teams_content(ctx)
    keys = sorted(
        {
            (p["goal_id"], p["period"], p["team_id"], int(p["at"]))
            for _, p in items
            if not _is_community(content, p["team_id"])
        }
    )
    if len(keys) == 1:
        await pay_milestone(ctx, keys[0], PAY_INLINE)
    elif keys:
        await pay_milestones(ctx, keys, PAY_INLINE)


def _pk(key: tuple[str, str, str, int]) -> Any:
    m = MILESTONES.c
    return sa.and_(m.goal_id == key[0], m.period == key[1], m.team_id == key[2], m.at == key[3])


async def _claim(
    ctx: Context, keys: list[tuple[str, str, str, int]], token: str
) -> list[tuple[str, str, str, int]]:
    """Hold these milestones for a payer (one statement): those being paid and held by no live payer."""
    now = utcnow()
    m = MILESTONES.c
    async with ctx.db.transaction() as session:
        claimed = await session.execute(
            sa.update(MILESTONES)
            .where(
                sa.tuple_(m.goal_id, m.period, m.team_id, m.at).in_(keys),
                m.status == "paying",
                sa.or_(m.claimed_until.is_(None), m.claimed_until < now),
            )
            .values(claimed_by=token, claimed_until=now + CLAIM)
            .returning(m.goal_id, m.period, m.team_id, m.at)
        )
        return sorted((r.goal_id, r.period, r.team_id, r.at) for r in claimed)


async def _release(ctx: Context, keys: list[tuple[str, str, str, int]], token: str) -> None:
    """Let the job go on at once with what this payer leaves."""
    if not keys:
        return
    m = MILESTONES.c
    async with ctx.db.transaction() as session:
        await session.execute(
            sa.update(MILESTONES)
            .where(sa.tuple_(m.goal_id, m.period, m.team_id, m.at).in_(keys), m.claimed_by == token)
            .values(claimed_until=None)
        )


async def pay_milestone(ctx: Context, key: tuple[str, str, str, int], batches: int | None = None) -> bool:
    """Pay a reached milestone from where its payment stands; True when it is all paid. Returns
    False at once when another payer holds it."""
    token = uuid.uuid4().hex
    if not await _claim(ctx, [key], token):
        return False
    done = 0
    while batches is None or done < batches:
        finished = await _pay_batch(ctx, key, token)
        done += 1
        if finished:
            return True
    await _release(ctx, [key], token)
    return False


async def pay_milestones(ctx: Context, keys: list[tuple[str, str, str, int]], batches: int) -> None:
    """Pay several reached milestones, `batches` batches of each at most: the first batch of all
    of them in one transaction (`_pay_batches`), the rest one milestone at a time; what is left
    goes to the job. Those another payer holds are left to it."""
    if batches < 1:
        return
    token = uuid.uuid4().hex
    held = await _claim(ctx, keys, token)
    if not held:
        return
    left = await _pay_batches(ctx, held, token)
    unfinished = []
    for key in left:
        done = 1
        while done < batches and not await _pay_batch(ctx, key, token):
            done += 1
        if done >= batches:
            unfinished.append(key)
    await _release(ctx, unfinished, token)


class _Lost(Exception):
    """Another payer took the milestone over: this batch's transaction is rolled back."""


async def _pay_batch(ctx: Context, key: tuple[str, str, str, int], token: str) -> bool:
    """One batch of members in one transaction: their postings and the cursor move together."""
    left = await _pay_batches(ctx, [key], token)
    return not left


async def _pay_batches(
    ctx: Context, keys: list[tuple[str, str, str, int]], token: str
) -> list[tuple[str, str, str, int]]:
    """The next batch of members of each of these milestones in one transaction: their postings
    (one `post_each`) and the cursors move together. Returns the milestones not finished.

    The batches' members are held first, all together and in the order every unit of work holds
    members (no deadlock with their events), and what they contributed is read under that hold;
    the milestones' rows are written last, on condition that this payer still holds them (if it
    lost one, the whole transaction is rolled back and the others released to the job)."""
    m = MILESTONES.c
    now = utcnow()
    try:
        async with ctx.db.transaction() as session:
            rows = {
                (r.goal_id, r.period, r.team_id, r.at): r
                for r in await session.execute(
                    sa.select(
                        m.goal_id,
                        m.period,
                        m.team_id,
                        m.at,
                        m.phase,
                        m.cursor,
                        m.reached_at,
                        m.period_start,
                        m.paid,
                        m.claimed_by,
                    ).where(
                        sa.tuple_(m.goal_id, m.period, m.team_id, m.at).in_(keys),
                        m.claimed_by == token,
                        m.status == "paying",
                    )
                )
            }
            plans: list[tuple[tuple[str, str, str, int], Any, TeamGoal, Milestone, bool]] = []
            for key in keys:
                row = rows.get(key)
                if row is None:
                    continue  # another payer took it over, or it is paid
                goal = goal_of(ctx, key[0])
                milestone = next((x for x in goal.milestones if x.at == key[3]), None) if goal else None
                if goal is None or milestone is None:
                    log.warning("team_milestone_not_in_content", goal_id=key[0], at=key[3])
                    await _set(session, key, status="dropped", paid_at=now)
                    continue
                plans.append((key, row, goal, milestone, _is_community(teams_content(ctx), goal.kind)))
            visits = await _batches(
                ctx, session, [(key, community, row.phase, row.cursor) for key, row, _, _, community in plans]
            )
            postings: list[ledger.Posting] = []
            badges: list[tuple[str, str, str]] = []
            updates: list[tuple[tuple[str, str, str, int], Any, dict[str, Any], bool]] = []
            for (key, row, goal, milestone, community), (visited, batch) in zip(plans, visits, strict=True):
                goal_id, period, team_id, at = key
                mine: list[ledger.Posting] = []
                my_badges: list[tuple[str, str, str]] = []
                for member_id, amount, joined_at in batch:
                    decision = decide(goal, milestone, amount, joined_at, row.period_start, row.reached_at)
                    _queue_reward(mine, my_badges, (goal_id, period, team_id), at, member_id, decision)
                postings += mine
                badges += my_badges
                values: dict[str, Any] = {
                    "cursor": visited[-1] if visited else row.cursor,
                    "paid": row.paid + len({p.member_id for p in mine} | {b[0] for b in my_badges}),
                    "claimed_until": now + CLAIM,
                }
                finished = len(visited) < BATCH
                if finished and community and row.phase == "team" and _pays_others(milestone):
                    values.update(phase="others", cursor="")
                    finished = False
                elif finished:
                    values.update(status="paid", paid_at=now, claimed_by=None, claimed_until=None)
                updates.append((key, row, values, finished))
            await _post(ctx, session, postings, badges)
            if len(updates) == 1:
                key, row, values, finished = updates[0]
                moved = await session.execute(
                    sa.update(MILESTONES)
                    .where(_pk(key), m.claimed_by == token, m.cursor == row.cursor, m.phase == row.phase)
                    .values(**values)
                    .returning(m.at)
                )
                if moved.first() is None:
                    raise _Lost
            elif updates:
                # Held here, last, and checked still this payer's where this batch began; then
                # written in one statement.
                still = await session.execute(
                    sa.select(m.goal_id, m.period, m.team_id, m.at, m.cursor, m.phase)
                    .where(sa.tuple_(m.goal_id, m.period, m.team_id, m.at).in_([u[0] for u in updates]))
                    .where(m.claimed_by == token)
                    .with_for_update()
                )
                begun = {(r.goal_id, r.period, r.team_id, r.at): (r.cursor, r.phase) for r in still}
                if any(begun.get(key) != (row.cursor, row.phase) for key, row, _, _ in updates):
                    raise _Lost
                await (await session.connection()).execute(
                    _SAVE_MILESTONE,
                    [
                        {
                            "k_goal": key[0],
                            "k_period": key[1],
                            "k_team": key[2],
                            "k_at": key[3],
                            **_kept(row, values),
                        }
                        for key, row, values, _ in updates
                    ],
                )
            return [key for key, _, _, finished in updates if not finished]
    except _Lost:
        if len(keys) == 1:
            return []
        # One was taken over meanwhile: nothing of this batch was paid; the job pays the others.
        await _release(ctx, keys, token)
        return []


_SAVE_MILESTONE = (
    sa.update(MILESTONES)
    .where(
        MILESTONES.c.goal_id == sa.bindparam("k_goal"),
        MILESTONES.c.period == sa.bindparam("k_period"),
        MILESTONES.c.team_id == sa.bindparam("k_team"),
        MILESTONES.c.at == sa.bindparam("k_at"),
    )
    .values(
        **{
            c: sa.bindparam(c)
            for c in ("cursor", "paid", "claimed_until", "phase", "status", "paid_at", "claimed_by")
        }
    )
)


def _kept(row: Any, values: dict[str, Any]) -> dict[str, Any]:
    """A milestone's row after a batch: what the batch set, the rest as it was (the columns of
    one statement for all)."""
    return {
        "cursor": row.cursor,
        "paid": row.paid,
        "phase": row.phase,
        "status": "paying",
        "paid_at": None,
        "claimed_by": row.claimed_by,
        **values,
    }


async def pay_leaver(ctx: Context, session: AsyncSession, placement: members.Placement) -> None:
    """Pay a member who is leaving a team, in the leave's transaction and before they go, what
    the team's milestones still being paid owe them. The payer visits the members in the team
    when it comes to them: one who was in it when a milestone was reached and leaves before the
    payer comes keeps what they earned. The leave holds the member, as a payer's batch does: of
    the two, the one that comes second finds the milestone's key used and pays nothing."""
    m = MILESTONES.c
    rows = (
        await session.execute(
            sa.select(m.goal_id, m.period, m.at, m.reached_at, m.period_start).where(
                m.status == "paying", m.team_id == placement.team_id
            )
        )
    ).all()
    if not rows:
        return
    c = CONTRIBUTIONS.c
    found = await session.execute(
        sa.select(c.goal_id, c.period, c.amount).where(
            c.team_id == placement.team_id,
            c.member_id == placement.member_id,
            sa.tuple_(c.goal_id, c.period).in_(sorted({(r.goal_id, r.period) for r in rows})),
        )
    )
    amounts = {(r.goal_id, r.period): r.amount for r in found}
    postings: list[ledger.Posting] = []
    badges: list[tuple[str, str, str]] = []
    for r in rows:
        goal = goal_of(ctx, r.goal_id)
        milestone = next((x for x in goal.milestones if x.at == r.at), None) if goal else None
        if goal is None or milestone is None:
            continue  # out of the content: its payer drops it
        amount = amounts.get((r.goal_id, r.period), 0.0)
        decision = decide(goal, milestone, amount, placement.joined_at, r.period_start, r.reached_at)
        gk = (r.goal_id, r.period, placement.team_id)
        _queue_reward(postings, badges, gk, r.at, placement.member_id, decision)
    await _post(ctx, session, postings, badges)


teams.LEAVING.append(pay_leaver)


async def _batches(
    ctx: Context, session: AsyncSession, plans: list[tuple[tuple[str, str, str, int], bool, str, str]]
) -> list[tuple[list[str], list[tuple[str, float, datetime | None]]]]:
    """`_batch` of several milestones (key, community, phase, cursor), their members held together."""
    if len(plans) == 1:
        return [await _batch(ctx, session, *plans[0])]
    rosters: list[list[members.Placement] | None] = []
    if all(community or cursor == "" for _, community, _, cursor in plans):
        # first batches (what the effect pays): every team's roster in one statement
        teams_now = await members.rosters(
            session, [key[2] for key, community, _, _ in plans if not community]
        )
        for key, community, _, _ in plans:
            rosters.append(
                None if community else sorted(teams_now[key[2]], key=lambda p: p.member_id)[:BATCH]
            )
    else:
        for key, community, _, cursor in plans:
            rosters.append(
                None if community else await members.team_members_after(session, key[2], cursor, BATCH)
            )
    # every team's members held in one statement, in the one order
    await lock_members(session, [p.member_id for roster in rosters if roster for p in roster])
    c = CONTRIBUTIONS.c
    teams_ = sorted({key[:3] for (key, *_), roster in zip(plans, rosters, strict=True) if roster})
    visiting = sorted({p.member_id for roster in rosters if roster for p in roster})
    amounts: dict[tuple[str, str, str, str], float] = {}
    if visiting:
        found = await session.execute(
            sa.select(c.goal_id, c.period, c.team_id, c.member_id, c.amount).where(
                sa.tuple_(c.goal_id, c.period, c.team_id).in_(teams_), c.member_id.in_(visiting)
            )
        )
        amounts = {(r.goal_id, r.period, r.team_id, r.member_id): r.amount for r in found}
    out = []
    for (key, community, phase, cursor), roster in zip(plans, rosters, strict=True):
        if roster is None:  # a community team's (its members held by `_batch`, after these)
            out.append(await _batch(ctx, session, key, community, phase, cursor))
            continue
        out.append(
            (
                [p.member_id for p in roster],
                [(p.member_id, amounts.get((*key[:3], p.member_id), 0.0), p.joined_at) for p in roster],
            )
        )
    return out


async def _batch(
    ctx: Context,
    session: AsyncSession,
    key: tuple[str, str, str, int],
    community: bool,
    phase: str,
    cursor: str,
) -> tuple[list[str], list[tuple[str, float, datetime | None]]]:
    """The members a batch visits after `cursor` (held until the transaction ends), and those it
    decides for: (member, contribution, when they joined the team)."""
    goal_id, period, team_id, _ = key
    if not community:  # the team's members now
        roster = await members.team_members_after(session, team_id, cursor, BATCH)
        visited = [p.member_id for p in roster]
        await lock_members(session, visited)
        amounts = await _amounts_of(session, goal_id, period, team_id, visited)
        return visited, [(p.member_id, amounts.get(p.member_id, 0.0), p.joined_at) for p in roster]
    if phase == "team":  # a community team's contributors
        c = CONTRIBUTIONS.c
        found = await session.execute(
            sa.select(c.member_id)
            .where(
                c.goal_id == goal_id,
                c.period == period,
                c.team_id == team_id,
                c.member_id > cursor,
                c.amount > 0,
            )
            .order_by(c.member_id)
            .limit(BATCH)
        )
        visited = list(found.scalars())
        await lock_members(session, visited)
        amounts = await _amounts_of(session, goal_id, period, team_id, visited)
        profiles = await members.profiles(ctx, session, visited)
        return visited, [(i, amounts.get(i, 0.0), profiles[i].joined_at) for i in visited]
    # then every other member (the contributors were decided for in the first phase)
    visited = await members.member_ids_after(session, cursor, BATCH)
    amounts = await _amounts_of(session, goal_id, period, team_id, visited)
    others = [i for i in visited if amounts.get(i, 0.0) <= 0]
    await lock_members(session, others)
    profiles = await members.profiles(ctx, session, others)
    return visited, [(i, 0.0, profiles[i].joined_at) for i in others]


def _pays_others(milestone: Milestone) -> bool:
    return milestone.non_contributor is not None and not milestone.non_contributor.empty


async def _set(session: AsyncSession, key: tuple[str, str, str, int], **values: Any) -> None:
    await session.execute(sa.update(MILESTONES).where(_pk(key)).values(**values))


async def _amounts_of(
    session: AsyncSession, goal_id: str, period: str, team_id: str, member_ids: list[str]
) -> dict[str, float]:
    if not member_ids:
        return {}
    c = CONTRIBUTIONS.c
    found = await session.execute(
        sa.select(c.member_id, c.amount).where(
            c.goal_id == goal_id, c.period == period, c.team_id == team_id, c.member_id.in_(member_ids)
        )
    )
    return {r.member_id: r.amount for r in found}


async def _give_badge(ctx: Context, session: AsyncSession, member_id: str, badge_id: str, key: str) -> None:
    """A milestone's badge, granted by the badges domain (once per key)."""
    from server.badges.service import grant

    try:
        await grant(
            ctx, session, member_id, badge_id, idempotency_key=key, reason="team milestone", source=SOURCE
        )
    except ProblemError as exc:  # content changed since (the badge gone, or out of its window)
        log.warning("team_badge_not_given", member_id=member_id, badge_id=badge_id, code=exc.code)


async def pay_due(ctx: Context, limit: int = 50) -> int:
    """Pay the milestones whose payment is not finished and not held by a live payer (the job;
    tests call it to finish what the effect left). Returns how many it took up."""
    now = utcnow()
    m = MILESTONES.c
    async with ctx.db.session() as session:
        due = (
            await session.execute(
                sa.select(m.goal_id, m.period, m.team_id, m.at)
                .where(m.status == "paying", sa.or_(m.claimed_until.is_(None), m.claimed_until < now))
                .limit(limit)
            )
        ).all()
    for r in due:
        await pay_milestone(ctx, (r.goal_id, r.period, r.team_id, r.at))
    return len(due)


# --- the end of a period ------------------------------------------------------------------------


async def summarize_ended(ctx: Context, now: datetime | None = None, limit: int = 200) -> int:
    """Post each ended period's summary to its team's feed: how far the team got and its top
    contributors. Returns how many periods it summed up."""
    now = now or utcnow()
    t = TOTALS.c
    done = 0
    async with ctx.db.transaction() as session:
        ended = (
            await session.execute(
                sa.select(t.goal_id, t.period, t.team_id, t.total, t.contributors)
                .where(t.summarized.is_(False), t.ends_at <= now)
                .order_by(t.ends_at)
                .limit(limit)
            )
        ).all()
        for r in ended:
            goal = goal_of(ctx, r.goal_id)
            claimed = await session.execute(
                sa.update(TOTALS)
                .where(
                    t.goal_id == r.goal_id,
                    t.period == r.period,
                    t.team_id == r.team_id,
                    t.summarized.is_(False),
                )
                .values(summarized=True)
                .returning(t.goal_id)
            )
            if claimed.first() is None or goal is None:
                continue
            top = await _top(session, r.goal_id, r.period, r.team_id, 3)
            # The feed is read by the team's members: they see each other by handle, never by id.
            who = await members.profiles(ctx, session, [mid for mid, _ in top])
            teams.post(
                session,
                r.team_id,
                "goal_summary",
                None,
                {
                    "goal_id": goal.id,
                    "goal_name": goal.name,
                    "period": r.period,
                    "total": number(r.total),
                    "target": number(goal.target),
                    "percent": percent(goal, r.total),
                    "contributors": r.contributors,
                    "top": [
                        {
                            "handle": who[mid].handle,
                            "display_name": who[mid].display_name,
                            "amount": number(a),
                        }
                        for mid, a in top
                    ],
                },
                now,
            )
            done += 1
    return done


async def _top(
    session: AsyncSession, goal_id: str, period: str, team_id: str, limit: int
) -> list[tuple[str, float]]:
    c = CONTRIBUTIONS.c
    found = await session.execute(
        sa.select(c.member_id, c.amount)
        .where(c.goal_id == goal_id, c.period == period, c.team_id == team_id, c.amount > 0)
        .order_by(c.amount.desc(), c.member_id)
        .limit(limit)
    )
    return [(r.member_id, r.amount) for r in found]


# --- what members, boards and the console read -------------------------------------------------


async def team_totals(
    session: AsyncSession, goal_id: str, period: str, team_ids: list[str] | None = None, limit: int = 100
) -> list[tuple[str, float, int]]:
    """Teams' progress on a goal in a period, highest first: (team, total, contributors)."""
    t = TOTALS.c
    q = sa.select(t.team_id, t.total, t.contributors).where(t.goal_id == goal_id, t.period == period)
    if team_ids is not None:
        q = q.where(t.team_id.in_(sorted(set(team_ids))))
    found = await session.execute(q.order_by(t.total.desc(), t.team_id).limit(limit))
    return [(r.team_id, r.total, r.contributors) for r in found]


async def member_contributions(
    session: AsyncSession, goal_id: str, period: str, team_id: str, limit: int | None = None
) -> list[tuple[str, float]]:
    """A team's contributors in a period, most first (a team's breakdown by member)."""
    c = CONTRIBUTIONS.c
    q = (
        sa.select(c.member_id, c.amount)
        .where(c.goal_id == goal_id, c.period == period, c.team_id == team_id, c.amount > 0)
        .order_by(c.amount.desc(), c.member_id)
    )
    if limit is not None:
        q = q.limit(limit)
    return [(r.member_id, r.amount) for r in await session.execute(q)]


async def _team_rank(session: AsyncSession, gk: GoalKey, amount: float) -> int:
    """1 + how many of a team's members contributed more (a team of thousands, not a community)."""
    c = CONTRIBUTIONS.c
    above = await session.execute(
        sa.select(sa.func.count()).where(
            c.goal_id == gk[0], c.period == gk[1], c.team_id == gk[2], c.amount > amount
        )
    )
    return 1 + int(above.scalar_one())


async def _community_rank(session: AsyncSession, gk: GoalKey, amount: float) -> int:
    """1 + how many members contributed more (from the levels: a few rows, however many members)."""
    lv = LEVELS.c
    above = await session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(lv.members), 0)).where(
            lv.goal_id == gk[0], lv.period == gk[1], lv.team_id == gk[2], lv.amount > amount
        )
    )
    return 1 + int(above.scalar_one())


async def team_goals(ctx: Context, member_id: str, team_id: str, now: datetime | None = None) -> TeamGoalsOut:
    """Every goal of the team's kind, as this member sees it now: the team's progress, the
    milestones with what they earned, their own contribution, share and rank, and each member's
    contribution (a community team: the top ten and the member)."""
    now = now or utcnow()
    content = teams_content(ctx)
    community_kind = content.kind(team_id)
    async with ctx.db.session() as session:
        if community_kind is not None and community_kind.community:
            kind_id, community = community_kind.id, True
            profile = await members.profile(ctx, session, member_id)
            my_joined = profile.joined_at
        else:
            team = await teams.get_team(session, team_id)
            if team is None:
                raise not_found("team", team_id)
            placements = (await members.placements(session, [member_id]))[member_id]
            mine = next((p for p in placements if p.team_id == team_id), None)
            if mine is None:
                raise ProblemError(
                    403, "not_a_team_member", f"Only the members of team '{team_id}' see its goals."
                )
            kind_id, community, my_joined = team.kind, False, mine.joined_at
        goals = [g for g in content.goals if g.kind == kind_id]
        out = [
            await _goal_out(ctx, session, goal, team_id, member_id, my_joined, community, now)
            for goal in goals
        ]
    return TeamGoalsOut(team_id=team_id, kind=kind_id, goals=out)


def _status(goal: TeamGoal, now: datetime) -> str:
    w = goal.window
    if w is not None and w.opens_after(now):
        return "upcoming"
    if w is not None and w.closed_at(now):
        return "ended"
    return "active"


async def _goal_out(
    ctx: Context,
    session: AsyncSession,
    goal: TeamGoal,
    team_id: str,
    member_id: str,
    my_joined: datetime | None,
    community: bool,
    now: datetime,
) -> TeamGoalOut:
    status = _status(goal, now)
    # An ended dated event shows how it finished; an upcoming one its first period.
    at = now
    if status == "upcoming" and goal.window and goal.window.start:
        at = goal.window.start
    elif status == "ended" and goal.window and goal.window.end:
        at = goal.window.end - timedelta(microseconds=1)
    span = span_at(goal, at)
    gk = (goal.id, span.key, team_id)
    t, m = TOTALS.c, MILESTONES.c
    row = (
        await session.execute(
            sa.select(t.total, t.contributors).where(
                t.goal_id == gk[0], t.period == gk[1], t.team_id == gk[2]
            )
        )
    ).first()
    total, contributors = (row.total, row.contributors) if row else (0.0, 0)
    reached = {
        r.at: r
        for r in await session.execute(
            sa.select(m.at, m.reached_at, m.period_start, m.status).where(
                m.goal_id == gk[0], m.period == gk[1], m.team_id == gk[2]
            )
        )
    }
    mine = (await _amounts_of(session, goal.id, span.key, team_id, [member_id])).get(member_id, 0.0)
    board: list[ContributionOut] = []
    if community:
        top = await member_contributions(session, goal.id, span.key, team_id, limit=TOP)
        my_rank = await _community_rank(session, gk, mine) if mine > 0 else None
        listed = list(top)
        if mine > 0 and member_id not in {x for x, _ in top}:
            listed.append((member_id, mine))
        in_team = {x for x, _ in listed}
    elif await members.roster_size(session, team_id) > ROSTER_LISTED:
        # A big team (a store of thousands): its top contributors and the member, as a community.
        top = await member_contributions(session, goal.id, span.key, team_id, limit=TOP)
        my_rank = await _team_rank(session, gk, mine) if mine > 0 else None
        listed = list(top)
        if member_id not in {x for x, _ in top}:
            listed.append((member_id, mine))
        placed = (await members.placements(session, [x for x, _ in listed])).items()
        in_team = {x for x, found in placed if any(p.team_id == team_id for p in found)}
    else:
        listed = await member_contributions(session, goal.id, span.key, team_id)
        roster = await members.team_roster(session, team_id)
        in_team = {p.member_id for p in roster}
        listed += [(p.member_id, 0.0) for p in roster if p.member_id not in {x for x, _ in listed}]
        my_rank = 1 + sum(1 for _, a in listed if a > mine) if mine > 0 else None
    handles = await members.handles(ctx, [x for x, _ in listed])
    # 1 + how many contributed more, for each amount listed (ties share a rank).
    ranks: dict[float, int] = {}
    for i, (_, amount) in enumerate(sorted(listed, key=lambda xa: -xa[1])):
        ranks.setdefault(amount, i + 1)
    for x, amount in listed:
        rank = ranks[amount] if amount > 0 else None
        if x == member_id:
            rank = my_rank
        board.append(
            ContributionOut(
                handle=handles.get(x),
                amount=number(amount),
                rank=rank,
                me=x == member_id,
                in_team=x in in_team,
            )
        )
    milestones = []
    for ms in goal.milestones:
        r = reached.get(ms.at)
        my: MyMilestoneOut | None = None
        if r is not None:
            d = decide(goal, ms, mine, my_joined, r.period_start, r.reached_at)
            my = MyMilestoneOut(
                outcome=d.outcome, reward=reward_out(d.reward), reason=d.reason, paid=r.status == "paid"
            )
        milestones.append(
            MilestoneOut(
                at=ms.at,
                name=ms.name,
                threshold=number(goal.threshold(ms)),
                reward=_reward_model(ms.reward),
                non_contributor=reward_out(ms.non_contributor),
                reached_at=r.reached_at if r is not None else None,
                mine=my,
            )
        )
    return TeamGoalOut(
        goal_id=goal.id,
        name=goal.name,
        description=goal.description,
        measure="members" if goal.counts_members else goal.goal.kind,
        status=status,
        period=goal.period,
        period_key=span.key,
        starts_at=span.starts_at,
        ends_at=span.ends_at,
        progress=number(total),
        target=number(goal.target),
        percent=percent(goal, total),
        remaining_text=goal_remaining_text(ctx, goal, total),
        min_contribution=number(goal.min_contribution) if goal.min_contribution is not None else None,
        member_cap=number(goal.member_cap) if goal.member_cap is not None else None,
        milestones=milestones,
        contributors=contributors,
        my_contribution=number(mine),
        my_share=round(mine / total, 4) if total > 0 else 0.0,
        my_rank=my_rank,
        members=board,
    )


def _reward_model(reward: Reward) -> RewardOut:
    return RewardOut(points=reward.points, growth=reward.growth, badge=reward.badge)
