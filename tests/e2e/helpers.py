"""What the end-to-end tests play with: a brand's HTTP client, a member's live socket, server processes,
log and metric readers, and a raw websocket client that can refuse to read."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support import ROOT, ServerProcess, unique

# Only for waiting: how long something may take before the test gives up. Never asserted on.
WAIT = 20.0
LONG_WAIT = 45.0

# A member message's stream id; a team message's is `<member part>/<team part>`.
_STREAM_ID = re.compile(r"^\d+-\d+(/\d+-\d+)?$")


# ---------------------------------------------------------------- processes


def create_api_key(env: dict[str, str], name: str = "e2e brand") -> str:
    """An API key made the way an operator makes one: `engage apikey create` (the key is the last line)."""
    out = subprocess.run(
        [sys.executable, "-m", "server.cli", "apikey", "create", "--name", name],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"apikey create failed: {out.stdout}\n{out.stderr}"
    key = out.stdout.strip().splitlines()[-1]
    assert key.startswith("ek_"), out.stdout
    return key


@contextmanager
def running(env: dict[str, str], *, keep_log: bool = False) -> Iterator[ServerProcess]:
    """`engage serve` as a process for the block; stopped (and its log removed) afterwards.

    ENGAGE_E2E_KEEP_LOGS=1 keeps every server log and prints where (for debugging a failure).
    """
    proc = ServerProcess(env)
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()
        if not (keep_log or os.environ.get("ENGAGE_E2E_KEEP_LOGS")):
            proc.log_path.unlink(missing_ok=True)
        else:
            print(f"server log kept: {proc.log_path}", file=sys.stderr)


def json_lines(text: str) -> list[dict[str, Any]]:
    """The structured (JSON) lines of a server's output; other lines (uvicorn's own) are skipped."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def samples(base_url: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples named `name` in the process's Prometheus metrics, by their labels (sorted
    (label, value) pairs; `()` for the unlabelled one). A labelled counter has no sample for
    labels it has not counted yet."""
    text = httpx.get(base_url + "/metrics", timeout=10, trust_env=False).text
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def metric(base_url: str, name: str, **labels: str) -> float:
    """One sample of the process's Prometheus metrics: the unlabelled one, or the one with exactly
    `labels`. Fails when the process does not export it, so that `== 0` means exported and zero."""
    got = samples(base_url, name)
    key = tuple(sorted(labels.items()))
    if key not in got:
        raise AssertionError(f"{base_url}/metrics has no sample {name} {dict(key)}; it has {sorted(got)}")
    return got[key]


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    within: float = WAIT,
    interval: float = 0.2,
    what: str = "condition",
) -> None:
    """Poll `check` until it holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


async def sockets_open(base_url: str, n: int, within: float = WAIT) -> None:
    """Wait until the process counts exactly `n` open member sockets (`engage_ws_connections`).

    The gauge moves once a socket is authenticated and subscribed to the member's channel.
    """

    async def check() -> bool:
        return await asyncio.to_thread(metric, base_url, "engage_ws_connections") == n

    await wait_until(check, within, interval=0.05, what=f"{n} open sockets at {base_url}")


# ---------------------------------------------------------------- the brand's side


def brand_client(base_url: str, api_key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, headers={"X-Api-Key": api_key}, timeout=60, trust_env=False)


def member_client(base_url: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60, trust_env=False
    )


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def purchase(member_id: str, amount: float, event_id: str | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id or unique("ev"),
        "member_id": member_id,
        "type": "purchase",
        "occurred_at": now_iso(),
        "properties": {"amount": amount},
    }


async def adjust(
    brand: httpx.AsyncClient, member_id: str, amount: int, reason: str = "adjustment", key: str | None = None
) -> dict[str, Any]:
    r = await brand.post(
        f"/v1/members/{member_id}/points",
        json={"amount": amount, "reason": reason, "idempotency_key": key or unique("adj")},
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def send_events(brand: httpx.AsyncClient, *events: dict[str, Any]) -> dict[str, Any]:
    r = await brand.post("/v1/events", json={"events": list(events)})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


# ---------------------------------------------------------------- the member app's live socket


def stream_id(message_id: str) -> tuple[int, int]:
    ms, _, seq = message_id.partition("-")
    return int(ms), int(seq)


def check_envelope(msg: dict[str, Any]) -> None:
    """`{id, type, at, data}`: a stream id, a dotted type, an aware ISO time, an object."""
    assert set(msg) == {"id", "type", "at", "data"}, msg
    assert isinstance(msg["id"], str) and _STREAM_ID.match(msg["id"]), msg
    assert isinstance(msg["type"], str) and "." in msg["type"], msg
    at = datetime.fromisoformat(msg["at"])
    assert at.tzinfo is not None, msg
    assert isinstance(msg["data"], dict), msg


class Live:
    """A member's websocket and what it received so far (less the types it was told to ignore)."""

    def __init__(self, ws: ClientConnection, ignore: tuple[str, ...] = ()) -> None:
        self.ws = ws
        self.ignore = ignore  # prefixes of message types to skip, like "quest."
        self.received: list[dict[str, Any]] = []

    @property
    def last_id(self) -> str | None:
        return self.received[-1]["id"] if self.received else None

    async def next(self, within: float = WAIT) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), max(deadline - time.monotonic(), 0.01))
            msg = json.loads(raw)
            check_envelope(msg)
            if not msg["type"].startswith(self.ignore) or not self.ignore:
                self.received.append(msg)
                return msg  # type: ignore[no-any-return]

    async def take(self, n: int, within: float = WAIT) -> list[dict[str, Any]]:
        """The next `n` messages."""
        deadline = time.monotonic() + within
        out: list[dict[str, Any]] = []
        for _ in range(n):
            try:
                out.append(await self.next(max(deadline - time.monotonic(), 0.01)))
            except TimeoutError:
                raise AssertionError(
                    f"timed out after {within:.0f} s: {len(out)} of {n} messages: {out}"
                ) from None
        return out

    async def take_until(
        self, done: Callable[[list[dict[str, Any]]], bool], within: float = WAIT
    ) -> list[dict[str, Any]]:
        """Messages until `done(messages so far)` holds."""
        deadline = time.monotonic() + within
        out: list[dict[str, Any]] = []
        while not done(out):
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                out.append(await self.next(remaining))
            except TimeoutError:
                raise AssertionError(f"timed out after {within:.0f} s; received so far: {out}") from None
        return out


