from __future__ import annotations

import re

from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from redis.exceptions import RedisError

from server.auth import member_from_token
from server.context import Context
from server.errors import ProblemError
from server.realtime.hub import Connection, stream_id

_SINCE_RE = re.compile(r"^\d{1,20}-\d{1,20}$")


@websocket("/v1/ws", opt={"exclude_from_auth": True})
async def live(socket: WebSocket) -> None:
    """Live messages for the member: `{id, type, at, data}`; `?since=<id>` replays what was missed.

    The member's channel is subscribed before the socket is accepted, and what was published
    between reading the history's head and subscribing is replayed, so a message caused right after
    the app sees the socket open is never lost. Authentication failures close the socket with code
    4401 (4429 when rate limited) and the problem code as the reason; 1013 when Redis is unreachable.
    """
    ctx: Context = socket.app.state.ctx
    since = socket.query_params.get("since")
    try:
        member_id = await member_from_token(ctx, socket)
        if since is not None and not _SINCE_RE.match(since):
            raise ProblemError(400, "invalid_since", "since is a message id such as 1732400000000-0.")
    except ProblemError as exc:
        await socket.accept()
        code = {429: 4429, 400: 4400}.get(exc.status, 4401)
        await socket.close(code=code, reason=exc.code)
        return
    conn = Connection(ctx.hub, member_id, socket)
    conn.hold()
    try:
        replay_from = since or await ctx.hub.head(member_id)
        conn.last_id = stream_id(replay_from)
        await ctx.hub.connect(conn)
    except (RedisError, OSError):
        await socket.accept()
        await socket.close(code=1013, reason="live_unavailable")
        return
    try:
        await socket.accept()
        conn.release(await ctx.hub.history(member_id, replay_from))
        while True:
            await socket.receive_data(mode="text")  # clients may send pings; nothing else is read
    except (WebSocketDisconnect, RedisError, OSError):
        pass
    finally:
        await ctx.hub.disconnect(conn)
