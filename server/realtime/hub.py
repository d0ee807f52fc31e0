"""Live messages: one Redis pub/sub channel per member, a bounded history per member for replay,
and one channel per team.

`publish()` appends the message to the member's history stream (the stream id is the message id)
and publishes it on the member's channel, in one Lua script. Each instance subscribes to the
channels of the members connected to it and fans messages out to their sockets. A socket that
falls more than `realtime_send_queue` messages behind is closed rather than slowing the others.

Team messages (`send_team_live`) are published ONCE, on the team's channel, whatever the size of
the team (a community team is every member): each instance subscribes to the channel of every team
whose members have a socket on it (one subscription per team and instance, however many of its
sockets hear the team, dropped with the team's last socket there) and writes the message to those
sockets. Which teams a socket hears is asked of the lookup the socket route gives (`TeamLookup`:
a member's placements and the community teams; the hub knows no domain) when the socket opens, and
again when `team_membership_changed` (which `server.members.service.place` and `unplace` call in
the transaction that changes a placement) reaches every instance on the control channel after
commit, and after a Redis outage.

A team message's id is `<member part>/<team part>`, e.g. `1732400000000-3/1732400000456-0`:
- the team part is the message's id in its team's short history stream (`TEAM_HISTORY` messages),
  the same on every socket; a socket never receives one team message twice;
- the member part is the id of the last member message written to that socket before it (or where
  the socket's replay began), so that `?since=` given the id of a team message, as of any message,
  replays exactly the member messages that came after it. The member stream's own ids, and the
  per-member de-duplication of replayed history by them, are untouched by team messages.

Team messages are not replayed on `?since=`: they tell a state (a team goal's progress, a
milestone) which the app reads again with `GET /v1/teams/{id}/goals` when it reconnects. The
short team history serves a socket that stayed open while this instance lost Redis: it is given the
team messages published meanwhile, as its member messages are. `data` carries `team_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
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


# Team messages kept per team, for sockets that stayed open while their instance lost Redis.
TEAM_HISTORY = 50

# Which teams the sockets of members hear: member id -> team ids (each member given is in the
# answer). Given to the hub by the socket route, which may read the domains; the hub may not.
TeamLookup = Callable[[list[str]], Awaitable[dict[str, set[str]]]]


class Close(IntEnum):
    """The close codes the live socket sends, each with the reason text beside it. Documented in
    the README's live messages section and in the socket route's description; keep all three alike."""

    UNAVAILABLE = 1013  # Redis unreachable: try again later (reason `live_unavailable`)
    TOO_SLOW = 4008  # fell too far behind: reconnect with ?since=
    BAD_REQUEST = 4400  # a malformed query such as `since` (reason: the problem code)
    UNAUTHORIZED = 4401  # no, bad or expired token (reason: the problem code)
    RATE_LIMITED = 4429  # too many requests or failed attempts (reason `rate_limited`)
    RESTARTING = 1012  # sent by the HTTP server (uvicorn) as it stops: reconnect with ?since=


_ID_RE = re.compile(r"^\d{1,20}-\d{1,20}$")


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


@dataclass(frozen=True)
class TeamMessage:
    team_id: str
    type: str
    data: dict[str, Any]
    at: datetime
    origin: str = ""


def _tail(type_: str, at: datetime, data: dict[str, Any]) -> str:
    """The envelope after its id: `"type":…,"at":…,"data":…}`."""
    return json.dumps({"type": type_, "at": at.isoformat(), "data": data}, separators=(",", ":"))[1:]


_closing: set[asyncio.Task[None]] = set()
_STARTED = object()  # a socket's writer runs, not (yet) as a task of its own


def run_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run `coro` at once, up to its first real wait, and from there on as a task; None when it
    finished without waiting.

    A message to a team of thousands reaches as many sockets here: a task a socket, created and
    scheduled for a write that almost never waits (the transport takes it), cost three times the
    write itself. Python 3.12's eager tasks do this; this is that, for 3.11.
    """
    try:
        awaited = coro.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_carry_on(coro, awaited))


