"""Live messages straight into Redis, the way the outbox's `live` effect publishes them.

A diagnostic for bench/live_messages.py: it leaves out the award request (HTTP, SQL, commit) and
measures only the live path (Redis script, pub/sub, each instance's hub, the socket). Messages are
`points.awarded` with entry ids from 10**12 up, so that they never match a real award's.

Open loop at `--rate` messages/s for `--seconds`, to random members of `--members`; each message's
(member, publish time, publish time, 200, entry id) goes to `--out` as JSON, like the records of
bench/loadgen.py. Redis and prefix come from ENGAGE_REDIS_URL and ENGAGE_REDIS_PREFIX.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from pathlib import Path

from bench.loadgen import check_clock, run_async
from server.config import Settings
from server.context import Context
from server.db import Database
from server.realtime.hub import Hub
from server.redis import RedisHandle

NOW = time.monotonic
FIRST_ENTRY_ID = 10**12


async def publish(args: argparse.Namespace) -> list[tuple[int, float, float, int, int]]:
    settings = Settings()  # ENGAGE_* from the environment, as the servers read them
    redis = RedisHandle(settings)
    redis.start()
    # The hub only needs settings and Redis; the database is never opened (engines connect lazily).
    ctx = Context(settings=settings, db=Database(settings), redis=redis)
    hub = Hub(ctx)
    await hub.start()
    records: list[tuple[int, float, float, int, int]] = []
    rng = random.Random(7)
    next_index = 0
    start = NOW() + 0.2
    end = start + args.seconds

    async def worker() -> None:
        nonlocal next_index
        while True:
            n, next_index = next_index, next_index + 1
            due = start + n / args.rate
            if due >= end or NOW() >= end:
                return
            await asyncio.sleep(max(0.0, due - NOW()))
            member = rng.randrange(args.members)
            entry_id = FIRST_ENTRY_ID + n
            data = {
                "entry_id": entry_id,
                "currency": "points",
                "amount": 1,
                "balance_after": 1,
                "reason": "bench",
            }
            sent = NOW()
            await hub.publish(f"{args.member_prefix}{member}", "points.awarded", data)
            records.append((member, sent, NOW(), 200, entry_id))

    try:
        await asyncio.wait_for(
            asyncio.gather(*(worker() for _ in range(args.concurrency))), args.seconds + 30
        )
    finally:
        await hub.stop()
        await ctx.db.dispose()
        await redis.close()
    return records


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, required=True)
    p.add_argument("--member-prefix", required=True)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=8, help="publishes in flight at most")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    check_clock()
    records = run_async(publish(args))
    args.out.write_text(json.dumps(records))
    print(json.dumps({"published": len(records), "rate": round(len(records) / args.seconds, 1)}))


if __name__ == "__main__":
    main()
