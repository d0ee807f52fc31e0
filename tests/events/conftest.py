from __future__ import annotations

import pytest

from tests.support import unique


@pytest.fixture
async def member_id(http, as_brand) -> str:  # type: ignore[no-untyped-def]
    """A member the brand created first: events for members the server does not know are refused."""
    member = unique("m")
    r = await http.put(f"/v1/members/{member}", json={}, headers=as_brand)
    assert r.status_code == 201, r.text
    return member
