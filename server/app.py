"""create_app(settings): the one place where the process is wired together, and the ordered
list of the domains whose reactions make up the pipeline."""

from __future__ import annotations

import gc
import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from litestar import Litestar
from litestar.di import Provide

from server import outbox
from server.admin.service import provide_manager
from server.auth import provide_api_client, provide_member_id, provide_reader
from server.badges import events as badges
from server.badges import jobs as badges_jobs
from server.badges.content import BADGES_KIND, TIERS_KIND
from server.checkins import events as checkins
from server.checkins import jobs as checkins_jobs
from server.checkins.content import CHECKIN_KIND
from server.config import Settings, get_settings
from server.content.service import ContentWatcher, startup_content
from server.context import Context
from server.db import Database
from server.errors import exception_handlers
from server.events import jobs as events_jobs
from server.events.catalog import EVENTS_KIND
from server.events.dispatch import apply_dispatch
from server.events.pipeline import Domain, Pipeline, Reactions
from server.leaderboards import events as leaderboards
from server.leaderboards import jobs as leaderboards_jobs
from server.leaderboards.content import LEADERBOARDS_KIND
from server.leaderboards.service import use_team_directory
from server.ledger import events as ledger
from server.ledger import jobs as ledger_jobs
from server.ledger.earning import EARNING_KIND
from server.logs import configure
from server.members import events as members
from server.middleware import BODY_MAX_BYTES, Request, check_request, exact_allow, observe
from server.openapi import index, openapi_config
from server.outbox import Outbox
from server.realtime.hub import Hub, apply_live, apply_team_live, apply_team_membership
from server.redis import RedisHandle
from server.referrals import events as referrals
from server.referrals import jobs as referrals_jobs
from server.referrals.content import REFERRALS_KIND
from server.scheduler import Scheduler
from server.tasks import events as tasks
from server.tasks import jobs as tasks_jobs
from server.tasks.quest_content import QUESTS_KIND
from server.teams import events as teams
from server.teams import jobs as teams_jobs
from server.teams.boards import team_facts
from server.teams.content import TEAMS_KIND

log = structlog.get_logger(__name__)

# The domains in the order they react to what happens. A purchase is paid by the earning rules
# (ledger) before the quests, boards and badges that count it run; what a domain emits (a quest
# completed, a badge earned) goes round the same list again in the same unit of work. Each
# domain's `events.py` says what it reacts to; `engage pipeline` prints the whole of it.
DOMAINS: tuple[Domain, ...] = (
    Domain("outbox", jobs=(outbox.DRAIN,)),
    Domain(
        "realtime",
        Reactions(
            effects={
                "live": apply_live,
                "team_live": apply_team_live,
                "team_membership": apply_team_membership,
            }
        ),
    ),
    Domain(
        "events",
        Reactions(effects={"dispatch": apply_dispatch}),
        content=(EVENTS_KIND,),
        jobs=events_jobs.JOBS,
    ),
    Domain("members", members.REACTIONS),
    Domain("ledger", ledger.REACTIONS, content=(EARNING_KIND,), jobs=ledger_jobs.JOBS),
    Domain("checkins", checkins.REACTIONS, content=(CHECKIN_KIND,), jobs=checkins_jobs.JOBS),
    Domain("tasks", tasks.REACTIONS, content=(QUESTS_KIND,), jobs=tasks_jobs.JOBS),
    Domain("leaderboards", leaderboards.REACTIONS, content=(LEADERBOARDS_KIND,), jobs=leaderboards_jobs.JOBS),
    Domain("badges", badges.REACTIONS, content=(BADGES_KIND, TIERS_KIND), jobs=badges_jobs.JOBS),
    Domain("referrals", referrals.REACTIONS, content=(REFERRALS_KIND,), jobs=referrals_jobs.JOBS),
    Domain("teams", teams.REACTIONS, content=(TEAMS_KIND,), jobs=teams_jobs.JOBS),
)


def install() -> Pipeline:
    """The pipeline of `DOMAINS`, made the process's own (the content kinds it reads, the event
    types it knows). create_app does this; so do CLI commands that read content without an app."""
    # Boards that rank teams name them through the teams domain, which sits above the boards.
    use_team_directory(team_facts)
    return Pipeline(DOMAINS).install()


