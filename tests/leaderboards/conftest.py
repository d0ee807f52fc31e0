"""The board suite runs twice: on the run's Redis, and with the boards on a three-node Redis
Cluster started for it from the same redis-server binary (an instance with its own SQL database
and key prefix, so that no other instance's outbox reaches the cluster)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from server.auth import create_api_key, issue_member_token
from server.config import Settings
from server.context import Context
from server.migrate import upgrade
from tests.conftest import Served
from tests.support import PostgresDatabase, RedisClusterServers


@dataclass
class BoardApp:
    served: Served
    brand: dict[str, str]
    kind: str

    @property
    def ctx(self) -> Context:
        return self.served.ctx

    def member(self, member_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_member_token(self.served.settings, member_id)}"}


@pytest.fixture(scope="module", params=["redis", "cluster"])
async def board_app(
    request: pytest.FixtureRequest, settings: Settings, served: Served
) -> AsyncIterator[BoardApp]:
    if request.param == "redis":
        _, key = await create_api_key(served.ctx, "board tests")
        yield BoardApp(served, {"X-Api-Key": key}, "redis")
        return
    cluster = RedisClusterServers().start()
    tmp = Path(tempfile.mkdtemp(prefix="engage-cluster-"))
    admin_url = os.environ.get("ENGAGE_TEST_DATABASE_URL")
    # Both run an event loop of their own: off this one.
    db = PostgresDatabase(admin_url, f"engage_cl_{uuid.uuid4().hex[:10]}") if admin_url else None
    if db is not None:
        await asyncio.to_thread(db.create)
    own = settings.model_copy(
        update={
            "data_dir": tmp,
            "database_url": db.url if db is not None else f"sqlite+aiosqlite:///{tmp / 'cluster.db'}",
            "redis_prefix": f"{settings.redis_prefix}cl-{uuid.uuid4().hex[:6]}:",
            "leaderboard_redis_url": cluster.url,
            "leaderboard_redis_cluster": True,
        }
    )
    own.__dict__.pop("resolved_database_url", None)
    own_served = Served(own)
    try:
        await asyncio.to_thread(upgrade, own)
        await own_served.start()
        _, key = await create_api_key(own_served.ctx, "board tests")
        yield BoardApp(own_served, {"X-Api-Key": key}, "cluster")
    finally:
        await own_served.stop()
        cluster.stop()
        if db is not None:
            await asyncio.to_thread(db.drop)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
async def http_to(board_app: BoardApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=board_app.served.base_url, timeout=30) as client:
        yield client


BoardAppFactory = Callable[[], BoardApp]
