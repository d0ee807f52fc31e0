"""Whatever a caller sends is a 4xx problem, never a 5xx: bytes that are not JSON, JSON nested too
deep, bodies of the wrong shape, control characters in text, paths and queries, bodies over the
limit. Every route that takes a body is found in the app's route table, so a new route is covered
as soon as it exists."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest

from server import errors
from server.events.service import PROPERTIES_MAX_BYTES, body_limit
from server.middleware import BODY_MAX_BYTES, MAX_JSON_DEPTH
from tests.support import MANAGER_PASSWORD, manager_token, unique

BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # with its parameters filled in
    operation_id: str
    takes_body: bool  # a typed `data`, or a body the handler reads itself (no Litestar limit)
    data_type: Any  # the type of `data`, if any
    body_optional: bool = False  # `data: X | None = None`: a JSON null is the same as no body


def body_routes(app: Any) -> list[Route]:
    """Every route of the app that a body can be sent to."""
    found = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for method in sorted(set(handler.http_methods) & set(BODY_METHODS)):
                params = handler.parsed_fn_signature.parameters
                data = params.get("data")
                path = re.sub(
                    r"\{(\w+):(\w+)\}",
                    lambda m: "1" if m[2] == "int" else f"{m[1].replace('_', '-')}-{uuid.uuid4().hex[:6]}",
                    route.path,
                )
                found.append(
                    Route(
                        method,
                        path,
                        handler.operation_id or handler.handler_name,
                        data is not None or handler.resolve_request_max_body_size() is None,
                        data.annotation if data is not None else None,
                        data is not None and data.default is None,
                    )
                )
    # Deletes last: logging out ends the manager session that the other admin routes use.
    return sorted(found, key=lambda r: r.method == "DELETE")


class ErrorLog:
    """What the error handlers log: an unhandled error or a 5xx would show here."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def exception(self, event: str, **kw: Any) -> None:
        self.lines.append((event, kw))

    def error(self, event: str, **kw: Any) -> None:
        self.lines.append((event, kw))

    def info(self, event: str, **kw: Any) -> None:
        pass


@pytest.fixture
def error_log(monkeypatch: pytest.MonkeyPatch) -> ErrorLog:
    seen = ErrorLog()
    monkeypatch.setattr(errors, "log", seen)
    return seen


