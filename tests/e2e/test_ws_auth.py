"""The live socket refuses bad credentials with close code 4401 and the problem code as the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from server.auth import issue_member_token
from server.config import Settings
from tests.e2e.helpers import close_of, live, member_client
from tests.support import ServerProcess, unique

pytestmark = pytest.mark.e2e


def _wrong_secret_token(member_id: str) -> str:
    now = datetime.now(UTC)
    return jwt.encode(
        {"sub": member_id, "iat": now, "exp": now + timedelta(hours=1)},
        "not-the-server-secret-" + "x" * 32,
        algorithm="HS256",
    )


@pytest.mark.parametrize(
    ("case", "expected_reason"),
    [
        ("missing", "missing_token"),
        ("garbage", "invalid_token"),
        ("expired", "token_expired"),
        ("wrong_secret", "invalid_token"),
        ("bad_subject", "invalid_token"),
    ],
)
@pytest.mark.parametrize("carried_as", ["query", "header"])
async def test_bad_token_closes_socket_with_4401(
    server: ServerProcess, settings: Settings, case: str, expected_reason: str, carried_as: str
) -> None:
    member = unique("m")
    token = {
        "missing": None,
        "garbage": "not-a-jwt",
        "expired": issue_member_token(settings, member, timedelta(minutes=-5)),
        "wrong_secret": _wrong_secret_token(member),
        "bad_subject": issue_member_token(settings, "-starts-with-a-symbol"),
    }[case]
    if carried_as == "query":
        code, reason = await close_of(server.ws_url, token)
    else:
        code, reason = await close_of(server.ws_url, bearer=token)
    assert (code, reason) == (4401, expected_reason)

    # The HTTP API says the same about the same token.
    if token is not None:
        async with member_client(server.base_url, token) as app:
            r = await app.get("/v1/me")
            assert r.status_code == 401 and r.json()["code"] == expected_reason, r.text


async def test_good_token_still_works_and_bad_since_is_refused(server: ServerProcess, token_for) -> None:
    token = token_for(unique("m"))
    assert await close_of(server.ws_url, token, since="yesterday") == (4400, "invalid_since")
    async with live(server.ws_url, token, since="0-0") as sock:
        await sock.ws.ping()  # accepted and open
