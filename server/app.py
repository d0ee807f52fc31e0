"""create_app(settings): the one place where the process is wired together."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin

from server import domains
from server.admin.service import provide_manager
from server.auth import provide_api_client, provide_member_id, provide_reader
from server.config import Settings, get_settings
from server.content.service import ContentWatcher, startup_content
from server.context import Context
from server.db import Database
from server.errors import exception_handlers
from server.logs import configure
from server.middleware import observe
from server.outbox import Outbox
from server.realtime.hub import Hub
from server.redis import RedisHandle
from server.scheduler import Scheduler

log = structlog.get_logger(__name__)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    configure(settings.log_level, settings.log_json)
    domains.load()

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
        ctx = Context(settings=settings, db=db, redis=redis)
        ctx.content = content
        watcher = ContentWatcher(ctx)
        ctx.outbox = Outbox(ctx)
        ctx.hub = Hub(ctx)
        await ctx.hub.start()
        watcher.start()
        ctx.scheduler = Scheduler(ctx)
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
        route_handlers=domains.route_handlers(),
        lifespan=[lifespan],
        dependencies={
            "ctx": Provide(provide_ctx, sync_to_thread=False),
            "current_member": Provide(provide_member_id),
            "reader": Provide(provide_reader),
            "api_client": Provide(provide_api_client),
            "manager": Provide(provide_manager),
        },
        exception_handlers=exception_handlers,
        middleware=[observe],
        openapi_config=OpenAPIConfig(
            title="Engage: member-engagement game server",
            version="1",
            path="/schema",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
        ),
        request_max_body_size=4 * 1024 * 1024,
        logging_config=None,  # logs are configured by server.logs (structured, secrets masked)
        debug=False,
    )


def app_factory() -> Any:
    """For `uvicorn --factory server.app:app_factory`."""
    return create_app()
