from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post

from server.auth import ApiClient
from server.context import Context
from server.errors import ProblemError
from server.events.schemas import EventsOut
from server.events.service import ingest


class EventsController(Controller):
    path = "/v1"
    tags = ["events"]

    @post("/events", operation_id="postEvents", status_code=200)
    async def post_events(
        self, ctx: Context, api_client: ApiClient, request: Request[Any, Any, Any]
    ) -> EventsOut:
        """A batch of member events (brand systems): `{events: [...]}`, each stored once per event_id.

        Malformed events are rejected one by one with a reason; the others are accepted.
        """
        try:
            body = await request.json()
        except Exception:
            raise ProblemError(400, "invalid_json", "The body is not valid JSON.") from None
        return await ingest(ctx, body, source=f"api_key:{api_client.key_id}")
