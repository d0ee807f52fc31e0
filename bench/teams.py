"""Teams: contributions per second on the event path, and `team.goal_progress` to 5,000 sockets.

Two measurements, each against a baseline measured in the same run on the same machine:

a. Contributions (`--part contributions`). The real server (`python -m server.cli serve`, one
   process) on a database and a Redis of the run's own, with `--teams` (1,000) assigned teams of
   `--team-size` (30) members, written in SQL before the server starts as the brand's API writes
   them (`PUT /v1/teams/{id}`, `PUT /v1/members/{id}` with `team_id`: a request each would take
   minutes for 30,000 members, and is not what is measured). The load is batches of
   `--batch-size` (100) purchases of random members, sent over `--concurrency` keep-alive loopback
   connections (closed loop) for `--seconds` after a `--warmup`: every purchase is a contribution
   to its member's team. Measured three times on the same database and members, the server
   restarted between them with another content directory (a copy of content/ whose teams.yaml
   declares the bench's kind):
   1. baseline: no team goals (teams.yaml `goals: []`): the same event path without teams;
   2. counting: one weekly team goal on the bench's kind counting purchases, with a target no run
      reaches: what counting a contribution costs;
   3. teams: one weekly team goal counting purchases, three a member (milestones at 5%, 50% and
      100%: most teams reach the first during a run, and its contributors are paid: about 0.6
      payouts a contribution, near what a whole week of such a goal pays).
   Target: the teams' accepted events/s (3.) at least 80% of the baseline's.
   Checks: the outbox drained; the teams' totals (`team_goal_totals`) of each goal add up to the
   purchases stored in its phase; `engage ledger verify`; `engage leaderboards check`.

b. Live progress (`--part live`). The same server, content whose community kind (`everyone`: one
   team of every member) has a goal counting purchases with a target no run reaches, and
   `--sockets` (5,000) members each with a websocket open (bench client processes, CLOCK_MONOTONIC
   receive times). Every `--interval` seconds (longer than the goal's coalescing window, so that
   each progress is sent at once) one purchase goes to `POST /v1/events`; latency is from just
   before that request is written to the moment each socket reads the `team.goal_progress` it
   caused (matched by its `progress`), after two unmeasured warm-up messages. The baseline:
   bench/broadcast_app.py, a bare Litestar app under uvicorn with the same websocket settings,
   whose `POST /broadcast` does one Redis PUBLISH that its one subscriber writes to each of its
   5,000 sockets; measured the same way, one broadcast per `--baseline-interval`. Target: the
   p99 of the progress at most 1.5 times the bare broadcast's p99. Check: every socket read every
   message (nothing lost, nothing doubled).

`--profile` samples the server with py-spy over each measured window (collapsed stacks in
bench/results/teams.contributions.<phase>.pyspy.txt and teams.live.pyspy.txt) and prints where
its CPU went.

    python -m bench.teams [--part both|contributions|live] [--database auto|postgres|sqlite]
                          [--teams 1000] [--team-size 30] [--sockets 5000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench import checks
from bench.infra import (
    LOOPBACK,
    RESULTS_DIR,
    ROOT,
    Profile,
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
    print_profile,
    print_table,
    run_id,
    services_for_run,
    sql_rows,
    write_results,
)
from bench.live_messages import ClientProcess, ws_gauge
from bench.loadgen import BatchLoad, HttpConnection, check_clock, drive_batches, run_async

NOW = time.monotonic
TARGET_CONTRIBUTION_RATIO = 0.80  # teams' events/s of the same path without team goals
TARGET_P99_RATIO = 1.5  # team.goal_progress p99 over a bare broadcast's, 5,000 sockets
KIND = "bench"
GOAL = "bench-orders"
COUNTING_GOAL = "bench-counting"  # a target out of reach: counting, no milestone, no payout
COMMUNITY_GOAL = "bench-everyone"
SOCKETS_PER_CLIENT = 2_500
WARMUP_MESSAGES = 2  # sent before the measured ones, on both paths

# ---------------------------------------------------------------- content


def write_content(dest: Path, goals: list[dict[str, Any]]) -> Path:
    """A copy of content/ whose teams.yaml adds the bench's assigned kind (the brand's kind) and
    declares exactly `goals`."""
    shutil.copytree(ROOT / "content", dest)
    path = dest / "teams.yaml"
    teams = yaml.safe_load(path.read_text()) or {}
    teams["kinds"] = [k for k in teams.get("kinds", []) if k["id"] != KIND] + [
        {"id": KIND, "name": "Bench teams", "policy": "assigned", "max_members": 30}
    ]
    teams["brand_kind"] = KIND
    teams["goals"] = goals
    # Friend help may name team goals; the bench's content keeps only what needs none.
    assist = teams.get("assist")
    if isinstance(assist, dict):
        assist.pop("goals", None)
    path.write_text(yaml.safe_dump(teams, sort_keys=False))
    return dest


def team_goal(count: int, goal_id: str = GOAL) -> dict[str, Any]:
    """A weekly goal of `count` orders (by default three a member), whose first milestone the
    busiest teams reach during a run (its contributors are paid then)."""
    return {
        "id": goal_id,
        "kind": KIND,
        "name": "Bench orders",
        "goal": {"event": "purchase", "count": count},
        "period": "weekly",
        "zone": "UTC",
        "milestones": [
            {"at": 5, "reward": {"points": 5}},
            {"at": 50, "reward": {"points": 10}},
            {"at": 100, "reward": {"points": 20}},
        ],
    }


COMMUNITY = {
    "id": COMMUNITY_GOAL,
    "kind": "everyone",
    "name": "Bench: every order of everyone",
    "goal": {"event": "purchase", "count": 1_000_000},
    "period": "weekly",
    "zone": "UTC",
    "milestones": [{"at": 100, "reward": {"points": 1}}],
}


# ---------------------------------------------------------------- requests


def json_request(method: str, port: int, api_key: str, path: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    return (
        b"%s %s HTTP/1.1\r\nHost: %s:%d\r\nX-Api-Key: %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    ) % (method.encode(), path.encode(), LOOPBACK.encode(), port, api_key.encode(), len(data), data)


async def send_all(port: int, requests: list[tuple[str, str, dict[str, Any]]], connections: int = 32) -> None:
    """Send requests (method, path, body) over keep-alive connections; raise if one is refused."""
    pending = list(reversed(requests))
    api_key = _API_KEY[0]

    async def worker() -> None:
        conn = await HttpConnection(LOOPBACK, port).open()
        try:
            while pending:
                method, path, body = pending.pop()
                status, answer = await conn.request(json_request(method, port, api_key, path, body))
                if status not in (200, 201):
                    raise RuntimeError(f"{method} {path}: {status} {answer[:300]!r}")
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(min(connections, len(requests)))))


_API_KEY = [""]


def purchases_body(rng: random.Random, size: int, members: list[str], id_prefix: str) -> bytes:
    occurred_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    events = [
        {
            "event_id": f"{id_prefix}-{k}",
            "member_id": members[rng.randrange(len(members))],
            "type": "purchase",
            "occurred_at": occurred_at,
            "properties": {"amount": round(rng.uniform(5, 120), 2), "channel": "store"},
        }
        for k in range(size)
    ]
    return json.dumps({"events": events}, separators=(",", ":")).encode()


# ---------------------------------------------------------------- a. contributions


def measure_events(
    port: int, api_key: str, members: list[str], args: argparse.Namespace, tag: str, pid: int
) -> dict[str, Any]:
    def make(rng: random.Random, batch_tag: str) -> tuple[bytes, None]:
        return purchases_body(rng, args.batch_size, members, batch_tag), None

    tally = run_async(
        drive_batches(
            BatchLoad(
                port=port,
                api_key=api_key,
                connections=args.concurrency,
                seconds=args.seconds,
                warmup=args.warmup,
                max_batches=10**9,
                tag=tag,
                watch_pids=[pid],
                make=make,
                settle=lambda what, out: None,
            )
        )
    )
    ok = tally.statuses.get(200, 0)
    cpu = tally.cpu.get("watched_pct_of_one_core", {}).get(str(pid))
    per_s = tally.accepted / args.seconds
    return {
        "events_per_s": round(per_s, 1),
        "batches_ok": ok,
        "latency": latency_summary(tally.latencies),
        "errors": dict(tally.errors),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "accepted_total": tally.accepted_total,
        "server_cpu_pct_of_one_core": cpu,
        "server_cpu_ms_per_event": round(cpu * 10 / per_s, 3) if cpu and per_s else None,
        "cpu": tally.cpu,
    }


def contributions(args: argparse.Namespace) -> dict[str, Any]:
    rid = run_id()
    prefix = f"engage-bench-{rid}:"
    n_members = args.teams * args.team_size
    out: dict[str, Any] = {"teams": args.teams, "team_size": args.team_size, "members": n_members}
    with contextlib.ExitStack() as stack:
        data_dir, db, redis_url = services_for_run(stack, args, args.database, rid, prefix)
        out["database"] = db.kind
        secret = f"bench-{rid}-{os.urandom(8).hex()}"
        dirs = {
            "baseline": write_content(data_dir / "plain", []),
            "counting": write_content(data_dir / "counting", [team_goal(1_000_000, COUNTING_GOAL)]),
            "teams": write_content(data_dir / "teams", [team_goal(args.goal_count or 3 * args.team_size)]),
        }
        envs = {
            phase: engage_env(db, redis_url, prefix, data_dir, jwt_secret=secret, ENGAGE_CONTENT_DIR=str(d))
            for phase, d in dirs.items()
        }
        for phase, d in dirs.items():
            said = engage_cli(envs[phase], "content", "validate", str(d)).strip().splitlines()
            print(f"  content ({phase}): {said[-1] if said else 'valid'}", flush=True)
        engage_cli(envs["baseline"], "migrate")
        api_key = _API_KEY[0] = create_api_key(envs["baseline"])

        def serve(phase: str) -> ServerProcess:
            server = engage_server("engage", envs[phase], free_port())
            stack.callback(server.stop)
            return server.start()

        t0 = NOW()
        team_ids = [f"bt-{rid}-{t}" for t in range(args.teams)]
        members = [f"tm-{rid}-{i}" for i in range(n_members)]
        place_by_sql(db, team_ids, members)
        out["setup_s"] = round(NOW() - t0, 1)
        print(
            f"  {args.teams:,} teams of {args.team_size} ({n_members:,} members) written "
            f"in {out['setup_s']} s",
            flush=True,
        )

        phases: dict[str, Any] = {}
        for phase in PHASES:
            server = serve(phase)
            print(f"  {phase}: load running ({args.warmup:g} s warm-up + {args.seconds:g} s) ...", flush=True)
            stacks = RESULTS_DIR / f"teams.contributions.{phase}.pyspy.txt"
            profile = Profile(server.pid, stacks, args.warmup, args.seconds)
            tag = f"c{rid}{phase[0]}"
            with profile if args.profile else contextlib.nullcontext():
                figures = measure_events(server.port, api_key, members, args, tag, server.pid)
            if args.profile:
                figures["profile"] = profile.summary()
            figures["tag"] = tag
            phases[phase] = figures
            if phase == "counting":
                counted = totals_add_up(db, tag, COUNTING_GOAL)
            if phase == "teams":
                done = [checks.outbox_drained(db), counted, totals_add_up(db, tag, GOAL)]
                server.stop()
                done += checks.cli_checks(envs[phase])
                out["checks"] = checks.as_json(done)
                out["checks_ok"] = checks.all_ok(done)
                out["_checks"] = done
            else:
                server.stop()
        out["phases"] = phases
        base, teams = phases["baseline"]["events_per_s"], phases["teams"]["events_per_s"]
        counting = phases["counting"]["events_per_s"]
        out["counting_ratio"] = round(counting / base, 4) if base else None
        out["ratio"] = round(teams / base, 4) if base else None
        out["target"] = {
            "ratio": TARGET_CONTRIBUTION_RATIO,
            "met": bool(base) and teams / base >= TARGET_CONTRIBUTION_RATIO,
        }
    return out


# The measurements, in order: the same path without team goals, with a goal whose target no run
# reaches (counting only), and with the goal whose first milestone teams reach (counting and paying).
PHASES = ("baseline", "counting", "teams")


def place_by_sql(db: Any, team_ids: list[str], members: list[str]) -> None:
    """Members, teams and placements as the brand's API writes them (`PUT /v1/teams/{id}`, then
    `PUT /v1/members/{id}` with `team_id`), in a few statements: placing 30,000 members one
    request at a time takes minutes and is not what is measured. Member i is in team i mod teams."""
    now = datetime.now(UTC)
    teams = len(team_ids)
    sizes = Counter(i % teams for i in range(len(members)))
    rows = {
        "members": [(m, f"b{i:011d}"[-12:], f"Bench {i}", "UTC", now, now) for i, m in enumerate(members)],
        "teams": [
            (t, KIND, f"Bench team {k}", f"bench team {k}", "", "brand", sizes[k], now, now)
            for k, t in enumerate(team_ids)
        ],
        "member_teams": [(m, team_ids[i % teams], KIND, "member", now) for i, m in enumerate(members)],
    }
    columns = {
        "members": "id, handle, display_name, timezone, created_at, updated_at",
        "teams": "id, kind, name, name_key, description, created_by, size, created_at, updated_at",
        "member_teams": "member_id, team_id, kind, role, joined_at",
    }
    if db.kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(db.url.split(":///", 1)[1], timeout=30)
        try:
            with conn:
                for table, values in rows.items():
                    marks = ", ".join("?" * len(values[0]))
                    # As SQLAlchemy stores a UTC time on SQLite: naive, with microseconds.
                    naive = [tuple(_sqlite_time(v) for v in r) for r in values]
                    conn.executemany(f"INSERT INTO {table} ({columns[table]}) VALUES ({marks})", naive)
        finally:
            conn.close()
        return

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(db.url.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)
        try:
            for table, values in rows.items():
                await conn.copy_records_to_table(table, records=values, columns=columns[table].split(", "))
        finally:
            await conn.close()

    asyncio.run(run())


def _sqlite_time(value: Any) -> Any:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value


def totals_add_up(db: Any, tag: str, goal_id: str) -> checks.Check:
    """Every purchase a phase stored counted once in its team's total of the phase's goal."""
    of_goal = f"goal_id = '{goal_id}'"
    rows = sql_rows(
        db,
        {
            "stored": "SELECT count(*) FROM member_events WHERE event_id LIKE {p} AND type = 'purchase'",
            "totals": f"SELECT coalesce(sum(total), 0), count(*) FROM team_goal_totals WHERE {of_goal}",
            "paid": f"SELECT count(*), coalesce(sum(paid), 0) FROM team_goal_milestones WHERE {of_goal}",
        },
        tag + "-%",
    )
    stored = int(rows["stored"][0][0])
    total, teams = float(rows["totals"][0][0]), int(rows["totals"][0][1])
    milestones, paid = (int(x) for x in rows["paid"][0])
    return checks.Check(
        f"team totals = purchases ({goal_id})",
        stored == int(total),
        f"{stored:,} purchases stored, {total:,.0f} counted in {teams:,} teams' totals; "
        f"{milestones:,} milestones reached, {paid:,} members paid",
        data={"stored": stored, "counted": total, "teams": teams, "milestones": milestones, "paid": paid},
    )


# ---------------------------------------------------------------- b. live progress


class Clients:
    """Client processes holding `count` sockets to `url_of(i)`, recording what they read."""

    def __init__(
        self, mode: str, port: int, count: int, secret: str, member_prefix: str, workdir: Path
    ) -> None:
        self.procs: list[ClientProcess] = []
        self.outs: list[Path] = []
        for start in range(0, count, SOCKETS_PER_CLIENT):
            out = workdir / f"clients-{mode}-{start}.json"
            argv = [
                *[sys.executable, "-m", "bench.teams", "clients", "--mode", mode, "--port", str(port)],
                *["--member-prefix", member_prefix, "--start", str(start)],
                *["--count", str(min(SOCKETS_PER_CLIENT, count - start)), "--out", str(out)],
            ]
            self.procs.append(ClientProcess(argv, {**os.environ, "ENGAGE_JWT_SECRET": secret}))
            self.outs.append(out)

    def connected(self) -> int:
        got = [p.expect("connected", timeout=300) for p in self.procs]
        return sum(int(g["connected"]) for g in got)

    def collect(self) -> list[tuple[int, float]]:
        for p in self.procs:
            p.send("stop")
        for p in self.procs:
            p.expect("done", timeout=120)
        received: list[tuple[int, float]] = []
        for out in self.outs:
            received += [(int(s), float(t)) for s, t in json.loads(out.read_text())["received"]]
        return received

    def stop(self) -> None:
        for p in self.procs:
            p.stop()

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def latencies(sent: dict[int, float], received: list[tuple[int, float]], sockets: int) -> dict[str, Any]:
    values = [at - sent[seq] for seq, at in received if seq in sent]
    per_seq = Counter(seq for seq, _ in received if seq in sent)
    return {
        "messages": len(sent),
        "sockets": sockets,
        "expected": len(sent) * sockets,
        "received": len(values),
        "incomplete": {str(s): sockets - per_seq.get(s, 0) for s in sent if per_seq.get(s, 0) != sockets},
        "latency": latency_summary(values),
    }


def live(args: argparse.Namespace) -> dict[str, Any]:
    rid = run_id()
    prefix = f"engage-bench-{rid}:"
    out: dict[str, Any] = {"sockets": args.sockets}
    with contextlib.ExitStack() as stack:
        data_dir, db, redis_url = services_for_run(stack, args, args.database, rid, prefix)
        out["database"] = db.kind
        secret = f"bench-{rid}-{os.urandom(8).hex()}"
        content = write_content(data_dir / "community", [COMMUNITY])
        env = engage_env(db, redis_url, prefix, data_dir, jwt_secret=secret, ENGAGE_CONTENT_DIR=str(content))
        engage_cli(env, "migrate")
        api_key = _API_KEY[0] = create_api_key(env)

        # The baseline first: a bare broadcast to as many sockets.
        port = free_port()
        base = ServerProcess(
            "broadcast",
            [
                *[sys.executable, "-m", "uvicorn", "bench.broadcast_app:app", "--host", LOOPBACK],
                *["--port", str(port), "--workers", "1", "--loop", "uvloop", "--http", "httptools"],
                *["--no-access-log", "--log-level", "warning", "--ws-per-message-deflate", "false"],
                *["--ws-max-size", str(64 * 1024)],
            ],
            {**os.environ, "BENCH_REDIS_URL": redis_url, "BENCH_REDIS_PREFIX": prefix + "broadcast:"},
            port,
            "/health",
        )
        stack.callback(base.stop)
        base.start()
        print(f"  baseline: {args.sockets:,} sockets to the bare broadcast app ...", flush=True)
        clients = Clients("broadcast", base.port, args.sockets, secret, "", data_dir)
        with clients:
            connected = clients.connected()
            sent: dict[int, float] = {}
            run_async(broadcasts(base.port, args.messages, args.baseline_interval, sent))
            time.sleep(2)
            out["baseline"] = {"connected": connected, **latencies(sent, clients.collect(), connected)}
        base.stop()

        server = engage_server("engage", env, free_port())
        stack.callback(server.stop)
        server.start()
        members = [f"lv-{rid}-{i}" for i in range(args.sockets)]
        run_async(
            send_all(server.port, [("PUT", f"/v1/members/{m}", {"display_name": "Bench"}) for m in members])
        )
        print(f"  team.goal_progress: {args.sockets:,} member sockets to the server ...", flush=True)
        clients = Clients("engage", server.port, args.sockets, secret, f"lv-{rid}-", data_dir)
        with clients:
            connected = clients.connected()
            deadline = NOW() + 60
            while ws_gauge(server.port) < connected and NOW() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)  # every socket's teams read (one batched read for many)
            sent = {}
            answered: list[float] = []
            rng = random.Random(5)
            window = (args.messages + WARMUP_MESSAGES) * args.interval + 2
            profile = Profile(server.pid, RESULTS_DIR / "teams.live.pyspy.txt", 0.0, window)
            with profile if args.profile else contextlib.nullcontext():
                events = progress_events(server.port, api_key, members, args, sent, rng, f"lp{rid}", answered)
                run_async(events)
                time.sleep(2)
            clients_received = clients.collect()
            out["teams"] = {"connected": connected, **latencies(sent, clients_received, connected)}
            out["teams"]["events_request"] = latency_summary(answered)
            out["teams"]["events_request_each_ms"] = [round(x * 1000, 1) for x in answered]
            per_message: dict[int, list[float]] = {}
            for seq, at in clients_received:
                if seq in sent:
                    per_message.setdefault(seq, []).append(at - sent[seq])
            out["teams"]["last_socket_each_ms"] = [
                round(max(v) * 1000, 1) for _, v in sorted(per_message.items())
            ]
            if args.profile:
                out["teams"]["profile"] = profile.summary()
        done = [checks.outbox_drained(db)]
        server.stop()
        lost = [
            checks.Check(
                f"every socket read every message ({name})",
                not r["incomplete"] and r["received"] == r["expected"],
                f"{r['received']:,} of {r['expected']:,} "
                f"({r['messages']} messages x {r['sockets']:,} sockets)",
                [f"message {s}: {n} sockets without it" for s, n in list(r["incomplete"].items())[:5]],
            )
            for name, r in (("baseline", out["baseline"]), ("team.goal_progress", out["teams"]))
        ]
        done = lost + done
        out["checks"] = checks.as_json(done)
        out["checks_ok"] = checks.all_ok(done)
        out["_checks"] = done
        b99, t99 = out["baseline"]["latency"]["p99_ms"], out["teams"]["latency"]["p99_ms"]
        out["ratio"] = round(t99 / b99, 3) if b99 else None
        out["target"] = {"p99_ratio": TARGET_P99_RATIO, "met": bool(b99) and t99 / b99 <= TARGET_P99_RATIO}
    return out


async def broadcasts(port: int, n: int, interval: float, sent: dict[int, float]) -> None:
    conn = await HttpConnection(LOOPBACK, port).open()
    try:
        start = NOW() + 0.5
        for seq in range(n + WARMUP_MESSAGES + 1):  # the first ones warm up, unmeasured
            await asyncio.sleep(max(0.0, start + seq * interval - NOW()))
            raw = json_request("POST", port, "", "/broadcast", {"seq": seq})
            at = NOW()
            status, body = await conn.request(raw)
            if seq > WARMUP_MESSAGES:
                sent[seq] = at
            if status != 200:
                raise RuntimeError(f"broadcast: {status} {body[:200]!r}")
    finally:
        conn.close()


async def progress_events(
    port: int,
    api_key: str,
    members: list[str],
    args: argparse.Namespace,
    sent: dict[int, float],
    rng: random.Random,
    tag: str,
    answered: list[float],
) -> None:
    """One purchase every `interval` s: the k-th moves the community goal's progress to k (the
    first ones warm up, unmeasured)."""
    conn = await HttpConnection(LOOPBACK, port).open()
    try:
        start = NOW() + 0.5
        for seq in range(1, args.messages + WARMUP_MESSAGES + 1):
            await asyncio.sleep(max(0.0, start + (seq - 1) * args.interval - NOW()))
            body = purchases_body(rng, 1, members, f"{tag}-{seq}")
            raw = b"POST /v1/events HTTP/1.1\r\nHost: %s:%d\r\nX-Api-Key: %s\r\n" % (
                LOOPBACK.encode(),
                port,
                api_key.encode(),
            ) + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            at = NOW()
            status, answer = await conn.request(raw)
            if seq > WARMUP_MESSAGES:
                sent[seq] = at
                answered.append(NOW() - at)
            if status != 200 or json.loads(answer).get("accepted") != 1:
                raise RuntimeError(f"events: {status} {answer[:300]!r}")
    finally:
        conn.close()


# ---------------------------------------------------------------- the client processes


def clients_main(argv: list[str]) -> None:
    """`python -m bench.teams clients`: hold sockets, record (seq, receive time) of each message."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, WebSocketException

    from bench.ws_clients import emit, raise_open_file_limit
    from server.auth import issue_member_token
    from server.config import Settings

    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["engage", "broadcast"], required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--member-prefix", default="")
    p.add_argument("--start", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    check_clock()
    raise_open_file_limit()
    settings = Settings(jwt_secret=os.environ["ENGAGE_JWT_SECRET"])
    received: list[tuple[int, float]] = []
    other: Counter[str] = Counter()

    async def listen(ws: Any) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                at = NOW()
                msg = json.loads(raw)
                if msg["type"] == "bench.broadcast":
                    received.append((msg["data"]["seq"], at))
                elif msg["type"] == "team.goal_progress" and msg["data"].get("goal_id") == COMMUNITY_GOAL:
                    received.append((int(msg["data"]["progress"]), at))
                else:
                    other[msg["type"]] += 1

    async def run() -> None:
        gate = asyncio.Semaphore(100)
        sockets: list[Any] = []
        tasks: list[asyncio.Task[None]] = []
        failed: Counter[str] = Counter()

        async def open_one(i: int) -> None:
            if args.mode == "engage":
                token = issue_member_token(settings, f"{args.member_prefix}{i}")
                url = f"ws://{LOOPBACK}:{args.port}/v1/ws?token={token}"
            else:
                url = f"ws://{LOOPBACK}:{args.port}/ws"
            async with gate:
                try:
                    ws = await connect(
                        url, compression=None, ping_interval=None, open_timeout=60, max_queue=64
                    )
                except (OSError, TimeoutError, WebSocketException) as exc:
                    failed[type(exc).__name__] += 1
                    return
            sockets.append(ws)
            tasks.append(asyncio.get_running_loop().create_task(listen(ws)))

        await asyncio.gather(*(open_one(i) for i in range(args.start, args.start + args.count)))
        emit({"event": "connected", "connected": len(sockets), "failed": dict(failed)})
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if line.strip() != "stop":
            emit({"event": "error", "error": f"expected 'stop', got {line!r}"})
        text = json.dumps({"received": received, "other": dict(other)})
        await asyncio.get_running_loop().run_in_executor(None, Path(args.out).write_text, text)
        emit({"event": "done", "received": len(received)})
        for t in tasks:
            t.cancel()
        await asyncio.wait(
            [asyncio.ensure_future(ws.close()) for ws in sockets] or [asyncio.sleep(0)], timeout=5
        )

    run_async(run())


# ---------------------------------------------------------------- report


def report(results: dict[str, Any]) -> None:
    c = results.get("contributions")
    if c:
        base, counting, teams = (c["phases"][p] for p in PHASES)
        shape = results["args"]
        print_table(
            f"\nContributions on the event path ({c['database']}, {c['teams']:,} teams of {c['team_size']}, "
            f"batches of {shape['batch_size']} purchases, {shape['concurrency']} connections)",
            ["phase", "events/s", "of baseline", "p50 ms", "p99 ms", "server CPU ms/event", "errors"],
            [
                [
                    "baseline: no team goals",
                    base["events_per_s"],
                    "100%",
                    base["latency"]["p50_ms"],
                    base["latency"]["p99_ms"],
                    base["server_cpu_ms_per_event"],
                    sum(base["errors"].values()),
                ],
                [
                    "teams: a goal, counting only",
                    counting["events_per_s"],
                    _pct(c["counting_ratio"]),
                    counting["latency"]["p50_ms"],
                    counting["latency"]["p99_ms"],
                    counting["server_cpu_ms_per_event"],
                    sum(counting["errors"].values()),
                ],
                [
                    "teams: a goal, paying milestones",
                    teams["events_per_s"],
                    _pct(c["ratio"]),
                    teams["latency"]["p50_ms"],
                    teams["latency"]["p99_ms"],
                    teams["server_cpu_ms_per_event"],
                    sum(teams["errors"].values()),
                ],
            ],
        )
        for name, phase in zip(PHASES, (base, counting, teams), strict=True):
            print(f"  CPU ({name}): {describe_cpu(phase['cpu'], {})}")
            warning = foreign_load_warning(phase["cpu"])
            if warning:
                print(f"  {warning}")
        print(
            f"  target: teams >= {TARGET_CONTRIBUTION_RATIO:.0%} of the baseline's events/s: "
            f"{'MET' if c['target']['met'] else 'NOT MET'} ({_pct(c['ratio'])})"
        )
        for name, phase in zip(PHASES, (base, counting, teams), strict=True):
            if phase.get("profile"):
                print_profile(phase["profile"], f"{name} phase")
        checks.print_checks(c["_checks"], "Checks (contributions)")
    lv = results.get("live")
    if lv:
        b, t = lv["baseline"], lv["teams"]
        print_table(
            f"\nteam.goal_progress to {lv['sockets']:,} sockets of one community goal ({lv['database']})",
            ["path", "messages", "sockets", "read", "p50 ms", "p90 ms", "p99 ms", "max ms"],
            [
                [
                    "baseline: bare broadcast",
                    b["messages"],
                    b["connected"],
                    b["received"],
                    b["latency"]["p50_ms"],
                    b["latency"]["p90_ms"],
                    b["latency"]["p99_ms"],
                    b["latency"]["max_ms"],
                ],
                [
                    "event -> team.goal_progress",
                    t["messages"],
                    t["connected"],
                    t["received"],
                    t["latency"]["p50_ms"],
                    t["latency"]["p90_ms"],
                    t["latency"]["p99_ms"],
                    t["latency"]["max_ms"],
                ],
            ],
        )
        print(
            f"  the events request alone (answered): p50 {t['events_request']['p50_ms']} ms, "
            f"max {t['events_request']['max_ms']} ms"
        )
        print(
            f"  target: p99 <= {TARGET_P99_RATIO}x the bare broadcast's: "
            f"{'MET' if lv['target']['met'] else 'NOT MET'} ({lv['ratio']}x)"
        )
        if t.get("profile"):
            print_profile(t["profile"], "progress phase")
        checks.print_checks(lv["_checks"], "Checks (live progress)")


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1%}"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["clients"]:
        clients_main(argv[1:])
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["both", "contributions", "live"], default="both")
    p.add_argument("--database", choices=["auto", "postgres", "sqlite"], default="auto")
    p.add_argument("--teams", type=int, default=1_000)
    p.add_argument("--team-size", type=int, default=30)
    p.add_argument(
        "--goal-count",
        type=int,
        default=0,
        help="the team goal's target (default: 3 orders a member; 1000000: no milestone reached)",
    )
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--sockets", type=int, default=5_000)
    p.add_argument("--messages", type=int, default=10, help="progress messages (and broadcasts) measured")
    p.add_argument("--interval", type=float, default=3.6, help="s between progress events (> coalescing)")
    p.add_argument("--baseline-interval", type=float, default=1.0)
    p.add_argument("--profile", action="store_true", help="py-spy on the server over the measured windows")
    add_service_args(p)
    args = p.parse_args(argv)
    check_clock()
    exit_on_sigterm()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine(),
        "args": vars(args),
        "started": datetime.now(UTC).isoformat(),
    }
    if args.part in ("both", "contributions"):
        print(f"\nteams: contributions, {args.teams:,} teams of {args.team_size}", flush=True)
        results["contributions"] = contributions(args)
    if args.part in ("both", "live"):
        print(f"\nteams: team.goal_progress to {args.sockets:,} sockets", flush=True)
        results["live"] = live(args)
    report(results)
    groups: dict[str, list[checks.Check]] = {
        name: results[name].pop("_checks") for name in ("contributions", "live") if name in results
    }
    path = write_results("teams.profile" if args.profile else "teams", results)
    print(f"\nresults: {path}")
    checks.exit_if_failed("teams", groups)


if __name__ == "__main__":
    main()
