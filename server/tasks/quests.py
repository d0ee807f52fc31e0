"""The quest engine: member events move tasks and quest chains forward; members read where they stand.

Events reach `progress_quests` through the spine's dispatch, a run of them in one transaction
and each event once. For every quest whose goals name the event's type, the member's run for
the period the event falls in (in the member's local time) is created-and-locked in one
statement, the event is applied to the first unlocked step that accepts it (an event counts at
most once per quest), and what completes is rewarded through the ledger with keys that name the
quest, the period, the round and the step: a second delivery awards nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from server.content.goals import Reward, advance, number, remaining_text, step_progress
from server.content.periods import local_day, period_end, period_key
from server.db import driver_connection, insert_or_touch, utcnow
from server.errors import ProblemError
from server.events.dispatch import DomainEvent, emit
from server.ledger import service as ledger
from server.members import service as members
from server.metrics import QUEST_COMPLETIONS
from server.realtime.hub import send_live
from server.tasks.models import QuestRun
from server.tasks.quest_content import Quest, QuestCatalog, Step
from server.tasks.schemas import QuestOut, QuestRewardOut, QuestStepOut

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)


FINISHED_KEPT = 200_000  # finished runs remembered per process (some tens of MB at most)


def step_remaining_text(ctx: Context, step: Step, progress: float) -> str:
    return remaining_text(ctx.content.get("events"), step.goal, step.remaining_text, progress)


# --- applying events ----------------------------------------------------------------------------


def _steps_done(quest: Quest, st: dict[str, Any]) -> set[str]:
    """The quest's steps done in this round (steps dropped from the content since do not count)."""
    return {step.id for step in quest.all_steps if st.get(step.id, {}).get("done")}


def unlocked(quest: Quest, done: set[str]) -> list[int]:
    """Indexes of the steps not done whose required steps are all done."""
    return [
        i
        for i, step in enumerate(quest.all_steps)
        if step.id not in done and all(r in done for r in quest.step_requires(i))
    ]


@dataclass
class _Run:
    completions: int
    state: dict[str, Any]
    completed_at: datetime | None
    dirty: bool = False


@dataclass
class _Outcome:
    progress: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    completed: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    events: list[DomainEvent] = field(default_factory=list)  # for the domains, after the messages
    rewards: list[ledger.Posting] = field(default_factory=list)
    badges: list[tuple[str, str, str]] = field(default_factory=list)  # (member, badge, key)


def _reward_out(reward: Reward) -> dict[str, Any]:
    return {"points": reward.points, "growth": reward.growth, "badge": reward.badge}


def _reward(
    out: _Outcome, member_id: str, reward: Reward, key: str, reason: str, details: dict[str, Any]
) -> None:
    """Queue a reward; the run's rewards are posted together at its end."""
    for currency, amount in (("points", reward.points), ("growth", reward.growth)):
        if amount:
            out.rewards.append(ledger.Posting(member_id, currency, amount, reason, "quest", key, details))
    if reward.badge:
        out.badges.append((member_id, reward.badge, key))


def _apply(
    ctx: Context,
    quest: Quest,
    period: str,
    run: _Run,
    event: DomainEvent,
    day: date,
    out: _Outcome,
) -> bool:
    """Apply one event to a member's run of a quest; True when the quest completed a round."""
    done = _steps_done(quest, run.state)
    for index in unlocked(quest, done):
        step = quest.all_steps[index]
        if not step.goal.accepts(event.type, event.properties):
            continue
        advance(step.goal, run.state.setdefault(step.id, {}), event.properties, day)
        return _moved(ctx, quest, period, run, event, index, done, out)  # at most once per quest
    return False


