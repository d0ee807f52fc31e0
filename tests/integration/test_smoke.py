async def test_health_and_ready(http):
    assert (await http.get("/health")).json() == {"status": "ok"}
    r = await http.get("/ready")
    assert r.status_code == 200
    assert r.json()["checks"] == {"sql": "ok", "redis": "ok"}
