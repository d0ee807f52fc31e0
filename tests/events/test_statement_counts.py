"""The statements of a unit of work do not grow with the content: a check-in and a batch of 100
member events issue as many SQL statements with the demo content as with twice its quests and
badges (each domain loads and writes per table, never per quest, badge or listener)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from server.checkins.service import check_in
from server.content.loader import ContentStore, read_files, validate_files
from server.context import Context
from server.db import utcnow
from server.events.service import ingest
from server.members.service import ensure_members
from tests.support import ROOT, unique
from tests.tasks.quest_support import serving

ID = re.compile(r"^\s*-?\s*id:\s*([a-z0-9][a-z0-9-]*)\s*$", re.M)


def doubled(files: dict[str, str]) -> dict[str, str]:
    """The content with a second copy of every quest and badge file, under ids of their own."""
    out = dict(files)
    copied = {k: v for k, v in files.items() if k.startswith(("quests/", "badges/"))}
    ids = {i for text in copied.values() for i in ID.findall(text)}
    # Longest first, so that an id inside another id is not renamed twice.
    pattern = re.compile(
        r"(?<![\w-])(" + "|".join(sorted(map(re.escape, ids), key=len, reverse=True)) + r")(?![\w-])"
    )
    for name, text in copied.items():
        folder, _, file = name.partition("/")
        out[f"{folder}/copy-{file}"] = pattern.sub(lambda m: m.group(1) + "-copy", text)
    return out


def store(files: dict[str, str]) -> ContentStore:
    found, issues = validate_files(files, "statement-count")
    assert not issues, "\n".join(map(str, issues))
    return found


@contextmanager
def counting(ctx: Context) -> Iterator[list[str]]:
    """The statements this task sends (not the scheduler's nor the outbox's later clean-up)."""
    task = asyncio.current_task()
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if asyncio.current_task() is task:
            seen.append(" ".join(statement.split())[:80])

    engine = ctx.db.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)


def batch(members: list[str]) -> dict[str, Any]:
    """Ten events for each of ten members, the deepest chain the demo content has: each member
    earns three badges (a first order, 1,000 spent, five products reviewed), completes the weekly
    order quests, and so earns the collector badge (which counts badges) in the same unit."""
    now = utcnow() - timedelta(minutes=1)
    ten: list[tuple[str, dict[str, Any]]] = [
        ("purchase", {"amount": 25.0, "channel": "online", "category": "shoes"}),
        *(("review_posted", {"product_id": f"p{n}", "rating": 5}) for n in range(5)),
        ("purchase", {"amount": 600.0, "channel": "store"}),
        ("product_viewed", {"category": "bags"}),
        ("purchase", {"amount": 25.0, "channel": "online"}),
        ("purchase", {"amount": 600.0, "channel": "store"}),
    ]
    return {
        "events": [
            {
                "event_id": unique("ev"),
                "member_id": member,
                "type": type_,
                "occurred_at": (now + timedelta(milliseconds=10 * m + n)).isoformat(),
                "properties": props,
            }
            for m, member in enumerate(members)
            for n, (type_, props) in enumerate(ten)
        ]
    }


async def statements(ctx: Context, unit: Callable[[], Awaitable[Any]]) -> list[str]:
    with counting(ctx) as seen:
        await unit()
    return seen


async def test_statements_do_not_grow_with_quests_and_badges(ctx: Context) -> None:
    files = read_files(ROOT / "content")
    demo, twice = store(files), store(doubled(files))
    assert len(twice.get("quests").quests) == 2 * len(demo.get("quests").quests)
    assert len(twice.get("badges").badges) == 2 * len(demo.get("badges").badges)

    async def check_in_fresh() -> None:
        await check_in(ctx, unique("m"))

    # Events name members the brand created before: made here, outside the counted units.
    batches = []
    for _ in range(4):
        members = [unique("m") for _ in range(10)]
        async with ctx.db.transaction() as session:
            await ensure_members(session, members)
        batches.append(batch(members))

    async def events_batch() -> None:
        result = await ingest(ctx, batches.pop(), "api")
        assert result.accepted == 100, result

    counts: dict[str, list[int]] = {}
    for name, unit in (("check-in", check_in_fresh), ("100 events", events_batch)):
        for content in (demo, twice, demo, twice):  # the first round warms what a process notes once
            with serving(ctx, content):
                counts.setdefault(name, []).append(len(await statements(ctx, unit)))
    for name, (_, _, with_demo, with_twice) in counts.items():
        assert with_demo == with_twice, (
            f"{name}: {with_demo} statements with the demo content, "
            f"{with_twice} with twice its quests and badges"
        )
