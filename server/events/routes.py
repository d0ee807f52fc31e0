from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post

from server.auth import ApiClient
from server.context import Context
from server.events.schemas import EventsOut
from server.events.service import body_limit, ingest
from server.middleware import decode_json, read_body


class EventsController(Controller):
    path = "/v1"
    tags = ["events"]

    # The body limit follows the batch size in settings: `read_body` applies it.
    @post("/events", operation_id="postEvents", status_code=200, request_max_body_size=None)
    async def post_events(
        self, ctx: Context, api_client: ApiClient, request: Request[Any, Any, Any]
    ) -> EventsOut:
        """A batch of member events (brand systems): `{events: [...]}`, each stored once per event_id.

        Malformed events are rejected one by one with a reason; the others are accepted. The body
        is at most `events_batch_max` times 12 KiB (12,288,000 bytes for 1,000 events): 413
        `payload_too_large` beyond.
        """
        batch = f"a batch of {ctx.settings.events_batch_max} events"
        body = decode_json(await read_body(request, body_limit(ctx.settings), batch))
        return await ingest(ctx, body, source=f"api_key:{api_client.key_id}")
