"""Operations: one problem shape everywhere, OpenAPI, metrics, and rate limits shared through Redis."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import Served
from tests.support import in_one_rate_limit_window, unique


async def test_unknown_routes_and_methods_are_problems(http):
    r = await http.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "not_found" and r.json()["status"] == 404
    r = await http.delete("/v1/events")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"


async def test_openapi_document(http):
    r = await http.get("/schema/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    for path in ("/v1/me", "/v1/events", "/v1/members/{member_id}/points", "/v1/ledger", "/health", "/ready"):
        assert path in doc["paths"], path
    assert (await http.get("/schema")).status_code == 200


async def test_metrics_are_prometheus_text(http, as_brand, member_id):
    await http.put(f"/v1/members/{member_id}", json={}, headers=as_brand)
    await http.post(
        f"/v1/members/{member_id}/points",
        json={"amount": 1, "reason": "m", "idempotency_key": "m"},
        headers=as_brand,
    )
    r = await http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'engage_ledger_entries_total{currency="points",source="adjustment"}' in text
    assert (
        'engage_http_requests_total{method="POST",route="/v1/members/{member_id}/points",status="200"}'
        in text
    )
    assert "engage_outbox_pending" in text


async def test_rate_limits_are_shared_by_instances(settings, token_for):
    """Two app instances on one Redis share one budget per member."""
    limited = settings.model_copy(update={"rate_limit_member_per_minute": 10, "scheduler_enabled": False})
    a, b = Served(limited), Served(limited)
    await a.start()
    await b.start()
    try:
        member_id = unique("busy")
        headers = {"Authorization": f"Bearer {token_for(member_id)}"}
        await in_one_rate_limit_window(10)
        async with httpx.AsyncClient(timeout=10) as client:
            statuses = []
            for i in range(14):
                base = a.base_url if i % 2 else b.base_url
                statuses.append(await client.get(base + "/v1/me", headers=headers))
        # Exactly 10 in the window, 5 through each instance; every one after is refused.
        assert [r.status_code for r in statuses] == [200] * 10 + [429] * 4
        for refused in statuses[10:]:
            assert refused.json()["code"] == "rate_limited"
            assert 1 <= int(refused.headers["retry-after"]) <= 60
        other = {"Authorization": f"Bearer {token_for(unique('calm'))}"}
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(a.base_url + "/v1/me", headers=other)).status_code == 200
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_board_reads_count_against_the_member_limit(settings, token_for):
    """Board reads send their count to Redis with the read itself, and are refused past the limit
    all the same (invalid ones too: every request counts)."""
    limited = settings.model_copy(update={"rate_limit_member_per_minute": 6, "scheduler_enabled": False})
    app = Served(limited)
    await app.start()
    try:
        headers = {"Authorization": f"Bearer {token_for(unique('reader'))}"}
        paths = ["/v1/leaderboards/weekly-points", "/v1/leaderboards/weekly-points/me", "/v1/me"]
        paths += ["/v1/leaderboards/weekly-points?limit=0"]
        await in_one_rate_limit_window(10)
        async with httpx.AsyncClient(base_url=app.base_url, timeout=10) as client:
            statuses = [(await client.get(paths[i % 4], headers=headers)) for i in range(12)]
        # The first 6 answered (the invalid limit=0 with its 400), all 6 after refused.
        assert [r.status_code for r in statuses] == [200, 200, 200, 400, 200, 200] + [429] * 6
        for refused in statuses[6:]:
            assert refused.json()["code"] == "rate_limited"
            assert 1 <= int(refused.headers["retry-after"]) <= 60
    finally:
        await app.stop()
