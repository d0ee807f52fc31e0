"""Live messages: one Redis pub/sub channel per member, a bounded history per member for replay.

`publish()` appends the message to the member's history stream (the stream id is the message id)
and publishes it on the member's channel, in one Lua script. Each instance subscribes to the
channels of the members connected to it and fans messages out to their sockets. A socket that
falls more than `realtime_send_queue` messages behind is closed rather than slowing the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Protocol, cast

import structlog
from litestar import WebSocket
from redis.exceptions import NoScriptError, RedisError

from server.db import utcnow
from server.metrics import WS_CONNECTIONS, WS_DROPPED, WS_MESSAGES

if TYPE_CHECKING:
    from server.config import Settings
    from server.outbox import Outbox
    from server.redis import RedisHandle


class Runtime(Protocol):
    """What live messages use of the process context (`server.context.Context`, which holds the
    hub: typed by what is used, so that neither module imports the other)."""

    settings: Settings
    redis: RedisHandle
    outbox: Outbox
    hub: Hub


log = structlog.get_logger(__name__)

# KEYS: the member's history stream. ARGV: channel, envelope tail, history length, ttl, origin, check.
# `origin` names what produced the message (an outbox row); on a retry (`check` = 1) a message whose
# origin is already in the recent history is not sent again.
_PUBLISH = """
if ARGV[6] == '1' and ARGV[5] ~= '' then
  local recent = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[3])
  for _, e in ipairs(recent) do
    local f = e[2]
    for i = 1, #f, 2 do
      if f[i] == 'o' and f[i + 1] == ARGV[5] then return e[1] end
    end
  end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 't', ARGV[2], 'o', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[1], '{"id":"' .. id .. '",' .. ARGV[2])
