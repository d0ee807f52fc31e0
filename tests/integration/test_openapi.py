"""The API description tells the truth, and its pages work without reaching outside the server."""

from __future__ import annotations

import re

import pytest

from server.members.service import MEMBER_ID_RE

_EXTERNAL = re.compile(r"""["'(]\s*(?:https?:)?//""")


@pytest.fixture
async def doc(http):  # type: ignore[no-untyped-def]
    r = await http.get("/schema/openapi.json")
    assert r.status_code == 200
    return r.json()


def _op(doc, path, method):  # type: ignore[no-untyped-def]
    return doc["paths"][path][method]


@pytest.mark.parametrize("page", ["/schema", "/schema/swagger"])
async def test_docs_pages_load_only_from_the_server(http, page):
    r = await http.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert not _EXTERNAL.search(html), "the page names another host"
    assets = re.findall(r"""(?:src|href)="([^"]+)\"""", html)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        assert asset.startswith("/"), asset
        loaded = await http.get(asset)
        assert loaded.status_code == 200, asset
        assert len(loaded.content) > 500, asset
    # The page reads the described document from the server too.
    assert '"/schema/openapi.json"' in html


async def test_only_the_pages_files_are_served(http):
    for name in ("index.html", "swagger-initializer.js", "../__init__.py"):
        r = await http.get(f"/schema/assets/{name}")
        assert r.status_code == 404, name


async def test_the_root_points_to_the_docs_and_health(http):
    r = await http.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'href="/schema/swagger"' in r.text and 'href="/health"' in r.text


async def test_each_operation_names_the_credentials_it_takes(doc):
    schemes = doc["components"]["securitySchemes"]
    assert schemes["MemberToken"] == {**schemes["MemberToken"], "type": "http", "scheme": "bearer"}
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "apiKey", "in": "header", "name": "X-Api-Key"}
    assert schemes["ManagerToken"]["scheme"] == "bearer"
    assert _op(doc, "/v1/me", "get")["security"] == [{"MemberToken": []}]
    assert _op(doc, "/v1/leaderboards/{board_id}", "get")["security"] == [{"MemberToken": []}]
    assert _op(doc, "/v1/events", "post")["security"] == [{"ApiKey": []}]
    assert _op(doc, "/v1/admin/me", "get")["security"] == [{"ManagerToken": []}]
    # Either credential: a member claims for themselves, a brand system for a member.
    assert _op(doc, "/v1/referrals/claim", "post")["security"] == [{"MemberToken": []}, {"ApiKey": []}]
    for public in (("/health", "get"), ("/v1/admin/sessions", "post"), ("/v1/badges/keys", "get")):
        assert "security" not in _op(doc, *public), public


async def test_errors_are_described_as_the_problems_sent(doc, http, as_brand):
    def problem(op, status):  # type: ignore[no-untyped-def]
        content = op["responses"][str(status)]["content"]
        assert list(content) == ["application/problem+json"], (op["operationId"], status)
        return content["application/problem+json"]["schema"]

    points = _op(doc, "/v1/members/{member_id}/points", "post")
    for status in (400, 401, 404, 409, 413, 429):
        assert problem(points, status) == {"$ref": "#/components/schemas/Problem"}
    assert {"400", "401", "404", "429"} <= set(_op(doc, "/v1/leaderboards/{board_id}", "get")["responses"])
    assert "403" in _op(doc, "/v1/admin/referrals/{friend_id}/approve", "post")["responses"]
    assert "401" not in _op(doc, "/health", "get")["responses"]
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            for status, answer in op["responses"].items():
                if int(status) >= 400 and "content" in answer:
                    assert "application/json" not in answer["content"], (path, method, status)
    shape = doc["components"]["schemas"]["Problem"]
    assert set(shape["required"]) == {"type", "title", "status", "code", "detail"}
    assert {"instance", "errors"} <= set(shape["properties"])
    # What is sent fits what is described.
    r = await http.post("/v1/members/x/points", json={"amount": "ten"}, headers=as_brand)
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
    assert set(shape["required"]) <= set(r.json())
    assert set(r.json()) <= set(shape["properties"])


async def test_bodies_are_described_with_their_constraints(doc):
    schemas = doc["components"]["schemas"]
    events = _op(doc, "/v1/events", "post")["requestBody"]["content"]["application/json"]["schema"]
    batch = schemas[events["$ref"].rsplit("/", 1)[1]]
    assert batch["required"] == ["events"] and batch["properties"]["events"]["type"] == "array"
    event = schemas["EventIn"]
    assert {"event_id", "member_id", "type", "occurred_at"} <= set(event["required"])
    assert event["properties"]["member_id"]["pattern"] == MEMBER_ID_RE.pattern
    points = schemas["PointsIn"]
    assert points["additionalProperties"] is False
    assert points["properties"]["amount"]["not"] == {"const": 0}
    assert points["properties"]["currency"]["enum"] == ["growth", "points"]


async def test_path_and_query_constraints_are_stated(doc):
    def param(op, name):  # type: ignore[no-untyped-def]
        return next(p for p in op["parameters"] if p["name"] == name)["schema"]

    member = param(_op(doc, "/v1/members/{member_id}", "put"), "member_id")
    assert member["pattern"] == MEMBER_ID_RE.pattern and member["maxLength"] == 64
    board = _op(doc, "/v1/leaderboards/{board_id}", "get")
    assert (param(board, "limit")["minimum"], param(board, "limit")["maximum"]) == (1, 100)
    around = param(_op(doc, "/v1/leaderboards/{board_id}/me", "get"), "around")
    assert (around["minimum"], around["maximum"]) == (0, 50)


async def test_every_text_parameter_says_it_refuses_control_characters(doc):
    """The server answers 400 `control_character` for any path or query holding one, so every
    string parameter states a pattern, optional ones (`oneOf: [string, null]`) included."""
    silent = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for p in op.get("parameters", []):
                schema = p["schema"]
                strings = [schema] if schema.get("type") == "string" else []
                strings += [b for b in schema.get("oneOf", []) if b.get("type") == "string"]
                if any("pattern" not in s and "pattern" not in schema for s in strings):
                    silent.append(f"{method.upper()} {path} {p['name']}")
    assert silent == []


async def test_member_upsert_documents_created_and_updated(doc, http, as_brand, member_id):
    responses = _op(doc, "/v1/members/{member_id}", "put")["responses"]
    assert {"200", "201"} <= set(responses)
    first = await http.put(f"/v1/members/{member_id}", json={}, headers=as_brand)
    again = await http.put(f"/v1/members/{member_id}", json={}, headers=as_brand)
    assert (first.status_code, again.status_code) == (201, 200)


async def test_quest_progress_is_a_number(doc):
    schemas = doc["components"]["schemas"]
    for name in ("QuestOut", "QuestStepOut"):
        for prop in ("progress", "target"):
            assert schemas[name]["properties"][prop] == {"type": "number"}, (name, prop)