def _moved(
    ctx: Context,
    quest: Quest,
    period: str,
    run: _Run,
    event: DomainEvent,
    index: int,
    done: set[str],
    out: _Outcome,
) -> bool:
    """What follows a step's progress (advanced by the caller): the step done and rewarded when
    it reaches its target, the app's progress message, the quest completed with its last step.
    True when the quest completed a round."""
    st = run.state
    step = quest.all_steps[index]
    sst = st.setdefault(step.id, {})
    run.dirty = True
    progress = step_progress(step.goal, sst)
    target = step.goal.goal_target
    member = event.member_id
    round_ = run.completions + 1
    base = {"quest_id": quest.id, "period": period, "round": round_}
    if progress >= target:
        sst["done"] = utcnow().isoformat()
        done.add(step.id)
        if quest.is_chain:
            QUEST_COMPLETIONS.labels("step").inc()
            _reward(
                out,
                member,
                step.reward,
                f"quest:{quest.id}:{period}:{round_}:{step.id}",
                "quest_step_completed",
                {
                    **base,
                    "rule": f"quest:{quest.id}:{step.id}",
                    "step_id": step.id,
                    "event_id": event.event_id,
                },
            )
            out.completed.append(
                (
                    member,
                    {
                        **base,
                        "step_id": step.id,
                        "title": step.title,
                        "quest_title": quest.title,
                        "reward": _reward_out(step.reward),
                        "quest_completed": len(done) == len(quest.all_steps),
                    },
                )
            )
    out.progress[(member, quest.id)] = {
        **base,
        "step_id": step.id,
        "title": step.title if quest.is_chain else quest.title,
        "progress": number(progress),
        "target": number(target),
        "steps_done": len(done),
        "steps": len(quest.all_steps),
        "remaining_text": step_remaining_text(ctx, step, progress),
    }
    if len(done) == len(quest.all_steps):
        _complete(quest, period, run, event, out)
        return True
    return False


def _complete(
    quest: Quest,
    period: str,
    run: _Run,
    event: DomainEvent,
    out: _Outcome,
) -> None:
    member = event.member_id
    run.completions += 1
    round_ = run.completions
    now = utcnow()
    run.completed_at = now
    run.state = {}  # the next round, if the quest allows one, starts from nothing
    QUEST_COMPLETIONS.labels("quest").inc()
    base = {"quest_id": quest.id, "period": period, "round": round_}
    _reward(
        out,
        member,
        quest.reward,
        f"quest:{quest.id}:{period}:{round_}",
        "quest_completed",
        {**base, "rule": f"quest:{quest.id}", "event_id": event.event_id},
    )
    out.completed.append(
        (
            member,
            {
                **base,
                "step_id": None,
                "title": quest.title,
                "quest_title": quest.title,
                "reward": _reward_out(quest.reward),
                "quest_completed": True,
                "completions": run.completions,
                "times": quest.times,
            },
        )
    )
    out.events.append(
        DomainEvent(
            event_id=f"quest:{member}:{quest.id}:{period}:{round_}",
            member_id=member,
            type="quest.completed",
            # When the member did what completed it: periods count from there, late events too.
            occurred_at=event.occurred_at,
            properties=base,
            source="quests",
        )
    )


def wants(ctx: Context, event_type: str) -> bool:
    catalog: QuestCatalog | None = ctx.content.get("quests")
    return catalog is not None and event_type in catalog.by_event


# Statements of the event path, built once (SQLAlchemy then only binds their parameters).
_RUNS = QuestRun.__table__
_SAVE_RUNS = (
    sa.update(_RUNS)
    .where(
        _RUNS.c.member_id == sa.bindparam("m"),
        _RUNS.c.quest_id == sa.bindparam("q"),
        _RUNS.c.period == sa.bindparam("p"),
    )
    .values(
        completions=sa.bindparam("c"),
        state=sa.bindparam("s"),
        completed_at=sa.bindparam("t"),
        updated_at=sa.bindparam("u"),
    )
    .execution_options(synchronize_session=False)
)


_LOCK_RUNS: dict[str, Any] = {}  # by SQL dialect

# On PostgreSQL the runs of a batch go through the driver's connection (in the session's
# transaction), as arrays of one prepared statement: per-row work in the ORM layer was the
# largest cost of a batch of events.
_PG_LOCK_RUNS = """
INSERT INTO quest_runs (member_id, quest_id, period, completions, state, updated_at)
SELECT k.m, k.q, k.p, 0, '{}'::json, $4
FROM unnest($1::text[], $2::text[], $3::text[]) AS k(m, q, p)
ORDER BY k.m, k.q, k.p
ON CONFLICT (member_id, quest_id, period) DO UPDATE SET updated_at = excluded.updated_at
RETURNING member_id, quest_id, period, completions, state::text, completed_at
"""
_PG_SAVE_RUNS = """
UPDATE quest_runs AS r
SET completions = u.c, state = u.s::json, completed_at = u.t, updated_at = $7
FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::timestamptz[])
    AS u(m, q, p, c, s, t)
WHERE r.member_id = u.m AND r.quest_id = u.q AND r.period = u.p
"""