return id
"""


class Close(IntEnum):
    """The close codes the live socket sends, each with the reason text beside it. Documented in
    the README's live messages section and in the socket route's description; keep all three alike."""

    UNAVAILABLE = 1013  # Redis unreachable: try again later (reason `live_unavailable`)
    TOO_SLOW = 4008  # fell too far behind: reconnect with ?since=
    BAD_REQUEST = 4400  # a malformed query such as `since` (reason: the problem code)
    UNAUTHORIZED = 4401  # no, bad or expired token (reason: the problem code)
    RATE_LIMITED = 4429  # too many requests or failed attempts (reason `rate_limited`)
    RESTARTING = 1012  # sent by the HTTP server (uvicorn) as it stops: reconnect with ?since=


def stream_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class LiveMessage:
    member_id: str
    type: str
    data: dict[str, Any]
    at: datetime
    origin: str = ""  # what produced it (an outbox row), so that a retry does not send it twice


_closing: set[asyncio.Task[None]] = set()


class Connection:
    """One member socket; messages queue here and a short-lived task writes them out."""

    __slots__ = ("closed", "held", "hub", "last_id", "member_id", "queue", "sender", "socket")

    def __init__(self, hub: Hub, member_id: str, socket: WebSocket) -> None:
        self.hub = hub
        self.member_id = member_id
        self.socket = socket
        self.queue: deque[str] = deque()
        self.sender: asyncio.Task[None] | None = None
        self.closed = False
        self.last_id: tuple[int, int] = (0, 0)
        # While history is replayed, live messages wait here so that the order stays by id.
        self.held: list[tuple[str, str]] | None = None

    def hold(self) -> None:
        self.held = []

    def release(self, history: list[tuple[str, str]]) -> None:
        """Send the replayed history, then what arrived live meanwhile, each message once."""
        held, self.held = self.held or [], None
        for message_id, message in [*history, *held]:
            self.offer(message, message_id)

    def offer(self, message: str, message_id: str) -> None:
        if self.closed:
            return
        if self.held is not None:
            self.held.append((message_id, message))
            return
        sid = stream_id(message_id)
        if sid <= self.last_id:  # already sent during history replay
            return
        self.last_id = sid
        if len(self.queue) >= self.hub.max_queue:
            WS_DROPPED.inc()
            log.info("ws_slow_client_dropped", member_id=self.member_id)
            self.closed = True
            self.queue.clear()
            closing = asyncio.get_running_loop().create_task(
                self._close(Close.TOO_SLOW, "too slow: reconnect with ?since=")
            )
            _closing.add(closing)  # the loop keeps only weak references to tasks
            closing.add_done_callback(_closing.discard)
            return
        self.queue.append(message)
        if self.sender is None:
            self.sender = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self.queue and not self.closed:
                await self.socket.send_text(self.queue.popleft())
                WS_MESSAGES.inc()
        except Exception:  # the peer went away; its handler cleans up
            self.closed = True
        finally:
            self.sender = None

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.socket.close(code=code, reason=reason)


class Hub:
    def __init__(self, ctx: Runtime) -> None:
        self.ctx = ctx
        self.redis = ctx.redis
        self.max_queue = ctx.settings.realtime_send_queue
        self.history_len = ctx.settings.realtime_history
        self.history_ttl = ctx.settings.realtime_history_ttl_seconds
        self.local: dict[str, set[Connection]] = {}
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._script: Any = None
        self._sub_lock = asyncio.Lock()

    # The history key carries the member id in braces (one Redis Cluster slot for the script's key);
    # channels need no slot: PUBLISH reaches subscribers on every node of a cluster.
    def channel(self, member_id: str) -> str:
        return self.redis.key("rt", member_id)

    def history_key(self, member_id: str) -> str:
        return self.redis.key("rt", "{" + member_id + "}", "history")

    async def start(self) -> None:
        self._script = self.redis.r.register_script(_PUBLISH)
        self._pubsub = self.redis.r.pubsub(ignore_subscribe_messages=True)
        self._task = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()

    async def publish(
        self, member_id: str, type_: str, data: dict[str, Any], *, at: datetime | None = None
    ) -> str:
        """Send a live message to every socket of the member, on any instance. Returns its id.

        Domains do not call this directly: they queue messages with `send_live` in their transaction.
        """
        ids = await self.publish_many([LiveMessage(member_id, type_, data, at or utcnow())])
        return ids[0]

    async def publish_many(self, messages: list[LiveMessage], *, retry: bool = False) -> list[str]:
        """Publish messages in one round trip (the publish script, pipelined when there are several)."""
        calls: list[tuple[str, list[str | int]]] = []
        for m in messages:
            tail = json.dumps(
                {"type": m.type, "at": m.at.isoformat(), "data": m.data}, separators=(",", ":")
            )[1:]
            args: list[str | int] = [
                self.channel(m.member_id),
                tail,
                self.history_len,
                self.history_ttl,
                m.origin,
            ]
            calls.append((self.history_key(m.member_id), [*args, "1" if retry else "0"]))
        if len(calls) == 1:
            key, args = calls[0]
            return [str(await self._script(keys=[key], args=args))]
        for attempt in (1, 2):
            pipe = self.redis.r.pipeline(transaction=False)
            for key, args in calls:
                pipe.evalsha(self._script.sha, 1, key, *args)
            try:
                return [str(i) for i in await pipe.execute()]
            except NoScriptError:
                # Redis restarted without the script: every call failed alike, so all can be retried.
                if attempt == 2:
                    raise
                await self.redis.r.script_load(_PUBLISH)
        raise AssertionError("unreachable")

    async def head(self, member_id: str) -> str:
        """The id of the member's latest message, or 0-0."""
        last = await self.redis.r.xrevrange(self.history_key(member_id), count=1)
        return str(last[0][0]) if last else "0-0"

    async def history(self, member_id: str, since: str) -> list[tuple[str, str]]:
        """Messages after `since`, oldest first, from the bounded history."""
        # Replies are decoded (decode_responses), which the client's types cannot say.
        entries = cast(
            "list[tuple[str, dict[str, str]]]",
            await self.redis.r.xrange(self.history_key(member_id), min=f"({since}", max="+"),
        )
        return [(mid, '{"id":"' + mid + '",' + fields["t"]) for mid, fields in entries]

    async def connect(self, conn: Connection) -> None:
        """Route the member's messages to `conn`, subscribing to the channel for its first socket here."""
        async with self._sub_lock:
            conns = self.local.setdefault(conn.member_id, set())
            conns.add(conn)
            if len(conns) == 1:
                try:
                    await self._pubsub.subscribe(self.channel(conn.member_id))
                except BaseException:
                    del self.local[conn.member_id]
                    raise
        WS_CONNECTIONS.inc()

    async def disconnect(self, conn: Connection) -> None:
        conn.closed = True
        WS_CONNECTIONS.dec()
        async with self._sub_lock:
            conns = self.local.get(conn.member_id)
            if conns is None:
                return
            conns.discard(conn)
            if not conns:
                del self.local[conn.member_id]
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.unsubscribe(self.channel(conn.member_id))

    async def _listen(self) -> None:
        prefix_len = len(self.redis.key("rt", ""))
        # A channel of our own so that the pub/sub connection exists before any member connects.
        lost = not await self._subscribe_self()
        while True:
            if lost:
                await asyncio.sleep(0.5)
                if not await self._subscribe_self():  # reconnects and subscribes every channel again
                    continue
                lost = False
                await self._resync()
            try:
                msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("realtime_redis_unavailable", error=type(exc).__name__)
                lost = True
                continue
            if not msg or msg.get("type") != "message":
                continue
            member_id = msg["channel"][prefix_len:]
            conns = self.local.get(member_id)
            if not conns:
                continue
            payload: str = msg["data"]
            message_id = payload[7 : payload.index('"', 7)]
            for conn in list(conns):
                conn.offer(payload, message_id)

    async def _subscribe_self(self) -> bool:
        try:
            await self._pubsub.subscribe(self.redis.key("rt-hub"))
            return True
        except (RedisError, OSError):
            return False

    async def _resync(self) -> None:
        """After losing Redis: send open sockets what was published while the channel was down."""
        for member_id, conns in list(self.local.items()):
            live = [c for c in conns if not c.closed]
            if not live:
                continue
            for c in live:
                c.hold()
            since = min(c.last_id for c in live)
            try:
                missed = await self.history(member_id, f"{since[0]}-{since[1]}")
            except (RedisError, OSError):
                missed = []
            for c in live:
                c.release(missed)
        log.info("realtime_resynced", members=len(self.local))


async def apply_live(ctx: Runtime, items: list[tuple[int, dict[str, Any]]], retry: bool) -> None:
    await ctx.hub.publish_many(
        [
            LiveMessage(p["member_id"], p["type"], p["data"], datetime.fromisoformat(p["at"]), f"o{row_id}")
            for row_id, p in items
        ],
        retry=retry,
    )


def send_live(
    ctx: Runtime,
    session: Any,
    member_id: str,
    type_: str,
    data: dict[str, Any],
    at: datetime | None = None,
) -> None:
    """Queue a live message in the caller's transaction.

    It is published after commit, and still delivered after a Redis outage (the outbox drain).
    """
    payload = {"member_id": member_id, "type": type_, "at": (at or utcnow()).isoformat(), "data": data}
    ctx.outbox.add(session, "live", payload)
