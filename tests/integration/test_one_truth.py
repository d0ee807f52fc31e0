"""What the API says agrees with itself: the same fact the same way on every route, HTTP answers
whose headers tell the truth, and a repeat that says it gave nothing."""

from __future__ import annotations


async def test_metrics_name_their_charset_once(http):
    r = await http.get("/metrics")
    content_type = r.headers["content-type"]
    assert content_type.startswith("text/plain; version=")
    assert content_type.count("charset=") == 1