def ws_url(base_ws_url: str, token: str | None = None, since: str | None = None) -> str:
    params = []
    if token is not None:
        params.append(f"token={token}")
    if since is not None:
        params.append(f"since={since}")
    return f"{base_ws_url}/v1/ws" + ("?" + "&".join(params) if params else "")


@asynccontextmanager
async def live(
    base_ws_url: str,
    token: str | None = None,
    *,
    since: str | None = None,
    bearer: str | None = None,
    ignore: tuple[str, ...] = (),
    ranks: bool = False,
    badges: bool = False,
    teams: bool = False,
) -> AsyncIterator[Live]:
    """Open the member's live socket (token in the query string, or as `Authorization: Bearer`);
    messages whose type starts with one of `ignore` are skipped, and so are rank messages
    (`leaderboard.`) unless `ranks` is set: the demo boards rank every member who earns; badge
    and tier messages unless `badges` is set: the demo badges count first purchases; and team
    messages (`team.`) unless `teams` is set: every member is in the demo's community team."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
    try:
        ws = await connect(
            ws_url(base_ws_url, token, since),
            additional_headers=headers,
            proxy=None,
            open_timeout=WAIT,
            max_size=None,
        )
    except InvalidStatus as exc:  # say what the server answered instead of switching protocols
        raise RuntimeError(
            f"websocket handshake refused: HTTP {exc.response.status_code} {exc.response.body!r}"
        ) from exc
    async with ws:
        skipped = (
            *ignore,
            *(() if ranks else ("leaderboard.",)),
            *(() if badges else ("badge.", "tier.")),
            *(() if teams else ("team.",)),
        )
        yield Live(ws, skipped)


async def close_of(
    base_ws_url: str, token: str | None = None, *, bearer: str | None = None, since: str | None = None
) -> tuple[int, str]:
    """Open a socket the server should refuse; the close code and reason it sent."""
    async with live(base_ws_url, token, bearer=bearer, since=since) as sock:
        try:
            msg = await asyncio.wait_for(sock.ws.recv(), WAIT)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None, f"closed without a close frame: {exc!r}"
            return exc.rcvd.code, exc.rcvd.reason
    raise AssertionError(f"the socket stayed open and received {msg!r}")


# ---------------------------------------------------------------- a client that never reads


@dataclass
class Frame:
    opcode: int
    payload: bytes


class RawWebSocket:
    """A websocket client written by hand over a blocking socket, so that it can stop reading.

    A tiny receive buffer and a tiny maximum segment size keep what the kernels will buffer for it
    small, so that the server's writes to it block after a few hundred kilobytes at most.
    """

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 256)
        self.sock.settimeout(WAIT)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise AssertionError(f"handshake cut short: {head!r}")
            head += chunk
        self.status_line = head.split(b"\r\n", 1)[0].decode()
        self._buf = b""

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def read_frame(self) -> Frame:
        b0, b1 = self._read_exact(2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exact(8))
        mask = self._read_exact(4) if b1 & 0x80 else b""
        payload = self._read_exact(length)
        if mask:
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        return Frame(b0 & 0x0F, payload)

    def read_until_close(self, within: float = LONG_WAIT) -> tuple[int, int | None, str]:
        """Read (at last) until the close frame: (data frames before it, close code, close reason).

        The close code is None when the connection ended without a close frame.
        """
        deadline = time.monotonic() + within
        frames = 0
        while time.monotonic() < deadline:
            try:
                frame = self.read_frame()
            except (EOFError, ConnectionError):
                return frames, None, ""
            if frame.opcode == 0x8:
                code = struct.unpack("!H", frame.payload[:2])[0] if len(frame.payload) >= 2 else 1005
                return frames, code, frame.payload[2:].decode(errors="replace")
            if frame.opcode in (0x1, 0x2, 0x0):
                frames += 1
        raise AssertionError(f"no close frame within {within:.0f} s ({frames} data frames read)")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
