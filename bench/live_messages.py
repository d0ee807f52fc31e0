"""Live messages: server memory per idle websocket, and award-to-socket latency across two instances.

1. Two instances of the real server (`python -m server.cli serve`, two ports, one SQL database,
   one Redis and prefix) and 5,000 members created over the API.
2. Every member connects a websocket (`/v1/ws?token=…`) from client processes of their own
   (bench/ws_clients.py), half of them to each instance. Server memory per idle connection is
   the growth of each server's RSS from before the connections to after they have been open and
   idle a few seconds, divided by the connections that server holds (its own gauge, /metrics).
3. Awards at a steady rate (default 1,000/s for 10 s) from a load generator in a process of its
   own (bench/loadgen.py, open loop), spread over both instances and random connected members, so
   that about half of the messages cross from one instance to the other through Redis.
   Each award's `points.awarded` message is matched by `data.entry_id` to the award's response.

Latency is measured from just before the award's HTTP request is written to the moment the
message is read off the member's socket, both on CLOCK_MONOTONIC (one clock for the host). It
therefore includes the whole award request (SQL transaction, commit, publish). An award counts as
lost if its message has not arrived a few seconds (`--grace`) after the last award was sent.

Targets: p99 under 100 ms at 1,000 awards/s; under 40 KB of server memory per idle connection.

    python -m bench.live_messages [--database auto|postgres|sqlite] [--members 5000] [--rate 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.hub_publisher import FIRST_ENTRY_ID
from bench.infra import (
    LOOPBACK,
    ROOT,
    ServerProcess,
    add_service_args,
    create_api_key,
    describe_cpu,
    engage_cli,
    engage_env,
    engage_server,
    exit_on_sigterm,
    foreign_load_warning,
    free_port,
    latency_summary,
    machine,
    print_table,
    run_id,
    services_for_run,
    stop_process,
    write_results,
)
from bench.loadgen import create_members, run_async

TARGET_P99_MS = 100.0
TARGET_RATE = 1000.0
TARGET_KB_PER_CONNECTION = 40.0


class ClientProcess:
    """One bench.ws_clients process; its stdout lines (JSON events) arrive on a queue."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="engage-bench-ws-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(json.JSONDecodeError):
                self.events.put(json.loads(line))

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        try:
            got = self.events.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(
                f"websocket client: no '{event}' within {timeout:g} s:\n{self.log_tail()}"
            ) from None
        if got.get("event") != event:
            raise RuntimeError(f"websocket client: expected '{event}', got {got}:\n{self.log_tail()}")
        return got

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def log_tail(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        stop_process(self.proc, timeout=10)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


def ws_gauge(port: int) -> int:
    """The server's own count of open member websockets (engage_ws_connections on /metrics)."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("engage_ws_connections "):
                return int(float(line.split()[1]))
    return 0


@contextlib.contextmanager
def stopping(*items: ServerProcess | ClientProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for item in items:
            item.stop()


def analyse(
    sent: list[list[Any]], received: list[list[Any]], connected: set[int], seconds: float
) -> dict[str, Any]:
    """Match awards (member, send, done, status, entry id) with messages (entry id, receive, member)."""
    first: dict[int, tuple[float, int]] = {}
    duplicates = 0
    for entry_id, at, member in received:
        if entry_id in first:
            duplicates += 1
            first[entry_id] = min(first[entry_id], (at, member))
        else:
            first[entry_id] = (at, member)
    ok = [r for r in sent if r[3] == 200 and r[4] >= 0]
    expected = [r for r in ok if r[0] in connected]
    latencies: list[float] = []
    wrong_member = 0
    for member, at_send, _done, _status, entry_id in expected:
        hit = first.get(entry_id)
        if hit is None:
            continue
        latencies.append(hit[0] - at_send)
        wrong_member += hit[1] != member
    return {
        "awards_sent": len(sent),
        "awards_ok": len(ok),
        "achieved_rate": round(len(ok) / seconds, 1),
        "expected_messages": len(expected),
        "received_messages": len(latencies),
        "lost": len(expected) - len(latencies),
        "duplicates": duplicates,
        "delivered_to_wrong_member": wrong_member,
        "latency": latency_summary(latencies),
        "http_latency": latency_summary([r[2] - r[1] for r in ok]),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database", choices=["auto", "postgres", "sqlite"], default="auto")
    add_service_args(p)
    p.add_argument("--members", type=int, default=5000, help="members, each with one websocket")
    p.add_argument("--client-procs", type=int, default=2, help="websocket client processes")
    p.add_argument(
        "--ws-compression",
        choices=["deflate", "none"],
        default="deflate",
        help="what clients offer (browsers offer permessage-deflate)",
    )
    p.add_argument("--idle", type=float, default=5.0, help="seconds idle before measuring memory")
    p.add_argument("--rate", type=float, default=TARGET_RATE, help="awards per second")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds of awards")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--sender-connections", type=int, default=48, help="HTTP connections of the award sender")
    p.add_argument("--grace", type=float, default=3.0, help="seconds to wait for the last messages")
    p.add_argument(
        "--no-hub-phase",
        dest="hub_phase",
        action="store_false",
        help="skip the diagnostic phase that publishes straight into Redis (no HTTP, no SQL)",
    )
    args = p.parse_args(argv)
    exit_on_sigterm()

    rid = run_id()
    prefix = f"engage-bench-{rid}:"
    member_prefix = f"lm-{rid}-"
    started = time.monotonic()
    results: dict[str, Any] = {"benchmark": "live_messages", "machine": machine()}

    with contextlib.ExitStack() as stack:
        data_dir, db, redis_url = services_for_run(stack, args, args.database, rid, prefix)
        print(
            f"live_messages: {db.label}, Redis {redis_url.split('@')[-1]}, 2 instances, "
            f"{args.members:,} websockets from {args.client_procs} client process(es), "
            f"awards at {args.rate:g}/s for {args.seconds:g} s; "
            f"server at {results['machine']['server_source']}",
            flush=True,
        )
        env = engage_env(db, redis_url, prefix, data_dir, jwt_secret=f"bench-{rid}")
        engage_cli(env, "migrate")
        api_key = create_api_key(env)
        servers = [engage_server(name, env, free_port()) for name in ("instance-a", "instance-b")]
        stack.enter_context(stopping(*servers))
        for server in servers:
            server.start()
        ports = [s.port for s in servers]
        run_async(create_members(ports, api_key, [f"{member_prefix}{i}" for i in range(args.members)]))

        # Memory before: both servers warm (members created, SQL pools open), no websocket yet.
        time.sleep(1.0)
        rss_before = [s.rss() for s in servers]

        print(f"  connecting {args.members:,} websockets ...", flush=True)
        connect_started = time.monotonic()
        out_files = [data_dir / f"ws-{n}.json" for n in range(args.client_procs)]
        per_proc = -(-args.members // args.client_procs)
        clients: list[ClientProcess] = []
        for n in range(args.client_procs):
            first, count = n * per_proc, min(per_proc, args.members - n * per_proc)
            argv = [sys.executable, "-m", "bench.ws_clients", "--member-prefix", member_prefix]
            argv += [f"--port={port}" for port in ports]
            argv += [f"--start={first}", f"--count={count}", f"--compression={args.ws_compression}"]
            argv += [f"--out={out_files[n]}"]
            client = ClientProcess(argv, {**os.environ, "ENGAGE_JWT_SECRET": f"bench-{rid}"})
            clients.append(client)
            stack.callback(client.stop)
        connected_events = [c.expect("connected", timeout=150) for c in clients]
        connected = {m for e in connected_events for m in e["members"]}
        failed: dict[str, int] = {}
        for e in connected_events:
            for k, v in e["failed"].items():
                failed[k] = failed.get(k, 0) + v
        # Wait until both servers count every connection as theirs (their own gauge), so that no
        # award goes to a member whose socket is not yet subscribed.
        deadline = time.monotonic() + 60
        while sum(ws_gauge(p) for p in ports) < len(connected) and time.monotonic() < deadline:
            time.sleep(0.25)
        connect_seconds = time.monotonic() - connect_started
        time.sleep(args.idle)
        held = [ws_gauge(p) for p in ports]
        rss_idle = [s.rss() for s in servers]

        print(f"  awards at {args.rate:g}/s ...", flush=True)
        awards_file = data_dir / "awards.json"
        sender = [sys.executable, "-m", "bench.loadgen", "--members", str(args.members)]
        sender += ["--member-prefix", member_prefix, "--rate", str(args.rate), "--seconds", str(args.seconds)]
        sender += ["--warmup", str(args.warmup), "--connections", str(args.sender_connections)]
        sender += ["--run-id", rid, "--record", str(awards_file)]
        sender += [f"--port={port}" for port in ports] + [f"--watch-pid={s.pid}" for s in servers]
        sender_figures = run_json(
            sender, {**os.environ, "BENCH_API_KEY": api_key}, args.warmup + args.seconds
        )
        time.sleep(args.grace)

        hub_file = data_dir / "hub.json"
        hub_cpu: dict[str, float] = {}
        if args.hub_phase:
            print(f"  hub only: messages straight into Redis at {args.rate:g}/s ...", flush=True)
            publisher = [sys.executable, "-m", "bench.hub_publisher", "--members", str(args.members)]
            publisher += ["--member-prefix", member_prefix, "--rate", str(args.rate)]
            publisher += ["--seconds", str(args.seconds), "--out", str(hub_file)]
            before = {s.name: s.cpu_seconds() for s in servers}
            began = time.monotonic()
            run_json(publisher, env, args.seconds)
            hub_cpu = {
                s.name: round(100 * (s.cpu_seconds() - before[s.name]) / (time.monotonic() - began), 1)
                for s in servers
            }
            time.sleep(args.grace)

        for client in clients:
            client.send("stop")
        for client in clients:
            client.expect("done", timeout=60)
        rss_end = [s.rss() for s in servers]
        received: list[list[Any]] = []
        closed_by_server: dict[str, int] = {}
        client_cpu: list[float] = []
        for path in out_files:
            got = json.loads(path.read_text())
            received.extend(got["awarded"])
            client_cpu.append(got["cpu_seconds"])
            for k, v in got["closed_by_server"].items():
                closed_by_server[k] = closed_by_server.get(k, 0) + v
        awards_sent = json.loads(awards_file.read_text())
        hub_sent = json.loads(hub_file.read_text()) if args.hub_phase else []

    live = analyse(awards_sent, [r for r in received if r[0] < FIRST_ENTRY_ID], connected, args.seconds)
    hub = analyse(hub_sent, [r for r in received if r[0] >= FIRST_ENTRY_ID], connected, args.seconds)
    memory = [
        {
            "instance": server.name,
            "connections": held[i],
            "rss_before_mb": round(rss_before[i] / 2**20, 1),
            "rss_idle_mb": round(rss_idle[i] / 2**20, 1),
            "rss_after_awards_mb": round(rss_end[i] / 2**20, 1),
            "kb_per_connection": round((rss_idle[i] - rss_before[i]) / 1024 / held[i], 1)
            if held[i]
            else None,
        }
        for i, server in enumerate(servers)
    ]
    worst_kb = max((m["kb_per_connection"] or float("inf")) for m in memory)
    memory_met = worst_kb < TARGET_KB_PER_CONNECTION
    rate_reached = live["achieved_rate"] >= 0.98 * TARGET_RATE
    p99 = live["latency"]["p99_ms"]
    latency_met = rate_reached and p99 < TARGET_P99_MS and live["lost"] == 0
    results.update(
        database=db.kind,
        settings={
            k: getattr(args, k)
            for k in ("members", "client_procs", "ws_compression", "idle", "rate", "seconds", "warmup")
        }
        | {"sender_connections": args.sender_connections, "grace": args.grace},
        latency_measured_from="just before the award's HTTP request is written (CLOCK_MONOTONIC)",
        connections={
            "connected": len(connected),
            "failed": failed,
            "seconds_to_connect": round(connect_seconds, 1),
            "closed_by_server": closed_by_server,
        },
        memory=memory,
        awards=live,
        award_sender=sender_figures,
        hub_only=hub | {"server_cpu_pct_of_one_core": hub_cpu} if args.hub_phase else None,
        client_cpu_seconds=client_cpu,
        targets={
            "kb_per_connection": {"target": TARGET_KB_PER_CONNECTION, "worst": worst_kb, "met": memory_met},
            "p99_ms": {
                "target": TARGET_P99_MS,
                "at_rate": TARGET_RATE,
                "measured_p99_ms": p99,
                "achieved_rate": live["achieved_rate"],
                "met": latency_met,
            },
        },
        wall_seconds=round(time.monotonic() - started, 1),
    )

    failures = f" (failed: {failed})" if failed else ""
    print(
        f"\n  {len(connected):,} of {args.members:,} websockets connected in {connect_seconds:.1f} s"
        + failures
    )
    print_table(
        f"Server memory per idle websocket "
        f"(RSS growth after {args.idle:g} s idle; compression offered by clients: {args.ws_compression})",
        ["instance", "connections", "RSS before MB", "RSS idle MB", "KB/connection"],
        [
            [m["instance"], m["connections"], m["rss_before_mb"], m["rss_idle_mb"], m["kb_per_connection"]]
            for m in memory
        ],
    )
    rows = [["awards: HTTP request -> socket", args.rate, *latency_row(live)]]
    if args.hub_phase:
        rows.append(["hub only: Redis publish -> socket", args.rate, *latency_row(hub)])
    print_table(
        f"Live-message latency on {db.label}, 2 instances",
        [
            "",
            "asked/s",
            "achieved/s",
            "expected",
            "received",
            "lost",
            "dup",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
        ],
        rows,
    )
    names = {s.pid: s.name for s in servers}
    print(
        f"  awards' own HTTP latency: p50 {live['http_latency']['p50_ms']:,.1f} ms, "
        f"p99 {live['http_latency']['p99_ms']:,.1f} ms; "
        f"sender behind schedule p99 {sender_figures['send_lag']['p99_ms']:,.0f} ms"
    )
    print("  CPU while awarding, % of one core: " + describe_cpu(sender_figures.get("cpu", {}), names))
    warning = foreign_load_warning(sender_figures.get("cpu", {}))
    if warning:
        print(warning)
    if hub_cpu:
        print(
            "  CPU of the servers in the hub-only phase, % of one core: "
            + ", ".join(f"{name} {pct:.0f}" for name, pct in hub_cpu.items())
        )
    if live["achieved_rate"] < 0.98 * args.rate:
        print(
            f"  NOTE: the award sender reached only {live['achieved_rate']:,.0f} awards/s of the "
            f"{args.rate:,.0f}/s asked: with {args.sender_connections} connections each waiting "
            f"{live['http_latency']['p50_ms']:,.0f} ms (p50) for its award, the servers answer no faster; "
            f"{sender_figures['due_not_sent']:,} awards due were never sent"
        )
    if live["awards_sent"] != live["awards_ok"]:
        statuses = sender_figures.get("statuses", {})
        print(f"  awards refused or failed: {live['awards_sent'] - live['awards_ok']} (statuses {statuses})")
    if closed_by_server:
        print(f"  websockets closed by the server during the run: {closed_by_server}")
    print(
        f"\n  memory: worst {worst_kb:.1f} KB per idle connection; target < 40 KB: "
        + ("MET" if memory_met else "NOT MET")
    )
    print(
        f"  latency: p99 {p99:,.1f} ms at {live['achieved_rate']:,.0f} awards/s, {live['lost']} lost; "
        "target p99 < 100 ms at 1,000 awards/s, none lost: "
        + ("MET" if latency_met else "NOT MET" + ("" if rate_reached else " (1,000 awards/s not reached)"))
    )
    path = write_results("live_messages", results)
    print(f"  figures: {path.relative_to(ROOT)}")


def latency_row(figures: dict[str, Any]) -> list[object]:
    lat = figures["latency"]
    return [
        figures["achieved_rate"],
        figures["expected_messages"],
        figures["received_messages"],
        figures["lost"],
        figures["duplicates"],
        lat["p50_ms"],
        lat["p90_ms"],
        lat["p99_ms"],
        lat["max_ms"],
    ]


def run_json(argv: list[str], env: dict[str, str], seconds: float) -> dict[str, Any]:
    """Run a load process of ours to completion (bounded in time); the JSON it prints last."""
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 90)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[2]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


if __name__ == "__main__":
    main()
