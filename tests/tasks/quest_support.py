"""Content of a test's own for the quest engine, and delivery of events through the real dispatch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import yaml

from server.content.loader import ContentStore, read_files, validate_files
from server.context import Context
from server.events import dispatch
from server.events.dispatch import DomainEvent
from tests.support import ROOT, pinned, unique


def quest_files(quests_yaml: str, **others: str) -> dict[str, str]:
    """The repository's content with the quests replaced by one file (and other files replaced);
    the demo badges, and the friend help on demo quests, which name the demo quests, are left out."""
    files = {
        k: v for k, v in read_files(ROOT / "content").items() if not k.startswith(("quests/", "badges/"))
    }
    without_quest_help(files)
    files["quests/test.yaml"] = quests_yaml
    files.update(others)
    return files


def without_quest_help(files: dict[str, str]) -> None:
    """Take friend help on quests out of teams.yaml: it names the demo quests (content/teams.yaml)."""
    teams = yaml.safe_load(files.get("teams.yaml", "")) or {}
    if teams.get("assist", {}).get("quests"):
        teams["assist"]["quests"] = []
        files["teams.yaml"] = yaml.safe_dump(teams, sort_keys=False)


def store_of(quests_yaml: str, **others: str) -> ContentStore:
    store, issues = validate_files(quest_files(quests_yaml, **others), "test")
    assert not issues, "\n".join(map(str, issues))
    return store


@contextlib.contextmanager
def serving(ctx: Context, store: ContentStore) -> Iterator[ContentStore]:
    """Serve `store` for the length of a test, then what served before."""
    before = ctx.content
    ctx.content = pinned(ctx, store)
    try:
        yield store
    finally:
        ctx.content = before


def event(
    member_id: str, type_: str, at: datetime, event_id: str | None = None, **properties: Any
) -> DomainEvent:
    return DomainEvent(
        event_id=event_id or unique("ev"),
        member_id=member_id,
        type=type_,
        occurred_at=at,
        properties=properties,
    )


async def deliver(ctx: Context, *events: DomainEvent) -> None:
    """Hand events to the domains the way the outbox does after they are stored, then let the
    outbox apply what that caused (awards, live messages, further events)."""
    await dispatch.apply_dispatch(ctx, [(0, e.to_payload()) for e in events], False)
    await ctx.outbox.flush()