async def _carry_on(coro: Coroutine[Any, Any, None], awaited: Any) -> None:
    """Drive `coro` on, which is waiting on `awaited` (a future, or None: it gave way once)."""
    while True:
        try:
            if awaited is None:
                await asyncio.sleep(0)
            else:
                awaited._asyncio_future_blocking = False
                await asyncio.wait([awaited])  # the coroutine reads its result or error itself
        except BaseException as exc:  # this task was cancelled: so is the coroutine
            try:
                awaited = coro.throw(exc)
            except StopIteration:
                return
            continue
        try:
            awaited = coro.send(None)
        except StopIteration:
            return


class Connection:
    """One member socket; messages queue here and a short-lived task writes them out."""

    __slots__ = (
        "closed",
        "held",
        "hub",
        "last_id",
        "last_text",
        "member_id",
        "queue",
        "sender",
        "socket",
        "team_last",
        "teams",
    )

    def __init__(self, hub: Hub, member_id: str, socket: WebSocket) -> None:
        self.hub = hub
        self.member_id = member_id
        self.socket = socket
        self.queue: deque[str] = deque()
        self.sender: asyncio.Task[None] | object | None = None
        self.closed = False
        # The last member message written to the socket (or where its replay began).
        self.last_id: tuple[int, int] = (0, 0)
        self.last_text = "0-0"
        # The teams the socket hears, and the last message of each written to it.
        self.teams: set[str] = set()
        self.team_last: dict[str, tuple[int, int]] = {}
        # While history is replayed, live messages wait here so that the order stays by id:
        # (message id, message, None) for a member's, (team message id, envelope tail, team) for a team's.
        self.held: list[tuple[str, str, str | None]] | None = None

    def resume_from(self, message_id: str) -> None:
        """Member messages up to `message_id` are the client's already (`?since=`, or the head)."""
        self.last_id = stream_id(message_id)
        self.last_text = message_id

    def hold(self) -> None:
        self.held = []

    def release(self, history: list[tuple[str, str]]) -> None:
        """Send the replayed history, then what arrived live meanwhile, each message once."""
        held, self.held = self.held or [], None
        for message_id, message in history:
            self.offer(message, message_id)
        for message_id, message, team_id in held:
            if team_id is None:
                self.offer(message, message_id)
            else:
                self.offer_team(team_id, message_id, message)

    def offer(self, message: str, message_id: str) -> None:
        if self.closed:
            return
        if self.held is not None:
            self.held.append((message_id, message, None))
            return
        sid = stream_id(message_id)
        if sid <= self.last_id:  # already sent during history replay
            return
        self.last_id = sid
        self.last_text = message_id
        self._enqueue(message)

    def offer_team(self, team_id: str, message_id: str, tail: str) -> None:
        """A team message: its id on this socket names the last member message before it."""
        if self.closed:
            return
        if self.held is not None:
            self.held.append((message_id, tail, team_id))
            return
        sid = stream_id(message_id)
        last = self.team_last.get(team_id)
        if last is not None and sid <= last:  # already sent (a resync after a Redis outage)
            return
        self.team_last[team_id] = sid
        self._enqueue('{"id":"' + self.last_text + "/" + message_id + '",' + tail)

    def _enqueue(self, message: str) -> None:
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
            self.sender = _STARTED
            task = run_eagerly(self._flush())
            if self.sender is _STARTED:  # still writing: waiting for the peer to read
                self.sender = task

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
        # The sockets here that hear each team; a team's channel is subscribed while it has one.
        self.team_local: dict[str, set[Connection]] = {}
        self.teams_of: TeamLookup | None = None
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._script: Any = None
        self._sub_lock = asyncio.Lock()
        # Members whose sockets' teams are to be read again, and who waits for that (one reader,
        # so that the teams read last are the ones kept).
        # member id -> replay the teams they start hearing from this team message id (a join), or None
        self._dirty: dict[str, str | None] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._refresher: asyncio.Task[None] | None = None
        self._lost_at = 0.0

    # The history key carries the member id in braces (one Redis Cluster slot for the script's key);
    # channels need no slot: PUBLISH reaches subscribers on every node of a cluster.
    def channel(self, member_id: str) -> str:
        return self.redis.key("rt", member_id)

    def history_key(self, member_id: str) -> str:
        return self.redis.key("rt", "{" + member_id + "}", "history")

    def team_channel(self, team_id: str) -> str:
        return self.redis.key("rtt", team_id)

    def team_history_key(self, team_id: str) -> str:
        return self.redis.key("rtt", "{" + team_id + "}", "history")

    @property
    def control_channel(self) -> str:
        """Every hub listens here: which members' teams changed."""
        return self.redis.key("rt-hub")

    async def start(self) -> None:
        self._script = self.redis.r.register_script(_PUBLISH)
        self._pubsub = self.redis.r.pubsub(ignore_subscribe_messages=True)
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._listen())
        self._refresher = loop.create_task(self._refresh_loop())

    async def stop(self) -> None:
        for task in (self._refresher, self._task):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
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
        return await self._run(
            [
                (
                    self.history_key(m.member_id),
                    [
                        self.channel(m.member_id),
                        _tail(m.type, m.at, m.data),
                        self.history_len,
                        self.history_ttl,
                        m.origin,
                        "1" if retry else "0",
                    ],
                )
                for m in messages
            ]
        )

    async def publish_team(
        self, team_id: str, type_: str, data: dict[str, Any], *, at: datetime | None = None
    ) -> str:
        """Send a live message to the sockets of every member of a team, on any instance: one
        publish, whatever the team's size. Returns the team part of its id.

        Domains do not call this directly: they queue messages with `send_team_live`."""
        ids = await self.publish_team_many([TeamMessage(team_id, type_, data, at or utcnow())])
        return ids[0]

    async def publish_team_many(self, messages: list[TeamMessage], *, retry: bool = False) -> list[str]:
        return await self._run(
            [
                (
                    self.team_history_key(m.team_id),
                    [
                        self.team_channel(m.team_id),
                        _tail(m.type, m.at, m.data),
                        TEAM_HISTORY,
                        self.history_ttl,
                        m.origin,
                        "1" if retry else "0",
                    ],
                )
                for m in messages
            ]
        )

    async def _run(self, calls: list[tuple[str, list[str | int]]]) -> list[str]:
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

    async def announce_teams_changed(self, member_ids: list[str]) -> None:
        """Tell every instance to read again which teams these members' sockets hear. A socket
        that starts hearing a team is given what the team said from this moment (Redis's clock, as
        the team messages' ids): the message about the join itself, published just after."""
        if member_ids:
            sec, usec = await self.redis.r.time()
            since = f"{sec * 1000 + usec // 1000 - 1}-0"
            await self.redis.r.publish(
                self.control_channel, json.dumps({"members": sorted(set(member_ids)), "since": since})
            )

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

    async def team_history(self, team_id: str, since: str) -> list[tuple[str, str]]:
        """A team's messages after `since`, oldest first: (team message id, envelope tail)."""
        entries = cast(
            "list[tuple[str, dict[str, str]]]",
            await self.redis.r.xrange(self.team_history_key(team_id), min=f"({since}", max="+"),
        )
        return [(mid, fields["t"]) for mid, fields in entries]

    async def connect(self, conn: Connection, teams_of: TeamLookup | None = None) -> None:
        """Route the member's messages to `conn`, subscribing to the channel for its first socket here,
        and its teams' messages (`teams_of` says which teams a member hears; the socket route gives it)."""
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
        if teams_of is not None:
            self.teams_of = teams_of
        if self.teams_of is None:
            return
        try:
            await self.refresh_teams([conn.member_id])
        except BaseException:
            await self.disconnect(conn)
            raise

    async def disconnect(self, conn: Connection) -> None:
        if conn.closed and conn not in self.local.get(conn.member_id, ()):
            return  # already gone (a failed connect cleans up before its handler does)
        conn.closed = True
        WS_CONNECTIONS.dec()
        async with self._sub_lock:
            channels = [self.team_channel(t) for t in self._drop_teams(conn, conn.teams)]
            conns = self.local.get(conn.member_id)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self.local[conn.member_id]
                    channels.append(self.channel(conn.member_id))
            if channels:
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.unsubscribe(*channels)

    # --- which teams each socket hears ---------------------------------------------------------

    async def refresh_teams(self, member_ids: Iterable[str]) -> None:
        """Read again which teams the sockets of these members hear, and wait until it is done
        (by a read that began after this call)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._mark(member_ids)
        await waiter

    def _mark(self, member_ids: Iterable[str], since: str | None = None) -> None:
        for m in member_ids:
            before = self._dirty.get(m, since)
            self._dirty[m] = since if before is None or since is None else min(before, since, key=stream_id)
        self._wake.set()

    async def _refresh_loop(self) -> None:
        """One reader for every member: the reads are batched, and applied in the order made."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            dirty, self._dirty = self._dirty, {}
            waiters, self._waiters = self._waiters, []
            failure: BaseException | None = None
            try:
                await self._apply_teams({m: since for m, since in dirty.items() if m in self.local})
            except asyncio.CancelledError:
                for w in waiters:
                    w.cancel()
                raise
            except (RedisError, OSError) as exc:
                failure = exc
                log.warning("realtime_team_subscribe_failed", error=type(exc).__name__)
            except Exception:  # a bug here must not stop every later socket hearing its teams
                log.exception("realtime_team_refresh_failed", members=len(dirty))
            for w in waiters:
                if w.done():
                    continue
                if failure is None:
                    w.set_result(None)
                else:
                    w.set_exception(failure)
                    w.exception()  # retrieved here: a socket that gave up waiting does not log it

    async def _apply_teams(self, dirty: dict[str, str | None]) -> None:
        lookup = self.teams_of
        if lookup is None:
            return
        member_ids = list(dirty)
        for i in range(0, len(member_ids), 500):
            chunk = member_ids[i : i + 500]
            try:
                found = await lookup(chunk)
            except Exception as exc:  # SQL unavailable: the sockets keep the teams they hear
                log.warning("realtime_team_lookup_failed", error=type(exc).__name__, members=len(chunk))
                continue
            async with self._sub_lock:
                gone: list[str] = []
                new: list[str] = []
                # Sockets that start hearing a team on a join: (socket, team, replay from), held
                # meanwhile so that the team's history goes before what arrives live.
                catch_up: list[tuple[Connection, str, str]] = []
                for member_id in chunk:
                    hears = found.get(member_id, set())
                    since = dirty[member_id]
                    for conn in self.local.get(member_id, ()):
                        if conn.closed:
                            continue
                        gone.extend(self._drop_teams(conn, conn.teams - hears))
                        for team_id in hears - conn.teams:
                            conn.teams.add(team_id)
                            conns = self.team_local.setdefault(team_id, set())
                            conns.add(conn)
                            if len(conns) == 1:
                                new.append(team_id)
                            if since is not None:
                                catch_up.append((conn, team_id, since))
                # A team dropped and taken up again in one batch keeps its channel.
                gone = [t for t in gone if t not in self.team_local]
                if gone:
                    with contextlib.suppress(RedisError, OSError):
                        await self._pubsub.unsubscribe(*[self.team_channel(t) for t in gone])
                held = {conn for conn, _, _ in catch_up if conn.held is None}
                for conn in held:
                    conn.hold()
                try:
                    if new:
                        await self._pubsub.subscribe(*[self.team_channel(t) for t in new])
                    if catch_up:
                        await self._catch_up(catch_up)
                finally:
                    for conn in held:
                        conn.release([])

    async def _catch_up(self, catch_up: list[tuple[Connection, str, str]]) -> None:
        """Put each team's messages since a join before what the joiner's socket holds."""
        pipe = self.redis.r.pipeline(transaction=False)
        for _, team_id, since in catch_up:
            pipe.xrange(self.team_history_key(team_id), min=since, max="+")
        try:
            answers = await pipe.execute()
        except (RedisError, OSError):
            return
        for (conn, team_id, _), entries in zip(catch_up, answers, strict=True):
            if conn.held is not None:
                conn.held[0:0] = [(mid, fields["t"], team_id) for mid, fields in entries]

    def _drop_teams(self, conn: Connection, team_ids: Iterable[str]) -> list[str]:
        """Stop `conn` hearing these teams; the teams no socket here hears any more."""
        emptied = []
        for team_id in list(team_ids):
            conn.teams.discard(team_id)
            conn.team_last.pop(team_id, None)
            conns = self.team_local.get(team_id)
            if conns is None:
                continue
            conns.discard(conn)
            if not conns:
                del self.team_local[team_id]
                emptied.append(team_id)
        return emptied

    # --- the listener ----------------------------------------------------------------------------

    async def _listen(self) -> None:
        member_prefix = self.redis.key("rt", "")
        team_prefix = self.redis.key("rtt", "")
        control = self.control_channel
        # The control channel, subscribed first: the pub/sub connection exists before any socket.
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
                if not self._lost_at:
                    self._lost_at = time.time()
                lost = True
                continue
            if not msg or msg.get("type") != "message":
                continue
            channel: str = msg["channel"]
            payload: str = msg["data"]
            if channel.startswith(member_prefix):
                conns = self.local.get(channel[len(member_prefix) :])
                if not conns:
                    continue
                message_id = payload[7 : payload.index('"', 7)]
                for conn in list(conns):
                    conn.offer(payload, message_id)
            elif channel.startswith(team_prefix):
                conns = self.team_local.get(channel[len(team_prefix) :])
                if not conns:
                    continue
                end = payload.index('"', 7)
                message_id, tail = payload[7:end], payload[end + 2 :]
                team_id = channel[len(team_prefix) :]
                for conn in list(conns):
                    conn.offer_team(team_id, message_id, tail)
            elif channel == control:
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    members = json.loads(payload)["members"]
                    since = json.loads(payload).get("since")
                    self._mark(
                        (m for m in members if isinstance(m, str) and m in self.local),
                        since if isinstance(since, str) and _ID_RE.match(since) else None,
                    )

    async def _subscribe_self(self) -> bool:
        try:
            await self._pubsub.subscribe(self.control_channel)
            return True
        except (RedisError, OSError):
            return False

    async def _resync(self) -> None:
        """After losing Redis: send open sockets what was published while the channels were down,
        and read again which teams they hear (a change may have been announced meanwhile)."""
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
        # A socket that had no message of a team yet is given what the team said from a little
        # before the outage was noticed.
        floor = (int((self._lost_at or time.time()) * 1000) - 10_000, 0)
        self._lost_at = 0.0
        teams = list(self.team_local)
        try:
            for i in range(0, len(teams), 500):  # those whose subscribe failed are not resubscribed
                await self._pubsub.subscribe(*[self.team_channel(t) for t in teams[i : i + 500]])
        except (RedisError, OSError):
            pass
        for team_id in teams:
            live = [c for c in self.team_local.get(team_id, ()) if not c.closed]
            if not live:
                continue
            since = min(c.team_last.get(team_id, floor) for c in live)
            try:
                missed = await self.team_history(team_id, f"{since[0]}-{since[1]}")
            except (RedisError, OSError):
                missed = []
            for message_id, tail in missed:
                for c in live:
                    c.offer_team(team_id, message_id, tail)
        self._mark(list(self.local))
        log.info("realtime_resynced", members=len(self.local), teams=len(teams))


