from __future__ import annotations

import re

from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from server.auth import member_from_token
from server.context import Context
from server.errors import ProblemError
from server.realtime.hub import Connection

_SINCE_RE = re.compile(r"^\d{1,20}-\d{1,20}$")


@websocket("/v1/ws", opt={"exclude_from_auth": True})
async def live(socket: WebSocket) -> None:
    """Live messages for the member: `{id, type, at, data}`; `?since=<id>` replays what was missed.

    Authentication failures close the socket with code 4401 and the problem code as the reason.
    """
    ctx: Context = socket.app.state.ctx
    await socket.accept()
    try:
        member_id = await member_from_token(ctx, socket)
    except ProblemError as exc:
        await socket.close(code=4429 if exc.status == 429 else 4401, reason=exc.code)
        return
    since = socket.query_params.get("since")
    if since is not None and not _SINCE_RE.match(since):
        await socket.close(code=4400, reason="invalid_since")
        return
    conn = Connection(ctx.hub, member_id, socket)
    if since:
        conn.hold()
    await ctx.hub.connect(conn)
    try:
        if since:
            conn.release(await ctx.hub.history(member_id, since))
        while True:
            await socket.receive_data(mode="text")  # clients may send pings; nothing else is read
    except WebSocketDisconnect:
        pass
    finally:
        await ctx.hub.disconnect(conn)
