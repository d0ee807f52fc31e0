"""Teams for the tests: the repository's content with a few kinds of the tests' own, members made
through the brand's API, and teams made and joined through the member API."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import yaml

from server.content.loader import read_files, validate_files
from server.context import Context
from tests.support import ROOT, pinned, unique

# Beside the demo's kinds (store, squad, club, everyone).
TEST_KINDS: list[dict[str, Any]] = [
    {"id": "five", "name": "Fives", "policy": "open", "max_members": 5},
    {"id": "guild", "name": "Guilds", "policy": "open", "max_members": 50, "several": True},
    {"id": "circle", "name": "Circles", "policy": "invite", "max_members": 30},
    {"id": "region", "name": "Regions", "policy": "assigned", "max_members": 100},
]
DEEP_LINK = "acme://teams/{team_id}/join?invite={code}"


@contextlib.contextmanager
def serving_test_kinds(ctx: Context) -> Iterator[None]:
    """Serve the repository's content with the test kinds added, for the length of a test."""
    files = read_files(ROOT / "content")
    teams = yaml.safe_load(files["teams.yaml"])
    teams["kinds"] = [*teams.get("kinds", []), *TEST_KINDS]
    teams["invites"] = {**teams.get("invites", {}), "deep_link": DEEP_LINK}
    files["teams.yaml"] = yaml.safe_dump(teams, sort_keys=False)
    store, issues = validate_files(files, "test")
    assert not issues, "\n".join(map(str, issues))
    before = ctx.content
    ctx.content = pinned(ctx, store)
    try:
        yield
    finally:
        ctx.content = before


async def member(http: httpx.AsyncClient, as_brand: dict[str, str], name: str | None = None) -> str:
    member_id = unique("tm")
    r = await http.put(f"/v1/members/{member_id}", json={"display_name": name or member_id}, headers=as_brand)
    assert r.status_code in (200, 201), r.text
    return member_id


async def members(http: httpx.AsyncClient, as_brand: dict[str, str], n: int) -> list[str]:
    return [await member(http, as_brand) for _ in range(n)]


async def make_team(
    http: httpx.AsyncClient, headers: dict[str, str], kind: str = "squad", name: str | None = None
) -> dict[str, Any]:
    r = await http.post("/v1/teams", json={"kind": kind, "name": name or unique("Team ")}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def join(
    http: httpx.AsyncClient, headers: dict[str, str], team_id: str, invite: str | None = None
) -> httpx.Response:
    body = {"invite": invite} if invite is not None else {}
    return await http.post(f"/v1/teams/{team_id}/join", json=body, headers=headers)


async def team(http: httpx.AsyncClient, headers: dict[str, str], team_id: str) -> dict[str, Any]:
    r = await http.get(f"/v1/teams/{team_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def handle_of(http: httpx.AsyncClient, headers: dict[str, str]) -> str:
    r = await http.get("/v1/me", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["handle"]  # type: ignore[no-any-return]


def problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status and r.json()["code"] == code, (status, code, r.status_code, r.text)