async def apply_live(ctx: Runtime, items: list[tuple[int, dict[str, Any]]], retry: bool) -> None:
    await ctx.hub.publish_many(
        [
            LiveMessage(p["member_id"], p["type"], p["data"], datetime.fromisoformat(p["at"]), f"o{row_id}")
            for row_id, p in items
        ],
        retry=retry,
    )


async def apply_team_live(ctx: Runtime, items: list[tuple[int, dict[str, Any]]], retry: bool) -> None:
    await ctx.hub.publish_team_many(
        [
            TeamMessage(p["team_id"], p["type"], p["data"], datetime.fromisoformat(p["at"]), f"o{row_id}")
            for row_id, p in items
        ],
        retry=retry,
    )


async def apply_team_membership(ctx: Runtime, items: list[tuple[int, dict[str, Any]]], retry: bool) -> None:
    await ctx.hub.announce_teams_changed([p["member_id"] for _, p in items])


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


def send_team_live(
    ctx: Runtime,
    session: Any,
    team_id: str,
    type_: str,
    data: dict[str, Any],
    at: datetime | None = None,
) -> None:
    """Queue a live message to every member of a team in the caller's transaction.

    After commit it is published once, on the team's channel; every instance writes it to the
    sockets of the team's members connected to it. `data` gains `team_id`. Not replayed on `?since=`.
    """
    payload = {
        "team_id": team_id,
        "type": type_,
        "at": (at or utcnow()).isoformat(),
        "data": {"team_id": team_id, **data},
    }
    ctx.outbox.add(session, "team_live", payload)


def team_membership_changed(ctx: Runtime, session: Any, member_id: str) -> None:
    """Queue, in the transaction that puts a member in a team or takes them out, the word to every
    instance that the member's sockets hear other teams now (applied after commit)."""
    ctx.outbox.add(session, "team_membership", {"member_id": member_id})