def route_handlers() -> list[Any]:
    from server.admin.assist_routes import HeldHelpsController
    from server.admin.routes import AdminSessionsController, ReferralReviewController
    from server.admin.team_routes import AdminTeamsController
    from server.badges.routes import (
        BadgeGrantsController,
        BadgesController,
        CredentialsController,
        TiersController,
    )
    from server.checkins.routes import CheckinsController
    from server.events.routes import EventsController
    from server.leaderboards.routes import LeaderboardsController
    from server.ledger.routes import LedgerController
    from server.members.routes import MembersController
    from server.ops import health, metrics, ready
    from server.realtime.routes import live
    from server.referrals.routes import LandingController, ReferralsController
    from server.tasks.routes import QuestsController
    from server.teams.assist_routes import AssistPageController, AssistsController, FriendQuestsController
    from server.teams.goal_routes import TeamGoalsController
    from server.teams.routes import BrandTeamsController, TeamInviteController, TeamsController

    return [
        index,
        health,
        ready,
        metrics,
        MembersController,
        LedgerController,
        EventsController,
        CheckinsController,
        QuestsController,
        LeaderboardsController,
        BadgesController,
        BadgeGrantsController,
        TiersController,
        CredentialsController,
        AdminSessionsController,
        ReferralsController,
        LandingController,
        ReferralReviewController,
        TeamsController,
        BrandTeamsController,
        TeamInviteController,
        AdminTeamsController,
        TeamGoalsController,
        AssistsController,
        AssistPageController,
        FriendQuestsController,
        HeldHelpsController,
        live,
    ]


def models() -> None:
    """Import every table so that SQLModel's metadata knows them (for migrations)."""
    for name in (
        "server.members.models",
        "server.ledger.models",
        "server.events.models",
        "server.outbox",
        "server.auth",
        "server.admin.models",
        "server.referrals.models",
        "server.scheduler",
        "server.checkins.models",
        "server.tasks.models",
        "server.content.models",
        "server.leaderboards.models",
        "server.badges.models",
        "server.teams.models",
    ):
        importlib.import_module(name)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    configure(settings.log_level, settings.log_json)
    pipeline = install()

    ctx_holder: dict[str, Context] = {}

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Content first: the newest published version, else the files; a server with invalid
        # content refuses to start and says why.
        db = Database(settings)
        try:
            content = await startup_content(settings.content_dir, db)
        except BaseException:
            await db.dispose()
            raise
        redis = RedisHandle(settings)
        redis.start()
        ctx = Context(settings=settings, db=db, redis=redis, pipeline=pipeline)
        ctx.content = content
        watcher = ContentWatcher(ctx)
        ctx.outbox = Outbox(ctx, pipeline.effects)
        ctx.hub = Hub(ctx)
        await ctx.hub.start()
        watcher.start()
        ctx.scheduler = Scheduler(ctx, pipeline.jobs)
        if settings.scheduler_enabled:
            ctx.scheduler.start()
        app.state.ctx = ctx
        ctx_holder["ctx"] = ctx
        # What start-up allocated lives as long as the process: keep it out of the collector's
        # full passes, which otherwise stall every request and socket for up to hundreds of ms.
        gc.collect()
        gc.freeze()
        log.info(
            "server_started",
            database=(settings.is_sqlite and "sqlite") or "postgresql",
            content=f"version {content.version}" if content.version else str(settings.content_dir),
        )
        try:
            yield
        finally:
            await ctx.scheduler.stop()
            await watcher.stop()
            await ctx.close()
            await ctx.outbox.close()
            await ctx.hub.stop()
            await ctx.db.dispose()
            await redis.close()
            log.info("server_stopped")

    def provide_ctx() -> Context:
        return ctx_holder["ctx"]

    return Litestar(
        route_handlers=route_handlers(),
        lifespan=[lifespan],
        dependencies={
            "ctx": Provide(provide_ctx, sync_to_thread=False),
            "current_member": Provide(provide_member_id),
            "reader": Provide(provide_reader),
            "api_client": Provide(provide_api_client),
            "manager": Provide(provide_manager),
        },
        exception_handlers=exception_handlers,
        middleware=[observe, exact_allow],
        request_class=Request,
        before_request=check_request,
        openapi_config=openapi_config("Engage: member-engagement game server", "1"),
        request_max_body_size=BODY_MAX_BYTES,
        logging_config=None,  # logs are configured by server.logs (structured, secrets masked)
        debug=False,
    )


def app_factory() -> Any:
    """For `uvicorn --factory server.app:app_factory`."""
    return create_app()
