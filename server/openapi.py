"""The OpenAPI description as the server behaves, and its pages served by the app itself.

Litestar generates the paths and the answers' shapes from the handlers. What it cannot know is
worked out here, in one place, from what each handler declares, so that a new route is described
rightly without a word more:
- who may call: the guard dependency the handler names (`current_member`/`reader`: a member
  token, `api_client`: an API key, `manager`: a manager token) gives its security requirement;
- what a body is: the schema msgspec itself derives from the body's type, the same declaration
  that validates it (constraints included);
- how it fails: the problem-details body (`application/problem+json`) for 400 where the route takes
  input, 401 and 429 where it takes credentials, 404 where its path names something, 413 where it
  takes a body; the errors only a route's rules know of (403, 409, ...) are listed in `EXTRAS`.

The pages (`/schema`, `/schema/swagger`) use Swagger UI from the `swagger-ui-bundle-v2` package,
served under `/schema/assets/`: nothing is fetched from elsewhere, so they work offline.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, MediaType, Request, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.enums import OpenAPIMediaType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.response import File
from litestar.router import Router
from litestar.routes import HTTPRoute
from swagger_ui_bundle import swagger_ui_path

from server.errors import PROBLEM_MEDIA_TYPE, ProblemError
from server.events.schemas import EventIn, EventsIn
from server.text import TEXT_PATTERN

DOCS_PATH = "/schema"

# ---------------------------------------------------------------- who may call

MEMBER, API_KEY, MANAGER = "MemberToken", "ApiKey", "ManagerToken"

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    MEMBER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A member token: a JWT whose `sub` is the member's id, signed by the brand "
        "(`engage token <member-id>` prints one for local use).",
    },
    API_KEY: {
        "type": "apiKey",
        "in": "header",
        "name": "X-Api-Key",
        "description": "A brand system's key, created with `engage apikey create`.",
    },
    MANAGER: {
        "type": "http",
        "scheme": "bearer",
        "description": "A community manager's session token (`em_...`), from `POST /v1/admin/sessions`.",
    },
}

# The dependencies that authenticate, by the name a handler takes them under.
GUARDS = {"current_member": MEMBER, "reader": MEMBER, "api_client": API_KEY, "manager": MANAGER}

_UNAUTHORIZED = {
    MEMBER: "`missing_token`, `invalid_token`, `token_expired`",
    API_KEY: "`missing_api_key`, `invalid_api_key`",
    MANAGER: "`missing_manager_token`, `invalid_manager_token`",
}

# ---------------------------------------------------------------- how it fails

_REF = "#/components/schemas/{name}"
PROBLEM_REF = _REF.format(name="Problem")

PROBLEM_SCHEMAS: dict[str, dict[str, Any]] = {
    "Problem": {
        "title": "Problem",
        "description": "An error (RFC 9457 problem details) with a stable `code`; some codes add "
        "members of their own (`errors` for `validation_error`, `balance` for `insufficient_balance`).",
        "type": "object",
        "properties": {
            "type": {"type": "string", "description": "A URI naming the problem: its `code`'s page."},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "code": {"type": "string", "description": "Stable, for programs: `validation_error`, ..."},
            "detail": {"type": "string", "description": "A sentence a person can act on."},
            "instance": {"type": "string", "description": "The path of the request."},
            "errors": {
                "type": "array",
                "description": "With `validation_error`: what was wrong, field by field.",
                "items": {"$ref": "#/components/schemas/FieldError"},
            },
        },
        "required": ["type", "title", "status", "code", "detail"],
    },
    "FieldError": {
        "title": "FieldError",
        "type": "object",
        "properties": {
            "message": {"type": "string"},
            "key": {"type": "string", "description": "The field, parameter or header."},
            "source": {"type": "string", "description": "body, query, path, header or cookie."},
        },
        "required": ["message"],
    },
}

_GENERIC = {
    400: "The request is malformed or a value is out of range (`validation_error` lists the fields "
    "in `errors`; other codes name the rule).",
    403: "Not allowed for this caller.",
    404: "Nothing found at this path.",
    409: "The request conflicts with the current state.",
    413: "The body is over the size limit (`payload_too_large`).",
    429: "Too many requests, or too many failed authentications from this address (`rate_limited`); "
    "`Retry-After` says when to try again.",
    503: "Briefly unavailable; try again shortly.",
}


@dataclass(frozen=True)
class Extra:
    """What a route's own rules add to what is derived: errors by status (the codes, as text),
    the credentials of a handler that authenticates by itself, a body a handler reads by itself."""

    errors: dict[int, str] = field(default_factory=dict)
    security: tuple[str, ...] = ()
    body: type | None = None
    body_description: str = ""
    body_parts: tuple[type, ...] = ()  # types the body's schema refers to by name
    pages: dict[int, str] = field(default_factory=dict)  # answers that are HTML pages, not problems


EXTRAS: dict[str, Extra] = {
    "upsertMember": Extra(
        {
            409: "`team_id` names a team of another kind (`team_kind_mismatch`), a full team"
            " (`team_full`) or a reserved id (`team_id_reserved`)"
        }
    ),
    "adjustPoints": Extra({409: "`idempotency_key_reused`, `insufficient_balance`"}),
    "reverseEntry": Extra(
        {409: "`cannot_reverse_reversal`, `insufficient_balance`, `idempotency_key_reused`"}
    ),
    "grantBadge": Extra({409: "`badge_not_manual`, `badge_not_available`"}),
    "checkIn": Extra({409: "the check-in conflicts with the streak's state"}),
    "buyStreakFreeze": Extra({409: "`insufficient_balance`, no more freezes can be held"}),
    "repairStreak": Extra({409: "`nothing_to_repair`, the grace period is over, `insufficient_balance`"}),
    "makeUpCheckin": Extra({409: "`date_already_covered`, no make-ups left, `insufficient_balance`"}),
    "getMyReferrals": Extra({404: "`referrals_disabled`", 503: "`code_space_exhausted`"}),
    "setMyReferralCode": Extra(
        {
            403: "`vanity_codes_disabled`",
            404: "`referrals_disabled`",
            409: "`vanity_code_taken`, `vanity_code_limit`",
            422: "`vanity_code_blocked`: the code is not allowed",
        }
    ),
    "claimReferral": Extra(
        {
            403: "`not_your_member_id`: a member claims for themselves only",
            404: "`code_not_found`, `member_not_found`, `referrals_disabled`",
            409: "`already_referred`, `self_referral`, `circular_referral`, `claim_window_closed`",
            410: "`code_expired`",
        },
        security=(MEMBER, API_KEY),
    ),
    "approveReferral": Extra({403: "`forbidden_role`: needs the editor role", 409: "`referral_not_held`"}),
    "rejectReferral": Extra({403: "`forbidden_role`: needs the editor role", 409: "`referral_not_held`"}),
    "reassignReferral": Extra(
        {
            403: "`forbidden_role`: needs the editor role",
            409: "`referral_not_held`, `self_referral`, rewards already paid",
        }
    ),
    "createAdminSession": Extra({401: "`invalid_credentials`", 429: _GENERIC[429]}),
    "listLeaderboards": Extra({503: "`leaderboards_unavailable`"}),
    "getLeaderboard": Extra({503: "`leaderboards_unavailable`"}),
    "getMyLeaderboardStanding": Extra({503: "`leaderboards_unavailable`"}),
    "getLeaderboardTeam": Extra({503: "`leaderboards_unavailable`"}),
    "getCredentialPage": Extra(pages={404: "No such credential: a page that says so."}),
    "referralLandingPage": Extra(pages={404: "No such code: a page that says so.", 410: "An expired code."}),
    "getTeamGoals": Extra(
        {
            403: "`not_a_team_member`: only the team's members see its goals",
            404: "`team_not_found`",
        }
    ),
    "askForHelp": Extra(
        {
            400: "`invalid_assist_target`: name one of a quest, a team goal or a ticket",
            404: "`assists_disabled`, `quest_not_found`, `step_not_found`, `team_goal_not_found`",
            409: "`assist_already_open` (its `assist_id` given), `help_not_allowed`, `step_not_open`, "
            "`not_in_a_team`",
        }
    ),
    "listMyAssists": Extra({404: "`assists_disabled`"}),
    "getAssist": Extra({404: "`assist_not_found`, `assists_disabled`"}),
    "helpFriend": Extra(
        {
            403: "`cannot_help_yourself`",
            404: "`assist_not_found`, `assists_disabled`",
            409: "`already_helped`, `assist_completed`",
            410: "`assist_expired`",
            429: "`daily_help_limit`: the helper's helps for the day are used up (`resets_at` and "
            "`Retry-After` say when they come back); or too many requests (`rate_limited`)",
        }
    ),
    "assistSharePage": Extra(
        pages={404: "No such request: a page that says so.", 410: "An expired request."}
    ),
    "inviteToFriendQuest": Extra(
        {
            400: "`cannot_pair_with_yourself`, `invalid_friend`",
            403: "`not_a_friend`: invite members outside your friends by handle",
            404: "`friend_quest_not_found`, `member_not_found`",
            409: "`already_paired` (its `pair_id` given)",
        }
    ),
    "acceptFriendQuest": Extra(
        {
            403: "`cannot_pair_with_yourself`, `not_invited`",
            404: "`friend_quest_not_found`",
            409: "`invitation_closed`, `already_paired`",
            410: "`invitation_expired`",
        }
    ),
    "declineFriendQuest": Extra(
        {403: "`not_invited`", 404: "`friend_quest_not_found`", 409: "`invitation_closed`"}
    ),
    "approveHelp": Extra(
        {
            403: "`forbidden_role`: needs the editor role",
            404: "`assist_not_found`, `help_not_found`",
            409: "`help_not_held`",
        }
    ),
    "rejectHelp": Extra(
        {
            403: "`forbidden_role`: needs the editor role",
            404: "`assist_not_found`, `help_not_found`",
            409: "`help_not_held`",
        }
    ),
    # --- teams (teams API)
    "listTeams": Extra({400: "`team_kind_not_listed`, `invalid_cursor`", 404: "`team_kind_not_found`"}),
    "createTeam": Extra(
        {
            400: "`invalid_team_name`, `invalid_team_description`",
            403: "`team_kind_closed`: members do not make teams of this kind",
            404: "`team_kind_not_found`",
            409: "`team_name_taken`, `already_in_a_team`",
        }
    ),
    "getTeam": Extra({400: "`invalid_team_id`", 404: "`team_not_found`"}, security=(MEMBER, API_KEY)),
    "putTeam": Extra(
        {
            400: "`invalid_team_id`, `invalid_team_name`, `invalid_team_description`",
            404: "`team_kind_not_found`",
            409: "`team_kind_not_assigned`, `team_kind_mismatch`, `team_name_taken`, `team_id_reserved`",
        }
    ),
    "joinTeam": Extra(
        {
            400: "`invalid_team_id`, `invite_for_another_team`",
            403: "`team_assigned`: the brand places members in this team",
            404: "`team_not_found`, `invite_not_found`",
            409: "`team_full`, `already_in_a_team`, `community_team`, `team_requests_full`",
            410: "`invite_expired`, `invite_used_up`",
        }
    ),
    "leaveTeam": Extra(
        {
            403: "`team_assigned`: the brand places members in this team",
            404: "`team_not_found`",
            409: "`not_in_team`, `community_team`",
        }
    ),
    "createTeamInvite": Extra({403: "`not_captain`", 404: "`team_not_found`"}),
    "listTeamRequests": Extra({403: "`not_captain`", 404: "`team_not_found`"}),
    "acceptTeamRequest": Extra(
        {
            403: "`not_captain`",
            404: "`team_not_found`, `request_not_found`",
            409: "`team_full`, `already_in_a_team`",
        }
    ),
    "declineTeamRequest": Extra({403: "`not_captain`", 404: "`team_not_found`, `request_not_found`"}),
    "removeTeamMember": Extra(
        {
            403: "`not_captain`",
            404: "`team_not_found`, `team_member_not_found`",
            409: "`cannot_remove_self`: a captain leaves instead",
        }
    ),
    "handOverCaptaincy": Extra(
        {
            403: "`not_captain`",
            404: "`team_not_found`, `team_member_not_found`",
            409: "`already_captain`",
        }
    ),
    "getTeamInvite": Extra({404: "`invite_not_found`", 410: "`invite_expired`, `invite_used_up`"}),
    "getTeamFeed": Extra(
        {403: "`not_in_team`: only the team's members read its feed", 404: "`team_not_found`"},
        security=(MEMBER, API_KEY),
    ),
    "placeMember": Extra(
        {
            404: "`member_not_found`, `team_kind_not_found`, `team_not_found`",
            409: "`team_kind_mismatch`, `team_full`, `community_team`",
        }
    ),
    "unplaceMember": Extra({404: "`member_not_found`, `team_kind_not_found`", 409: "`community_team`"}),
    "adminPutTeam": Extra(
        {
            403: "`forbidden_role`: needs the editor role",
            404: "`team_kind_not_found`",
            409: "`team_kind_not_assigned`, `team_kind_mismatch`, `team_name_taken`, `team_id_reserved`",
        }
    ),
    "adminPlaceMember": Extra(
        {
            403: "`forbidden_role`: needs the editor role",
            404: "`member_not_found`, `team_kind_not_found`, `team_not_found`",
            409: "`team_kind_mismatch`, `team_full`, `community_team`",
        }
    ),
    "adminUnplaceMember": Extra(
        {
            403: "`forbidden_role`: needs the editor role",
            404: "`member_not_found`, `team_kind_not_found`",
            409: "`community_team`",
        }
    ),
    "teamInvitePage": Extra(
        pages={404: "No such invite: a page that says so.", 410: "An expired or used-up invite."}
    ),
    # --- end teams (teams API)
    "postEvents": Extra(
        body=EventsIn,
        body_parts=(EventIn,),
        body_description="A batch of member events. Each event is checked on its own: one that is "
        "not valid is listed in `rejected` with a code, and the others are accepted.",
    ),
}


def problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}}}


def _operations(app: Litestar) -> list[tuple[str, str, Any]]:
    found = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for method, (handler, _) in route.route_handler_map.items():
            found.append((route.path_format or "/", method.lower(), handler))
    return found


def _body_schema(doc: dict[str, Any], annotation: Any, parts: tuple[type, ...]) -> dict[str, Any]:
    """The schema msgspec derives from a body's type (what it validates), its definitions added to
    the document's components."""
    refs, defs = msgspec.json.schema_components([annotation, *parts], ref_template=_REF)
    doc["components"]["schemas"].update(_with_epoch_times(defs))
    return refs[0]


