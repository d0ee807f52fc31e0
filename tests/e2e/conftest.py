"""Fixtures of the end-to-end suite: the brand's API key and a server process shared by the tests that
need nothing special; tests that need their own configuration start their own processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from server.config import Settings
from tests.conftest import server_env
from tests.e2e.helpers import create_api_key, running
from tests.support import ServerProcess


@pytest.fixture(scope="session")
async def brand_key(settings: Settings) -> str:
    """An API key for the brand's systems, created with the CLI against the run's database.

    Off the event loop, which keeps running meanwhile: the app served in this process may be in
    the middle of a write on the same SQLite file, and must be able to finish it.
    """
    return await asyncio.to_thread(create_api_key, server_env(settings))


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