async def _save_runs(session: AsyncSession, dirty: list[tuple[tuple[str, str, str], _Run]]) -> None:
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql":
        driver = await driver_connection(session)
        await driver.execute(
            _PG_SAVE_RUNS,
            [m for (m, _, _), _ in dirty],
            [q for (_, q, _), _ in dirty],
            [p for (_, _, p), _ in dirty],
            [r.completions for _, r in dirty],
            [json.dumps(r.state, separators=(",", ":")) for _, r in dirty],
            [r.completed_at for _, r in dirty],
            now,
        )
        return
    await session.execute(
        _SAVE_RUNS,
        [
            {"m": m, "q": q, "p": p, "c": r.completions, "s": r.state, "t": r.completed_at, "u": now}
            for (m, q, p), r in dirty
        ],
    )


async def _completed_quests(session: AsyncSession, pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    if not pairs:
        return set()
    t = QuestRun.__table__
    rows = await session.execute(
        sa.select(t.c.member_id, t.c.quest_id)
        .where(sa.tuple_(t.c.member_id, t.c.quest_id).in_(sorted(pairs)), t.c.completions > 0)
        .distinct()
    )
    return {(r.member_id, r.quest_id) for r in rows}


async def _lock_runs(
    session: AsyncSession, keys: list[tuple[str, str, str]]
) -> dict[tuple[str, str, str], _Run]:
    """Create-and-lock each member's run of each quest and period, in key order.

    On PostgreSQL: one prepared statement taking the keys as arrays. Elsewhere: the keys are
    parameters of one compiled statement, sent in pages of rows, still in key order.
    """
    now = utcnow()
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        driver = await driver_connection(session)
        members, quests, periods = (list(col) for col in zip(*keys, strict=True))
        pg_rows = await driver.fetch(_PG_LOCK_RUNS, members, quests, periods, now)
        return {(r[0], r[1], r[2]): _Run(r[3], json.loads(r[4]) if r[4] else {}, r[5]) for r in pg_rows}
    stmt = _LOCK_RUNS.get(dialect)
    if stmt is None:
        t = _RUNS
        stmt = _LOCK_RUNS[dialect] = insert_or_touch(
            session, t, ["member_id", "quest_id", "period"], "updated_at"
        ).returning(t.c.member_id, t.c.quest_id, t.c.period, t.c.completions, t.c.state, t.c.completed_at)
    rows = await session.execute(
        stmt,
        [
            {"member_id": m, "quest_id": q, "period": p, "completions": 0, "state": {}, "updated_at": now}
            for m, q, p in keys
        ],
    )
    return {
        (r.member_id, r.quest_id, r.period): _Run(r.completions, dict(r.state or {}), r.completed_at)
        for r in rows
    }


def _finished(ctx: Context) -> set[tuple[str, str, str, int]]:
    """Runs this process has seen finished for their period, with the quest's `times` then: they
    stay finished, so events for them need no lock and no write."""
    finished: set[tuple[str, str, str, int]] | None = ctx.extras.get("quests_finished")
    if finished is None or len(finished) > FINISHED_KEPT:
        finished = ctx.extras["quests_finished"] = set()
    return finished


async def progress_quests(ctx: Context, session: AsyncSession, events: list[DomainEvent]) -> None:
    """Apply a run of member events (sorted by member, then time) to every quest that counts them."""
    catalog: QuestCatalog = ctx.content.get("quests")
    found = await members.profiles(ctx, session, sorted({e.member_id for e in events}))
    plan: list[tuple[DomainEvent, Quest, str, date]] = []
    for event in events:
        profile = found[event.member_id]
        tier = profile.tier
        day = local_day(profile.timezone, event.occurred_at)
        for quest in catalog.by_event.get(event.type, ()):
            if not quest.open_at(event.occurred_at):
                continue
            if quest.tiers and tier not in quest.tiers:
                continue
            if not any(s.goal.accepts(event.type, event.properties) for s in quest.all_steps):
                continue
            plan.append((event, quest, period_key(quest.period, day), day))
    finished = _finished(ctx)
    plan = [p for p in plan if (p[0].member_id, p[1].id, p[2], p[1].times) not in finished]
    if not plan:
        return
    # Quests completed before (None), or in this run by the event named: a quest unlocked by an
    # event does not count that same event.
    done: dict[tuple[str, str], str | None] = dict.fromkeys(
        await _completed_quests(session, {(e.member_id, r) for e, q, _, _ in plan for r in q.requires})
    )
    # A quest whose prerequisites are neither done nor under way in this run cannot move.
    planned = {(e.member_id, q.id) for e, q, _, _ in plan}
    plan = [
        p
        for p in plan
        if all((p[0].member_id, r) in done or (p[0].member_id, r) in planned for r in p[1].requires)
    ]
    if not plan:
        return
    runs = await _lock_runs(session, sorted({(e.member_id, q.id, p) for e, q, p, _ in plan}))
    written: set[tuple[str, str, str]] = session.info.setdefault("quest_runs_written", set())
    for key, run in runs.items():
        quest = catalog.quests[key[1]]
        # Remembered only as committed: not a run this transaction wrote (it may roll back).
        if run.completions >= quest.times and key not in written:
            finished.add((*key, quest.times))
    out = _Outcome()
    for event, quest, period, day in plan:
        if any(done.get((event.member_id, r), event.event_id) == event.event_id for r in quest.requires):
            continue
        run = runs[(event.member_id, quest.id, period)]
        if run.completions >= quest.times:
            continue
        if _apply(ctx, quest, period, run, event, day, out):
            done.setdefault((event.member_id, quest.id), event.event_id)
    await _write_outcome(ctx, session, runs, out)


async def _write_outcome(
    ctx: Context, session: AsyncSession, runs: dict[tuple[str, str, str], _Run], out: _Outcome
) -> None:
    """The runs moved, their rewards, the app's messages and the events for the other domains."""
    written: set[tuple[str, str, str]] = session.info.setdefault("quest_runs_written", set())
    dirty = [(k, r) for k, r in runs.items() if r.dirty]
    if dirty:
        await _save_runs(session, dirty)
        written.update(k for k, _ in dirty)
    await ledger.post_many(ctx, session, out.rewards)
    for member, badge_id, grant_key in out.badges:
        await _give_badge(ctx, session, member, badge_id, grant_key)
    # One message per member for what a run of events moved: an order that moves five quests
    # is one update for the app (and one publish), not five.
    moved: dict[str, list[dict[str, Any]]] = {}
    for (member, _), data in out.progress.items():
        moved.setdefault(member, []).append(data)
    for member, quests in moved.items():
        send_live(ctx, session, member, "quest.progress", {"quests": quests})
    for member, data in out.completed:
        send_live(ctx, session, member, "quest.completed", data)
    for domain_event in out.events:
        emit(ctx, session, domain_event)


async def progress_helped_steps(ctx: Context, session: AsyncSession, events: list[DomainEvent]) -> None:
    """Friends' help on a quest step: an `assist.helped` event about the asker that names a quest,
    a step, the period it was asked in and an `amount` adds that amount to the step, as if the
    member had done that much of it themselves (a count goal counts it as that many events). A
    step done since, or a period over, takes nothing; each help is one event, handled once."""
    catalog: QuestCatalog | None = ctx.content.get("quests")
    if catalog is None:
        return
    plan: list[tuple[DomainEvent, Quest, str, int, float]] = []
    found = await members.profiles(ctx, session, sorted({e.member_id for e in events}))
    for event in events:
        props = event.properties
        quest = catalog.get(str(props.get("quest_id")))
        amount = props.get("amount")
        period = props.get("period")
        if quest is None or not isinstance(amount, int | float) or isinstance(amount, bool) or amount <= 0:
            continue
        index = next((i for i, s in enumerate(quest.all_steps) if s.id == props.get("step_id")), None)
        if index is None or quest.all_steps[index].goal.kind not in ("count", "sum"):
            continue
        day = local_day(found[event.member_id].timezone, event.occurred_at)
        if period != period_key(quest.period, day) or not quest.open_at(event.occurred_at):
            continue
        plan.append((event, quest, period, index, float(amount)))
    if not plan:
        return
    runs = await _lock_runs(session, sorted({(e.member_id, q.id, p) for e, q, p, _, _ in plan}))
    out = _Outcome()
    for event, quest, period, index, amount in plan:
        run = runs[(event.member_id, quest.id, period)]
        done = _steps_done(quest, run.state)
        if run.completions >= quest.times or index not in unlocked(quest, done):
            continue
        sst = run.state.setdefault(quest.all_steps[index].id, {})
        total = sst.get("n", 0) + amount
        sst["n"] = int(total) if float(total).is_integer() else total
        _moved(ctx, quest, period, run, event, index, done, out)
    await _write_outcome(ctx, session, runs, out)


async def _give_badge(ctx: Context, session: AsyncSession, member_id: str, badge_id: str, key: str) -> None:
    """A quest's badge reward, granted by the badges domain (once per key)."""
    from server.badges.service import grant

    try:
        await grant(
            ctx, session, member_id, badge_id, idempotency_key=key, reason="quest reward", source="quest"
        )
    except ProblemError as exc:  # content changed since (the badge gone, or out of its window)
        log.warning("quest_badge_not_given", member_id=member_id, badge_id=badge_id, code=exc.code)


# --- what a member sees -------------------------------------------------------------------------


def _quest_status(
    quest: Quest, tier: str, now: datetime, finished: bool, completed_ever: set[str]
) -> tuple[str, str | None]:
    """The quest's status for the member now, and why it is locked (if it is)."""
    w = quest.available
    if finished:
        return "completed", None
    if w is not None and w.closed_at(now):
        return "expired", None
    if w is not None and w.opens_after(now):
        return "locked", "not_started"
    if quest.tiers and tier not in quest.tiers:
        return "locked", "tier"
    if any(r not in completed_ever for r in quest.requires):
        return "locked", "requires"
    return "active", None


@dataclass
class _View:
    """What every step of a quest is read against: the member's run and where the quest stands."""

    catalog: QuestCatalog
    zone: str
    today: date
    state: dict[str, Any]
    finished: bool
    status: str
    locked_reason: str | None


def _step_out(
    ctx: Context, quest: Quest, i: int, view: _View, done: set[str], opened: set[int]
) -> QuestStepOut:
    step = quest.all_steps[i]
    target = step.goal.goal_target
    if view.finished or step.id in done:
        s_status, progress = "completed", target
    else:
        progress = step_progress(step.goal, view.state.get(step.id, {}), view.today)
        if view.status in ("locked", "expired"):
            s_status = view.status
        else:
            s_status = "active" if i in opened else "locked"
    if s_status == "completed":
        text = "Done"
    elif s_status == "expired":
        text = "This quest has ended"
    elif s_status == "locked" and view.status == "active":
        needs = quest.step_requires(i)
        text = "Unlocks after: " + ", ".join(s.title for s in quest.all_steps if s.id in needs)
    elif s_status == "locked":
        text = _locked_text(view.catalog, quest, view.locked_reason, view.zone)
    else:
        text = step_remaining_text(ctx, step, progress)
    return QuestStepOut(
        step_id=step.id,
        title=step.title,
        description=step.description,
        status=s_status,
        progress=number(progress),
        target=number(target),
        remaining_text=text,
        requires=quest.step_requires(i),
        reward=QuestRewardOut(**_reward_out(step.reward)),
    )


def _quest_summary(
    quest: Quest, view: _View, steps: list[QuestStepOut], done: set[str]
) -> tuple[float, float, str]:
    """The quest's own progress, target and "what is left": a task's are its one step's; a
    chain counts its steps and names the step under way."""
    locked = view.status == "locked"
    locked_text = _locked_text(view.catalog, quest, view.locked_reason, view.zone) if locked else ""
    if not quest.is_chain:
        text = locked_text if locked else steps[0].remaining_text
        return steps[0].progress, steps[0].target, text
    total = float(len(quest.all_steps))
    progress = total if view.finished else float(len(done))
    current = next((s for s in steps if s.status == "active"), None)
    if view.status == "active" and current is not None:
        return progress, total, f"{current.title}: {current.remaining_text}"
    if locked:
        return progress, total, locked_text
    return progress, total, steps[-1].remaining_text if view.status != "completed" else "Done"


def _quest_out(
    ctx: Context,
    quest: Quest,
    zone: str,
    tier: str,
    now: datetime,
    run: QuestRun | None,
    completed_ever: set[str],
) -> QuestOut:
    today = local_day(zone, now)
    w = quest.available
    completions = run.completions if run else 0
    finished = completions >= quest.times
    status, locked_reason = _quest_status(quest, tier, now, finished, completed_ever)
    state = run.state if run else {}
    view = _View(ctx.content.get("quests"), zone, today, state, finished, status, locked_reason)
    done = _steps_done(quest, state)
    opened = set(unlocked(quest, done))
    steps = [_step_out(ctx, quest, i, view, done, opened) for i in range(len(quest.all_steps))]
    progress, target, text = _quest_summary(quest, view, steps, done)
    return QuestOut(
        quest_id=quest.id,
        title=quest.title,
        description=quest.description,
        kind="chain" if quest.is_chain else "task",
        period=quest.period,
        period_key=period_key(quest.period, today),
        status=status,
        locked_reason=locked_reason,
        progress=number(progress),
        target=number(target),
        remaining_text=text,
        times=quest.times,
        completions=completions,
        completed_at=run.completed_at if run else None,
        resets_at=period_end(quest.period, today, zone),
        available_from=w.start.astimezone(UTC) if w and w.start else None,
        available_until=w.end.astimezone(UTC) if w and w.end else None,
        tiers=quest.tiers,
        requires=quest.requires,
        reward=QuestRewardOut(**_reward_out(quest.reward)),
        steps=steps,
    )


def _locked_text(catalog: QuestCatalog, quest: Quest, reason: str | None, zone: str) -> str:
    if reason == "not_started" and quest.available and quest.available.start:
        start = quest.available.start.astimezone(ZoneInfo(zone))
        return f"Starts {start:%Y-%m-%d %H:%M}"
    if reason == "tier":
        return "For " + ", ".join(quest.tiers or []) + " members"
    if reason == "requires":
        titles = [catalog.quests[r].title for r in quest.requires if r in catalog.quests]
        return "Complete first: " + ", ".join(titles)
    return "Locked"


async def member_quests(
    ctx: Context, member_id: str, now: datetime | None = None, only: str | None = None
) -> list[QuestOut]:
    """Every quest (or the one named), as the member sees it now."""
    now = now or utcnow()
    catalog: QuestCatalog = ctx.content.get("quests")
    quests = list(catalog.quests.values())
    if only is not None:
        quest = catalog.get(only)
        if quest is None:
            raise ProblemError(404, "quest_not_found", f"There is no quest '{only}'.")
        quests = [quest]
    if not quests:
        return []
    async with ctx.db.session() as session:
        profile = await members.profile(ctx, session, member_id)
        zone, tier = profile.timezone, profile.tier
        today = local_day(zone, now)
        t = QuestRun.__table__
        wanted = [(q.id, period_key(q.period, today)) for q in quests]
        rows = await session.execute(
            sa.select(QuestRun).where(
                t.c.member_id == member_id,
                sa.tuple_(t.c.quest_id, t.c.period).in_(wanted),
            )
        )
        runs = {r.quest_id: r for r in rows.scalars()}
        needed = sorted({r for q in quests for r in q.requires})
        completed_ever: set[str] = set()
        if needed:
            completed_ever = set(
                (
                    await session.execute(
                        sa.select(t.c.quest_id)
                        .where(t.c.member_id == member_id, t.c.quest_id.in_(needed), t.c.completions > 0)
                        .distinct()
                    )
                ).scalars()
            )
    return [_quest_out(ctx, q, zone, tier, now, runs.get(q.id), completed_ever) for q in quests]
