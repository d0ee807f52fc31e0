from __future__ import annotations

from collections.abc import Iterator

import pytest

from server.context import Context
from tests.teams.support import serving_test_kinds


@pytest.fixture
def team_kinds(ctx: Context) -> Iterator[None]:
    """The repository's content with the tests' own kinds of team (tests/teams/support.py)."""
    with serving_test_kinds(ctx):
        yield
