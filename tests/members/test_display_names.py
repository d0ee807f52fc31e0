"""Display names are what other members see (boards, referral pages): normalised, trimmed, and
never invisible or reversed text that passes for someone else."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "name",
    [
        "Ana\u202egnp.exe",  # a right-to-left override: shown as "Anaexe.png"
        "Ad\u200bmin",  # a zero-width space
        "\u2066Bo\u2069",  # a bidi isolate
        "\ufeffAna",
        "Bo\x07",
        "Ana\x00",
        "\u3164",
    ],
)
async def test_a_display_name_that_hides_or_turns_text_is_refused(http, as_brand, member_id, name):
    await http.put(f"/v1/members/{member_id}", json={"display_name": "Kept"}, headers=as_brand)
    r = await http.put(f"/v1/members/{member_id}", json={"display_name": name}, headers=as_brand)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_display_name" and r.headers["content-type"].startswith(
        "application/problem+json"
    )
    got = await http.get(f"/v1/members/{member_id}", headers=as_brand)
    assert got.json()["display_name"] == "Kept"


async def test_a_display_name_is_kept_normalised_and_trimmed(http, as_brand, member_id):
    r = await http.put(
        f"/v1/members/{member_id}", json={"display_name": "  Jose\u0301 👩‍💻 \n"}, headers=as_brand
    )
    assert r.status_code == 201, r.text
    assert r.json()["display_name"] == "José 👩‍💻"
    me = await http.get(f"/v1/members/{member_id}", headers=as_brand)
    assert me.json()["display_name"] == "José 👩‍💻"
