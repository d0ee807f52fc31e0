"""Scale-out through a load balancer: 1 and 2 server instances behind HAProxy, each path measured.

In one run, on a PostgreSQL database and a redis-server of the run's own (as the other benchmarks):

1. the baseline: bench/baseline_app.py (a bare Litestar endpoint doing one Redis write, 1 worker),
   loaded directly and again through HAProxy, which shows what the balancer itself costs;
2. one real server instance (`engage serve` on a free loopback port), then two, all sharing the
   database and `ENGAGE_REDIS_URL`, the scheduler enabled on each, behind HAProxy (round robin,
   http mode, websocket upgrades allowed, health checks on `/health`, retries on closed
   connections, as in deploy/haproxy.cfg), its config written into a temporary folder. At each
   count, through the balancer only:
   - award: `POST /v1/members/{id}/points` to a random one of `--members`, a fresh idempotency key
     each (bench/loadgen.py, closed loop, `--connections`);
   - first check-in: `POST /v1/checkins`, each request with the token of a member never seen;
   - repeat check-in: the same for members of the first phase, answered `already_checked_in`;
   - member events: `POST /v1/events` in batches of `--batch-size` over `--event-members` members
     with zones and tiers (bench/event_ingest.py's mix, `--event-connections`).
   With two instances a websocket opened through the balancer must receive the live message of an
   award made on each instance directly (Redis pub/sub between instances).

Server CPU is summed over the instances' processes and given per request (per event for events);
HAProxy's CPU is shown apart. Afterwards `engage ledger verify` must be clean. HAProxy comes from
the system (Debian's `haproxy` package); without it on PATH the benchmark says so and exits 0.

    python -m bench.scaleout [--seconds 8] [--warmup 2] [--instances 1,2] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.event_ingest import batch_body, create_profiled_members
from bench.infra import (
    LOOPBACK,
    ROOT,
    ServerProcess,
    add_service_args,
    baseline_server,
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
from bench.loadgen import (
    BatchLoad,
    HttpConnection,
    award_request,
    create_members,
    drive_batches,
    run_async,
)

FIRST = '"already_checked_in":false'  # how a first check-in's answer says so (msgspec JSON)

# ---------------------------------------------------------------- processes


def tree_pids(pid: int) -> list[int]:
    """A server process and its children (workers of uvicorn or granian), for CPU accounting."""
    try:
        proc = psutil.Process(pid)
        return [pid, *(c.pid for c in proc.children(recursive=True))]
    except psutil.Error:
        return [pid]


def wait_for_workers(server: ServerProcess, workers: int, timeout: float = 60) -> list[int]:
    """Wait until the server's process tree holds `workers` worker processes; all its pids."""
    deadline = time.monotonic() + timeout
    pids = tree_pids(server.pid)
    while time.monotonic() < deadline:
        pids = tree_pids(server.pid)
        # One worker may be the server process itself (uvicorn without --workers).
        if len(pids) - 1 >= workers or workers == 1:
            break
        time.sleep(0.2)
    # Workers answer /ready one after another: give the later ones a moment to finish start-up.
    if workers > 1:
        time.sleep(3)
    return tree_pids(server.pid)


def run_loadgen(
    options: str, args: argparse.Namespace, watch: list[int], *, connections: int | None = None, **env: str
) -> dict[str, Any]:
    """bench/loadgen.py in a process of its own, watching the `watch` pids; its figures."""
    common = (
        f"--connections {connections or args.connections} --seconds {args.seconds} --warmup {args.warmup}"
    )
    argv = [sys.executable, "-m", "bench.loadgen", *options.split(), *common.split()]
    for pid in watch:
        argv += ["--watch-pid", str(pid)]
    done = subprocess.run(
        argv,
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=args.warmup + args.seconds + 90,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}):\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def issue_tokens(secret: str, member_ids: list[str], path: Path) -> Path:
    """Member tokens as the brand's backend issues them (the server's own function), one a line."""
    from server.auth import issue_member_token
    from server.config import Settings

    settings = Settings(jwt_secret=secret)
    path.write_text("\n".join(issue_member_token(settings, m) for m in member_ids) + "\n")
    return path