def _with_epoch_times(schema: Any) -> Any:
    """A body's times are decoded leniently: seconds since the Unix epoch are taken too."""
    if isinstance(schema, list):
        return [_with_epoch_times(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("type") == "string" and schema.get("format") == "date-time":
        return {"anyOf": [schema, {"type": "number", "description": "Seconds since the Unix epoch."}]}
    return {k: _with_epoch_times(v) for k, v in schema.items()}


def _no_control_characters(schema: dict[str, Any]) -> None:
    """No control characters in a path, a query or a header (`control_character`): said on the
    string itself, or on the string branch of an optional one (`oneOf: [string, null]`)."""
    if "pattern" in schema:
        return
    if schema.get("type") == "string":
        schema["pattern"] = TEXT_PATTERN
    for branch in schema.get("oneOf", ()):
        if branch.get("type") == "string" and "pattern" not in branch:
            branch["pattern"] = TEXT_PATTERN


def describe(app: Litestar, generated: dict[str, Any]) -> dict[str, Any]:
    """The generated document with the security, bodies and errors of every operation."""
    doc = copy.deepcopy(generated)
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {}).update(PROBLEM_SCHEMAS)
    components["securitySchemes"] = SECURITY_SCHEMES
    for path, method, handler in _operations(app):
        op = doc.get("paths", {}).get(path, {}).get(method)
        if op is None:
            continue
        extra = EXTRAS.get(op.get("operationId", ""), Extra())
        params = handler.parsed_fn_signature.parameters
        schemes = list(extra.security) or sorted({GUARDS[name] for name in params if name in GUARDS})
        if schemes:
            op["security"] = [{scheme: []} for scheme in schemes]
        body_type = extra.body or (params["data"].raw if "data" in params else None)
        if body_type is not None:
            # `data: X | None = None`: the body may be left out (a JSON null is the same).
            optional = extra.body is None and params["data"].default is None
            op["requestBody"] = {
                "required": not optional,
                "content": {"application/json": {"schema": _body_schema(doc, body_type, extra.body_parts)}},
            }
            if extra.body_description:
                op["requestBody"]["description"] = extra.body_description
        for param in op.get("parameters", []):
            _no_control_characters(param.get("schema", {}))
        responses = op.setdefault("responses", {})
        errors: dict[int, str] = {}
        if op.get("parameters") or body_type is not None:
            errors[400] = _GENERIC[400]
        if schemes:
            errors[401] = "No valid credentials: " + "; ".join(_UNAUTHORIZED[s] for s in schemes) + "."
            errors[429] = _GENERIC[429]
        if any(p.get("in") == "path" for p in op.get("parameters", [])):
            errors[404] = _GENERIC[404]
        if body_type is not None:
            errors[413] = _GENERIC[413]
        for status, text in extra.errors.items():
            errors[status] = (
                f"{_GENERIC[status]} {text}." if status in _GENERIC and text != _GENERIC[status] else text
            )
        for status, text in sorted(errors.items()):
            key = str(status)
            existing = responses.get(key, {}).get("content", {})
            if PROBLEM_MEDIA_TYPE in existing:  # a route's own, richer description
                continue
            responses[key] = problem(text)
        for status, text in extra.pages.items():
            responses[str(status)] = {
                "description": text,
                "content": {MediaType.HTML: {"schema": {"type": "string"}}},
            }
    return doc


# ---------------------------------------------------------------- the pages, without a CDN

_ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}
_ASSETS_CACHE = CacheControlHeader(public=True, max_age=86400)
_DESCRIBED = "openapi_described"


