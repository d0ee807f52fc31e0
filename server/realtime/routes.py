"""The live socket, and which teams' messages each member's sockets hear."""

from __future__ import annotations

import re

from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from redis.exceptions import RedisError

from server.auth import member_from_token
from server.context import Context
from server.errors import ProblemError
from server.members import service as members
from server.realtime.hub import Close, Connection, TeamLookup
from server.teams.content import teams_content

# A member message's id, or a team message's (`<member part>/<team part>`): replay follows the member part.
_SINCE_RE = re.compile(r"^(\d{1,20}-\d{1,20})(?:/\d{1,20}-\d{1,20})?$")


def team_lookup(ctx: Context) -> TeamLookup:
    """Which teams members' sockets hear: the teams they are placed in, and every community team
    (one per community kind of the content serving now, its id the kind's id: every member is in it)."""

    async def teams_of(member_ids: list[str]) -> dict[str, set[str]]:
        community = {k.id for k in teams_content(ctx).kinds if k.community}
        async with ctx.db.session() as session:
            found = await members.placements(session, member_ids)
        return {m: community | {p.team_id for p in found.get(m, ())} for m in member_ids}

    return teams_of


@websocket("/v1/ws", opt={"exclude_from_auth": True})
async def live(socket: WebSocket) -> None:
    """Live messages for the member: `{id, type, at, data}`; `?since=<id>` replays what was missed.

    The member's teams speak here too (`team.*`); a team message's id is `<member part>/<team part>`
    and may be given as `since` like any other. Team messages are not replayed: read the team's
    state again on reconnecting.

    The member's channel is subscribed before the socket is accepted, and what was published
    between reading the history's head and subscribing is replayed, so a message caused right after
    the app sees the socket open is never lost.

    Close codes (the reason is the problem code, or the text given):
    - 4400: the query is malformed (`invalid_since`);
    - 4401: no, bad or expired token (`missing_token`, `invalid_token`, `token_expired`, ...);
    - 4429: too many requests or failed attempts (`rate_limited`): wait, then reconnect;
    - 4008: the client fell too far behind: reconnect with `?since=` the last id received;
    - 1013: live messages are unavailable (`live_unavailable`, Redis unreachable): try again later;
    - 1012: the server is restarting: reconnect with `?since=`.
    """
    ctx: Context = socket.app.state.ctx
    since = socket.query_params.get("since")
    try:
        member_id = await member_from_token(ctx, socket)
        matched = _SINCE_RE.match(since) if since is not None else None
        if since is not None and matched is None:
            raise ProblemError(400, "invalid_since", "since is a message id such as 1732400000000-0.")
    except ProblemError as exc:
        await socket.accept()
        code = {429: Close.RATE_LIMITED, 400: Close.BAD_REQUEST}.get(exc.status, Close.UNAUTHORIZED)
        await socket.close(code=code, reason=exc.code)
        return
    conn = Connection(ctx.hub, member_id, socket)
    conn.hold()
    try:
        replay_from = matched.group(1) if matched else await ctx.hub.head(member_id)
        conn.resume_from(replay_from)
        await ctx.hub.connect(conn, team_lookup(ctx))
    except (RedisError, OSError):
        await socket.accept()
        await socket.close(code=Close.UNAVAILABLE, reason="live_unavailable")
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
