"""Members see each other on the boards by handle and display name, never by member id."""

from __future__ import annotations

import httpx

from server.db import utcnow
from tests.leaderboards.conftest import BoardApp
from tests.leaderboards.support import boards_store, mine, put_member, score, standings
from tests.leaderboards.test_boards import board_yaml
from tests.support import unique
from tests.tasks.quest_support import serving


async def test_a_board_shows_other_members_by_handle_and_name_only(
    board_app: BoardApp, http_to: httpx.AsyncClient
) -> None:
    ctx, bid = board_app.ctx, unique("handles")
    ann = f"{unique('ann')}@example.com"  # a brand's member id may be an e-mail address
    bob, bare = unique("bob"), unique("bare")
    await put_member(http_to, board_app.brand, ann, display_name="Ann")
    await put_member(http_to, board_app.brand, bob, display_name="Bob")
    as_bob = board_app.member(bob)
    handle_of = {}
    for m in (ann, bob):
        handle_of[m] = (await http_to.get(f"/v1/members/{m}", headers=board_app.brand)).json()["handle"]
    # A member the app made from their first token, without a name: the handle shows alone.
    bare_me = (await http_to.get("/v1/me", headers=board_app.member(bare))).json()
    handle_of[bare] = bare_me["handle"]
    assert bare_me["member_id"] == bare and bare_me["display_name"] is None
    assert len(set(handle_of.values())) == 3
    for m, h in handle_of.items():
        assert len(h) == 12 and h.isalnum() and h.lower() == h and h not in m
    me = (await http_to.get("/v1/me", headers=as_bob)).json()
    assert (me["member_id"], me["handle"]) == (bob, handle_of[bob])

    with serving(ctx, boards_store(board_yaml(bid))):
        now = utcnow()
        await score(ctx, bid, ann, 30, now)
        await score(ctx, bid, bob, 20, now)
        await score(ctx, bid, bare, 10, now)
        r = await http_to.put(f"/v1/members/{bob}/friends", json={"friends": [ann]}, headers=board_app.brand)
        assert r.status_code == 200
        pages = [
            await standings(http_to, as_bob, bid),
            await standings(http_to, as_bob, bid, scope="friends"),
            await mine(http_to, as_bob, bid, around=5),
        ]
        ann_rows = [e for p in pages for e in p["entries"] if e["handle"] == handle_of[ann]]
        assert len(ann_rows) == 3
        for row in ann_rows:
            assert row == {
                "rank": 1,
                "handle": handle_of[ann],
                "display_name": "Ann",
                "score": 30,
                "is_me": False,
            }
        top = pages[0]["entries"]
        assert top[1] == {
            "rank": 2,
            "handle": handle_of[bob],
            "display_name": "Bob",
            "score": 20,
            "is_me": True,
            "member_id": bob,
        }
        assert top[2] == {
            "rank": 3,
            "handle": handle_of[bare],
            "display_name": None,
            "score": 10,
            "is_me": False,
        }
        assert pages[2]["member_id"] == bob and pages[2]["handle"] == handle_of[bob]
        for page in pages:  # nowhere in the answers: not in a row, not in a field of its own
            raw = str(page)
            assert ann not in raw and bare not in raw
    # A handle never changes with the profile.
    await put_member(http_to, board_app.brand, ann, display_name="Ann B.")
    again = (await http_to.get(f"/v1/members/{ann}", headers=board_app.brand)).json()
    assert again["handle"] == handle_of[ann]
