"""A member app checks in and hears its quests move, live, from the demo content."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import live, member_client
from tests.support import ServerProcess, unique

pytestmark = pytest.mark.e2e


async def test_check_in_moves_quests_live(server: ServerProcess, token_for) -> None:
    member = unique("m")
    token = token_for(member)
    async with member_client(server.base_url, token) as app, live(server.ws_url, token) as sock:
        r = await app.post("/v1/checkins")
        assert r.status_code == 200, r.text
        checkin_points = r.json()["reward"]["points"]

        def moved(ms: list[dict]) -> list[dict]:
            return [q for m in ms if m["type"] == "quest.progress" for q in m["data"]["quests"]]

        got = await sock.take_until(
            lambda ms: (
                any(q["quest_id"] == "first-week" for q in moved(ms))
                and any(m["type"] == "quest.completed" for m in ms)
                and any(m["type"] == "points.awarded" and m["data"]["source"] == "quest" for m in ms)
            )
        )
        progress = next(q for q in moved(got) if q["quest_id"] == "first-week")
        assert (progress["step_id"], progress["progress"], progress["target"]) == ("check-in-3", 1, 3)
        assert progress["remaining_text"] == "2 more check-ins to go"
        done = next(m["data"] for m in got if m["type"] == "quest.completed")
        assert (done["quest_id"], done["reward"]["points"]) == ("daily-check-in", 5)

        quests = {q["quest_id"]: q for q in (await app.get("/v1/quests")).json()["quests"]}
        assert quests["daily-check-in"]["status"] == "completed"
        assert quests["daily-check-in"]["resets_at"] is not None
        assert quests["first-week"]["steps"][0]["progress"] == 1
        me = (await app.get("/v1/me")).json()
        assert me["points"] == checkin_points + 5
