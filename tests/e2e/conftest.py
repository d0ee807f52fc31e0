"""Fixtures of the end-to-end suite: the brand's API key and a server process shared by the tests that
need nothing special; tests that need their own configuration start their own processes."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.config import Settings
from server.migrate import upgrade
from tests.conftest import server_env
from tests.e2e.helpers import create_api_key, running
from tests.support import PostgresDatabase, ServerProcess


@pytest.fixture(scope="session")
def brand_key(settings: Settings) -> str:
    """An API key for the brand's systems, created with the CLI against the run's database."""
    return create_api_key(server_env(settings))


@pytest.fixture(scope="session")
def server(settings: Settings) -> Iterator[ServerProcess]:
    """One `engage serve` process on the run's SQL and Redis, shared by the e2e tests."""
    with running(server_env(settings)) as proc:
        yield proc


@pytest.fixture(scope="session")
def server_b(settings: Settings, server: ServerProcess) -> Iterator[ServerProcess]:
    """A second instance on the same SQL and Redis as `server`."""
    with running(server_env(settings)) as proc:
        yield proc


@pytest.fixture
def own_settings(settings: Settings) -> Iterator[Settings]:
    """Settings on a database of the test's own, migrated (SQLite file, or a fresh PostgreSQL database).

    For a test that points a server at a Redis of its own: were it to share the run's SQL, another
    instance's outbox drain could deliver its messages to the run's Redis instead.
    """
    tmp = Path(tempfile.mkdtemp(prefix="engage-e2e-"))
    admin_url = os.environ.get("ENGAGE_TEST_DATABASE_URL")
    db = PostgresDatabase(admin_url, f"engage_e2e_{uuid.uuid4().hex[:10]}").create() if admin_url else None
    if db is not None:
        url = db.url
    else:
        url = f"sqlite+aiosqlite:///{tmp / 'own.db'}"
    own = settings.model_copy(update={"data_dir": tmp, "database_url": url})
    own.__dict__.pop("resolved_database_url", None)  # a cached property of the copied settings
    try:
        upgrade(own)
        yield own
    finally:
        if db is not None:
            db.drop()
        shutil.rmtree(tmp, ignore_errors=True)