@pytest.fixture
async def callers(ctx, as_member, as_brand) -> dict[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    member = as_member(unique("m"))
    return {
        "admin": {"Authorization": f"Bearer {await manager_token(ctx, 'owner')}"},
        "other": {**member, **as_brand},
    }


def headers_for(route: Route, callers: dict[str, dict[str, str]]) -> dict[str, str]:
    caller = callers["admin" if route.path.startswith("/v1/admin") else "other"]
    return {**caller, "Content-Type": "application/json"}


def nested(depth: int) -> bytes:
    return b'{"reason": ' + b"[" * depth + b"]" * depth + b"}"


UNDECODABLE = {
    "invalid_utf8": (b'{"reason": "\xff", "code": "\xfe\xff", "email": "a@b.c"}', "invalid_json"),
    "lone_surrogate": (b'{"reason": "\\ud800"}', "invalid_json"),
    "nested_1000": (nested(1000), "json_too_deep"),
    "nested_100000": (b"[" * 100_000 + b"]" * 100_000, "json_too_deep"),
    "nested_under_the_recursion_limit": (nested(MAX_JSON_DEPTH * 3), "json_too_deep"),
    "not_json": (b"reason=yes&code=no", "invalid_json"),
    "truncated": (b'{"reason": "a', "invalid_json"),
    "raw_control_character": (b'{"reason": "a\x00b"}', "invalid_json"),
    "trailing_bytes": (b'{"reason": "a"} {}', "invalid_json"),
}
WRONG_SHAPES = {
    "array": b"[]",
    "string": b'"events"',
    "number": b"42",
    "null": b"null",
    "wrong_field_types": b'{"events": 1, "reason": [], "code": {}, "email": 5, "amount": "x", "friends": 1}',
}


def is_problem(r: httpx.Response) -> bool:
    return r.headers.get("content-type", "").startswith(PROBLEM) and isinstance(r.json().get("code"), str)


async def test_the_route_table_holds_the_routes_that_take_bodies(served):
    taking = {r.operation_id for r in body_routes(served.app) if r.takes_body}
    assert {"postEvents", "createAdminSession", "adjustPoints", "upsertMember", "claimReferral"} <= taking


@pytest.mark.parametrize("kind", sorted(UNDECODABLE))
async def test_a_body_that_cannot_be_decoded_is_a_400_on_every_route(served, http, callers, error_log, kind):  # type: ignore[no-untyped-def]
    body, code = UNDECODABLE[kind]
    wrong = []
    for route in body_routes(served.app):
        r = await http.request(route.method, route.path, content=body, headers=headers_for(route, callers))
        if r.status_code != 400 or not is_problem(r) or r.json()["code"] != code:
            wrong.append(f"{route.method} {route.path}: {r.status_code} {r.text[:200]}")
    assert wrong == []
    assert error_log.lines == []


async def test_undecodable_bodies_are_refused_before_authentication(served, http, error_log):
    for route in body_routes(served.app):
        if route.takes_body and route.data_type is not None:
            r = await http.request(route.method, route.path, content=b'{"reason": "\xff"}')
            assert r.status_code == 400 and r.json()["code"] == "invalid_json", (route, r.text)
    assert error_log.lines == []


@pytest.mark.parametrize("kind", sorted(WRONG_SHAPES))
async def test_a_body_of_the_wrong_shape_is_a_4xx_on_every_route(served, http, callers, error_log, kind):  # type: ignore[no-untyped-def]
    wrong = []
    for route in body_routes(served.app):
        r = await http.request(
            route.method, route.path, content=WRONG_SHAPES[kind], headers=headers_for(route, callers)
        )
        if route.takes_body and not (route.body_optional and kind == "null"):
            fine = r.status_code == 400 and is_problem(r)
        else:  # a route that takes no body (or may go without) ignores a well-formed one
            fine = r.status_code < 500 and (r.status_code < 400 or is_problem(r))
        if not fine:
            wrong.append(f"{route.method} {route.path}: {r.status_code} {r.text[:200]}")
    assert wrong == []
    assert error_log.lines == []


def _plausible(t: Any, bad_text: str | None = None) -> Any:
    """A value of msgspec type `t`; text is `bad_text` when given."""
    info = msgspec.inspect
    if isinstance(t, info.Metadata):  # a description or other schema text around the type
        return _plausible(t.type, bad_text)
    if isinstance(t, info.StrType):
        return "x1" if bad_text is None else bad_text
    if isinstance(t, info.UnionType):
        return _plausible(next(x for x in t.types if not isinstance(x, info.NoneType)), bad_text)
    if isinstance(t, info.ListType):
        return [_plausible(t.item_type, bad_text)]
    if isinstance(t, info.LiteralType):
        return t.values[0]
    if isinstance(t, info.IntType):
        return 1
    if isinstance(t, info.FloatType):
        return 1.5
    if isinstance(t, info.BoolType):
        return True
    if isinstance(t, info.DateType):
        return "2026-01-02"
    if isinstance(t, info.DateTimeType):
        return "2026-01-02T03:04:05+00:00"
    raise AssertionError(f"no plausible value for {t}")


def _holds_text(t: Any) -> bool:
    info = msgspec.inspect
    if isinstance(t, info.Metadata):
        return _holds_text(t.type)
    if isinstance(t, info.StrType):
        return True
    if isinstance(t, info.UnionType):
        return any(_holds_text(x) for x in t.types)
    if isinstance(t, info.ListType):
        return _holds_text(t.item_type)
    return False


@pytest.mark.parametrize("bad", ["a\x00b", "line\nbreak", "tab\there", "del\x7f", "c1\x85x"])
async def test_every_text_field_of_every_body_refuses_control_characters(
    served, http, callers, error_log, bad
):  # type: ignore[no-untyped-def]
    tried, wrong = 0, []
    for route in body_routes(served.app):
        if route.data_type is None:
            continue
        struct = msgspec.inspect.type_info(route.data_type)
        if isinstance(struct, msgspec.inspect.UnionType):  # an optional body: `X | None`
            struct = next(t for t in struct.types if not isinstance(t, msgspec.inspect.NoneType))
        assert isinstance(struct, msgspec.inspect.StructType), route
        required = {f.encode_name: _plausible(f.type) for f in struct.fields if f.required}
        for field in struct.fields:
            if not _holds_text(field.type):
                continue
            body = {**required, field.encode_name: _plausible(field.type, bad)}
            r = await http.request(route.method, route.path, json=body, headers=headers_for(route, callers))
            tried += 1
            answer = r.json() if is_problem(r) else {}
            code = answer.get("code")
            named = code == f"invalid_{field.encode_name}" or (
                code == "validation_error" and field.encode_name in str(answer.get("errors"))
            )
            if r.status_code != 400 or not named:
                wrong.append(
                    f"{route.method} {route.path} {field.encode_name}: {r.status_code} {r.text[:200]}"
                )
    assert tried >= 15
    assert wrong == []
    assert error_log.lines == []


@pytest.mark.parametrize(
    "path",
    [
        "/v1/members/m%00x",
        "/v1/members/m1%0A",
        "/v1/members/m%C2%85x",
        "/r/code%00",
        "/v1/members/m1/friends?x=%00",
        "/v1/admin/audit?action=a%00b",
        "/v1/ledger?cursor=%0A",
    ],
)
async def test_a_control_character_in_a_path_or_query_is_a_400(http, callers, error_log, path):
    headers = callers["admin" if path.startswith("/v1/admin") else "other"]
    for method in ("GET", "PUT"):
        r = await http.request(method, path, headers=headers, json={"display_name": "Ana"})
        if r.status_code == 405:
            continue
        assert r.status_code == 400, (method, path, r.text)
        assert r.json()["code"] == "control_character"
    assert error_log.lines == []


async def test_a_member_id_with_a_trailing_newline_is_refused(http, as_brand, token_for):
    r = await http.put("/v1/members/m1%0A", headers=as_brand, json={})
    assert r.status_code == 400
    token = token_for("m-" + uuid.uuid4().hex[:8] + "\n")
    r = await http.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text


async def test_a_manager_login_with_nul_is_a_400_not_a_500(http, error_log):
    for body in (
        {"email": "ana\x00@example.com", "password": "correct horse battery staple"},
        {"email": "ana@example.com", "password": "correct\x00horse battery staple"},
    ):
        r = await http.post("/v1/admin/sessions", json=body)
        assert r.status_code == 400 and r.json()["code"] == "validation_error", r.text
        # Said in words a person reads, not as the decoder's regular expression.
        [error] = r.json()["errors"]
        assert error["message"].startswith("Text must not hold control characters"), error
    assert error_log.lines == []


async def _member(http: httpx.AsyncClient, as_brand: dict[str, str]) -> str:
    member = unique("m")
    assert (await http.put(f"/v1/members/{member}", headers=as_brand, json={})).status_code == 201
    return member


def _event(member_id: str, **over: Any) -> dict[str, Any]:
    return {
        "event_id": unique("e"),
        "member_id": member_id,
        "type": "purchase",
        "occurred_at": datetime.now(UTC).isoformat(),
        "properties": {"amount": 5},
        **over,
    }


async def test_events_with_nul_or_control_characters_are_rejected_one_by_one(http, as_brand, error_log):
    member = await _member(http, as_brand)
    batch = [
        _event(member),
        _event(member, properties={"amount": 5, "note": "a\x00b"}),
        _event(member, properties={"amount": 5, "tags": [{"deep": ["x\x00"]}]}),
        _event(member, properties={"amount": 5, "a\x00b": 1}),
        _event(member, event_id="e-nul\x00"),
        _event(member, event_id=unique("e") + "\n"),
        _event(member + "\n"),
        _event(member, type="purchase\n"),
        _event(member, properties={"amount": 5, "note": "a backslash then u0000: \\u0000"}),
    ]
    r = await http.post("/v1/events", headers=as_brand, json={"events": batch})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accepted"] == 2
    assert [(x["index"], x["code"]) for x in out["rejected"]] == [
        (1, "invalid_properties"),
        (2, "invalid_properties"),
        (3, "invalid_properties"),
        (4, "invalid_event_id"),
        (5, "invalid_event_id"),
        (6, "invalid_member_id"),
        (7, "invalid_type"),
    ]
    assert error_log.lines == []


async def test_properties_over_their_limit_are_rejected_one_by_one(http, as_brand):
    member = await _member(http, as_brand)
    big = {"amount": 5, "note": "x" * PROPERTIES_MAX_BYTES}
    r = await http.post(
        "/v1/events", headers=as_brand, json={"events": [_event(member), _event(member, properties=big)]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    assert [(x["index"], x["code"]) for x in r.json()["rejected"]] == [(1, "properties_too_large")]


async def test_a_full_batch_of_the_largest_events_fits_the_body_limit(http, as_brand, settings):
    """1,000 events of 8 KiB of properties each: far over the 4 MiB the events route once took."""
    member = await _member(http, as_brand)
    note = "x" * (PROPERTIES_MAX_BYTES - len('{"amount":5,"note":""}'))
    events = [
        {**_event(member), "type": "not_a_type_of_this_program", "properties": {"amount": 5, "note": note}}
        for _ in range(settings.events_batch_max)
    ]
    body = msgspec.json.encode({"events": events})
    assert len(body) > 8_000_000
    r = await http.post("/v1/events", headers={**as_brand, "Content-Type": "application/json"}, content=body)
    assert r.status_code == 200, r.text[:300]
    out = r.json()
    assert len(out["rejected"]) == settings.events_batch_max  # unknown type: the body itself was read
    assert {x["code"] for x in out["rejected"]} == {"unknown_type"}


async def test_a_legal_batch_of_larger_events_is_stored(http, as_brand):
    """The issue's own case: 1,000 events of 4.2 KB each, once refused as "not valid JSON"."""
    member = await _member(http, as_brand)
    events = [_event(member, properties={"amount": 1, "note": "y" * 4200}) for _ in range(1000)]
    body = msgspec.json.encode({"events": events})
    assert len(body) > 4 * 1024 * 1024
    r = await http.post("/v1/events", headers={**as_brand, "Content-Type": "application/json"}, content=body)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["accepted"] == 1000


async def _send_too_much(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], size: int
) -> httpx.Response:
    return await http.post(path, headers={**headers, "Content-Type": "application/json"}, content=b" " * size)


async def test_an_events_body_over_its_limit_is_a_413_that_states_the_limit(
    http, as_brand, settings, error_log
):
    limit = body_limit(settings)
    r = await _send_too_much(http, "/v1/events", as_brand, limit + 1)
    assert r.status_code == 413, r.text
    problem = r.json()
    assert problem["code"] == "payload_too_large" and problem["limit_bytes"] == limit
    assert f"{limit:,}" in problem["detail"]
    assert r.headers["content-type"].startswith(PROBLEM)

    async def chunks():  # no Content-Length: counted as it arrives
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    r = await http.post(
        "/v1/events", headers={**as_brand, "Content-Type": "application/json"}, content=chunks()
    )
    assert r.status_code == 413 and r.json()["limit_bytes"] == limit
    assert error_log.lines == []


async def test_other_bodies_over_their_limit_are_a_413_that_states_the_limit(http, as_brand, error_log):
    r = await http.put(
        f"/v1/members/{unique('m')}",
        headers={**as_brand, "Content-Type": "application/json"},
        content=b" " * (BODY_MAX_BYTES + 1),
    )
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "payload_too_large" and r.json()["limit_bytes"] == BODY_MAX_BYTES
    assert f"{BODY_MAX_BYTES:,}" in r.json()["detail"]
    assert error_log.lines == []


async def test_a_manager_name_and_email_follow_the_same_rules(ctx):
    from server.admin.service import create_manager

    row = await create_manager(
        ctx, f"{unique('mgr')}@example.com", MANAGER_PASSWORD, "viewer", " Jose\u0301 "
    )
    assert row.display_name == "José"
    for email, name, code in (
        (f"{unique('mgr')}@example.com", "Ana\u202eevil", "invalid_display_name"),
        (f"{unique('mgr')}\x00@example.com", "Ana", "invalid_email"),
        (f"{unique('mgr')}\x01@example.com", "Ana", "invalid_email"),
    ):
        with pytest.raises(errors.ProblemError) as caught:
            await create_manager(ctx, email, MANAGER_PASSWORD, "viewer", name)
        assert caught.value.code == code


async def test_a_caller_that_goes_away_mid_body_is_no_server_error(served, as_brand, error_log):  # type: ignore[no-untyped-def]
    """Half a body, then the connection closes: answered (to no one) as the caller's mistake."""
    member = unique("m")
    headers = [(k.lower().encode(), v.encode()) for k, v in as_brand.items()]
    headers += [(b"content-type", b"application/json"), (b"content-length", b"200")]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/v1/members/{member}/points",
        "raw_path": f"/v1/members/{member}/points".encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "root_path": "",
    }
    incoming = [
        {"type": "http.request", "body": b'{"amount": 5, "rea', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await served.app(scope, receive, send)
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    assert start["status"] == 400
    assert error_log.lines == []
