"""What the API says agrees with itself: the same fact the same way on every route, HTTP answers
whose headers tell the truth, and a repeat that says it gave nothing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from server.app import create_app
from server.config import Settings
from server.realtime.hub import Close
from server.realtime.routes import live
from tests.support import ROOT


async def test_a_member_without_growth_is_on_the_first_tier_everywhere(http, as_member, as_brand, member_id):
    headers = as_member(member_id)
    ladder = (await http.get("/v1/tiers", headers=headers)).json()
    first = ladder["member"]["tier"]
    assert first == "regular"
    assert (await http.get("/v1/me", headers=headers)).json()["tier"] == first
    assert (await http.get(f"/v1/members/{member_id}", headers=as_brand)).json()["tier"] == first
    created = (await http.put(f"/v1/members/{member_id}-new", json={}, headers=as_brand)).json()
    assert created["tier"] == first


async def test_a_repeat_check_in_shows_no_reward(http, as_member, member_id):
    headers = as_member(member_id)
    first = (await http.post("/v1/checkins", headers=headers)).json()
    assert first["already_checked_in"] is False and first["reward"]["points"] > 0
    again = (await http.post("/v1/checkins", headers=headers)).json()
    assert again["already_checked_in"] is True
    assert "reward" in again and again["reward"] is None
    assert (again["date"], again["streak"], again["cycle_day"]) == (first["date"], 1, first["cycle_day"])


async def test_a_finished_period_never_says_live(http, as_member, member_id):
    now = datetime.now(UTC)
    boards = (await http.get("/v1/leaderboards", headers=as_member(member_id))).json()["boards"]
    previous = [b for b in boards if b["previous_period"] is not None]
    assert previous
    for board in previous:
        period = board["previous_period"]
        assert datetime.fromisoformat(period["ends_at"]) <= now
        assert period["status"] in ("ended", "archived"), board["board_id"]
        assert board["current_period"]["status"] == "live"
        page = await http.get(
            f"/v1/leaderboards/{board['board_id']}?period=previous", headers=as_member(member_id)
        )
        assert page.json()["period"]["status"] == period["status"], board["board_id"]


async def test_options_lists_exactly_the_methods_of_the_path(http, settings: Settings):
    app = create_app(settings)
    methods: dict[str, set[str]] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if handler.include_in_schema:
                methods.setdefault(route.path_format, set()).update(handler.http_methods)
    samples = {
        "/v1/checkins": "/v1/checkins",
        "/v1/me": "/v1/me",
        "/v1/members/{member_id}": "/v1/members/someone",
        "/v1/members/{member_id}/friends": "/v1/members/someone/friends",
    }
    for template, path in samples.items():
        r = await http.options(path)
        assert r.status_code == 204, path
        allowed = {m.strip() for m in r.headers["allow"].split(",")}
        assert allowed == methods[template] | {"OPTIONS"}, path
    assert {m.strip() for m in (await http.options("/v1/checkins")).headers["allow"].split(",")} == {
        "GET",
        "POST",
        "OPTIONS",
    }


async def test_metrics_name_their_charset_once(http):
    r = await http.get("/metrics")
    content_type = r.headers["content-type"]
    assert content_type.startswith("text/plain; version=")
    assert content_type.count("charset=") == 1


def test_every_close_code_of_the_live_socket_is_documented():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("The live socket closes with these codes", 1)[1].split("\n\n", 2)[1]
    in_readme = {int(code) for code in re.findall(r"^\| (\d{4}) \|", section, re.MULTILINE)}
    in_route = {int(code) for code in re.findall(r"^\s*- (\d{4}):", live.fn.__doc__ or "", re.MULTILINE)}
    assert in_readme == in_route == {c.value for c in Close}
    # Every socket is closed with a code of that list, never a number of its own.
    for path in (ROOT / "server").rglob("*.py"):
        assert not re.search(r"close\((code=)?\d", path.read_text()), path


async def test_one_name_per_thing(http, as_brand, as_member, member_id, ctx):
    """A ledger entry is `entry_id` with its `balance_after` in answers, pages and live messages;
    a tier is `tier`; pages go on with `cursor` and `next_cursor`."""
    assert (await http.put(f"/v1/members/{member_id}", json={}, headers=as_brand)).status_code == 201
    body = {"amount": 7, "reason": "names", "idempotency_key": "names"}
    entry = (await http.post(f"/v1/members/{member_id}/points", json=body, headers=as_brand)).json()
    assert "id" not in entry and "balance" not in entry
    page = (await http.get("/v1/ledger", headers=as_member(member_id))).json()
    said = [json.loads(raw)["data"] for _, raw in await ctx.hub.history(member_id, "0-0")]
    awarded = next(d for d in said if d.get("entry_id") == entry["entry_id"])
    assert page["entries"][0]["entry_id"] == entry["entry_id"]
    assert awarded["balance_after"] == entry["balance_after"] == page["entries"][0]["balance_after"] == 7
    assert "balance" not in awarded

    ladder = (await http.get("/v1/tiers", headers=as_member(member_id))).json()
    assert ladder["tiers"][0]["tier"] == ladder["member"]["tier"]
    assert ladder["member"]["next_tier"]["tier"] == ladder["tiers"][1]["tier"]

    doc = (await http.get("/schema/openapi.json")).json()
    names = json.dumps(doc)
    for old in ('"tier_id"', '"next_before"'):
        assert old not in names, old
    for path, methods in doc["paths"].items():
        for op in methods.values():
            params = {p["name"] for p in op.get("parameters", []) if p.get("in") == "query"}
            assert "before" not in params, path
