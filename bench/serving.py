"""Serving choices: the real server under uvicorn and under granian, at 1 and 2 workers, same load.

In one run, on a PostgreSQL database and a redis-server of the run's own, with the load generator
of bench/loadgen.py in a process of its own (closed loop, `--connections`), one server at a time
on a free loopback port:

- uvicorn: `engage serve --workers N` (what production runs today: uvloop, httptools);
- granian: `granian --interface asgi --factory server.app:app_factory --workers N --loop uvloop`,
  the same ASGI application from the same factory, with the same environment.

Each is measured on the award path (`POST /v1/members/{id}/points`, a fresh idempotency key each)
and on first check-ins (`POST /v1/checkins`, each with the token of a member never seen), against
the bare baseline (bench/baseline_app.py under uvicorn, 1 worker) measured in the same run.
`--rounds 2` measures every server twice, in reverse order the second time, which evens out
other work on the machine. Server CPU is summed over a server's processes (master and workers).

    python -m bench.serving [--seconds 8] [--rounds 1] [--workers 1,2] [--servers uvicorn,granian]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.infra import (
    LOOPBACK,
    ROOT,
    ServerProcess,
    add_service_args,
    baseline_server,
    create_api_key,
    engage_cli,
    engage_env,
    engage_server,
    exit_on_sigterm,
    foreign_load_warning,
    free_port,
    machine,
    print_table,
    run_id,
    services_for_run,
    write_results,
)
from bench.loadgen import create_members, run_async
from bench.scaleout import FIRST, bad_count, http_phase, issue_tokens, wait_for_workers


def server_process(kind: str, env: dict[str, str], workers: int) -> ServerProcess:
    port = free_port()
    if kind == "uvicorn":
        server = engage_server(f"uvicorn-{workers}", env, port)
        server.argv += ["--workers", str(workers)]
        return server
    granian = str(Path(sys.executable).parent / "granian")
    argv = [
        *[granian, "--interface", "asgi", "--factory", "--host", LOOPBACK, "--port", str(port)],
        *["--workers", str(workers), "--loop", "uvloop", "--http", "1", "--log-level", "warning"],
        "server.app:app_factory",
    ]
    return ServerProcess(f"granian-{workers}", argv, env, port, "/ready")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_service_args(p)
    p.add_argument("--seconds", type=float, default=8.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--members", type=int, default=1000, help="members the awards go to")
    p.add_argument("--checkin-tokens", type=int, default=6000, help="fresh members per first-check-in phase")
    p.add_argument("--servers", default="uvicorn,granian")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--rounds", type=int, default=1, help="measure every server this many times")
    args = p.parse_args(argv)
    exit_on_sigterm()
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    if set(kinds) - {"uvicorn", "granian"}:
        p.error("--servers: uvicorn and/or granian")
    configs = [(k, int(w)) for k in kinds for w in args.workers.split(",")]

    rid = run_id()
    prefix = f"engage-bench-{rid}:"
    secret = f"bench-{rid}-{os.urandom(8).hex()}"
    started = time.monotonic()
    results: dict[str, Any] = {
        "benchmark": "serving",
        "machine": machine(),
        "settings": {
            k: getattr(args, k)
            for k in ("seconds", "warmup", "connections", "members", "checkin_tokens", "rounds")
        },
    }
    runs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        data_dir, db, redis_url = services_for_run(stack, args, "postgres", rid, prefix)
        print(
            f"serving: {db.label}, Redis {redis_url.split('@')[-1]}, {args.connections} connections, "
            f"{args.warmup:g} s warm-up + {args.seconds:g} s a phase; server at "
            f"{results['machine']['server_source']}; load {results['machine']['load_average_at_start']}",
            flush=True,
        )
        award_opts = (
            f"--members {args.members} --member-prefix bm-{rid}- --max-requests 1000000 --run-id {rid}"
        )
        base = baseline_server(redis_url, prefix)
        stack.callback(base.stop)
        base.start()
        print("  baseline (1 Redis write, uvicorn, 1 worker) ...", flush=True)
        baseline = http_phase("award request", award_opts + f" --port {base.port}", args, [base.pid], 0)
        base.stop()

        env = engage_env(
            db,
            redis_url,
            prefix,
            data_dir,
            jwt_secret=secret,
            ENGAGE_RATE_LIMIT_MEMBER_PER_MINUTE="100000000",
        )
        engage_cli(env, "migrate")
        api_key = create_api_key(env)
        members_ready = False
        order = list(configs)
        for round_ in range(args.rounds):
            for kind, workers in order:
                server = server_process(kind, env, workers)
                stack.callback(server.stop)
                t0 = time.monotonic()
                server.start()
                pids = wait_for_workers(server, workers)
                ready_s = round(time.monotonic() - t0, 1)
                print(f"  {kind}, {workers} worker(s) ({len(pids)} processes) ...", flush=True)
                if not members_ready:
                    run_async(
                        create_members([server.port], api_key, [f"bm-{rid}-{i}" for i in range(args.members)])
                    )
                    members_ready = True
                award = http_phase(
                    "award", award_opts + f" --port {server.port}", args, pids, 0, BENCH_API_KEY=api_key
                )
                first_ids = [f"cf-{rid}-{kind}-{workers}-{round_}-{i}" for i in range(args.checkin_tokens)]
                tokens = issue_tokens(secret, first_ids, data_dir / f"first-{kind}-{workers}-{round_}.tokens")
                opts = f"--port {server.port} --tokens {tokens} --tokens-once --count-body {FIRST}"
                opts += f" --max-requests {args.checkin_tokens}"
                first = http_phase("first check-in", opts, args, pids, 0)
                runs.append(
                    {
                        "server": kind,
                        "workers": workers,
                        "round": round_ + 1,
                        "processes": len(pids),
                        "ready_seconds": ready_s,
                        "award": award,
                        "first_checkin": first,
                    }
                )
                server.stop()
            order.reverse()

    results.update(baseline=baseline, runs=runs, wall_seconds=round(time.monotonic() - started, 1))
    report(results, args)
    path = write_results("serving", results)
    print(f"  figures: {path.relative_to(ROOT)} ({results['wall_seconds']:.0f} s)")


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    baseline = results["baseline"]
    rows: list[list[object]] = [
        [
            "baseline, uvicorn 1 worker",
            baseline["rate"],
            baseline["latency"]["p50_ms"],
            baseline["latency"]["p99_ms"],
            baseline["server_cpu_ms"] or "-",
            "-",
            "-",
            "-",
            "-",
            bad_count(baseline),
        ]
    ]
    grouped: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in results["runs"]:
        grouped.setdefault((run["server"], run["workers"]), []).append(run)
        a, f = run["award"], run["first_checkin"]
        rows.append(
            [
                f"{run['server']}, {run['workers']} worker(s), round {run['round']}",
                a["rate"],
                a["latency"]["p50_ms"],
                a["latency"]["p99_ms"],
                a["server_cpu_ms"] or "-",
                f["rate"],
                f["latency"]["p50_ms"],
                f["latency"]["p99_ms"],
                f["server_cpu_ms"] or "-",
                bad_count(a) + bad_count(f),
            ]
        )
    print_table(
        f"serving: award and first check-in ({args.connections} connections, {args.seconds:g} s measured)",
        [
            "",
            "award req/s",
            "p50 ms",
            "p99 ms",
            "CPU ms/req",
            "first check-in req/s",
            "p50 ms",
            "p99 ms",
            "CPU ms/req",
            "non-2xx + errors",
        ],
        rows,
    )
    if args.rounds > 1:
        summary = []
        for (kind, workers), runs in grouped.items():
            summary.append(
                [
                    f"{kind}, {workers} worker(s)",
                    statistics.mean(r["award"]["rate"] for r in runs),
                    statistics.mean(r["award"]["server_cpu_ms"] or 0 for r in runs),
                    statistics.mean(r["first_checkin"]["rate"] for r in runs),
                    statistics.mean(r["first_checkin"]["server_cpu_ms"] or 0 for r in runs),
                ]
            )
        print_table(
            f"mean of {args.rounds} rounds",
            ["", "award req/s", "CPU ms/req", "first check-in req/s", "CPU ms/req"],
            summary,
        )
    for run in results["runs"]:
        for phase in ("award", "first_checkin"):
            warning = foreign_load_warning(run[phase].get("cpu", {}))
            if warning:
                print(f"{warning} [{run['server']} {run['workers']}w round {run['round']} {phase}]")


if __name__ == "__main__":
    main()
