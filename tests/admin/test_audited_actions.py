"""Changes made outside the console are in the audit log too, each with who made it: content
published and API keys created or revoked from the CLI, and the brand systems' point adjustments
and manual badge grants."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from server.admin import audit
from server.audit import AuditRecord, cli_actor
from server.auth import create_api_key
from server.config import Settings
from server.content.loader import read_files
from server.context import Context
from server.db import Database
from tests.conftest import server_env
from tests.support import ROOT, unique


def engage(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **server_env(settings, ENGAGE_LOG_LEVEL="ERROR")},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def actions(records: list[AuditRecord]) -> list[tuple[str, str, str]]:
    return [(r.action, r.actor, r.target) for r in records]


async def test_api_keys_created_and_revoked_from_the_cli(settings: Settings, ctx: Context) -> None:
    name = unique("audited brand")
    created = engage(settings, "apikey", "create", "--name", name)
    found = re.search(r"created API key (\w+) ", created.stdout)
    assert found, created.stdout
    key_id = found.group(1)
    engage(settings, "apikey", "revoke", key_id)

    records = await audit.recent(ctx, target=f"api_key:{key_id}")
    me = cli_actor()
    assert me.startswith("cli")
    assert actions(records) == [
        ("api_key.revoke", me, f"api_key:{key_id}"),
        ("api_key.create", me, f"api_key:{key_id}"),
    ]
    assert records[1].details == {"name": name}


async def test_brand_point_adjustments_and_reversals(http, ctx: Context, member_id: str) -> None:
    key, secret = await create_api_key(ctx, "audited points")
    brand = {"X-Api-Key": secret}
    assert (await http.put(f"/v1/members/{member_id}", json={}, headers=brand)).status_code == 201
    body = {"amount": 40, "reason": "goodwill", "idempotency_key": unique("adj"), "source": "promotion"}
    first = await http.post(f"/v1/members/{member_id}/points", json=body, headers=brand)
    assert first.status_code == 200, first.text
    replay = await http.post(f"/v1/members/{member_id}/points", json=body, headers=brand)
    assert replay.headers.get("idempotent-replayed") == "true"
    entry_id = first.json()["entry_id"]
    r = await http.post(
        f"/v1/members/{member_id}/ledger/{entry_id}/reversal", json={"reason": "sent twice"}, headers=brand
    )
    assert r.status_code == 200, r.text

    records = await audit.recent(ctx, target=f"member:{member_id}", action_prefix="points.")
    brand_actor = f"api_key:{key.id}"
    # The replay changed nothing and is not recorded again.
    assert actions(records) == [
        ("points.reverse", brand_actor, f"member:{member_id}"),
        ("points.adjust", brand_actor, f"member:{member_id}"),
    ]
    reversal, adjustment = records
    assert adjustment.reason == "goodwill"
    assert adjustment.details == {
        "entry_id": entry_id,
        "currency": "points",
        "amount": 40,
        "balance_after": 40,
        "source": "promotion",
        "idempotency_key": body["idempotency_key"],
    }
    assert (reversal.reason, reversal.details["amount"], reversal.details["balance_after"]) == (
        "sent twice",
        -40,
        0,
    )


async def test_manual_badge_grants(http, ctx: Context, member_id: str) -> None:
    key, secret = await create_api_key(ctx, "audited badges")
    brand = {"X-Api-Key": secret}
    assert (await http.put(f"/v1/members/{member_id}", json={}, headers=brand)).status_code == 201
    grant = {"badge_id": "founding-member", "idempotency_key": unique("grant"), "reason": "launch week"}
    r = await http.post(f"/v1/members/{member_id}/badges", json=grant, headers=brand)
    assert r.status_code == 201, r.text
    again = await http.post(f"/v1/members/{member_id}/badges", json=grant, headers=brand)
    assert again.status_code == 200

    records = await audit.recent(ctx, target=f"member:{member_id}", action_prefix="badge.")
    assert actions(records) == [("badge.grant", f"api_key:{key.id}", f"member:{member_id}")]
    assert records[0].reason == "launch week"
    assert records[0].details == {
        "badge_id": "founding-member",
        "round": 1,
        "idempotency_key": grant["idempotency_key"],
    }


async def test_content_published_and_rolled_back_from_the_cli(own_settings: Settings, tmp_path: Path) -> None:
    content = tmp_path / "content"
    files = read_files(ROOT / "content")
    for rel, text in files.items():
        (content / rel).parent.mkdir(parents=True, exist_ok=True)
        (content / rel).write_text(text)
    engage(own_settings, "content", "publish", str(content), "--note", "launch", "--by", "ana")
    engage(own_settings, "content", "publish", str(content))  # unchanged: nothing published
    (content / "quests" / "audited.yaml").write_text(
        "quests:\n  - id: audited\n    title: Audited\n    goal: {event: share, count: 1}\n"
    )
    engage(own_settings, "content", "publish", str(content))
    engage(own_settings, "content", "rollback", "1")

    db = Database(own_settings)
    try:
        async with db.session() as session:
            rows = list(
                (
                    await session.execute(
                        sa.select(AuditRecord)
                        .where(AuditRecord.action == "content.publish")
                        .order_by(sa.desc(AuditRecord.id))
                    )
                ).scalars()
            )
    finally:
        await db.dispose()
    me = cli_actor()
    assert [(r.actor, r.target, r.reason) for r in rows] == [
        (me, "content:3", "rollback to 1"),
        (me, "content:2", ""),
        (me, "content:1", "launch"),
    ]
    assert rows[2].details["published_by"] == "ana"
    assert rows[2].details["files"] == len(files)
