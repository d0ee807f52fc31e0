"""Members: created and updated by the brand, or bare on a member's first valid token."""

from __future__ import annotations

from tests.support import unique


async def test_put_creates_then_updates(http, as_brand, member_id):
    body = {
        "display_name": "Ana",
        "timezone": "America/Sao_Paulo",
        "birthday": "1990-02-28",
        "signed_up_at": "2026-11-01T10:00:00+01:00",
    }
    created = await http.put(f"/v1/members/{member_id}", json=body, headers=as_brand)
    assert created.status_code == 201, created.text
    out = created.json()
    assert out["member_id"] == member_id and out["timezone"] == "America/Sao_Paulo"
    assert out["birthday"] == "1990-02-28" and out["signed_up_at"].startswith("2026-11-01T09:00:00")
    updated = await http.put(f"/v1/members/{member_id}", json={"display_name": "Ana B."}, headers=as_brand)
    assert updated.status_code == 200
    assert updated.json()["display_name"] == "Ana B." and updated.json()["timezone"] == "America/Sao_Paulo"
    got = await http.get(f"/v1/members/{member_id}", headers=as_brand)
    assert got.json()["display_name"] == "Ana B."


async def test_bad_profiles_are_refused_and_change_nothing(http, as_brand, member_id):
    await http.put(
        f"/v1/members/{member_id}", json={"display_name": "Kept", "timezone": "Europe/Oslo"}, headers=as_brand
    )
    cases = [
        ({"timezone": "Mars/Olympus"}, "invalid_timezone"),
        ({"timezone": "CEST"}, "invalid_timezone"),
        ({"display_name": "   "}, "invalid_display_name"),
        ({"birthday": "1990-02-30"}, "validation_error"),
        ({"signed_up_at": "2026-11-01T10:00:00"}, "invalid_signed_up_at"),
        ({"nickname": "x"}, "validation_error"),
    ]
    for body, code in cases:
        r = await http.put(f"/v1/members/{member_id}", json=body, headers=as_brand)
        assert r.status_code == 400 and r.json()["code"] == code, (body, r.text)
    got = (await http.get(f"/v1/members/{member_id}", headers=as_brand)).json()
    assert (got["display_name"], got["timezone"]) == ("Kept", "Europe/Oslo")
    r = await http.put("/v1/members/bad%20id", json={}, headers=as_brand)
    assert r.status_code == 400 and r.json()["code"] == "invalid_member_id"


async def test_unknown_member_with_a_valid_token_becomes_a_bare_member(http, as_member, as_brand):
    member_id = unique("bare")
    assert (await http.get(f"/v1/members/{member_id}", headers=as_brand)).status_code == 404
    me = await http.get("/v1/me", headers=as_member(member_id))
    assert me.status_code == 200
    assert me.json() == {
        "member_id": member_id,
        "handle": me.json()["handle"],
        "display_name": None,
        "timezone": "UTC",
        "tier": "regular",
        "points": 0,
        "growth": 0,
        "streak": 0,
        "birthday": None,
        "signed_up_at": None,
        "tickets": 0,
    }
    assert (await http.get(f"/v1/members/{member_id}", headers=as_brand)).status_code == 200


async def test_members_api_needs_an_api_key(http, as_member, member_id):
    r = await http.put(f"/v1/members/{member_id}", json={"display_name": "x"}, headers=as_member(member_id))
    assert r.status_code == 401 and r.json()["code"] == "missing_api_key"
