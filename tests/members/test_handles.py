"""Public handles: made with every member, unique, never changed, backfilled by the migration."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from server.config import Settings
from server.members import service as members
from server.members.models import HANDLE_ALPHABET, HANDLE_LENGTH, new_handle
from server.migrate import alembic_config, upgrade
from tests.support import PostgresDatabase, unique


async def test_a_handle_drawn_twice_is_drawn_again(ctx, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = unique("first"), unique("second")
    async with ctx.db.transaction() as session:
        assert await members.ensure_member(session, first)
        taken = (await members.profile(ctx, session, first)).handle
    assert taken is not None
    collisions = [taken, taken]
    monkeypatch.setattr(members, "new_handle", lambda: collisions.pop() if collisions else new_handle())
    async with ctx.db.transaction() as session:
        assert await members.ensure_member(session, second)
        assert not await members.ensure_member(session, second)
    found = await members.handles(ctx, [first, second])
    assert found[first] == taken and found[second] not in (taken, None)


def _sql(url: str, statement: str, rows: list[dict[str, Any]] | None = None) -> list[Any]:
    async def run() -> list[Any]:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(sa.text(statement), rows or {})
                return list(result.all()) if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_the_migration_gives_every_member_a_handle(tmp_path: Path) -> None:
    admin_url = os.environ.get("ENGAGE_TEST_DATABASE_URL")
    db = (
        PostgresDatabase(admin_url, f"engage_handles_{uuid.uuid4().hex[:10]}").create() if admin_url else None
    )
    url = db.url if db is not None else f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"
    try:
        settings = Settings(data_dir=tmp_path, database_url=url)
        scripts = ScriptDirectory.from_config(alembic_config(settings))
        ours = next(s for s in scripts.walk_revisions() if s.path.endswith("_member_handles.py"))
        assert isinstance(ours.down_revision, str)
        upgrade(settings, ours.down_revision)
        ids = [f"member-{i}@example.com" for i in range(7)]
        at = datetime(2026, 11, 1, tzinfo=UTC)
        _sql(
            url,
            "INSERT INTO members (id, timezone, created_at, updated_at) VALUES (:id, 'UTC', :at, :at)",
            [{"id": m, "at": at} for m in ids],
        )
        upgrade(settings)
        handles = dict(_sql(url, "SELECT id, handle FROM members"))
        with pytest.raises(IntegrityError):
            _sql(url, "UPDATE members SET handle = :h WHERE id = :id", [{"h": handles[ids[0]], "id": ids[1]}])
    finally:
        if db is not None:
            db.drop()
    assert set(handles) == set(ids) and len(set(handles.values())) == len(ids)
    for h in handles.values():
        assert len(h) == HANDLE_LENGTH and set(h) <= set(HANDLE_ALPHABET)
