"""Friend help: a member asks friends to help on a quest step, a team goal or a draw ticket.

A request needs a number of helps (content/teams.yaml `assist`) before it expires. Each friend
helps once per request, and at most `daily_helps` times per local day in all; never oneself.
Each counted help pays the helper a small reward through the ledger (once per request and
helper), and is an `assist.helped` event about the asker: the quests domain adds the help's
amount to the step asked on, and a team goal that counts `assist.helped` counts it. When the
helps reach the number needed, the request completes (a ticket request pays its tickets).

A help from an account that shares a device, an address or a payment means with the asker, or
from one of a burst of new accounts helping the same member, is held the way referrals are (the
referral program's fraud signals and thresholds): neither counted nor paid until a manager
approves it. The asker sees exactly how many helps are left; nothing can be bought to need fewer.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from server.content.goals import number
from server.content.periods import local_day, period_end, period_key
from server.db import lock_members, utcnow
from server.errors import ProblemError
from server.events.dispatch import DomainEvent, emit
from server.events.pipeline import Emits
from server.ledger import service as ledger
from server.members import service as members
from server.realtime.hub import send_live
from server.referrals import landing
from server.referrals import service as referrals
from server.tasks.quests import member_quests
from server.teams.assist_content import HELPED, AssistRules
from server.teams.assist_schemas import AssistOut, HelpOut, HelpRewardOut
from server.teams.content import teams_content
from server.teams.models import Assist, AssistHelp

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)

SOURCE = "assist"  # the ledger source of helpers' rewards and of tickets
ASSIST_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16}$")
ASSISTS = Assist.__table__
HELPS = AssistHelp.__table__
LISTED = 50  # a member's requests listed, newest first

# What friend help tells the other domains: about the asker for each counted help (quests add
# its amount to the step asked on; team goals may count it), about the helper for each help given.
EMITS = {
    HELPED: Emits(
        {
            "assist_id": "string",
            "target": "string",
            "quest_id": "string",
            "step_id": "string",
            "period": "string",
            "amount": "number",
            "goal_id": "string",
            "team_id": "string",
            "helps": "integer",
            "helps_needed": "integer",
            "new_member": "boolean",
        },
        nouns=("help from a friend", "helps from friends"),
    ),
    "assist.given": Emits(
        {"assist_id": "string", "target": "string"},
        nouns=("help given to a friend", "helps given to friends"),
    ),
}


def assist_rules(ctx: Context) -> AssistRules:
    """Friend help as content says; 404 `assists_disabled` while it is off."""
    rules = teams_content(ctx).assist
    if not rules.enabled:
        raise ProblemError(404, "assists_disabled", "Friend help is not running.")
    return rules


def link_for(ctx: Context, assist_id: str) -> str:
    return f"{ctx.settings.public_base_url.rstrip('/')}/a/{assist_id}"


def _not_found(assist_id: str) -> ProblemError:
    return ProblemError(
        404, "assist_not_found", f"There is no call for help '{assist_id[:24]}'; check the link."
    )


def status_of(a: Assist, now: datetime) -> str:
    if a.completed_at is not None:
        return "completed"
    return "expired" if now >= a.expires_at else "open"


# --- asking -------------------------------------------------------------------------------------


@dataclass
class _Target:
    """What a request asks help on, as content and the member's state allow it now."""

    target: str
    key: str
    what: str
    helps_needed: int
    quest_id: str | None = None
    step_id: str | None = None
    period: str | None = None
    goal_id: str | None = None
    team_id: str | None = None
    amount: float = 0.0
    tickets: int = 0


def _not_allowed(what: str) -> ProblemError:
    return ProblemError(409, "help_not_allowed", f"Friends cannot help on {what}.")


