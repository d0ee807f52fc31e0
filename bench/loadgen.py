"""A small, fast HTTP/1.1 load generator for the award request, run as a process of its own.

Raw asyncio sockets (on uvloop when installed), keep-alive, one request in flight per connection.
Two modes:

- closed loop (default): N connections send back to back for a fixed time after a warm-up;
- open loop (`--rate R`): awards are due at R per second in total, taken in turn by the N
  connections; when every connection is busy an award goes out late, and that lateness is reported.

What counts is the measured window after the warm-up: in closed loop the requests completed in it,
in open loop the awards sent in it (each waited for). Nothing is sent after the window; the total
number of requests is bounded by `--max-requests` and the whole run by a hard deadline.

Every award is the request the real server takes: `POST /v1/members/{id}/points` with
`{amount, reason, idempotency_key}` and `X-Api-Key`, to a random member of `--members`, with an
idempotency key used once. Prints one JSON object (the figures) on stdout.

With `--tokens FILE` (one member token a line) every request is a check-in instead:
`POST /v1/checkins` with `Authorization: Bearer <token>`, for a random token of the file, or with
`--tokens-once` for each token once, in order (the load stops when they run out). `--count-body S`
counts the 2xx answers whose body contains S, over the whole run and in the measured window.

With `--get PATH` every request is `GET PATH` instead: with the bearer token of a random token of
`--tokens` (or each once, with `--tokens-once`), or without any credentials when no tokens are given.

Times are `time.monotonic()`, which on Linux is CLOCK_MONOTONIC: one clock for every process of
the host, so a send time recorded here can be compared with a receive time in another process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.infra import LOOPBACK, latency_summary

NOW = time.monotonic
_ENTRY_ID = re.compile(rb'"id":(\d+)')


def check_clock() -> None:
    """Cross-process latencies need a host-wide clock."""
    implementation = time.get_clock_info("monotonic").implementation
    if "CLOCK_MONOTONIC" not in implementation:
        raise SystemExit(
            f"time.monotonic() is {implementation}, not CLOCK_MONOTONIC: cannot compare processes"
        )


class HttpError(Exception):
    """The peer sent something this client does not understand, or closed the connection."""


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; responses must carry Content-Length (as uvicorn's do)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> HttpConnection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one request (already encoded) and read its response: (status, body)."""
        if self.writer is None or self.reader is None:
            await self.open()
        assert self.writer is not None and self.reader is not None
        self.writer.write(raw)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            self.close()
            raise HttpError("connection closed by the server") from exc
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at < 0:
            self.close()
            raise HttpError("response without Content-Length")
        length = int(lower[at + 17 : lower.index(b"\r\n", at + 2)])
        body = await self.reader.readexactly(length) if length else b""
        if b"\r\nconnection: close" in lower:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def award_request(port: int, api_key: str, member_id: str, idempotency_key: str, amount: int = 1) -> bytes:
    body = b'{"amount":%d,"reason":"bench","idempotency_key":"%s"}' % (amount, idempotency_key.encode())
    return (
        b"POST /v1/members/%s/points HTTP/1.1\r\nHost: %s:%d\r\nX-Api-Key: %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    ) % (member_id.encode(), LOOPBACK.encode(), port, api_key.encode(), len(body), body)


def checkin_request(port: int, token: str) -> bytes:
    return (
        b"POST /v1/checkins HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\nContent-Length: 0\r\n\r\n"
    ) % (LOOPBACK.encode(), port, token.encode())


def get_request(port: int, path: str, token: str = "") -> bytes:
    auth = b"Authorization: Bearer %s\r\n" % token.encode() if token else b""
    return b"GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n" % (path.encode(), LOOPBACK.encode(), port, auth)


def put_member_request(port: int, api_key: str, member_id: str, profile: dict[str, Any]) -> bytes:
    body = json.dumps(profile).encode()
    return (
        b"PUT /v1/members/%s HTTP/1.1\r\nHost: %s:%d\r\nX-Api-Key: %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    ) % (member_id.encode(), LOOPBACK.encode(), port, api_key.encode(), len(body), body)


async def create_members(
    ports: list[int],
    api_key: str,
    member_ids: list[str],
    connections: int = 32,
    profiles: dict[str, dict[str, Any]] | None = None,
) -> None:
    """PUT every member (spread over `ports`), with its profile if given; raises if any is refused."""
    pending = list(reversed(member_ids))

    async def worker(i: int) -> None:
        port = ports[i % len(ports)]
        conn = await HttpConnection(LOOPBACK, port).open()
        try:
            while pending:
                member_id = pending.pop()
                profile = (profiles or {}).get(member_id) or {"display_name": f"Bench {member_id}"}
                status, body = await conn.request(put_member_request(port, api_key, member_id, profile))
                if status not in (200, 201):
                    raise RuntimeError(f"PUT member {member_id}: {status} {body[:300]!r}")
        finally:
            conn.close()

    await asyncio.gather(*(worker(i) for i in range(min(connections, len(member_ids)))))


@dataclass
class LoadConfig:
    ports: list[int]
    api_key: str
    members: int
    member_prefix: str
    connections: int = 64
    seconds: float = 10.0
    warmup: float = 2.0
    max_requests: int = 2_000_000
    rate: float = 0.0  # awards per second in total; 0 = closed loop, as fast as the server answers
    run_id: str = "load"
    record: bool = False  # keep (member, send, done, status, entry id) of every measured request
    watch_pids: list[int] = field(default_factory=list)
    seed: int = 1
    tokens: list[str] = field(default_factory=list)  # member tokens: check-ins instead of awards
    tokens_once: bool = False  # each token for one request, in order; stop when they run out
    count_body: bytes = b""  # count the 2xx answers whose body contains this
    get_path: str = ""  # GET this path (with a member token when tokens are given) instead


@dataclass
class _State:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    records: list[tuple[int, float, float, int, int]] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)  # open loop: how late each measured send went out
    errors: Counter[str] = field(default_factory=Counter)
    issued: int = 0
    completed_total: int = 0
    tokens_used: int = 0
    body_matches: int = 0
    body_matches_total: int = 0
    cpu: dict[str, Any] = field(default_factory=dict)


def _group(proc: psutil.Process, watched: list[int], own: int) -> str:
    if proc.pid in watched:
        return f"pid {proc.pid}"
    if proc.pid == own:
        return "load generator"
    name = proc.info.get("name") or ""
    if name.startswith("postgres"):
        return "postgres"
    if name.startswith("redis-server"):
        return "redis"
    return "other"


def cpu_sample(watched: list[int]) -> dict[str, Any]:
    """CPU seconds used so far by every process of the host (by pid, with its group), and in all."""
    own = os.getpid()
    procs: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter(["name", "cpu_times"]):
        times = proc.info.get("cpu_times")
        if times is not None:
            procs[proc.pid] = (_group(proc, watched, own), times.user + times.system)
    system = psutil.cpu_times()
    busy = sum(system) - system.idle - getattr(system, "iowait", 0.0) - getattr(system, "steal", 0.0)
    return {"t": NOW(), "procs": procs, "busy": busy, "all": sum(system)}


def cpu_use(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """CPU used in the window: by group of processes in % of one core, the machine's in % of all cores.

    A process that started in the window counts from zero; one that ended in it is missed.
    """
    wall = after["t"] - before["t"]
    all_delta = after["all"] - before["all"]
    if wall <= 0 or all_delta <= 0:
        return {}
    groups: Counter[str] = Counter()
    for pid, (group, used) in after["procs"].items():
        groups[group] += used - before["procs"].get(pid, (group, 0.0))[1]
    pct = {group: round(100 * used / wall, 1) for group, used in sorted(groups.items())}
    busy = (after["busy"] - before["busy"]) / all_delta
    cpus = os.cpu_count() or 1
    return {
        "client_pct_of_one_core": pct.get("load generator", 0.0),
        "machine_busy_pct_of_all_cores": round(100 * busy, 1),
        # Kernel work not charged to a process, and processes that ended inside the window.
        "unattributed_pct_of_one_core": round(max(0.0, 100 * busy * cpus - sum(pct.values())), 1),
        "pct_of_one_core_by_group": pct,
        "watched_pct_of_one_core": {g.split()[1]: v for g, v in pct.items() if g.startswith("pid ")},
    }


def events_request(port: int, api_key: str, body: bytes) -> bytes:
    """`POST /v1/events` with a JSON batch."""
    return (
        b"POST /v1/events HTTP/1.1\r\nHost: %s:%d\r\nX-Api-Key: %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    ) % (LOOPBACK.encode(), port, api_key.encode(), len(body), body)


@dataclass
class BatchLoad:
    """A closed loop of event batches: each connection sends one, waits for its answer, sends the next.

    `make(rng, tag)` gives a batch's body and what the caller needs to know of it; `settle(what,
    answer)` hears how each batch ended: the decoded answer of a 200, else None.
    """

    port: int
    api_key: str
    connections: int
    seconds: float
    warmup: float
    max_batches: int
    tag: str  # unique per run: event ids start with it
    watch_pids: list[int]
    make: Any  # Callable[[random.Random, str], tuple[bytes, Any]]
    settle: Any  # Callable[[Any, dict[str, Any] | None], None]
    seed: int = 1


@dataclass
class BatchTally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    accepted: int = 0  # in the window
    duplicates: int = 0
    accepted_total: int = 0
    issued: int = 0
    cpu: dict[str, Any] = field(default_factory=dict)


async def drive_batches(load: BatchLoad) -> BatchTally:
    """Run `load` for its warm-up and measured seconds; the tally of the measured window."""
    tally = BatchTally()
    window_start = NOW() + load.warmup
    end = window_start + load.seconds

    async def monitor() -> None:
        await asyncio.sleep(max(0.0, window_start - NOW()))
        before = cpu_sample(load.watch_pids)
        await asyncio.sleep(max(0.0, end - NOW()))
        tally.cpu = cpu_use(before, cpu_sample(load.watch_pids))

    async def worker(i: int) -> None:
        conn = HttpConnection(LOOPBACK, load.port)
        rng = random.Random(load.seed * 1_000_003 + i)
        seq = 0
        try:
            while tally.issued < load.max_batches and NOW() < end:
                tally.issued += 1
                seq += 1
                body, what = load.make(rng, f"{load.tag}-{i}-{seq}")
                raw = events_request(load.port, load.api_key, body)
                sent = NOW()
                try:
                    status, answer = await conn.request(raw)
                except (OSError, HttpError, asyncio.IncompleteReadError, ValueError) as exc:
                    tally.errors[type(exc).__name__] += 1
                    load.settle(what, None)
                    conn.close()
                    await asyncio.sleep(0.05)
                    continue
                done = NOW()
                out: dict[str, Any] = json.loads(answer) if status == 200 else {}
                accepted = int(out.get("accepted", 0))
                tally.accepted_total += accepted
                load.settle(what, out if status == 200 else None)
                if window_start <= done < end:
                    tally.latencies.append(done - sent)
                    tally.statuses[status] += 1
                    tally.accepted += accepted
                    tally.duplicates += int(out.get("duplicates", 0))
                    for r in out.get("rejected", ()):
                        tally.rejected[r["code"]] += 1
                    if status != 200:
                        tally.errors[f"http_{status}:{answer[:120].decode(errors='replace')}"] += 1
        finally:
            conn.close()

    try:
        await asyncio.wait_for(
            asyncio.gather(monitor(), *(worker(i) for i in range(load.connections))),
            load.warmup + load.seconds + 120,
        )
    except TimeoutError:
        tally.errors["hard_deadline"] += 1
    return tally


async def run_load(cfg: LoadConfig) -> tuple[dict[str, Any], list[tuple[int, float, float, int, int]]]:
    """Run the load; the figures, and the per-request records when `cfg.record`."""
    st = _State()
    start = NOW()
    window_start = start + cfg.warmup
    end = window_start + cfg.seconds
    next_due = 0  # open loop: index of the next award to send

    async def monitor() -> None:
        await asyncio.sleep(max(0.0, window_start - NOW()))
        before = cpu_sample(cfg.watch_pids)
        await asyncio.sleep(max(0.0, end - NOW()))
        st.cpu = cpu_use(before, cpu_sample(cfg.watch_pids))

    async def worker(i: int) -> None:
        nonlocal next_due
        port = cfg.ports[i % len(cfg.ports)]
        conn = HttpConnection(LOOPBACK, port)
        rng = random.Random(cfg.seed * 1_000_003 + i)
        seq = 0
        try:
            while True:
                due = 0.0
                if cfg.rate > 0:
                    n, next_due = next_due, next_due + 1
                    due = start + n / cfg.rate
                    # Stop at the end even when behind schedule: what was due and not sent is counted.
                    if due >= end or n >= cfg.max_requests or NOW() >= end:
                        return
                    delay = due - NOW()
                    if delay > 0:
                        await asyncio.sleep(delay)
                elif st.issued >= cfg.max_requests or NOW() >= end:
                    return
                if cfg.tokens_once and st.tokens_used >= len(cfg.tokens):
                    st.errors["tokens_exhausted"] += 1
                    return
                st.issued += 1
                seq += 1
                if cfg.tokens:
                    if cfg.tokens_once:
                        member, st.tokens_used = st.tokens_used, st.tokens_used + 1
                    else:
                        member = rng.randrange(len(cfg.tokens))
                    token = cfg.tokens[member]
                    raw = (
                        get_request(port, cfg.get_path, token)
                        if cfg.get_path
                        else checkin_request(port, token)
                    )
                elif cfg.get_path:
                    member = 0
                    raw = get_request(port, cfg.get_path)
                else:
                    member = rng.randrange(cfg.members)
                    raw = award_request(
                        port, cfg.api_key, f"{cfg.member_prefix}{member}", f"{cfg.run_id}-{i}-{seq}"
                    )
                sent = NOW()
                try:
                    status, body = await conn.request(raw)
                except (OSError, HttpError, asyncio.IncompleteReadError, ValueError) as exc:
                    st.errors[type(exc).__name__] += 1
                    conn.close()
                    await asyncio.sleep(0.05)
                    continue
                done = NOW()
                st.completed_total += 1
                matched = bool(cfg.count_body) and 200 <= status < 300 and cfg.count_body in body
                st.body_matches_total += matched
                # Open loop: the awards sent in the window (each waited for); closed loop: the
                # requests completed in it (throughput).
                if window_start <= (sent if cfg.rate > 0 else done) < end:
                    st.latencies.append(done - sent)
                    st.statuses[status] += 1
                    st.body_matches += matched
                    if cfg.rate > 0:
                        st.lag.append(max(0.0, sent - due))
                    if cfg.record:
                        m = _ENTRY_ID.search(body) if status == 200 else None
                        st.records.append((member, sent, done, status, int(m.group(1)) if m else -1))
        finally:
            conn.close()

    tasks: list[Coroutine[Any, Any, None]] = [worker(i) for i in range(cfg.connections)]
    hard_deadline = cfg.warmup + cfg.seconds + 30
    try:
        await asyncio.wait_for(asyncio.gather(monitor(), *tasks), hard_deadline)
    except TimeoutError:
        st.errors["hard_deadline"] += 1
    ok = sum(n for s, n in st.statuses.items() if 200 <= s < 300)
    figures: dict[str, Any] = {
        "mode": f"open loop at {cfg.rate:g}/s" if cfg.rate > 0 else "closed loop",
        "connections": cfg.connections,
        "warmup_s": cfg.warmup,
        "seconds": cfg.seconds,
        "requests": len(st.latencies),
        "ok": ok,
        "rps": round(len(st.latencies) / cfg.seconds, 1),
        "ok_rps": round(ok / cfg.seconds, 1),
        "latency": latency_summary(st.latencies),
        "statuses": {str(k): v for k, v in sorted(st.statuses.items())},
        "errors": dict(st.errors),
        "issued_total": st.issued,
        "completed_total": st.completed_total,
        "cpu": st.cpu,
    }
    if cfg.tokens:
        figures["tokens"] = {"given": len(cfg.tokens), "once": cfg.tokens_once, "used": st.tokens_used}
    if cfg.count_body:
        figures["body_matches"] = {
            "pattern": cfg.count_body.decode(),
            "in_window": st.body_matches,
            "total": st.body_matches_total,
        }
    if cfg.rate > 0:
        figures["send_lag"] = latency_summary(st.lag)
        due = min(cfg.max_requests, int((cfg.warmup + cfg.seconds) * cfg.rate))
        figures["due_not_sent"] = max(0, due - st.issued)
    return figures, st.records


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` to completion on uvloop (as the servers do) when it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, action="append", required=True, help="repeat to spread connections")
    p.add_argument("--api-key", default="", help="X-Api-Key (default: $BENCH_API_KEY)")
    p.add_argument("--members", type=int, default=0, help="awards: to a random one of this many members")
    p.add_argument("--member-prefix", default="", help="awards: member ids are this and a number")
    p.add_argument("--tokens", type=Path, help="check-ins instead: member tokens, one a line")
    p.add_argument("--tokens-once", action="store_true", help="each token for one check-in only")
    p.add_argument("--count-body", default="", help="count the 2xx answers whose body contains this")
    p.add_argument("--get", default="", help="GET this path (with --tokens: as their members) instead")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--max-requests", type=int, default=2_000_000)
    p.add_argument("--rate", type=float, default=0.0, help="awards/s in total (open loop); 0 = closed loop")
    p.add_argument("--run-id", default="load")
    p.add_argument("--record", type=Path, help="write every measured request here (JSON)")
    p.add_argument("--watch-pid", type=int, action="append", default=[], help="report this process's CPU")
    args = p.parse_args(argv)
    tokens = args.tokens.read_text().split() if args.tokens is not None else []
    if args.tokens is not None and not tokens:
        p.error("--tokens: the file holds no token")
    if not tokens and not args.get and (args.members <= 0 or not args.member_prefix):
        p.error("awards need --members and --member-prefix (or give --tokens for check-ins, or --get)")
    check_clock()
    cfg = LoadConfig(
        ports=args.port,
        api_key=args.api_key or os.environ.get("BENCH_API_KEY", ""),
        members=args.members,
        member_prefix=args.member_prefix,
        connections=args.connections,
        seconds=args.seconds,
        warmup=args.warmup,
        max_requests=args.max_requests,
        rate=args.rate,
        run_id=args.run_id,
        record=args.record is not None,
        watch_pids=args.watch_pid,
        tokens=tokens,
        tokens_once=args.tokens_once,
        count_body=args.count_body.encode(),
        get_path=args.get,
    )
    figures, records = run_async(run_load(cfg))
    if args.record is not None:
        args.record.write_text(json.dumps(records))
    json.dump(figures, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