def cpu_per_unit(figures: dict[str, Any], server_pids: list[int], per_s: float, lb_pid: int = 0) -> None:
    """Server CPU (summed over `server_pids`), HAProxy's and PostgreSQL's, in ms per unit of `per_s`."""
    cpu = figures.get("cpu", {})
    watched = cpu.get("watched_pct_of_one_core", {})
    server_pct = sum(watched.get(str(pid), 0.0) for pid in server_pids)
    lb_pct = watched.get(str(lb_pid), 0.0) if lb_pid else 0.0
    pg_pct = cpu.get("pct_of_one_core_by_group", {}).get("postgres", 0.0)
    figures["server_cpu_pct_of_one_core"] = round(server_pct, 1)
    figures["server_cpu_pct_by_instance"] = [round(watched.get(str(pid), 0.0), 1) for pid in server_pids]
    figures["server_cpu_ms"] = round(server_pct * 10 / per_s, 3) if per_s else None
    figures["haproxy_cpu_ms"] = round(lb_pct * 10 / per_s, 3) if lb_pid and per_s else None
    figures["postgres_cpu_ms"] = round(pg_pct * 10 / per_s, 3) if per_s else None


# ---------------------------------------------------------------- HAProxy


HAPROXY_CFG = """\
# Written by bench/scaleout.py for one run (deploy/haproxy.cfg without the logs and Docker's DNS):
# loopback only, removed with its folder afterwards.
global
    maxconn 4000
    nbthread 1
    stats socket {sock} mode 600 level user

defaults
    mode http
    option forwardfor
    retries 2
    retry-on conn-failure empty-response
    option redispatch
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    # An upgraded (websocket) connection stays open as long as it is used.
    timeout tunnel 1h
    timeout http-keep-alive 60s

frontend engage
    bind {host}:{port}
    default_backend engage

backend engage
    balance roundrobin
    option httpchk GET {check_path}
    http-check expect status 200
{servers}
"""