async def _quest_target(
    ctx: Context, rules: AssistRules, member_id: str, quest_id: str, step_id: str | None, now: datetime
) -> _Target:
    quest = (await member_quests(ctx, member_id, now, only=quest_id))[0]
    if step_id is None:
        step = next((s for s in quest.steps if s.status == "active"), None)
        if step is None:
            raise ProblemError(
                409, "step_not_open", f"Nothing of '{quest.title}' is under way for you now ({quest.status})."
            )
    else:
        step = next((s for s in quest.steps if s.step_id == step_id), None)
        if step is None:
            raise ProblemError(404, "step_not_found", f"Quest '{quest_id}' has no step '{step_id}'.")
    allowed = rules.for_step(quest.quest_id, step.step_id)
    if allowed is None:
        raise _not_allowed(f"'{step.title}'")
    if quest.status != "active" or step.status != "active":
        raise ProblemError(
            409,
            "step_not_open",
            f"'{step.title}' is {step.status} for you now: friends help on a step under way.",
        )
    return _Target(
        target="quest",
        key=f"quest:{quest.quest_id}:{step.step_id}",
        what=step.title,
        helps_needed=allowed.helps_needed or rules.helps_needed,
        quest_id=quest.quest_id,
        step_id=step.step_id,
        period=quest.period_key,
        amount=allowed.progress,
    )


async def _goal_target(
    ctx: Context, rules: AssistRules, member_id: str, goal_id: str, now: datetime
) -> _Target:
    content = teams_content(ctx)
    goal = next((g for g in content.goals if g.id == goal_id), None)
    if goal is None:
        raise ProblemError(404, "team_goal_not_found", f"There is no team goal '{goal_id}'.")
    allowed = rules.for_goal(goal_id)
    if allowed is None:
        raise _not_allowed(f"team goal '{goal.name}'")
    kind = content.kind(goal.kind)
    if kind is not None and kind.community:
        team_id: str | None = kind.id
    else:
        async with ctx.db.session() as session:
            team_id = (await members.profile(ctx, session, member_id)).teams.get(goal.kind)
    if team_id is None:
        raise ProblemError(
            409, "not_in_a_team", f"'{goal.name}' is a goal of a team you are not in; join one first."
        )
    return _Target(
        target="goal",
        key=f"goal:{goal_id}",
        what=goal.name,
        helps_needed=allowed.helps_needed or rules.helps_needed,
        goal_id=goal_id,
        team_id=team_id,
        period=period_key(goal.period, local_day(goal.zone, now)),
    )


async def _target(
    ctx: Context,
    rules: AssistRules,
    member_id: str,
    *,
    quest_id: str | None,
    step_id: str | None,
    goal_id: str | None,
    ticket: bool,
    now: datetime,
) -> _Target:
    named = [n for n, given in (("quest_id", quest_id), ("goal_id", goal_id), ("ticket", ticket)) if given]
    if len(named) != 1 or (step_id is not None and quest_id is None):
        raise ProblemError(
            400,
            "invalid_assist_target",
            "Ask help on one thing: a quest (`quest_id`, with `step_id` for a chain's step), "
            "a team goal (`goal_id`) or a draw ticket (`ticket: true`).",
        )
    if quest_id is not None:
        return await _quest_target(ctx, rules, member_id, quest_id, step_id, now)
    if goal_id is not None:
        return await _goal_target(ctx, rules, member_id, goal_id, now)
    if rules.tickets is None:
        raise _not_allowed("draw tickets")
    return _Target(
        target="ticket",
        key="ticket",
        what=rules.page.ticket_name,
        helps_needed=rules.tickets.helps_needed or rules.helps_needed,
        tickets=rules.tickets.tickets,
    )


