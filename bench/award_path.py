"""Award path against a baseline: requests/s and latency of `POST /v1/members/{id}/points`.

In one run, with the same load from a load generator in a separate process (bench/loadgen.py):

1. the baseline: bench/baseline_app.py (Litestar, one Redis INCRBY per request) under uvicorn,
   1 worker, uvloop + httptools, no access log;
2. the award path: the real server (`python -m server.cli serve` after `migrate`), awarding
   points to members created beforehand, each request with an idempotency key of its own.

Both run one at a time against the same redis-server (an own one on a free port by default).
The target: the award path serves at least 25% of the baseline's requests/s on PostgreSQL.

After the load (bench/checks.py): the outbox drained, `engage ledger verify` clean and the boards
equal to SQL (`engage leaderboards check`); the run exits 1 when a check fails.

`--profile` samples the real server with py-spy over the measured window and prints where its CPU
went (bench/results/award_path.<db>.pyspy.txt, collapsed stacks). py-spy costs the server a little:
judge the figures of a run without it.

    python -m bench.award_path [--database auto|postgres|sqlite] [--seconds 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from typing import Any

from bench import checks
from bench.infra import (
    RESULTS_DIR,
    ROOT,
    Profile,
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
    machine,
    print_profile,
    print_table,
    run_id,
    services_for_run,
    write_results,
)
from bench.loadgen import create_members, run_async

TARGET_RATIO = 0.25


def run_loadgen(
    port: int, api_key: str, args: argparse.Namespace, rid: str, watch_pid: int
) -> dict[str, Any]:
    """The load generator in a process of its own; its figures."""
    options = (
        f"--port {port} --members {args.members} --member-prefix bm-{rid}- --connections {args.connections} "
        f"--seconds {args.seconds} --warmup {args.warmup} --max-requests {args.max_requests} "
        f"--run-id {rid}-{port} --watch-pid {watch_pid}"
    )
    argv = [sys.executable, "-m", "bench.loadgen", *options.split()]
    done = subprocess.run(
        argv,
        env={**os.environ, "BENCH_API_KEY": api_key},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=args.warmup + args.seconds + 90,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}):\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    pct = figures.get("cpu", {}).get("watched_pct_of_one_core", {}).get(str(watch_pid))
    figures["server_cpu_pct_of_one_core"] = pct
    # CPU per request is steadier than requests/s when other work shares the machine.
    figures["server_cpu_ms"] = round(pct * 10 / figures["ok_rps"], 3) if pct and figures["ok_rps"] else None
    return figures


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--database",
        choices=["auto", "postgres", "sqlite"],
        default="auto",
        help="auto: PostgreSQL when reachable, else SQLite",
    )
    add_service_args(p)
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per server")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--members", type=int, default=1000)
    p.add_argument("--max-requests", type=int, default=1_000_000, help="per server, warm-up included")
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the real server under load -> bench/results/award_path.<db>.pyspy.txt; print a summary",
    )
    args = p.parse_args(argv)
    exit_on_sigterm()

    rid = run_id()
    prefix = f"engage-bench-{rid}:"
    started = time.monotonic()
    results: dict[str, Any] = {"benchmark": "award_path", "machine": machine()}

    with contextlib.ExitStack() as stack:
        data_dir, db, redis_url = services_for_run(stack, args, args.database, rid, prefix)
        print(
            f"award_path: {db.label}, Redis {redis_url.split('@')[-1]}, "
            f"{args.connections} connections, {args.warmup:g} s warm-up + {args.seconds:g} s per server, "
            f"{args.members:,} members; server at {results['machine']['server_source']}"
        )

        # 1. The baseline.
        bare = baseline_server(redis_url, prefix)
        stack.callback(bare.stop)
        bare.start()
        print("  baseline running ...", flush=True)
        baseline_pid = bare.pid
        baseline = run_loadgen(bare.port, "", args, rid, baseline_pid)
        bare.stop()

        # 2. The real award path.
        env = engage_env(db, redis_url, prefix, data_dir, jwt_secret=f"bench-{rid}")
        engage_cli(env, "migrate")
        api_key = create_api_key(env)
        port = free_port()
        server = engage_server("engage", env, port)
        stack.callback(server.stop)
        server.start()
        members = [f"bm-{rid}-{i}" for i in range(args.members)]
        run_async(create_members([port], api_key, members))
        print("  award path running ...", flush=True)
        profile = Profile(
            server.pid, RESULTS_DIR / f"award_path.{db.kind}.pyspy.txt", args.warmup, args.seconds
        )
        with profile if args.profile else contextlib.nullcontext():
            award = run_loadgen(port, api_key, args, rid, server.pid)
        server_pid = server.pid
        # 3. The checks: the outbox drained while the server runs; the ledger and boards once it stopped.
        print("  checking ...", flush=True)
        done = [checks.outbox_drained(db)]
        server.stop()
        done += checks.cli_checks(env)

    ratio = award["ok_rps"] / baseline["ok_rps"] if baseline["ok_rps"] else float("nan")
    met = ratio >= TARGET_RATIO
    results.update(
        database=db.kind,
        settings={
            k: getattr(args, k) for k in ("seconds", "warmup", "connections", "members", "max_requests")
        },
        baseline=baseline,
        award=award,
        ratio=round(ratio, 4),
        cpu_cost_ratio=round(award["server_cpu_ms"] / baseline["server_cpu_ms"], 1)
        if award["server_cpu_ms"] and baseline["server_cpu_ms"]
        else None,
        target={"ratio": TARGET_RATIO, "on": "postgres", "met": met, "applies": db.kind == "postgres"},
        checks=checks.as_json(done),
        checks_ok=checks.all_ok(done),
        profiled=args.profile,
        wall_seconds=round(time.monotonic() - started, 1),
    )

    rows = []
    for name, f, of in (
        ("baseline (1 Redis write)", baseline, 1.0),
        ("award path (real server)", award, ratio),
    ):
        bad = sum(n for s, n in f["statuses"].items() if not s.startswith("2")) + sum(f["errors"].values())
        lat = f["latency"]
        rows.append(
            [
                name,
                f["ok_rps"],
                f"{of:.1%}",
                lat["p50_ms"],
                lat["p90_ms"],
                lat["p99_ms"],
                bad,
                f["server_cpu_ms"],
            ]
        )
    print_table(
        f"award_path on {db.label} ({args.connections} connections, {args.seconds:g} s measured)"
        + (" -- py-spy attached to the server" if args.profile else ""),
        ["", "req/s", "of baseline", "p50 ms", "p90 ms", "p99 ms", "non-2xx + errors", "server CPU ms/req"],
        rows,
    )
    print("\n  CPU in the measured window, % of one core:")
    print(f"    baseline:   {describe_cpu(baseline['cpu'], {baseline_pid: 'server'})}")
    print(f"    award path: {describe_cpu(award['cpu'], {server_pid: 'server'})}")
    for phase, figures in (("baseline", baseline), ("award path", award)):
        warning = foreign_load_warning(figures["cpu"])
        if warning:
            print(f"{warning} [{phase}]")
    cost = award["server_cpu_ms"] / baseline["server_cpu_ms"] if baseline["server_cpu_ms"] else float("nan")
    print(f"  one award costs the server {cost:.0f}x the CPU of one baseline request")
    verdict = "MET" if met else "NOT MET"
    where = "" if db.kind == "postgres" else " (the target is defined on PostgreSQL; this run used SQLite)"
    print(f"\n  award/baseline = {ratio:.1%}   target >= {TARGET_RATIO:.0%}: {verdict}{where}")
    checks.print_checks(done, f"award path, {db.kind}")
    if args.profile:
        results["profile"] = profile.summary()
        print_profile(results["profile"], f"award, {db.kind}")
    path = write_results("award_path.profile" if args.profile else "award_path", results)
    print(f"\n  figures: {path.relative_to(ROOT)}")
    checks.exit_if_failed("award_path", {f"award path, {db.kind}": done})


if __name__ == "__main__":
    main()
