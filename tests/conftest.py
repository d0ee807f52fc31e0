"""Every test runs on real SQL and a real Redis.

- SQL: a SQLite file by default; with ENGAGE_TEST_DATABASE_URL (a PostgreSQL server URL) a fresh
  database is created for the run, migrated, and dropped at the end.
- Redis: a redis-server of the run's own on a free port by default; with ENGAGE_TEST_REDIS_URL that
  server is used under a key prefix of the run's own, whose keys are deleted at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from server.app import create_app
from server.auth import create_api_key, issue_member_token
from server.config import Settings
from server.context import Context
from server.migrate import upgrade
from tests.support import ROOT, Loopback, PostgresDatabase, RedisServer, cleanup_prefix, free_port, unique

RUN_ID = uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="engage-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(data_dir: Path) -> Iterator[str]:
    admin_url = os.environ.get("ENGAGE_TEST_DATABASE_URL")
    if not admin_url:
        yield f"sqlite+aiosqlite:///{data_dir / 'test.db'}"
        return
    db = PostgresDatabase(admin_url, f"engage_test_{RUN_ID}").create()
    yield db.url
    db.drop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    shared = os.environ.get("ENGAGE_TEST_REDIS_URL")
    if shared:
        yield shared
        return
    server = RedisServer().start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"engage-test-{RUN_ID}:"
    yield prefix
    cleanup_prefix(redis_url, prefix)


@pytest.fixture(scope="session")
def settings(data_dir: Path, database_url: str, redis_url: str, redis_prefix: str) -> Settings:
    s = Settings(
        data_dir=data_dir,
        content_dir=ROOT / "content",
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        jwt_secret="test-secret-" + RUN_ID * 4,
        log_json=True,
        log_level="WARNING",
        outbox_drain_seconds=0.5,
        # Tests fail authentication on purpose from one address; one test checks this limit.
        rate_limit_auth_failures_per_minute=100_000,
        # Board tests take keys away on purpose and restore them themselves; the server processes
        # of tests/e2e watch the index as production does.
        leaderboard_index_check_seconds=0,
    )
    upgrade(s)
    return s


def server_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes `engage serve` use the test run's SQL, Redis and secret."""
    env = {
        "ENGAGE_DATA_DIR": str(settings.data_dir),
        "ENGAGE_CONTENT_DIR": str(settings.content_dir),
        "ENGAGE_DATABASE_URL": settings.resolved_database_url,
        "ENGAGE_REDIS_URL": settings.redis_url,
        "ENGAGE_REDIS_PREFIX": settings.redis_prefix,
        "ENGAGE_JWT_SECRET": settings.jwt_secret,
        "ENGAGE_OUTBOX_DRAIN_SECONDS": "0.5",
        "ENGAGE_LOG_LEVEL": "INFO",
        "ENGAGE_RATE_LIMIT_AUTH_FAILURES_PER_MINUTE": "100000",
    }
    env.update(extra)
    return env


class Served(Loopback):
    """The app served in this test process by uvicorn, on the tests' event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.app = create_app(settings)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app, host="127.0.0.1", port=self.port, log_config=None, access_log=False, lifespan="on"
            )
        )
        self.task: asyncio.Task[None] | None = None

    @property
    def ctx(self) -> Context:
        return self.app.state.ctx  # type: ignore[no-any-return]

    async def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task:
            await self.task


@pytest.fixture(scope="session")
async def served(settings: Settings) -> AsyncIterator[Served]:
    s = Served(settings)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture(scope="session")
async def ctx(served: Served) -> Context:
    return served.ctx


@pytest.fixture(scope="session")
async def api_key(ctx: Context) -> str:
    _, key = await create_api_key(ctx, "tests")
    return key


@pytest.fixture
async def http(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def member_id() -> str:
    return unique("m")


@pytest.fixture
def token_for(settings: Settings):  # type: ignore[no-untyped-def]
    def make(member_id: str) -> str:
        return issue_member_token(settings, member_id)

    return make


@pytest.fixture
def as_member(token_for):  # type: ignore[no-untyped-def]
    def headers(member_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(member_id)}"}

    return headers


@pytest.fixture
def as_brand(api_key: str) -> dict[str, str]:
    return {"X-Api-Key": api_key}


@pytest.fixture
def own_settings(settings: Settings) -> Iterator[Settings]:
    """Settings on a database of the test's own, migrated (SQLite file, or a fresh PostgreSQL database),
    and a Redis key prefix of its own.

    For a test whose data must not meet the run's: a server on its own Redis (were it to share the
    run's SQL, another instance's outbox drain could deliver its messages to the run's Redis
    instead), or published content versions, which every server on a database serves.
    """
    tmp = Path(tempfile.mkdtemp(prefix="engage-own-"))
    admin_url = os.environ.get("ENGAGE_TEST_DATABASE_URL")
    db = PostgresDatabase(admin_url, f"engage_own_{uuid.uuid4().hex[:10]}").create() if admin_url else None
    url = db.url if db is not None else f"sqlite+aiosqlite:///{tmp / 'own.db'}"
    prefix = f"{settings.redis_prefix}own-{uuid.uuid4().hex[:8]}:"
    own = settings.model_copy(update={"data_dir": tmp, "database_url": url, "redis_prefix": prefix})
    own.__dict__.pop("resolved_database_url", None)  # a cached property of the copied settings
    try:
        upgrade(own)
        yield own
    finally:
        if db is not None:
            db.drop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def no_quests(ctx: Context) -> Iterator[None]:
    """Serve the repository's content without its quests, for tests that count a domain's own awards."""
    from tests.tasks.quest_support import serving, store_of

    with serving(ctx, store_of("quests: []\n")):
        yield
