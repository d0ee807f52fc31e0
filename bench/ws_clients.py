"""Many member websockets in one process: connect, stay idle, record every live message received.

Started by bench/live_messages.py, one or more at a time. It talks to its parent over stdin/stdout,
one JSON object a line:

1. connects members `--start` .. `--start + --count - 1` (member i to `--port` number i mod the
   number of ports), then prints `{"event": "connected", ...}`;
2. records the receive time (`time.monotonic()`, CLOCK_MONOTONIC, comparable across processes)
   and entry id of every `points.awarded` message until its parent writes `stop`;
3. writes what it received to `--out`, prints `{"event": "done", ...}`, closes its sockets, exits.

Tokens are signed here with ENGAGE_JWT_SECRET, as the brand's backend would sign them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from bench.infra import LOOPBACK
from bench.loadgen import check_clock, run_async
from server.auth import issue_member_token
from server.config import Settings

NOW = time.monotonic


def raise_open_file_limit() -> int:
    """One descriptor per socket: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


@dataclass
class Received:
    awarded: list[tuple[int, float, int]] = field(default_factory=list)  # (entry id, receive time, member)
    other_types: Counter[str] = field(default_factory=Counter)
    closed_by_server: Counter[str] = field(default_factory=Counter)


async def listen(ws: ClientConnection, member: int, into: Received) -> None:
    try:
        async for raw in ws:
            at = NOW()  # first thing: the receive time, before any parsing
            msg = json.loads(raw)
            if msg.get("type") == "points.awarded":
                into.awarded.append((int(msg["data"]["entry_id"]), at, member))
            else:
                into.other_types[str(msg.get("type"))] += 1
    except ConnectionClosed as exc:
        into.closed_by_server[str(exc.rcvd.code if exc.rcvd else "no close frame")] += 1


async def main_async(args: argparse.Namespace) -> None:
    settings = Settings(jwt_secret=args.jwt_secret)
    received = Received()
    sockets: dict[int, ClientConnection] = {}
    listeners: list[asyncio.Task[None]] = []
    failed: Counter[str] = Counter()
    gate = asyncio.Semaphore(args.concurrency)

    async def open_one(member: int) -> None:
        port = args.port[member % len(args.port)]
        token = issue_member_token(settings, f"{args.member_prefix}{member}")
        url = f"ws://{LOOPBACK}:{port}/v1/ws?token={token}"
        async with gate:
            try:
                # No client pings: browsers send none; the server keeps the connection alive itself.
                ws = await connect(
                    url,
                    compression=None if args.compression == "none" else "deflate",
                    ping_interval=None,
                    open_timeout=30,
                    max_queue=64,
                )
            except (OSError, TimeoutError, WebSocketException) as exc:
                failed[type(exc).__name__] += 1
                return
        sockets[member] = ws
        listeners.append(asyncio.get_running_loop().create_task(listen(ws, member, received)))

    started = NOW()
    await asyncio.gather(*(open_one(m) for m in range(args.start, args.start + args.count)))
    emit(
        {
            "event": "connected",
            "connected": len(sockets),
            "members": sorted(sockets),
            "failed": dict(failed),
            "seconds": round(NOW() - started, 2),
        }
    )

    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if line.strip() != "stop":
        emit({"event": "error", "error": f"expected 'stop', got {line!r}"})
    own = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "awarded": received.awarded,
        "other_types": dict(received.other_types),
        "closed_by_server": dict(received.closed_by_server),
        "cpu_seconds": round(own.ru_utime + own.ru_stime, 2),
    }
    await asyncio.get_running_loop().run_in_executor(None, Path(args.out).write_text, json.dumps(report))
    emit({"event": "done", "received": len(received.awarded)})

    for task in listeners:
        task.cancel()
    # Close politely but briefly; whatever has not closed by then goes when the process exits.
    await asyncio.wait(
        [asyncio.ensure_future(ws.close()) for ws in sockets.values()] or [asyncio.sleep(0)], timeout=5
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, action="append", required=True)
    p.add_argument("--member-prefix", required=True)
    p.add_argument("--start", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=100, help="handshakes in flight at once")
    p.add_argument("--compression", choices=["deflate", "none"], default="deflate")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    args.jwt_secret = os.environ["ENGAGE_JWT_SECRET"]
    check_clock()
    limit = raise_open_file_limit()
    if limit < args.count + 100:
        raise SystemExit(f"open-file limit {limit} is too low for {args.count} sockets")
    run_async(main_async(args))


if __name__ == "__main__":
    main()
