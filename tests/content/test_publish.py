"""Versioned content: published only when valid, stored in SQL, switched to by a running instance."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from server.app import install
from server.config import Settings
from server.content.loader import ContentInvalid, read_files
from server.content.service import ContentWatcher, latest_version, list_versions, publish
from tests.conftest import server_env
from tests.support import ROOT

install()

QUEST = """quests:
  - id: {id}
    title: {title}
    goal: {{event: share, count: 1}}
"""


def files_with(quest_id: str, title: str = "A new quest") -> dict[str, str]:
    files = read_files(ROOT / "content")
    files["quests/published.yaml"] = QUEST.format(id=quest_id, title=title)
    return files


@pytest.fixture
async def own_ctx(ctx, own_settings):
    """A context of the test's own, on a database of its own: published versions are global."""
    from server.context import Context
    from server.db import Database
    from server.outbox import Outbox
    from server.redis import RedisHandle

    redis = RedisHandle(own_settings)
    redis.start()
    own = Context(settings=own_settings, db=Database(own_settings), redis=redis)
    own.content = ctx.content
    own.outbox = Outbox(own)
    try:
        yield own
    finally:
        await own.outbox.close()
        await own.db.dispose()
        await redis.close()


async def test_publish_validates_stores_and_skips_unchanged(own_ctx):
    ctx = own_ctx
    assert await latest_version(ctx.db) is None
    v1, new = await publish(ctx, files_with("pub-a"), by="tester", note="first")
    assert new
    again, new = await publish(ctx, files_with("pub-a"), by="tester")
    assert (again, new) == (v1, False)
    v2, new = await publish(ctx, files_with("pub-b"), by="tester")
    assert new and v2 == v1 + 1
    broken = files_with("pub-c")
    broken["quests/published.yaml"] = (
        "quests:\n  - id: pub-c\n    title: C\n    goal: {event: nope, count: 1}\n"
    )
    with pytest.raises(ContentInvalid) as exc:
        await publish(ctx, broken, by="tester")
    assert "quests/published.yaml:4: quests.0.goal.event" in str(exc.value)
    assert await latest_version(ctx.db) == v2
    assert [(r.version, r.note) for r in await list_versions(ctx.db)] == [(v2, None), (v1, "first")]


async def test_watcher_switches_to_a_new_version_and_skips_a_rejected_one(own_ctx):
    ctx = own_ctx
    watcher = ContentWatcher(ctx)
    v, _ = await publish(ctx, files_with("watched", "Watched quest"), by="tester")
    assert await watcher.check()
    assert ctx.content.version == v and ctx.content.get("quests").get("watched") is not None
    assert not await watcher.check()  # nothing newer
    # A version this code rejects (written by a newer publisher, say) is skipped; the content stays.
    from server.content.models import ContentVersion
    from server.db import utcnow

    async with ctx.db.transaction() as session:
        session.add(
            ContentVersion(
                digest="x" * 64,
                files={"quests/bad.yaml": "quests: [{id: x}]"},
                published_at=utcnow(),
                published_by="elsewhere",
            )
        )
    assert not await watcher.check()
    assert ctx.content.version == v
    # A good version below a rejected newest one is still taken.
    good, _ = await publish(ctx, files_with("between", "Between"), by="tester")
    async with ctx.db.transaction() as session:
        session.add(
            ContentVersion(
                digest="y" * 64,
                files={"quests/bad.yaml": "quests: [{id: y}]"},
                published_at=utcnow(),
                published_by="elsewhere",
            )
        )
    assert await watcher.check()
    assert ctx.content.version == good and ctx.content.get("quests").get("between") is not None


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **server_env(settings)},
    )


def test_cli_publish_versions_and_rollback(own_settings, tmp_path):
    content = tmp_path / "content"
    content.mkdir()
    for rel, text in files_with("cli-a").items():
        (content / rel).parent.mkdir(parents=True, exist_ok=True)
        (content / rel).write_text(text)
    first = run_cli(own_settings, "content", "publish", str(content), "--note", "launch")
    assert first.returncode == 0 and "published version 1" in first.stdout, first.stdout + first.stderr
    same = run_cli(own_settings, "content", "publish", str(content))
    assert "unchanged: version 1" in same.stdout
    (content / "quests/published.yaml").write_text(
        "quests:\n  - id: cli-a\n    title: A\n    goal: {event: share, count: 1}\n"
        "  - id: cli-b\n    title: B\n    requires: [cli-z]\n    goal: {event: share, count: 1}\n"
    )
    bad = run_cli(own_settings, "content", "publish", str(content))
    assert bad.returncode == 1
    assert (
        f"{content}/quests/published.yaml:7: quests.1.requires: requires a missing quest `cli-z`"
        in bad.stdout
    )
    assert "nothing published" in bad.stderr
    (content / "quests/published.yaml").write_text(QUEST.format(id="cli-b", title="B"))
    assert "published version 2" in run_cli(own_settings, "content", "publish", str(content)).stdout
    back = run_cli(own_settings, "content", "rollback", "1")
    assert back.returncode == 0 and "published version 3 (the files of 1)" in back.stdout
    listed = run_cli(own_settings, "content", "versions").stdout.splitlines()
    assert [line.split("\t")[0] for line in listed] == ["3", "2", "1"]
    assert listed[0].endswith("rollback to 1") and listed[2].endswith("launch")
    assert run_cli(own_settings, "content", "rollback", "9").returncode == 1
