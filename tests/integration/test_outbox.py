"""The outbox: effects applied after commit, and left for the drain when they fail."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from server.db import utcnow
from server.outbox import OutboxRow
from server.realtime.hub import send_live
from tests.support import unique


async def history(ctx, member_id: str) -> list[dict]:
    import json

    return [json.loads(m) for _, m in await ctx.hub.history(member_id, "0-0")]


async def test_effects_apply_after_commit_and_not_on_rollback(ctx):
    member_id = unique("ob")
    async with ctx.db.transaction() as session:
        send_live(ctx, session, member_id, "test.hello", {"n": 1})
    with pytest.raises(RuntimeError, match="roll back"):
        async with ctx.db.transaction() as session:
            send_live(ctx, session, member_id, "test.never", {"n": 2})
            raise RuntimeError("roll back")
    messages = await history(ctx, member_id)
    assert [m["type"] for m in messages] == ["test.hello"]
    await ctx.outbox.flush()
    assert set(messages[0]) == {"id", "type", "at", "data"}
    async with ctx.db.session() as session:
        left = (
            await session.execute(
                sa.select(sa.func.count())
                .select_from(OutboxRow)
                .where(OutboxRow.payload["member_id"].as_string() == member_id)
            )
        ).scalar_one()
    assert left == 0


async def test_drain_applies_rows_left_by_a_dead_writer_once(ctx):
    member_id = unique("orphan")
    # A row whose writer died before applying it: its claim has lapsed.
    async with ctx.db.transaction() as session:
        session.add(
            OutboxRow(
                kind="live",
                payload={
                    "member_id": member_id,
                    "type": "test.orphan",
                    "at": utcnow().isoformat(),
                    "data": {},
                },
                created_at=utcnow(),
                claimed_until=None,
            )
        )
    await ctx.outbox.drain()
    await ctx.outbox.drain()
    assert [m["type"] for m in await history(ctx, member_id)] == ["test.orphan"]


async def test_a_replayed_row_is_not_sent_twice(ctx):
    member_id = unique("twice")
    payload = {"member_id": member_id, "type": "test.once", "at": utcnow().isoformat(), "data": {}}

    await ctx.outbox.effects["live"](ctx, [(424242, payload)], False)
    await ctx.outbox.effects["live"](ctx, [(424242, payload)], True)  # the drain after a crash
    assert len(await history(ctx, member_id)) == 1
