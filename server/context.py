"""What one process holds: settings, SQL, Redis and the spine's shared machinery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from server.config import Settings
from server.db import Database
from server.redis import RedisHandle

if TYPE_CHECKING:
    from server.content.loader import ContentStore
    from server.events.pipeline import Pipeline
    from server.outbox import Outbox
    from server.realtime.hub import Hub
    from server.scheduler import Scheduler


class Context:
    """Passed to services and jobs; set up once by the app's lifespan (or by a CLI command)."""

    outbox: Outbox
    hub: Hub
    content: ContentStore
    scheduler: Scheduler

    def __init__(
        self, settings: Settings, db: Database, redis: RedisHandle, pipeline: Pipeline | None = None
    ) -> None:
        from server.events.pipeline import installed

        self.settings = settings
        # The domains' reactions this process runs (`server.app.DOMAINS`, installed by create_app).
        self.pipeline = pipeline or installed()
        self.db = db
        self.redis = redis
        # Small per-process caches and registered scripts, by name.
        self.extras: dict[str, Any] = {}
        self._closers: list[Callable[[], Awaitable[None]]] = []

    def on_close(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run `fn` when the process shuts down, before SQL and Redis close (a buffer to write)."""
        self._closers.append(fn)

    async def close(self) -> None:
        closers, self._closers = self._closers, []
        for fn in reversed(closers):
            await fn()