def described(app: Litestar, generated: dict[str, Any]) -> dict[str, Any]:
    """`describe`, once per app."""
    state = app.state
    if _DESCRIBED not in state:
        state[_DESCRIBED] = describe(app, generated)
    return state[_DESCRIBED]


class OpenAPIJson(OpenAPIRenderPlugin):
    """`/schema/openapi.json`: the described document."""

    def __init__(self) -> None:
        super().__init__(path="/openapi.json", media_type=OpenAPIMediaType.OPENAPI_JSON, favicon="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return self.render_json(request, described(request.app, openapi_schema))


@get("/assets/{name:str}", sync_to_thread=False, include_in_schema=False, cache_control=_ASSETS_CACHE)
def swagger_asset(name: str) -> File:
    """One of Swagger UI's files, from the installed package."""
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise ProblemError(404, "not_found", f"No asset '{name[:64]}'.")
    return File(
        path=Path(str(swagger_ui_path)) / name, media_type=media_type, content_disposition_type="inline"
    )


class SwaggerPage(OpenAPIRenderPlugin):
    """`/schema` and `/schema/swagger`: Swagger UI on the described document, every file local."""

    def __init__(self) -> None:
        super().__init__(path="/swagger", favicon="", style="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        assets = f"{DOCS_PATH}/assets"
        title = openapi_schema["info"]["title"]
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/swagger-ui-standalone-preset.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "{DOCS_PATH}/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout"
}});
</script>
</body></html>
""".encode()

    def receive_router(self, router: Router) -> None:
        router.register(swagger_asset)


def openapi_config(title: str, version: str) -> OpenAPIConfig:
    return OpenAPIConfig(
        title=title,
        version=version,
        path=DOCS_PATH,
        render_plugins=[SwaggerPage(), OpenAPIJson()],
    )


_INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Engage</title>
<style>body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem}</style>
</head><body><h1>Engage</h1><p>A member-engagement game server.</p><ul>
<li><a href="/schema/swagger">The API, described and ready to try</a>
(<a href="/schema/openapi.json">OpenAPI document</a>)</li>
<li><a href="/health">/health</a>: alive; <a href="/ready">/ready</a>: SQL and Redis reachable</li>
</ul></body></html>
"""


@get("/", sync_to_thread=False, include_in_schema=False, media_type=MediaType.HTML)
def index() -> Response[str]:
    """Where a person who opens the server's address finds the docs and the health checks."""
    return Response(_INDEX, media_type=MediaType.HTML)