async def ask(
    ctx: Context,
    member_id: str,
    *,
    quest_id: str | None = None,
    step_id: str | None = None,
    goal_id: str | None = None,
    ticket: bool = False,
    signals: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> AssistOut:
    """Open a call for help. One open request per target per member (409
    `assist_already_open`, naming it); the target must allow help and be under way for the member."""
    rules = assist_rules(ctx)
    now = now or utcnow()
    t = await _target(
        ctx, rules, member_id, quest_id=quest_id, step_id=step_id, goal_id=goal_id, ticket=ticket, now=now
    )
    prints = referrals.fingerprints_of(ctx, signals or {})
    async with ctx.db.transaction() as session:
        await lock_members(session, [member_id])
        open_id = (
            await session.execute(
                sa.select(ASSISTS.c.id).where(
                    ASSISTS.c.member_id == member_id,
                    ASSISTS.c.target_key == t.key,
                    ASSISTS.c.expires_at > now,
                    ASSISTS.c.completed_at.is_(None),
                )
            )
        ).scalar()
        if open_id is not None:
            raise ProblemError(
                409,
                "assist_already_open",
                f"You asked for help on {t.what} already; share that request ({link_for(ctx, open_id)}).",
                assist_id=open_id,
            )
        await referrals.remember(session, [(member_id, k, v) for k, v in prints.items()], now)
        a = Assist(
            id=secrets.token_urlsafe(12),
            member_id=member_id,
            target=t.target,
            target_key=t.key,
            quest_id=t.quest_id,
            step_id=t.step_id,
            period=t.period,
            goal_id=t.goal_id,
            team_id=t.team_id,
            amount=t.amount,
            tickets=t.tickets,
            helps_needed=t.helps_needed,
            created_at=now,
            expires_at=now + timedelta(hours=rules.expiry_hours),
        )
        session.add(a)
        profile = await members.profile(ctx, session, member_id)
    return _out(ctx, a, profile, [], viewer=member_id, now=now)


# --- reading ------------------------------------------------------------------------------------


def what_of(ctx: Context, a: Assist) -> str:
    """What a request asks help on, in the words content uses now."""
    if a.target == "ticket":
        return teams_content(ctx).assist.page.ticket_name
    if a.target == "goal":
        goal = next((g for g in teams_content(ctx).goals if g.id == a.goal_id), None)
        return goal.name if goal is not None else "a team goal"
    catalog = ctx.content.get("quests")
    quest = catalog.get(a.quest_id or "") if catalog is not None else None
    if quest is None:
        return "a quest"
    step = next((s for s in quest.all_steps if s.id == a.step_id), None)
    return step.title if step is not None and quest.is_chain else quest.title


def _out(
    ctx: Context,
    a: Assist,
    asker: members.Profile,
    helps: list[tuple[AssistHelp, str | None]],
    *,
    viewer: str | None,
    now: datetime,
) -> AssistOut:
    mine = viewer == a.member_id
    return AssistOut(
        assist_id=a.id,
        status=status_of(a, now),  # type: ignore[arg-type]
        target=a.target,  # type: ignore[arg-type]
        what=what_of(ctx, a),
        asker=asker.handle or "",
        asker_name=asker.display_name,
        helps_needed=a.helps_needed,
        helps=a.helps,
        helps_left=max(0, a.helps_needed - a.helps),
        expires_at=a.expires_at,
        completed_at=a.completed_at,
        link=link_for(ctx, a.id),
        helpers=[handle for h, handle in helps if h.status == "counted" and handle],
        quest_id=a.quest_id,
        step_id=a.step_id,
        goal_id=a.goal_id,
        tickets=a.tickets,
        mine=mine,
        helped_by_me=viewer is not None and any(h.helper_id == viewer for h, _ in helps),
        pending_helps=sum(1 for h, _ in helps if h.status == "held") if mine else None,
        created_at=a.created_at,
    )


async def _helps_of(
    ctx: Context, session: AsyncSession, assist_ids: list[str]
) -> dict[str, list[tuple[AssistHelp, str | None]]]:
    found: dict[str, list[tuple[AssistHelp, str | None]]] = {i: [] for i in assist_ids}
    if not assist_ids:
        return found
    rows = list(
        (
            await session.execute(
                sa.select(AssistHelp)
                .where(HELPS.c.assist_id.in_(assist_ids))
                .order_by(HELPS.c.assist_id, HELPS.c.at, HELPS.c.helper_id)
            )
        ).scalars()
    )
    people = await members.profiles(ctx, session, sorted({h.helper_id for h in rows}))
    for h in rows:
        found[h.assist_id].append((h, people[h.helper_id].handle))
    return found


def check_assist_id(assist_id: str) -> str:
    if not ASSIST_ID_RE.fullmatch(assist_id):
        raise _not_found(assist_id)
    return assist_id


async def get_assist(
    ctx: Context, assist_id: str, viewer: str | None, now: datetime | None = None
) -> AssistOut:
    """A request as the caller sees it: the public part for anyone with its id (the helpers by
    handle, never by id); the asker also sees the helps held for review."""
    assist_rules(ctx)
    check_assist_id(assist_id)
    now = now or utcnow()
    async with ctx.db.session() as session:
        a = await session.get(Assist, assist_id)
        if a is None:
            raise _not_found(assist_id)
        asker = await members.profile(ctx, session, a.member_id)
        helps = (await _helps_of(ctx, session, [a.id]))[a.id]
    return _out(ctx, a, asker, helps, viewer=viewer, now=now)


async def my_assists(ctx: Context, member_id: str, now: datetime | None = None) -> list[AssistOut]:
    """The member's requests, newest first (the last 50)."""
    assist_rules(ctx)
    now = now or utcnow()
    async with ctx.db.session() as session:
        found = list(
            (
                await session.execute(
                    sa.select(Assist)
                    .where(ASSISTS.c.member_id == member_id)
                    .order_by(ASSISTS.c.created_at.desc(), ASSISTS.c.id)
                    .limit(LISTED)
                )
            ).scalars()
        )
        asker = await members.profile(ctx, session, member_id)
        helps = await _helps_of(ctx, session, [a.id for a in found])
    return [_out(ctx, a, asker, helps[a.id], viewer=member_id, now=now) for a in found]


@dataclass(frozen=True)
class Shared:
    """What the share link's page shows of a request."""

    status: str
    asker_name: str | None
    what: str
    helps_left: int
    helps_needed: int


async def shared(ctx: Context, assist_id: str, now: datetime | None = None) -> Shared | None:
    """A request for its share page, or None (unknown, or friend help off)."""
    if not teams_content(ctx).assist.enabled or not ASSIST_ID_RE.fullmatch(assist_id):
        return None
    now = now or utcnow()
    async with ctx.db.session() as session:
        a = await session.get(Assist, assist_id)
        if a is None:
            return None
        asker = await members.profile(ctx, session, a.member_id)
    return Shared(
        status_of(a, now),
        asker.display_name,
        what_of(ctx, a),
        max(0, a.helps_needed - a.helps),
        a.helps_needed,
    )


# --- helping ------------------------------------------------------------------------------------


def _day_end(zone: str, day: Any) -> datetime:
    end = period_end("daily", day, zone)
    assert end is not None
    return end


async def _helps_today(session: AsyncSession, helper_id: str, day: str) -> int:
    return int(
        (
            await session.execute(
                sa.select(sa.func.count()).where(
                    HELPS.c.helper_id == helper_id, HELPS.c.day == day, HELPS.c.status != "rejected"
                )
            )
        ).scalar_one()
    )


async def _risk(
    ctx: Context, session: AsyncSession, a: Assist, helper: members.Profile, now: datetime
) -> tuple[int, list[dict[str, Any]]]:
    """The referral program's fraud signals between the helper and the asker: shared fingerprints,
    the helper's device used by others, and a burst of new accounts helping the asker."""
    rules = referrals.program(ctx).fraud
    signals = await referrals.pair_signals(
        session, rules, helper.member_id, a.member_id, sides=("helper", "asker")
    )
    burst = rules.signup_burst
    since = now - timedelta(minutes=burst.minutes)
    joined = helper.created_at
    if burst.score and joined is not None and joined >= since:
        recent = (
            await session.execute(
                sa.select(sa.func.count()).where(
                    HELPS.c.asker_id == a.member_id, HELPS.c.at >= since, HELPS.c.helper_joined_at >= since
                )
            )
        ).scalar_one()
        # Unlike a referral's sign-up burst, one that holds on its own: a request is worth
        # nothing but the number of accounts that help on it.
        what = "new accounts helping one member"
        found = referrals.burst_signal(burst, int(recent) + 1, "helper_burst", what)
        signals += [{**s, "score": max(int(s["score"]), rules.hold_at)} for s in found]
    return sum(int(s["score"]) for s in signals), signals


def _reward_postings(rules: AssistRules, a: Assist, helper_id: str) -> list[ledger.Posting]:
    reward = rules.helper_reward
    return [
        ledger.Posting(
            helper_id,
            currency,
            amount,
            "helped a friend",
            SOURCE,
            f"assist:{a.id}:helper",
            {"assist_id": a.id, "asker_id": a.member_id},
        )
        for currency, amount in (("points", reward.points), ("growth", reward.growth))
        if amount
    ]


async def _count(
    ctx: Context,
    session: AsyncSession,
    rules: AssistRules,
    a: Assist,
    helper_id: str,
    helper_handle: str | None,
    new_member: bool,
    now: datetime,
) -> bool:
    """A help counted on an open request whose row the caller holds: the helper paid, the asker's
    progress told to the domains, the live messages; the request completed (and its tickets paid)
    when this help is the last one needed. True when it completed."""
    a.helps += 1
    completed = a.helps >= a.helps_needed
    if completed:
        a.completed_at = now
    session.add(a)
    postings = _reward_postings(rules, a, helper_id)
    if completed and a.tickets:
        postings.append(
            ledger.Posting(
                a.member_id,
                "tickets",
                a.tickets,
                "friends helped you to a draw ticket",
                SOURCE,
                f"assist:{a.id}:tickets",
                {"assist_id": a.id},
            )
        )
    await ledger.post_many(ctx, session, postings)
    props: dict[str, Any] = {
        "assist_id": a.id,
        "target": a.target,
        "helps": a.helps,
        "helps_needed": a.helps_needed,
        "new_member": new_member,
    }
    for name in ("quest_id", "step_id", "period", "goal_id", "team_id"):
        value = getattr(a, name)
        if value is not None:
            props[name] = value
    if a.target == "quest":
        props["amount"] = number(a.amount)
    emit(ctx, session, DomainEvent(f"assist:{a.id}:{helper_id}", a.member_id, HELPED, now, props, "assists"))
    emit(
        ctx,
        session,
        DomainEvent(
            f"assist-given:{a.id}:{helper_id}",
            helper_id,
            "assist.given",
            now,
            {"assist_id": a.id, "target": a.target},
            "assists",
        ),
    )
    left = a.helps_needed - a.helps
    send_live(
        ctx,
        session,
        a.member_id,
        "assist.received",
        {
            "assist_id": a.id,
            "helper": helper_handle,
            "helps": a.helps,
            "helps_needed": a.helps_needed,
            "helps_left": left,
            "what": what_of(ctx, a),
        },
        at=now,
    )
    if completed:
        send_live(
            ctx,
            session,
            a.member_id,
            "assist.completed",
            {
                "assist_id": a.id,
                "target": a.target,
                "what": what_of(ctx, a),
                "helps": a.helps,
                "tickets": a.tickets,
            },
            at=now,
        )
    return completed


async def _locked(session: AsyncSession, assist_id: str, *others: str) -> Assist:
    """The request, under the locks of its asker (and of `others`), read again."""
    a = await session.get(Assist, assist_id)
    if a is None:
        raise _not_found(assist_id)
    await lock_members(session, sorted({a.member_id, *others}))
    found = await session.get(Assist, assist_id, with_for_update=True, populate_existing=True)
    assert found is not None
    return found


async def help_friend(
    ctx: Context,
    assist_id: str,
    helper_id: str,
    *,
    signals: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> HelpOut:
    """A friend helps on a request, once. Refused: oneself (403 `cannot_help_yourself`), twice
    (409 `already_helped`), a completed request (409 `assist_completed`), an expired one (410
    `assist_expired`), past the helper's daily cap (429 `daily_help_limit`, with when it resets);
    nothing changes then. A help whose signals hold it is recorded, neither counted nor paid."""
    rules = assist_rules(ctx)
    check_assist_id(assist_id)
    now = now or utcnow()
    prints = referrals.fingerprints_of(ctx, signals or {})
    async with ctx.db.transaction() as session:
        a = await _locked(session, assist_id, helper_id)
        if helper_id == a.member_id:
            raise ProblemError(
                403, "cannot_help_yourself", "This is your own call for help: share its link with friends."
            )
        if await session.get(AssistHelp, (a.id, helper_id)) is not None:
            raise ProblemError(
                409, "already_helped", "You helped on this request already; once is all it takes."
            )
        if a.completed_at is not None:
            raise ProblemError(409, "assist_completed", "This request has all the help it needs already.")
        if now >= a.expires_at:
            raise ProblemError(410, "assist_expired", "This call for help has ended.")
        helper = await members.profile(ctx, session, helper_id)
        day = local_day(helper.timezone, now)
        today = await _helps_today(session, helper_id, day.isoformat())
        if today >= rules.daily_helps:
            resets = _day_end(helper.timezone, day)
            raise ProblemError(
                429,
                "daily_help_limit",
                f"You have helped {rules.daily_helps} times today, the most in a day; "
                f"you can help again from {resets.isoformat()}.",
                headers={"Retry-After": str(max(1, int((resets - now).total_seconds())))},
                resets_at=resets.isoformat(),
            )
        await referrals.remember(session, [(helper_id, k, v) for k, v in prints.items()], now)
        score, risk = await _risk(ctx, session, a, helper, now)
        held = score >= referrals.program(ctx).fraud.hold_at
        new_member = helper.created_at is not None and helper.created_at >= a.created_at
        session.add(
            AssistHelp(
                assist_id=a.id,
                helper_id=helper_id,
                asker_id=a.member_id,
                day=day.isoformat(),
                status="held" if held else "counted",
                at=now,
                new_member=new_member,
                helper_joined_at=helper.created_at,
                risk_score=score,
                risk_signals=risk,
            )
        )
        claimed = False
        if held:
            a.held += 1
            session.add(a)
            log.info("assist_help_held", assist_id=a.id, helper_id=helper_id, score=score)
        else:
            await _count(ctx, session, rules, a, helper_id, helper.handle, new_member, now)
            if new_member and rules.referral_claim:
                made = await referrals.claim_for(ctx, session, helper_id, a.member_id, by="assist", now=now)
                claimed = made is not None
        reward = rules.helper_reward
        return HelpOut(
            assist_id=a.id,
            status="held" if held else "counted",
            helps=a.helps,
            helps_left=max(0, a.helps_needed - a.helps),
            assist_status=status_of(a, now),  # type: ignore[arg-type]
            reward=HelpRewardOut(0, 0) if held else HelpRewardOut(reward.points, reward.growth),
            helps_left_today=max(0, rules.daily_helps - today - 1),
            referral_claimed=claimed,
        )


# --- review of held helps -----------------------------------------------------------------------


async def held_helps(ctx: Context, *, limit: int = 50) -> list[dict[str, Any]]:
    """Helps held for review, longest waiting first, with their signals."""
    async with ctx.db.session() as session:
        rows = list(
            (
                await session.execute(
                    sa.select(AssistHelp)
                    .where(HELPS.c.status == "held")
                    .order_by(HELPS.c.at, HELPS.c.assist_id, HELPS.c.helper_id)
                    .limit(limit)
                )
            ).scalars()
        )
    return [
        {
            "assist_id": h.assist_id,
            "helper_id": h.helper_id,
            "asker_id": h.asker_id,
            "at": h.at,
            "risk_score": h.risk_score,
            "signals": h.risk_signals,
        }
        for h in rows
    ]


def check_reason(reason: str) -> None:
    """A manager's decision states its reason (kept in the audit log)."""
    if not reason.strip() or len(reason) > 500 or any(ord(c) < 32 and c not in "\n\t" for c in reason):
        raise ProblemError(400, "invalid_reason", "A review states its reason, 1 to 500 characters.")


async def review_help(
    ctx: Context, session: AsyncSession, assist_id: str, helper_id: str, *, approve: bool, actor: str
) -> AssistHelp:
    """A manager's decision on a held help, in the caller's transaction. Approved: counted on the
    request if it is still open (`counted`), else paid to the helper alone (`approved`: the
    request ended meanwhile), and a friend who joined to help becomes the asker's referral as
    an unheld help's would. Rejected: never counted, never paid."""
    rules = teams_content(ctx).assist
    now = utcnow()
    check_assist_id(assist_id)
    members.check_member_id(helper_id)
    a = await _locked(session, assist_id, helper_id)
    h = await session.get(AssistHelp, (assist_id, helper_id), with_for_update=True, populate_existing=True)
    if h is None:
        raise ProblemError(404, "help_not_found", f"Member '{helper_id}' did not help on '{assist_id}'.")
    if h.status != "held":
        raise ProblemError(409, "help_not_held", f"This help is {h.status}, not held.")
    h.reviewed_at, h.reviewed_by = now, actor
    a.held = max(0, a.held - 1)
    session.add(a)
    if not approve:
        h.status = "rejected"
    elif status_of(a, now) == "open":
        h.status = "counted"
        handle = (await members.profile(ctx, session, helper_id)).handle
        await _count(ctx, session, rules, a, helper_id, handle, h.new_member, now)
    else:
        h.status = "approved"
        await ledger.post_many(ctx, session, _reward_postings(rules, a, helper_id))
    if approve and h.new_member and rules.referral_claim:
        # As an unheld help from a friend who joined to help: the asker's referral, if the
        # referral program's own rules (and its fraud checks) allow it.
        await referrals.claim_for(ctx, session, helper_id, a.member_id, by="assist", now=now)
    session.add(h)
    return h


# --- the share link's page ----------------------------------------------------------------------


async def share_page(ctx: Context, assist_id: str, now: datetime | None = None) -> tuple[int, str]:
    """The page the share link opens (`/a/{id}`): a preview card and the call for help, in the
    referral landing page's look; a friendly page with 404 (unknown) or 410 (expired)."""
    page = teams_content(ctx).assist.page
    found = await shared(ctx, assist_id, now)
    if found is None:
        return 404, landing.missing_page(ctx, page.not_found_title)
    if found.status == "expired":
        return 410, landing.missing_page(ctx, page.expired_title)
    fields = {
        "asker": found.asker_name or page.anonymous_name,
        "what": found.what,
        "helps_left": str(found.helps_left),
        "helps_needed": str(found.helps_needed),
    }
    html = landing.share_page(
        ctx,
        title=page.title.format(**fields),
        description=page.description.format(**fields),
        heading=page.heading.format(**fields),
        body=(page.completed_body if found.status == "completed" else page.body).format(**fields),
        url=link_for(ctx, assist_id),
        open_url=page.deep_link.format(code=assist_id) if page.deep_link else "",
        open_label=page.open_label,
    )
    return 200, html