class Balancer:
    """HAProxy in the foreground (`-db`), with a config of its own in a temporary folder."""

    def __init__(self, binary: str, name: str, check_path: str = "/health") -> None:
        self.binary = binary
        self.name = name
        self.check_path = check_path
        self.dir = Path(tempfile.mkdtemp(prefix="engage-bench-haproxy-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0

    @property
    def socket_path(self) -> Path:
        return self.dir / "stats.sock"

    def start(self, backends: list[int], timeout: float = 30) -> Balancer:
        servers = "\n".join(
            f"    server s{i + 1} {LOOPBACK}:{port} check inter 1s fall 2 rise 1"
            for i, port in enumerate(backends)
        )
        cfg = self.dir / "haproxy.cfg"
        cfg.write_text(
            HAPROXY_CFG.format(
                sock=self.socket_path,
                host=LOOPBACK,
                port=self.port,
                check_path=self.check_path,
                servers=servers,
            )
        )
        check = subprocess.run([self.binary, "-c", "-q", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refused its config:\n{check.stdout}{check.stderr}")
        log = (self.dir / "haproxy.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "-db", "-f", str(cfg)], stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited at start:\n{self.log_tail()}")
            states = self.server_states()
            if len(states) == len(backends) and all(s.startswith("UP") for s in states.values()):
                return self
            time.sleep(0.2)
        raise RuntimeError(f"haproxy: servers not all UP within {timeout} s: {self.server_states()}")

    def server_states(self) -> dict[str, str]:
        """Each backend server's status from the stats socket (`UP`, `DOWN`, ...)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(str(self.socket_path))
                s.sendall(b"show stat\n")
                raw = b""
                while chunk := s.recv(65536):
                    raw += chunk
        except OSError:
            return {}
        lines = raw.decode(errors="replace").splitlines()
        if not lines or not lines[0].startswith("# "):
            return {}
        header = lines[0][2:].split(",")
        states = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == "engage" and row.get("svname") not in ("BACKEND", "FRONTEND", None):
                states[row["svname"]] = row.get("status", "")
        return states

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "haproxy.log").read_text(errors="replace")[-chars:]
        return ""

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- live messages across instances


async def live_across_instances(
    lb_port: int, instance_ports: list[int], api_key: str, secret: str, member: str
) -> dict[str, Any]:
    """A websocket through the balancer receives the award made on every instance directly."""
    from websockets.asyncio.client import connect

    from server.auth import issue_member_token
    from server.config import Settings

    token = issue_member_token(Settings(jwt_secret=secret), member)
    expected: set[int] = set()
    received: set[int] = set()
    async with connect(f"ws://{LOOPBACK}:{lb_port}/v1/ws?token={token}", open_timeout=10) as ws:
        for port in instance_ports:
            conn = await HttpConnection(LOOPBACK, port).open()
            try:
                status, body = await conn.request(
                    award_request(port, api_key, member, f"live-{port}-{member}")
                )
            finally:
                conn.close()
            if status != 200:
                raise RuntimeError(f"award on instance :{port} answered {status}: {body[:200]!r}")
            expected.add(int(json.loads(body)["entry_id"]))
        deadline = time.monotonic() + 10
        while received != expected and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                msg = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic())))
                if msg.get("type") == "points.awarded":
                    received.add(int(msg["data"]["entry_id"]))
    return {"ok": received == expected, "awards": len(expected), "received": len(received & expected)}


# ---------------------------------------------------------------- phases


def http_phase(
    name: str, options: str, args: argparse.Namespace, pids: list[int], lb_pid: int, **env: str
) -> dict[str, Any]:
    print(f"    {name} ...", flush=True)
    figures = run_loadgen(options, args, [*pids, *([lb_pid] if lb_pid else [])], **env)
    rate = figures["ok_rps"]
    if "body_matches" in figures:  # first check-ins: only the answers that stored a check-in count
        rate = round(figures["body_matches"]["in_window"] / args.seconds, 1)
    figures["rate"] = rate
    cpu_per_unit(figures, pids, rate, lb_pid)
    return figures


def events_phase(
    args: argparse.Namespace,
    lb_port: int,
    api_key: str,
    members: list[str],
    tag: str,
    pids: list[int],
    lb_pid: int,
) -> dict[str, Any]:
    """Batches of member events (bench/event_ingest.py's mix) in a closed loop through the balancer."""
    print("    member events ...", flush=True)

    def make(rng: random.Random, batch_tag: str) -> tuple[bytes, None]:
        return batch_body(rng, args.batch_size, members, batch_tag)[0], None

    tally = run_async(
        drive_batches(
            BatchLoad(
                port=lb_port,
                api_key=api_key,
                connections=args.event_connections,
                seconds=args.seconds,
                warmup=args.warmup,
                max_batches=1_000_000,
                tag=tag,
                watch_pids=[*pids, lb_pid],
                make=make,
                settle=lambda _what, _answer: None,
            )
        )
    )
    ok = tally.statuses.get(200, 0)
    figures: dict[str, Any] = {
        "connections": args.event_connections,
        "batch_size": args.batch_size,
        "batches": len(tally.latencies),
        "batches_ok": ok,
        "accepted_events": tally.accepted,
        "events_per_s": round(tally.accepted / args.seconds, 1),
        "batches_per_s": round(ok / args.seconds, 1),
        "rejected_events": dict(tally.rejected),
        "duplicates": tally.duplicates,
        "latency": latency_summary(tally.latencies),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "errors": dict(tally.errors),
        "cpu": tally.cpu,
    }
    figures["rate"] = figures["events_per_s"]
    cpu_per_unit(figures, pids, figures["batches_per_s"], lb_pid)
    # Per event, like the other rows' per request.
    for key in ("server_cpu_ms", "haproxy_cpu_ms", "postgres_cpu_ms"):
        if figures.get(key) is not None:
            figures[key + "_per_batch"] = figures[key]
            figures[key] = round(figures[key] / args.batch_size, 3)
    return figures


def bad_count(f: dict[str, Any]) -> int:
    statuses = f.get("statuses", {})
    return sum(n for s, n in statuses.items() if not s.startswith("2")) + sum(
        n for k, n in f.get("errors", {}).items() if k != "tokens_exhausted"
    )


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_service_args(p)
    p.add_argument("--seconds", type=float, default=8.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    p.add_argument("--instances", default="1,2", help="instance counts to measure, in order")
    p.add_argument("--connections", type=int, default=64, help="HTTP connections (awards, check-ins)")
    p.add_argument("--members", type=int, default=1000, help="members the awards go to")
    p.add_argument("--checkin-tokens", type=int, default=6000, help="fresh members per first-check-in phase")
    p.add_argument("--repeat-members", type=int, default=1000, help="members of the repeat phase")
    p.add_argument("--event-members", type=int, default=10_000, help="members the events are about")
    p.add_argument("--event-connections", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=100, help="events per POST /v1/events")
    p.add_argument(
        "--server-args",
        default="",
        help="more options for each `engage serve`, e.g. '--workers 2' (needs no quoting inside)",
    )
    args = p.parse_args(argv)
    counts = [int(n) for n in args.instances.split(",") if n.strip()]
    if not counts or min(counts) < 1:
        p.error("--instances: counts of 1 or more, e.g. 1,2")

    haproxy = shutil.which("haproxy")
    if haproxy is None:
        print(
            "scaleout: `haproxy` is not on PATH, so there is no load balancer to measure through.\n"
            "  Install it from the system's packages (on Debian: apt-get install -y haproxy) and run again."
        )
        return
    exit_on_sigterm()

    rid = run_id()
    prefix = f"engage-bench-{rid}:"
    secret = f"bench-{rid}-{os.urandom(8).hex()}"
    started = time.monotonic()
    version = subprocess.run([haproxy, "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    results: dict[str, Any] = {
        "benchmark": "scaleout",
        "machine": machine(),
        "haproxy": version,
        "settings": {
            k: getattr(args, k)
            for k in (
                "seconds",
                "warmup",
                "instances",
                "connections",
                "members",
                "checkin_tokens",
                "repeat_members",
                "event_members",
                "event_connections",
                "batch_size",
                "server_args",
            )
        },
    }
    phases: list[dict[str, Any]] = []

    def record(label: str, instances: int, path: str, figures: dict[str, Any], names: dict[int, str]) -> None:
        phases.append({"label": label, "instances": instances, "path": path, "figures": figures})
        figures["cpu_described"] = describe_cpu(figures.get("cpu", {}), names)

    with contextlib.ExitStack() as stack:
        data_dir, db, redis_url = services_for_run(stack, args, "postgres", rid, prefix)
        print(
            f"scaleout: {db.label}, Redis {redis_url.split('@')[-1]}, {version.split(' - ')[0]}, "
            f"{args.warmup:g} s warm-up + {args.seconds:g} s a phase; server at "
            f"{results['machine']['server_source']}; load {results['machine']['load_average_at_start']}",
            flush=True,
        )
        award_opts = (
            f"--members {args.members} --member-prefix bm-{rid}- --max-requests 1000000 --run-id {rid}"
        )

        # 1. The baseline, directly and through the balancer.
        base = baseline_server(redis_url, prefix)
        stack.callback(base.stop)
        base.start()
        print("  baseline (1 Redis write) ...", flush=True)
        figures = http_phase(
            "direct", award_opts + f" --port {base.port}", args, [base.pid], 0, BENCH_API_KEY=""
        )
        record("baseline direct", 0, "baseline", figures, {base.pid: "baseline"})
        lb = Balancer(haproxy, "baseline")
        stack.callback(lb.stop)
        lb.start([base.port])
        figures = http_phase(
            "through haproxy", award_opts + f" --port {lb.port}", args, [base.pid], lb.pid, BENCH_API_KEY=""
        )
        record("baseline via haproxy", 0, "baseline", figures, {base.pid: "baseline", lb.pid: "haproxy"})
        lb.stop()
        base.stop()

        # 2. The real server: 1 instance, then 2, ... behind the balancer.
        env = engage_env(
            db,
            redis_url,
            prefix,
            data_dir,
            jwt_secret=secret,
            ENGAGE_RATE_LIMIT_MEMBER_PER_MINUTE="100000000",
            ENGAGE_FORWARDED_ALLOW_IPS=LOOPBACK,
            ENGAGE_SCHEDULER_ENABLED="true",
            ENGAGE_HASH_SECRET=f"bench-{rid}",
        )
        engage_cli(env, "migrate")
        api_key = create_api_key(env)
        servers: list[ServerProcess] = []
        members_ready = False
        award_members = [f"bm-{rid}-{i}" for i in range(args.members)]
        event_members = [f"ev-{rid}-{i}" for i in range(args.event_members)]
        live: dict[str, Any] = {}
        for n in counts:
            while len(servers) > n:
                servers.pop().stop()
            while len(servers) < n:
                port = free_port()
                server = engage_server(f"engage-{len(servers) + 1}", env, port)
                if args.server_args:
                    server.argv += args.server_args.split()
                stack.callback(server.stop)
                servers.append(server.start())
            workers = _workers(args.server_args)
            pids = [pid for s in servers for pid in wait_for_workers(s, workers)]
            names = {pid: f"instance {i + 1}" for i, s in enumerate(servers) for pid in tree_pids(s.pid)}
            lb = Balancer(haproxy, f"{n}-instances")
            stack.callback(lb.stop)
            lb.start([s.port for s in servers])
            names[lb.pid] = "haproxy"
            print(f"  {n} instance(s) behind haproxy :{lb.port} ...", flush=True)
            if not members_ready:
                t0 = time.monotonic()
                run_async(create_members([lb.port], api_key, award_members))
                run_async(create_profiled_members(lb.port, api_key, event_members, seed=1))
                results["setup_members_seconds"] = round(time.monotonic() - t0, 1)
                members_ready = True

            figures = http_phase(
                "award", award_opts + f" --port {lb.port}", args, pids, lb.pid, BENCH_API_KEY=api_key
            )
            record(f"award, {n} instance(s)", n, "award", figures, names)

            first_ids = [f"cf-{rid}-{n}-{i}" for i in range(args.checkin_tokens)]
            tokens = issue_tokens(secret, first_ids, data_dir / f"first-{n}.tokens")
            opts = f"--port {lb.port} --tokens {tokens} --tokens-once --max-requests {args.checkin_tokens}"
            figures = http_phase("first check-in", opts + f" --count-body {FIRST}", args, pids, lb.pid)
            record(f"first check-in, {n} instance(s)", n, "first_checkin", figures, names)

            used = figures.get("tokens", {}).get("used", 0)
            repeat = data_dir / f"repeat-{n}.tokens"
            repeat.write_text(
                "\n".join(tokens.read_text().split()[: max(1, min(args.repeat_members, used))]) + "\n"
            )
            opts = f"--port {lb.port} --tokens {repeat} --max-requests 1000000"
            figures = http_phase("repeat check-in", opts, args, pids, lb.pid)
            record(f"repeat check-in, {n} instance(s)", n, "repeat_checkin", figures, names)

            figures = events_phase(args, lb.port, api_key, event_members, f"ev-{rid}-{n}", pids, lb.pid)
            record(f"member events, {n} instance(s)", n, "events", figures, names)

            if n > 1:
                live = run_async(
                    live_across_instances(
                        lb.port, [s.port for s in servers], api_key, secret, award_members[0]
                    )
                )
                print(f"    live messages across instances: {live}", flush=True)
            lb.stop()

        for server in servers:
            server.stop()
        print("  engage ledger verify ...", flush=True)
        try:
            verify_out = engage_cli(env, "ledger", "verify", timeout=600).strip().splitlines()[-1]
            ledger_ok = verify_out.endswith(": OK")
        except RuntimeError as exc:
            verify_out, ledger_ok = str(exc)[-500:], False

    results.update(
        phases=phases,
        live_across_instances=live,
        ledger_verify={"ok": ledger_ok, "output": verify_out},
        wall_seconds=round(time.monotonic() - started, 1),
    )
    report(results, args)
    path = write_results("scaleout", results)
    print(f"  figures: {path.relative_to(ROOT)} ({results['wall_seconds']:.0f} s)")
    if not ledger_ok:
        raise SystemExit("scaleout: engage ledger verify is not clean (see above)")
    if live and not live["ok"]:
        raise SystemExit("scaleout: live messages did not cross instances (see above)")


def _workers(server_args: str) -> int:
    parts = server_args.split()
    for i, part in enumerate(parts):
        if part == "--workers" and i + 1 < len(parts):
            return int(parts[i + 1])
        if part.startswith("--workers="):
            return int(part.split("=", 1)[1])
    return 1


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    phases = results["phases"]
    reference = next((ph["figures"]["rate"] for ph in phases if ph["label"] == "baseline direct"), None)
    one = {ph["path"]: ph["figures"]["rate"] for ph in phases if ph["instances"] == 1}
    rows = []
    for ph in phases:
        f = ph["figures"]
        events = ph["path"] == "events"
        lat = f["latency"]
        of_base = f"{f['rate'] / reference:.1%}" if reference and not events else "-"
        scale = f"{f['rate'] / one[ph['path']]:.2f}x" if ph["instances"] > 1 and one.get(ph["path"]) else "-"
        rows.append(
            [
                ph["label"],
                f["rate"],
                "events/s" if events else "req/s",
                of_base,
                scale,
                lat["p50_ms"],
                lat["p99_ms"],
                bad_count(f),
                _dash(f.get("server_cpu_ms")),
                "/".join(f"{x:.0f}" for x in f.get("server_cpu_pct_by_instance", [])) or "-",
                _dash(f.get("haproxy_cpu_ms")),
                _dash(f.get("postgres_cpu_ms")),
            ]
        )
    print_table(
        f"scaleout through HAProxy ({args.connections} connections, events {args.event_connections} x "
        f"{args.batch_size}; {args.seconds:g} s measured a phase)",
        [
            "",
            "rate",
            "unit",
            "of baseline",
            "vs 1",
            "p50 ms",
            "p99 ms",
            "non-2xx + errors",
            "server CPU ms",
            "% core / instance",
            "haproxy CPU ms",
            "pg CPU ms",
        ],
        rows,
    )
    print("  (events: latency per batch, CPU ms per event; the others: per request)")
    print("\n  CPU in the measured window, % of one core:")
    for ph in phases:
        print(f"    {ph['label']}: {ph['figures']['cpu_described']}")
    for ph in phases:
        warning = foreign_load_warning(ph["figures"].get("cpu", {}))
        if warning:
            print(f"{warning} [{ph['label']}]")
        if ph["figures"].get("errors", {}).get("tokens_exhausted"):
            print(f"  WARNING: first-check-in tokens ran out [{ph['label']}]: raise --checkin-tokens")
    live = results["live_across_instances"]
    if live:
        verdict = "OK" if live["ok"] else "MISSING MESSAGES"
        print(
            f"\n  live messages: a websocket through haproxy received {live['received']} of the "
            f"{live['awards']} awards made on each instance directly: {verdict}"
        )
    lv = results["ledger_verify"]
    print(f"  engage ledger verify: {lv['output']}")


def _dash(value: float | None) -> object:
    return "-" if value is None else value


if __name__ == "__main__":
    main()
