"""Check-in path against a baseline: requests/s and latency of `POST /v1/checkins`.

In one run per database, with the same load from a load generator in a separate process
(bench/loadgen.py, closed loop, N keep-alive connections):

1. the baseline: bench/baseline_app.py (Litestar, one Redis INCRBY per request) under uvicorn,
   1 worker, uvloop + httptools, no access log, sent the award request as in bench/award_path.py;
2. first check-ins on the real server (`python -m server.cli serve` after `migrate`): every request
   carries the bearer token of a member id never seen before, so each one is the member's real
   first check-in of the local date (the bare member is created on its first valid token, the day
   is stored, points and growth are posted to the ledger, live messages and an event go out).
   The tokens are issued beforehand with `server.auth.issue_member_token` and used once each.
   A fresh member's first request also creates the member (a transaction of its own), which a
   returning member's first check-in of the day skips once the process knows the member;
3. repeat check-ins on the same server: a fixed set of members who have already checked in today
   (as an app opening several times a day): the first `--repeat-members` members of step 2, each
   request for one of them at random, answered `already_checked_in: true`.

The targets, on PostgreSQL: first check-ins serve at least 25% of the baseline's requests/s,
repeat check-ins at least 60%. `--database both` measures SQLite and PostgreSQL, each with a
baseline of its own, in the same run.

After the load (bench/checks.py): the outbox drained, `engage ledger verify` clean, the boards equal
to SQL (`engage leaderboards check`), a dispatch receipt for the `checkin.completed` event of every
stored check-in, and the stored check-ins (`checkin_days`, and the ledger's check-in entries) equal
to the 200 answers that said `already_checked_in: false`, in both phases: nothing lost, nothing
doubled. The run exits 1 when a check fails.

`--profile` samples the server with py-spy over the measured window of each phase and prints where
its CPU went (bench/results/checkin_path.<db>.<first|repeat>.pyspy.txt, collapsed stacks).

    python -m bench.checkin_path [--database auto|postgres|sqlite|both] [--seconds 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import checks
from bench.infra import (
    RESULTS_DIR,
    ROOT,
    Profile,
    add_service_args,
    baseline_server,
    describe_cpu,
    engage_cli,
    engage_env,
    engage_server,
    exit_on_sigterm,
    foreign_load_warning,
    free_port,
    machine,
    postgres_reachable,
    print_profile,
    print_table,
    run_id,
    services_for_run,
    write_results,
)

TARGET_RATIO = 0.25  # first check-ins, of the baseline's requests/s
TARGET_REPEAT_RATIO = 0.60  # repeat check-ins
FIRST = '"already_checked_in":false'  # how a first check-in's answer says so (msgspec JSON)
# Tokens for first check-ins: enough for this many times the baseline's rate over the whole run.
TOKEN_HEADROOM = 1.5


# ---------------------------------------------------------------- load


def run_loadgen(
    options: list[str],
    args: argparse.Namespace,
    watch_pid: int,
    *,
    module: list[str] | None = None,
    **env: str,
) -> dict[str, Any]:
    """The load generator in a process of its own, watching `watch_pid`; its figures. `module`
    names another entry point that runs it (`["bench.referrals", "--as-loadgen", "landing"]`)."""
    common = (
        f"--connections {args.connections} --seconds {args.seconds} --warmup {args.warmup} "
        f"--watch-pid {watch_pid}"
    )
    done = subprocess.run(
        [sys.executable, "-m", *(module or ["bench.loadgen"]), *options, *common.split()],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=args.warmup + args.seconds + 90,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}):\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    cpu = figures.get("cpu", {})
    pct = cpu.get("watched_pct_of_one_core", {}).get(str(watch_pid))
    figures["server_cpu_pct_of_one_core"] = pct
    ok_rps = figures["ok_rps"]
    # CPU per request is steadier than requests/s when other work shares the machine.
    figures["server_cpu_ms"] = round(pct * 10 / ok_rps, 3) if pct and ok_rps else None
    pg = cpu.get("pct_of_one_core_by_group", {}).get("postgres")
    figures["postgres_cpu_ms"] = round(pg * 10 / ok_rps, 3) if pg and ok_rps else None
    return figures


def issue_tokens(secret: str, data_dir: Path, member_ids: list[str], path: Path) -> Path:
    """Member tokens as the brand's backend issues them (the server's own function), one a line."""
    from server.auth import issue_member_token
    from server.config import Settings

    settings = Settings(jwt_secret=secret, data_dir=data_dir)
    path.write_text("\n".join(issue_member_token(settings, m) for m in member_ids) + "\n")
    return path


# ---------------------------------------------------------------- one database


def run_database(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    rid = run_id()
    prefix = f"engage-bench-{rid}:"
    secret = f"bench-{rid}-{os.urandom(8).hex()}"
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        data_dir, db, redis_url = services_for_run(stack, args, kind, rid, prefix)
        print(
            f"\ncheckin_path: {db.label}, Redis {redis_url.split('@')[-1]}, {args.connections} connections, "
            f"{args.warmup:g} s warm-up + {args.seconds:g} s per phase",
            flush=True,
        )

        # 1. The baseline.
        bare = baseline_server(redis_url, prefix)
        stack.callback(bare.stop)
        bare.start()
        print("  baseline running ...", flush=True)
        baseline_pid = bare.pid
        options = (
            f"--port {bare.port} --members 1000 --member-prefix bm-{rid}- --run-id {rid}-{bare.port} "
            f"--max-requests {args.max_requests}"
        )
        baseline = run_loadgen(options.split(), args, baseline_pid, BENCH_API_KEY="")
        bare.stop()

        # 2. The real server and first check-ins, each by a member never seen before. One bench member
        # may send far more than a phone would: the member rate limit is counted (a Redis hit per
        # request, as in production) but never reached.
        env = engage_env(
            db,
            redis_url,
            prefix,
            data_dir,
            jwt_secret=secret,
            ENGAGE_RATE_LIMIT_MEMBER_PER_MINUTE="100000000",
        )
        engage_cli(env, "migrate")
        wanted = baseline["ok_rps"] * (args.warmup + args.seconds) * TOKEN_HEADROOM + args.connections
        n_first = max(1000, min(args.max_requests, math.ceil(wanted)))
        t0 = time.monotonic()
        member_ids = [f"cf-{rid}-{i}" for i in range(n_first)]
        first_tokens = issue_tokens(secret, data_dir, member_ids, data_dir / "first.tokens")
        issuing = time.monotonic() - t0
        port = free_port()
        server = engage_server("engage", env, port)
        stack.callback(server.stop)
        server.start()
        print(f"  first check-ins running ({n_first:,} tokens of fresh members) ...", flush=True)
        profiles = {
            phase: Profile(
                server.pid,
                RESULTS_DIR / f"checkin_path.{db.kind}.{phase}.pyspy.txt",
                args.warmup,
                args.seconds,
            )
            for phase in ("first", "repeat")
        }
        with profiles["first"] if args.profile else contextlib.nullcontext():
            options = f"--port {port} --tokens {first_tokens} --tokens-once --max-requests {n_first}"
            first = run_loadgen([*options.split(), "--count-body", FIRST], args, server.pid)

        # 3. Repeats: members of step 2, who have checked in today (tokens are used in order).
        n_repeat = max(1, min(args.repeat_members, first["tokens"]["used"]))
        repeat_tokens = data_dir / "repeat.tokens"
        repeat_tokens.write_text("\n".join(first_tokens.read_text().split()[:n_repeat]) + "\n")
        print(f"  repeat check-ins running ({n_repeat:,} members already checked in) ...", flush=True)
        options = f"--port {port} --tokens {repeat_tokens} --max-requests {args.max_requests}"
        with profiles["repeat"] if args.profile else contextlib.nullcontext():
            repeat = run_loadgen([*options.split(), "--count-body", FIRST], args, server.pid)
        server_pid = server.pid

        # 4. The checks: the outbox drained while the server runs; the rest once it stopped.
        print("  checking ...", flush=True)
        done = [checks.outbox_drained(db)]
        server.stop()
        done += checks.cli_checks(env)
        stored = checks.count_checkins(db, f"cf-{rid}-")
        done.append(checks.checkins_dispatched(db, f"cf-{rid}-", stored["checkin_days"]))
        # A request cut off by a connection error may have been stored without its answer being seen.
        unanswered = sum(v for k, v in first["errors"].items() if k != "tokens_exhausted") + sum(
            repeat["errors"].values()
        )
        answered = {
            "first phase": first["body_matches"]["total"],
            "repeat phase": repeat["body_matches"]["total"],
        }
        done.append(checks.checkins_stored(stored, answered, unanswered))

    in_window = first["body_matches"]["in_window"]
    first["first_checkin_rps"] = round(in_window / args.seconds, 1)
    run: dict[str, Any] = {
        "database": db.kind,
        "label": db.label,
        "baseline": baseline,
        "first_checkin": first,
        "repeat_checkin": repeat,
        "ratio": _ratio(first["first_checkin_rps"], baseline["ok_rps"]),
        "repeat_ratio": _ratio(repeat["ok_rps"], baseline["ok_rps"]),
        "cpu_cost_ratio": _ratio(first["server_cpu_ms"], baseline["server_cpu_ms"], 1),
        "repeat_cpu_cost_ratio": _ratio(repeat["server_cpu_ms"], baseline["server_cpu_ms"], 1),
        "target": {
            "ratio": TARGET_RATIO,
            "repeat_ratio": TARGET_REPEAT_RATIO,
            "on": "postgres",
            "applies": db.kind == "postgres",
        },
        "checks": checks.as_json(done),
        "checks_ok": checks.all_ok(done),
        "first_tokens": {"issued": n_first, "seconds_to_issue_all": round(issuing, 2)},
        "repeat_members": n_repeat,
        "profiled": args.profile,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    run["target"]["met"] = run["ratio"] is not None and run["ratio"] >= TARGET_RATIO
    run["target"]["repeat_met"] = (
        run["repeat_ratio"] is not None and run["repeat_ratio"] >= TARGET_REPEAT_RATIO
    )
    if args.profile:
        run["profile"] = {phase: profile.summary() for phase, profile in profiles.items()}
    report(run, args, {baseline_pid: "server"}, {server_pid: "server"})
    checks.print_checks(done, f"check-ins, {db.kind}")
    if args.profile:
        print_profile(run["profile"]["first"], f"first check-in, {db.kind}")
        print_profile(run["profile"]["repeat"], f"repeat check-in, {db.kind}")
    return run


def _ratio(a: float | None, b: float | None, digits: int = 4) -> float | None:
    return round(a / b, digits) if a and b else None


def report(
    run: dict[str, Any], args: argparse.Namespace, base_names: dict[int, str], names: dict[int, str]
) -> None:
    baseline, first, repeat = run["baseline"], run["first_checkin"], run["repeat_checkin"]
    rows = []
    phases = (
        ("baseline (1 Redis write)", baseline, baseline["ok_rps"], 1.0),
        ("first check-in of the day", first, first["first_checkin_rps"], run["ratio"]),
        ("repeat (already_checked_in)", repeat, repeat["ok_rps"], run["repeat_ratio"]),
    )
    for name, f, rps, ratio in phases:
        bad = sum(n for s, n in f["statuses"].items() if not s.startswith("2")) + sum(
            v for k, v in f["errors"].items() if k != "tokens_exhausted"
        )
        lat = f["latency"]
        rows.append(
            [
                name,
                rps,
                _pct(ratio),
                lat["p50_ms"],
                lat["p99_ms"],
                bad,
                f["server_cpu_ms"] if f["server_cpu_ms"] is not None else "-",
                f["postgres_cpu_ms"]
                if f["postgres_cpu_ms"] is not None and run["database"] == "postgres"
                else "-",
            ]
        )
    print_table(
        f"checkin_path on {run['label']} ({args.connections} connections, {args.seconds:g} s measured)"
        + (" -- py-spy attached to the server" if args.profile else ""),
        [
            "",
            "req/s",
            "of baseline",
            "p50 ms",
            "p99 ms",
            "non-2xx + errors",
            "server CPU ms/req",
            "pg CPU ms/req",
        ],
        rows,
    )
    print("\n  CPU in the measured window, % of one core:")
    print(f"    baseline:       {describe_cpu(baseline['cpu'], base_names)}")
    print(f"    first check-in: {describe_cpu(first['cpu'], names)}")
    print(f"    repeat:         {describe_cpu(repeat['cpu'], names)}")
    for phase, figures in (("baseline", baseline), ("first check-in", first), ("repeat", repeat)):
        warning = foreign_load_warning(figures["cpu"])
        if warning:
            print(f"{warning} [{phase}]")
    if first["errors"].get("tokens_exhausted"):
        print(
            f"  WARNING: the {run['first_tokens']['issued']:,} first-check-in tokens ran out before the end: "
            "the first check-in rate is understated"
        )
    if run["cpu_cost_ratio"] is not None:
        print(
            f"  one first check-in costs the server {run['cpu_cost_ratio']:.0f}x the CPU of one baseline "
            f"request, a repeat {run['repeat_cpu_cost_ratio'] or float('nan'):.0f}x"
        )
    target = run["target"]
    where = "" if target["applies"] else " (the targets are defined on PostgreSQL; this run used SQLite)"
    print(
        f"\n  first check-in/baseline = {_pct(run['ratio'])}   target >= {TARGET_RATIO:.0%}: "
        f"{'MET' if target['met'] else 'NOT MET'}{where}"
    )
    print(
        f"  repeat check-in/baseline = {_pct(run['repeat_ratio'])}   target >= {TARGET_REPEAT_RATIO:.0%}: "
        f"{'MET' if target['repeat_met'] else 'NOT MET'}{where}"
    )


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1%}"


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--database",
        choices=["auto", "postgres", "sqlite", "both"],
        default="auto",
        help="auto: PostgreSQL when reachable, else SQLite; both: SQLite, then PostgreSQL",
    )
    add_service_args(p)
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--repeat-members", type=int, default=1000, help="members of the repeat phase")
    p.add_argument("--max-requests", type=int, default=1_000_000, help="per phase, warm-up included")
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the server in each phase -> bench/results/checkin_path.<db>.<phase>.pyspy.txt",
    )
    args = p.parse_args(argv)
    exit_on_sigterm()

    started = time.monotonic()
    kinds = [args.database]
    if args.database == "auto":
        kinds = ["postgres" if postgres_reachable(args.postgres_url) else "sqlite"]
    elif args.database == "both":
        kinds = ["sqlite", "postgres"]
    results: dict[str, Any] = {
        "benchmark": "checkin_path",
        "machine": machine(),
        "settings": {
            k: getattr(args, k)
            for k in ("seconds", "warmup", "connections", "repeat_members", "max_requests")
        },
        "runs": {},
    }
    print(f"checkin_path: server at {results['machine']['server_source']}")
    for kind in kinds:
        if kind == "postgres" and args.database == "both" and not postgres_reachable(args.postgres_url):
            print(f"\n  PostgreSQL is not reachable at {args.postgres_url.split('@')[-1]}: not measured")
            results["runs"]["postgres"] = {"skipped": "PostgreSQL not reachable"}
            continue
        results["runs"][kind] = run_database(kind, args)

    pg = results["runs"].get("postgres", {})
    results["target"] = {
        "ratio": TARGET_RATIO,
        "repeat_ratio": TARGET_REPEAT_RATIO,
        "on": "postgres",
        "met": pg["target"]["met"] if "target" in pg else None,
        "repeat_met": pg["target"]["repeat_met"] if "target" in pg else None,
    }
    results["checks_ok"] = all(r["checks_ok"] for r in results["runs"].values() if "checks_ok" in r)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    if len(results["runs"]) > 1:
        print("\nsummary (first check-ins of the day vs the baseline, same run):")
        for kind, r in results["runs"].items():
            if "skipped" in r:
                print(f"  {kind:<8}  not measured ({r['skipped']})")
                continue
            first_rps, repeat_rps = r["first_checkin"]["first_checkin_rps"], r["repeat_checkin"]["ok_rps"]
            print(
                f"  {kind:<8}  {first_rps:>8,.1f} req/s = {_pct(r['ratio'])} "
                f"of {r['baseline']['ok_rps']:,.1f}; "
                f"repeat {repeat_rps:,.1f} req/s = {_pct(r['repeat_ratio'])}; "
                f"checks: {'all OK' if r['checks_ok'] else 'FAILED'}"
            )
        for key, label, ratio in (
            ("met", "first check-ins", TARGET_RATIO),
            ("repeat_met", "repeat check-ins", TARGET_REPEAT_RATIO),
        ):
            met = results["target"][key]
            verdict = "not measured" if met is None else ("MET" if met else "NOT MET")
            print(f"  target ({label} >= {ratio:.0%} of the baseline on PostgreSQL): {verdict}")
    path = write_results("checkin_path.profile" if args.profile else "checkin_path", results)
    print(f"\n  figures: {path.relative_to(ROOT)} ({results['wall_seconds']:.0f} s)")
    checks.exit_if_failed(
        "checkin_path",
        {
            f"check-ins, {kind}": [checks.Check(**c) for c in r["checks"]]
            for kind, r in results["runs"].items()
            if "checks" in r
        },
    )


if __name__ == "__main__":
    main()
