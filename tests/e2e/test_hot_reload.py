"""Content published while two instances run: both switch within seconds, without a restart; a broken
publish is refused with its line number and the version serving keeps serving."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from server.config import Settings
from tests.conftest import server_env
from tests.e2e.helpers import create_api_key, member_client, now_iso, running, send_events, wait_until
from tests.support import ROOT, unique

pytestmark = pytest.mark.e2e

NEW_QUEST = """quests:
  - id: flash-share
    title: Flash share
    goal: {event: share, count: 1}
    reward: {points: 12}
"""

BROKEN = """quests:
  - id: flash-share
    title: Flash share
    goal: {event: share, count: 1}
  - id: broken
    title: Broken
    steps:
      - id: one
        title: One
        requires: [two]
        goal: {event: share, count: 1}
      - id: two
        title: Two
        requires: [one]
        goal: {event: sharing, count: 1}
"""


def publish(env: dict[str, str], content: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "content", "publish", str(content)],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def quest_ids(base_url: str, token: str) -> set[str]:
    async with member_client(base_url, token) as app:
        r = await app.get("/v1/quests")
        assert r.status_code == 200, r.text
        return {q["quest_id"] for q in r.json()["quests"]}


async def version_of(base_url: str) -> int | None:
    async with httpx.AsyncClient(timeout=10) as client:
        return (await client.get(f"{base_url}/ready")).json()["content"]["version"]


async def test_publish_switches_two_instances_and_a_broken_file_changes_nothing(
    own_settings: Settings, token_for
) -> None:
    content = Path(tempfile.mkdtemp(prefix="engage-content-"))
    shutil.copytree(ROOT / "content", content, dirs_exist_ok=True)
    # Polling only as a fallback: the Redis message must do the work within the wait.
    env = server_env(own_settings, ENGAGE_CONTENT_DIR=str(content), ENGAGE_CONTENT_POLL_SECONDS="60")
    token = token_for(unique("m"))
    try:
        with running(env) as a, running(env) as b:
            assert await version_of(a.base_url) is None  # the files on disk, nothing published yet
            assert "flash-share" not in await quest_ids(a.base_url, token)

            (content / "quests" / "flash.yaml").write_text(NEW_QUEST)
            out = publish(env, content)
            assert out.returncode == 0 and "published version 1" in out.stdout, out.stdout + out.stderr
            for proc in (a, b):

                async def switched(p=proc) -> bool:
                    return await version_of(p.base_url) == 1

                await wait_until(switched, within=10, what="the instance to serve version 1")
                assert "flash-share" in await quest_ids(proc.base_url, token)

            # The new quest is live: an event counts on it at once.
            key = create_api_key(env)
            member = unique("m")
            async with httpx.AsyncClient(base_url=b.base_url, headers={"X-Api-Key": key}) as brand:
                assert (await brand.put(f"/v1/members/{member}", json={})).status_code == 201
                event = {
                    "event_id": unique("ev"),
                    "member_id": member,
                    "type": "share",
                    "occurred_at": now_iso(),
                    "properties": {"network": "chat"},
                }
                assert (await send_events(brand, event))["accepted"] == 1
            async with member_client(a.base_url, token_for(member)) as app:
                q = (await app.get("/v1/quests/flash-share")).json()
                assert q["status"] == "completed", q

            (content / "quests" / "flash.yaml").write_text(BROKEN)
            bad = publish(env, content)
            assert bad.returncode == 1
            where = f"{content}/quests/flash.yaml"
            assert f"{where}:7: quests.1.steps: steps require each other in a cycle" in bad.stdout, bad.stdout
            assert f"{where}:15: quests.1.steps.1.goal.event: unknown event type `sharing`" in bad.stdout
            for proc in (a, b):
                assert await version_of(proc.base_url) == 1
                assert "flash-share" in await quest_ids(proc.base_url, token)
                assert "broken" not in await quest_ids(proc.base_url, token)

            # A restarted instance serves the published version, not the (broken) files.
            b.stop()
            with running(env) as b2:
                assert await version_of(b2.base_url) == 1
                assert "flash-share" in await quest_ids(b2.base_url, token)
    finally:
        shutil.rmtree(content, ignore_errors=True)
