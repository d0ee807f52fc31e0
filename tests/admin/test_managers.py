"""Community managers: accounts, admin sessions, roles and the audit log."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.admin import audit
from server.admin.models import Manager, ManagerSession
from server.admin.service import (
    create_manager,
    disable_manager,
    list_managers,
    login,
    logout,
    require_role,
    verify_manager_token,
)
from server.context import Context
from server.db import utcnow
from server.errors import ProblemError
from tests.support import MANAGER_PASSWORD, ROOT, in_one_rate_limit_window, manager_token, unique


def new_email() -> str:
    return f"{unique('mgr')}@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def refused(call, status: int, code: str) -> ProblemError:  # type: ignore[no-untyped-def]
    with pytest.raises(ProblemError) as caught:
        await call
    assert (caught.value.status, caught.value.code) == (status, code), caught.value.detail
    return caught.value


async def test_create_manager_and_each_refusal(ctx):
    email = new_email()
    row = await create_manager(ctx, "  " + email.upper() + " ", MANAGER_PASSWORD, "owner", "Ana")
    assert (row.email, row.role, row.display_name, row.disabled_at) == (email, "owner", "Ana", None)
    assert row.password_hash.startswith("$argon2id$") and MANAGER_PASSWORD not in row.password_hash
    assert email in [m.email for m in await list_managers(ctx)]
    default_name = await create_manager(ctx, "zoe." + email, MANAGER_PASSWORD, "viewer")
    assert default_name.display_name == "zoe." + email.partition("@")[0]

    await refused(create_manager(ctx, email.title(), MANAGER_PASSWORD, "viewer"), 409, "manager_exists")
    await refused(create_manager(ctx, new_email(), MANAGER_PASSWORD, "admin"), 400, "invalid_role")
    for bad in ("not-an-email", "a@b", "two words@example.com", "x" * 200 + "@example.com", ""):
        await refused(create_manager(ctx, bad, MANAGER_PASSWORD, "viewer"), 400, "invalid_email")
    err = await refused(create_manager(ctx, new_email(), "short-pass1", "editor"), 400, "weak_password")
    assert "12 characters" in err.detail

    created = await audit.recent(ctx, action_prefix="manager.create", target=f"manager:{email}")
    assert [(r.actor, r.details) for r in created] == [("system", {"role": "owner"})]


async def test_concurrent_creates_of_one_email_make_one_account(ctx):
    email = new_email()
    results = await asyncio.gather(
        *(create_manager(ctx, email, MANAGER_PASSWORD, "viewer") for _ in range(5)), return_exceptions=True
    )
    assert sum(isinstance(r, Manager) for r in results) == 1
    assert all(r.code == "manager_exists" for r in results if isinstance(r, ProblemError))


async def test_login_me_and_logout(http, ctx, settings):
    email = new_email()
    await create_manager(ctx, email, MANAGER_PASSWORD, "editor", "Bo")
    before = utcnow()
    r = await http.post("/v1/admin/sessions", json={"email": email.upper(), "password": MANAGER_PASSWORD})
    assert r.status_code == 201, r.text
    body = r.json()
    token = body["token"]
    assert token.startswith("em_") and body["manager"]["email"] == email
    assert body["manager"]["role"] == "editor" and body["manager"]["display_name"] == "Bo"
    assert set(body["manager"]) == {"id", "email", "display_name", "role"}

    session_id = token.split("_", 2)[1]
    async with ctx.db.session() as session:
        row = await session.get(ManagerSession, session_id)
    assert row is not None and row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    hours = timedelta(hours=settings.manager_session_hours)
    assert before + hours <= row.expires_at <= utcnow() + hours

    me = await http.get("/v1/admin/me", headers=bearer(token))
    assert me.status_code == 200 and me.json() == body["manager"]

    out = await http.delete("/v1/admin/sessions/current", headers=bearer(token))
    assert out.status_code == 204
    after = await http.get("/v1/admin/me", headers=bearer(token))
    assert after.status_code == 401 and after.json()["code"] == "invalid_manager_token"
    assert not await logout(ctx, token)  # already ended


async def test_every_failed_login_gets_the_same_answer(http, ctx):
    email, disabled = new_email(), new_email()
    await create_manager(ctx, email, MANAGER_PASSWORD, "viewer")
    await create_manager(ctx, disabled, MANAGER_PASSWORD, "owner")
    live_token = await manager_token(ctx, "owner", email=None)
    assert await disable_manager(ctx, disabled)
    assert not await disable_manager(ctx, disabled)  # already disabled

    answers = []
    for sent in (
        {"email": email, "password": MANAGER_PASSWORD + "x"},
        {"email": new_email(), "password": MANAGER_PASSWORD},
        {"email": disabled, "password": MANAGER_PASSWORD},
    ):
        r = await http.post("/v1/admin/sessions", json=sent)
        assert r.status_code == 401, r.text
        answers.append((r.json()["code"], r.json()["detail"]))
    assert len(set(answers)) == 1 and answers[0][0] == "invalid_credentials"

    r = await http.post("/v1/admin/sessions", json={"email": email})
    assert r.status_code == 400 and r.json()["code"] == "validation_error"
    assert (await http.get("/v1/admin/me", headers=bearer(live_token))).status_code == 200


async def test_disabling_a_manager_ends_their_sessions(http, ctx):
    email = new_email()
    await create_manager(ctx, email, MANAGER_PASSWORD, "editor")
    token, _, _ = await login(ctx, email, MANAGER_PASSWORD)
    assert (await verify_manager_token(ctx, token)).email == email  # now cached in this process
    assert await disable_manager(ctx, email, actor="manager:boss@example.com")
    r = await http.get("/v1/admin/me", headers=bearer(token))
    assert r.status_code == 401 and r.json()["code"] == "invalid_manager_token"
    async with ctx.db.session() as session:
        row = await session.get(ManagerSession, token.split("_", 2)[1])
    assert row is not None and row.revoked_at is not None
    (record,) = await audit.recent(ctx, action_prefix="manager.disable", target=f"manager:{email}")
    assert record.actor == "manager:boss@example.com"


async def test_a_logout_or_a_disabled_account_holds_at_once_on_every_instance(http, ctx):
    """Another process (another instance, an operator's `engage manager disable`) ends a session
    that the served instance has just verified: its next request is refused."""
    elsewhere = Context(ctx.settings, ctx.db, ctx.redis)
    email = new_email()
    await create_manager(ctx, email, MANAGER_PASSWORD, "editor")
    for end in ("logout", "disable"):
        token, _, _ = await login(ctx, email, MANAGER_PASSWORD)
        assert (await http.get("/v1/admin/me", headers=bearer(token))).status_code == 200
        if end == "logout":
            assert await logout(elsewhere, token)
        else:
            assert await disable_manager(elsewhere, email, actor="cli:ops")
        r = await http.get("/v1/admin/me", headers=bearer(token))
        assert r.status_code == 401 and r.json()["code"] == "invalid_manager_token", end


async def test_missing_malformed_and_foreign_tokens(http, ctx, as_member, member_id):
    r = await http.get("/v1/admin/me")
    assert r.status_code == 401 and r.json()["code"] == "missing_manager_token"
    assert r.headers["www-authenticate"] == "Bearer"
    token = await manager_token(ctx)
    altered = token[:-2] + ("zz" if not token.endswith("zz") else "yy")
    for headers in (
        bearer("em_nothing"),
        bearer("em_0123456789abcdef_" + "x" * 43),
        bearer(altered),
        as_member(member_id),  # a member token is no manager session
    ):
        r = await http.get("/v1/admin/me", headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "invalid_manager_token", headers


async def test_an_expired_session_is_refused(http, ctx):
    email = new_email()
    await create_manager(ctx, email, MANAGER_PASSWORD, "owner")
    token, row, _ = await login(ctx, email, MANAGER_PASSWORD)
    async with ctx.db.transaction() as session:
        await session.execute(
            sa.update(ManagerSession)
            .where(ManagerSession.id == row.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    r = await http.get("/v1/admin/me", headers=bearer(token))
    assert r.status_code == 401 and r.json()["code"] == "invalid_manager_token"


async def test_failed_logins_past_the_limit_refuse_even_the_right_password(ctx):
    # A context of its own with a low limit, on the run's SQL and Redis; the email keys the count.
    strict = Context(
        ctx.settings.model_copy(update={"rate_limit_auth_failures_per_minute": 3}), ctx.db, ctx.redis
    )
    email = new_email()
    await create_manager(strict, email, MANAGER_PASSWORD, "viewer")
    await in_one_rate_limit_window(10)
    for _ in range(3):
        await refused(login(strict, email, "wrong password!"), 401, "invalid_credentials")
    err = await refused(login(strict, email, MANAGER_PASSWORD), 429, "rate_limited")
    assert 1 <= int(err.headers["Retry-After"]) <= 60  # when the minute turns over


def test_roles_are_ordered():
    def manager(role: str) -> Manager:
        return Manager(
            id="m", email="a@example.com", display_name="A", role=role, password_hash="", created_at=utcnow()
        )

    allowed = {
        "viewer": {"viewer"},
        "editor": {"viewer", "editor"},
        "owner": {"viewer", "editor", "owner"},
    }
    for role, needs_met in allowed.items():
        for needed in ("viewer", "editor", "owner"):
            if needed in needs_met:
                require_role(manager(role), needed)
            else:
                with pytest.raises(ProblemError) as caught:
                    require_role(manager(role), needed)
                assert caught.value.status == 403 and caught.value.code == "forbidden_role"
                assert caught.value.detail == f"This needs the {needed} role or higher."


async def test_audit_record_commits_and_rolls_back_with_its_transaction(ctx):
    target = f"member:{unique()}"

    class Refused(Exception):
        pass

    with pytest.raises(Refused):
        async with ctx.db.transaction() as session:
            audit.record(session, actor="system", action="test.undone", target=target, reason="rolled back")
            raise Refused
    assert await audit.recent(ctx, target=target) == []

    async with ctx.db.transaction() as session:
        audit.record(
            session,
            actor="api_key:shop",
            action="test.kept",
            target=target,
            reason="kept",
            details={"amount": 5, "nested": {"ok": True}},
        )
    (kept,) = await audit.recent(ctx, target=target)
    assert (kept.actor, kept.action, kept.reason) == ("api_key:shop", "test.kept", "kept")
    assert kept.details == {"amount": 5, "nested": {"ok": True}}
    assert kept.at.tzinfo is not None and abs((utcnow() - kept.at).total_seconds()) < 60


async def test_audit_api(http, ctx):
    target = f"member:{unique()}"
    async with ctx.db.transaction() as session:
        for i in range(5):
            audit.record(session, actor="system", action=f"test_{i % 2}.step", target=target, reason=f"#{i}")
        audit.record(session, actor="system", action="test%.literal", target=target)
    viewer = await manager_token(ctx, "viewer")

    r = await http.get("/v1/admin/audit", params={"target": target}, headers=bearer(viewer))
    assert r.status_code == 200, r.text
    records = r.json()["records"]
    assert [x["reason"] for x in records] == ["", "#4", "#3", "#2", "#1", "#0"]  # newest first
    assert set(records[0]) == {"id", "at", "actor", "action", "target", "reason", "details"}

    r = await http.get(
        "/v1/admin/audit", params={"target": target, "action": "test_0."}, headers=bearer(viewer)
    )
    assert [x["reason"] for x in r.json()["records"]] == ["#4", "#2", "#0"]
    # The prefix is literal: `%` and `_` are no wildcards.
    r = await http.get(
        "/v1/admin/audit", params={"target": target, "action": "test%"}, headers=bearer(viewer)
    )
    assert [x["action"] for x in r.json()["records"]] == ["test%.literal"]

    pages, cursor = [], None
    while True:
        params = {"target": target, "limit": 4, **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/v1/admin/audit", params=params, headers=bearer(viewer))).json()
        pages.append([x["reason"] for x in page["records"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [["", "#4", "#3", "#2"], ["#1", "#0"]]

    r = await http.get("/v1/admin/audit", params={"limit": 0}, headers=bearer(viewer))
    assert r.status_code == 400 and r.json()["code"] == "validation_error"
    r = await http.get("/v1/admin/audit", params={"cursor": "yesterday"}, headers=bearer(viewer))
    assert r.status_code == 400 and r.json()["code"] == "validation_error"
    r = await http.get("/v1/admin/audit")
    assert r.status_code == 401 and r.json()["code"] == "missing_manager_token"


async def run_cli(settings, *args: str, password: str | None = None) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    from tests.conftest import server_env

    env = server_env(settings, ENGAGE_LOG_LEVEL="ERROR")
    if password is not None:
        env["ENGAGE_MANAGER_PASSWORD"] = password
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "manager",
        *args,
        env={**os.environ, **env},
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_manager_commands(http, settings):
    email = new_email()
    code, out, err = await run_cli(
        settings, "create", email, "--role", "owner", "--name", "Cy", password=MANAGER_PASSWORD
    )
    assert code == 0, err
    assert f"created manager {email} (owner)" in out
    r = await http.post("/v1/admin/sessions", json={"email": email, "password": MANAGER_PASSWORD})
    assert r.status_code == 201 and r.json()["manager"]["display_name"] == "Cy"

    code, _, err = await run_cli(settings, "create", email, "--role", "owner", password=MANAGER_PASSWORD)
    assert code == 1 and "already a manager" in err
    code, _, err = await run_cli(settings, "create", new_email(), "--role", "owner", password="short")
    assert code == 1 and "12 characters" in err

    code, out, _ = await run_cli(settings, "list")
    assert code == 0 and any(
        line.startswith(f"{email}  owner  Cy") and line.endswith("active") for line in out.splitlines()
    )
    code, out, _ = await run_cli(settings, "disable", email)
    assert code == 0 and f"disabled {email}" in out
    code, _, err = await run_cli(settings, "disable", email)
    assert code == 1 and "no active manager" in err
    r = await http.post("/v1/admin/sessions", json={"email": email, "password": MANAGER_PASSWORD})
    assert r.status_code == 401 and r.json()["code"] == "invalid_credentials"
