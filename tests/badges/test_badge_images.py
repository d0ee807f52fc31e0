"""Every badge image the API gives answers with a picture: the brand's own URL, or one the server
draws."""

from __future__ import annotations

from urllib.parse import urlsplit

from server.badges.content import Badge
from server.badges.images import draw, initials
from tests.badges.support import store_with
from tests.tasks.quest_support import serving


def _local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def test_every_demo_badge_image_answers_with_a_picture(http, as_member, member_id, ctx):
    collection = (await http.get("/v1/badges", headers=as_member(member_id))).json()
    shown = collection["earned"] + collection["locked"]
    catalog = ctx.content.get("badges")
    assert {b["badge_id"] for b in shown} == {b.id for b in catalog.badges.values() if not b.hidden}
    urls = {b["image"] for b in shown}
    # Hidden badges too, at every level: their image shows once earned.
    base = ctx.settings.public_base_url.rstrip("/")
    for badge in catalog.badges.values():
        for level in range(1, badge.level_count + 1):
            urls.add(f"{base}/v1/badges/{badge.id}/image.svg" + (f"?level={level}" if badge.levels else ""))
    for url in sorted(urls):
        assert url.startswith(base), url
        r = await http.get(_local(url))
        assert r.status_code == 200, url
        assert r.headers["content-type"].startswith("image/svg+xml"), url
        assert r.text.startswith("<svg") and "</svg>" in r.text
        assert "max-age" in r.headers["cache-control"]


async def test_unknown_badges_have_no_picture(http):
    r = await http.get("/v1/badges/no-such-badge/image.svg")
    assert r.status_code == 404 and r.json()["code"] == "badge_not_found"
    r = await http.get("/v1/badges/shopper/image.svg?level=0")
    assert r.status_code == 400


async def test_a_brands_own_image_is_given_as_it_is(http, as_member, member_id, ctx):
    yaml = """
badges:
  - id: own-picture
    name: Own picture
    image: https://cdn.example.com/badges/own.png
    criteria: {goal: {event: purchase, count: 1}}
  - id: a-path
    name: A path
    image: /static/badges/a-path.png
    criteria: {goal: {event: purchase, count: 2}}
  - id: founder
    name: Founder
    manual: true
"""
    with serving(ctx, store_with(yaml)):
        found = (await http.get("/v1/badges", headers=as_member(member_id))).json()["locked"]
        images = {b["badge_id"]: b["image"] for b in found}
        assert images["own-picture"] == "https://cdn.example.com/badges/own.png"
        assert images["a-path"].endswith("/v1/badges/a-path/image.svg")
        assert (await http.get(_local(images["a-path"]))).status_code == 200


def test_the_drawing_escapes_the_name_and_shows_initials():
    badge = Badge.model_validate(
        {"id": "x", "name": "<Big> & spender", "rarity": "epic", "criteria": {"streak": 3}}
    )
    svg = draw(badge, 1)
    assert "<Big>" not in svg and "&lt;Big&gt; &amp; spender" in svg
    assert initials("Big spender") == "BS" and initials("on fire") == "OF" and initials("🎉") == "?"
