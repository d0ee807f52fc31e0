"""Leaderboards at a million members: index rebuild, reads against a baseline, score writes.

On PostgreSQL only (skipped, with a message, when it is not reachable), with a database, a Redis
(an own redis-server on a free port by default) and a content directory of the run's own:

1. setup: the repository's content plus a board `bench-board` (weekly in Europe/Paris, metric
   `{event: bench_score, value: amount}`, descending, global scope) and the event type
   `bench_score` (a number `amount`), validated by `engage content validate` and served from the
   files (ENGAGE_CONTENT_DIR; nothing is published). `--members` (1,000,000) members, each with a
   display name, a tier and a time zone, and each with a score row in the current week of
   `bench-board`, go straight into SQL with COPY, in chunks (asyncpg `copy_records_to_table`, the
   two tables side by side; their secondary indexes are dropped first and built again after from
   their definitions in the catalogue, as a bulk load does), plus the period's row in
   `leaderboard_periods`. Scores are drawn from a seeded lognormal (median 20, a long tail: many
   ties among low scores); `reached_at` is a random instant of the week so far, and `period`,
   `tiebreak` and `version` = 1 come from the server's own functions (periods.span_at,
   keys.slot_of), as a score write would store them. Redis holds nothing of the board yet;
2. rebuild: `engage leaderboards rebuild bench-board` (a subprocess with the run's environment,
   timed from start to exit, Python start-up included), then `engage leaderboards check
   bench-board`, which must exit 0 (timed too). Target: 1,000,000 scores rebuilt in under 30 s;
3. reads over HTTP, with bench/loadgen.py in a process of its own (closed loop, the same
   `--connections` keep-alive connections, warm-up and measured seconds for every phase), one
   phase at a time:
     a. the baselines, bench/baseline_app.py under uvicorn as the other benchmarks run it: the
        request of the award and check-in benchmarks (`POST /v1/members/{id}/points`, one Redis
        INCRBY), the REFERENCE of the targets, and `GET /health` (its simplest GET, no I/O);
     b. the real server's `GET /health` (no authentication, no I/O: the floor of its stack);
     c. `GET /v1/leaderboards/bench-board?limit=10` (the top 10), as the server runs by default:
        the page is alike for every member, and an instance reads it from Redis at most once a
        second (ENGAGE_LEADERBOARD_PAGE_CACHE_SECONDS);
     c'. the same with that page cache off (a server started with the setting at 0): every read
        goes to Redis;
     d. `GET /v1/leaderboards/bench-board/me?around=5` (the member's rank and 5 either side).
   The leaderboard phases send the bearer tokens of `--tokens` (20,000) members drawn at random
   among all of them (issued up front with the server's `issue_member_token`), a random one per
   request. The member rate limit is still counted (a Redis hit per request) but set out of reach.
   A process looks a member up in SQL the first time it sees them (then remembers them): before
   c and d, each of the members reads once (around-me), timed on its own as "first sight".
   The targets, at a moderate load (8 connections by default: one server process is saturated,
   and p99 is queueing behind 7 other requests rather than a backlog): reads at least 60% of the
   reference's requests/s, p99 under 10 ms;
4. score writes: `POST /v1/events` batches (`--batch-size` 100 events, API key, closed loop over
   `--write-connections` connections, a fresh server) of `bench_score` events with whole amounts,
   each for a random member of the million, for `--seconds`. Each accepted event is one score
   write (an upsert of the member's row and an outbox row indexed in Redis after commit). Then,
   once the outbox is empty, the SQL score of every member written (outside batches that failed)
   must equal its loaded score plus what was sent for it, and `engage leaderboards check
   bench-board` must exit 0 again (every Redis entry equal to its SQL row).

`--profile` runs the rebuild and the servers (reads, writes) under cProfile and prints their top
functions (the figures of a profiled run are not the ones to judge).

    python -m bench.leaderboards [--members 1000000] [--seconds 10] [--connections 8] [--profile]
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
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from bench.checkin_path import issue_tokens, run_loadgen
from bench.event_ingest import (
    TIERS,
    ZONES,
    Weighted,
    print_profile,
    profile_top,
    profiled_server,
    stop_profiled,
)
from bench.infra import (
    LOOPBACK,
    RESULTS_DIR,
    ROOT,
    ServerProcess,
    SqlDatabase,
    add_service_args,
    baseline_server,
    create_api_key,
    describe_cpu,
    engage_cli,
    engage_cli_run,
    engage_env,
    engage_server,
    exit_on_sigterm,
    foreign_load_warning,
    free_port,
    latency_summary,
    machine,
    postgres_reachable,
    print_table,
    run_id,
    services_for_run,
    write_results,
)
from bench.loadgen import (
    NOW,
    BatchLoad,
    HttpConnection,
    HttpError,
    drive_batches,
    get_request,
    run_async,
)

BOARD_ID = "bench-board"
EVENT_TYPE = "bench_score"
BOARD = {
    "id": BOARD_ID,
    "name": "Bench board",
    "description": "Written by bench/leaderboards.py.",
    "metric": {"event": EVENT_TYPE, "value": "amount"},
    "period": "weekly",
    "zone": "Europe/Paris",
    "order": "desc",
    "scopes": ["global"],
}
EVENT = {
    "description": "A score from bench/leaderboards.py.",
    "noun": "bench score",
    "nouns": "bench scores",
    "properties": {"amount": {"type": "number", "required": True, "min": 0}},
}
TARGET_REBUILD_S = 30.0
TARGET_READ_RATIO = 0.60
TARGET_P99_MS = 10.0
TOP_PATH = f"/v1/leaderboards/{BOARD_ID}?limit=10"
AROUND_PATH = f"/v1/leaderboards/{BOARD_ID}/me?around=5"
TENTH = '"rank":10,'  # a top-10 answer holds ten entries
NO_RANK = '"rank":null'  # an around-me answer for a member the board does not hold

FIRST_NAMES = (
    "Ada Alex Ali Amara Ana Anna Ben Camille Carlos Chen Chloe Daniel David Elena Emma Eva Fatima "
    "Felix Hana Hugo Ines Isaac Jade Jan Julia Kai Karim Lea Leo Lina Lucas Luca Maria Marie Maya "
    "Mia Noah Nora Olga Omar Paul Priya Rafael Rosa Sam Sara Sofia Tom Yuki Zoe"
).split()
_ZONE, _TIER = Weighted(ZONES), Weighted(TIERS)
MEMBER_COLUMNS = (
    *("id", "handle", "display_name", "timezone", "tier", "team_id", "birthday"),
    *("signed_up_at", "created_at", "updated_at"),
)
SCORE_COLUMNS = (
    *("board_id", "period", "member_id", "score", "reached_at", "tiebreak", "version"),
    *("tier", "team", "cohort", "signed_up_at", "updated_at"),
)


def member_id(i: int) -> str:
    return f"lbm-{i}"


def pg_dsn(db: SqlDatabase) -> str:
    return db.url.replace("postgresql+asyncpg://", "postgresql://")


# ---------------------------------------------------------------- content


def write_content(dest: Path) -> Path:
    """A copy of content/ with `bench-board` in leaderboards.yaml and `bench_score` in events.yaml."""
    shutil.copytree(ROOT / "content", dest)
    boards = yaml.safe_load((dest / "leaderboards.yaml").read_text())
    boards["boards"].append(BOARD)
    (dest / "leaderboards.yaml").write_text(yaml.safe_dump(boards, sort_keys=False))
    events = yaml.safe_load((dest / "events.yaml").read_text())
    events["types"][EVENT_TYPE] = EVENT
    (dest / "events.yaml").write_text(yaml.safe_dump(events, sort_keys=False))
    return dest


def bench_board() -> Any:
    from server.leaderboards.content import Board

    return Board.model_validate(BOARD)


# ---------------------------------------------------------------- setup: members and scores in SQL


async def load_scores(
    dsn: str, span: Any, now: datetime, n: int, seed: int, chunk: int
) -> tuple[dict[str, Any], array[int]]:
    """COPY `n` members and their score rows of `span`, `chunk` at a time; (figures, scores by member)."""
    import asyncpg

    from server.leaderboards.keys import slot_of
    from server.members.models import new_handle

    rng = random.Random(seed)
    initial: array[int] = array("q")
    end = min(now, span.end)
    week_so_far = max((end - span.start).total_seconds(), 1.0)
    three_years = 3 * 365 * 86_400.0
    conn = await asyncpg.connect(dsn, timeout=10)
    other = await asyncpg.connect(dsn, timeout=10)  # the two tables are copied side by side
    copying = 0.0
    t0 = NOW()
    try:
        # A bulk load: the secondary indexes go, then come back as the migration defined them.
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('members', 'leaderboard_scores') "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        )
        for ix in indexes:
            await conn.execute(f'DROP INDEX "{ix["indexname"]}"')
        for lo in range(0, n, chunk):
            members, scores = [], []
            for i in range(lo, min(n, lo + chunk)):
                mid = member_id(i)
                name = f"{rng.choice(FIRST_NAMES)} {chr(65 + rng.randrange(26))}."
                tier = _TIER.draw(rng)
                signed_up = now - timedelta(seconds=rng.random() * three_years)
                members.append(
                    (
                        mid,
                        new_handle(),
                        name,
                        _ZONE.draw(rng),
                        tier,
                        None,
                        None,
                        signed_up,
                        signed_up,
                        signed_up,
                    )
                )
                # Median 20, one member in 13 at 1, the top in the tens of thousands: ties at low scores.
                score = max(1, int(rng.lognormvariate(3.0, 1.6)))
                reached = span.start + timedelta(seconds=rng.random() * week_so_far)
                tiebreak = slot_of(span, reached)
                scores.append(
                    (
                        BOARD_ID,
                        span.key,
                        mid,
                        score,
                        reached,
                        tiebreak,
                        1,
                        tier,
                        None,
                        None,
                        signed_up,
                        reached,
                    )
                )
                initial.append(score)
            c0 = NOW()
            await asyncio.gather(
                conn.copy_records_to_table("members", records=members, columns=MEMBER_COLUMNS),
                other.copy_records_to_table("leaderboard_scores", records=scores, columns=SCORE_COLUMNS),
            )
            copying += NOW() - c0
        i0 = NOW()

        async def build(c: Any, defs: list[str]) -> None:
            for sql in defs:
                await c.execute(sql)

        defs = [ix["indexdef"] for ix in indexes]
        await asyncio.gather(build(conn, defs[::2]), build(other, defs[1::2]))
        indexing = NOW() - i0
        await conn.execute(
            "INSERT INTO leaderboard_periods (board_id, period, starts_at, ends_at, status, entries) "
            "VALUES ($1, $2, $3, $4, 'open', 0)",
            BOARD_ID,
            span.key,
            span.start,
            span.end,
        )
        loaded = NOW() - t0
        a0 = NOW()
        await conn.execute("ANALYZE members")
        await conn.execute("ANALYZE leaderboard_scores")
        analyze = NOW() - a0
        rows = int(
            await conn.fetchval(
                "SELECT count(*) FROM leaderboard_scores WHERE board_id = $1 AND period = $2",
                BOARD_ID,
                span.key,
            )
        )
    finally:
        await conn.close()
        await other.close()
    counts = Counter(initial)
    ordered = sorted(initial)
    figures = {
        "members": n,
        "score_rows": rows,
        "period": span.key,
        "period_starts_at": span.start.isoformat(),
        "period_ends_at": span.end.isoformat(),
        "seconds": round(loaded, 1),
        "copy_seconds": round(copying, 1),
        "index_seconds": round(indexing, 1),
        "indexes_rebuilt": [ix["indexname"] for ix in indexes],
        "analyze_seconds": round(analyze, 1),
        "rows_per_s": round(2 * n / loaded) if loaded else None,
        "scores": {
            "distinct": len(counts),
            "median": ordered[len(ordered) // 2],
            "max": ordered[-1],
            "members_at_1": counts.get(1, 0),
            "members_at_or_below_10": sum(v for s, v in counts.items() if s <= 10),
            "largest_tie": counts.most_common(1)[0][1],
        },
    }
    return figures, initial


# ---------------------------------------------------------------- the CLI: rebuild and check


def timed_cli(env: dict[str, str], args: list[str], profile: Path | None = None) -> dict[str, Any]:
    """`engage ARGS` as a subprocess (under cProfile when `profile`); its exit, output and wall time."""
    t0 = time.monotonic()
    if profile is None:
        done = engage_cli_run(env, *args, timeout=900)
    else:
        import subprocess

        done = subprocess.run(
            [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "server.cli", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
    return {
        "command": "engage " + " ".join(args),
        "exit": done.returncode,
        "seconds": round(time.monotonic() - t0, 2),
        "output": [line for line in done.stdout.splitlines() if line.strip()][:20],
        "stderr": done.stderr[-2000:] if done.returncode else "",
    }


# ---------------------------------------------------------------- reads: first sight


async def first_sight(port: int, tokens: list[str], path: str, connections: int) -> dict[str, Any]:
    """GET `path` once with each token (over `connections`): each member's first request to the process."""
    pending = list(reversed(tokens))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()

    async def worker() -> None:
        conn = HttpConnection(LOOPBACK, port)
        try:
            while pending:
                raw = get_request(port, path, pending.pop())
                t = NOW()
                try:
                    status, _ = await conn.request(raw)
                except (OSError, HttpError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors[type(exc).__name__] += 1
                    conn.close()
                    continue
                latencies.append(NOW() - t)
                statuses[status] += 1
        finally:
            conn.close()

    t0 = NOW()
    await asyncio.gather(*(worker() for _ in range(connections)))
    wall = NOW() - t0
    return {
        "requests": len(latencies),
        "seconds": round(wall, 2),
        "rps": round(len(latencies) / wall, 1) if wall else None,
        "latency": latency_summary(latencies),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(errors),
    }


# ---------------------------------------------------------------- score writes


@dataclass
class Writes:
    port: int
    api_key: str
    members: int
    batch_size: int
    connections: int
    seconds: float
    warmup: float
    max_batches: int
    tag: str
    watch_pids: list[int]
    seed: int = 11


@dataclass
class _WriteTally:
    sums: Counter[int] = field(default_factory=Counter)  # member -> amount sent in fully accepted batches
    unsure: set[int] = field(default_factory=set)  # members of batches whose outcome is not known


def _score_batch(rng: random.Random, cfg: Writes, prefix: str) -> tuple[bytes, list[tuple[int, int]]]:
    occurred_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    events, sent = [], []
    for k in range(cfg.batch_size):
        m, amount = rng.randrange(cfg.members), rng.randint(1, 50)
        sent.append((m, amount))
        events.append(
            {
                "event_id": f"{prefix}-{k}",
                "member_id": member_id(m),
                "type": EVENT_TYPE,
                "occurred_at": occurred_at,
                "properties": {"amount": amount},
            }
        )
    return json.dumps({"events": events}, separators=(",", ":")).encode(), sent


async def drive_writes(cfg: Writes) -> tuple[dict[str, Any], _WriteTally]:
    """Closed loop: each connection sends a batch of score events, waits for its answer, sends the next."""
    written = _WriteTally()

    def settle(sent: list[tuple[int, int]], out: dict[str, Any] | None) -> None:
        if out is not None and int(out["accepted"]) == len(sent):
            for m, amount in sent:
                written.sums[m] += amount
        else:
            written.unsure.update(m for m, _ in sent)

    tally = await drive_batches(
        BatchLoad(
            port=cfg.port,
            api_key=cfg.api_key,
            connections=cfg.connections,
            seconds=cfg.seconds,
            warmup=cfg.warmup,
            max_batches=cfg.max_batches,
            tag=cfg.tag,
            watch_pids=cfg.watch_pids,
            make=lambda rng, tag: _score_batch(rng, cfg, tag),
            settle=settle,
            seed=cfg.seed,
        )
    )
    ok = tally.statuses.get(200, 0)
    cpu = tally.cpu
    server_pct = cpu.get("watched_pct_of_one_core", {}).get(str(cfg.watch_pids[0]))
    pg_pct = cpu.get("pct_of_one_core_by_group", {}).get("postgres")
    per_s = tally.accepted / cfg.seconds
    figures = {
        "connections": cfg.connections,
        "batch_size": cfg.batch_size,
        "warmup_s": cfg.warmup,
        "seconds": cfg.seconds,
        "batches": len(tally.latencies),
        "batches_ok": ok,
        "events_per_s": round(per_s, 1),
        "batches_per_s": round(ok / cfg.seconds, 1),
        "latency": latency_summary(tally.latencies),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "errors": dict(tally.errors),
        "accepted_events_total": tally.accepted_total,
        "members_written": len(written.sums),
        "cpu": cpu,
        "server_cpu_pct_of_one_core": server_pct,
        "server_cpu_ms_per_event": round(server_pct * 10 / per_s, 3) if server_pct and per_s else None,
        "postgres_cpu_ms_per_event": round(pg_pct * 10 / per_s, 3) if pg_pct and per_s else None,
    }
    return figures, written


async def wait_outbox_empty(dsn: str, patience: float) -> tuple[int, float]:
    """Poll the outbox until it holds no row (applied rows are deleted a moment after); (left, seconds)."""
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    t0 = NOW()
    try:
        while True:
            left = int(await conn.fetchval("SELECT count(*) FROM outbox"))
            if left == 0 or NOW() - t0 > patience:
                return left, NOW() - t0
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def verify_writes(dsn: str, period: str, initial: array[int], tally: _WriteTally) -> dict[str, Any]:
    """The SQL score of every member written (outside unsure batches) against loaded + sent."""
    import asyncpg

    checked = [m for m in tally.sums if m not in tally.unsure]
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT member_id, score, version FROM leaderboard_scores "
            "WHERE board_id = $1 AND period = $2 AND member_id = ANY($3::text[])",
            BOARD_ID,
            period,
            [member_id(m) for m in checked],
        )
    finally:
        await conn.close()
    stored = {r["member_id"]: (int(r["score"]), int(r["version"])) for r in rows}
    wrong, examples = 0, []
    for m in checked:
        expected = initial[m] + tally.sums[m]
        got = stored.get(member_id(m), (None, None))[0]
        if got != expected:
            wrong += 1
            if len(examples) < 5:
                examples.append(f"{member_id(m)}: SQL {got}, expected {initial[m]} + {tally.sums[m]}")
    return {
        "ok": wrong == 0 and len(checked) > 0,
        "members_checked": len(checked),
        "members_unsure": len(tally.unsure),
        "wrong": wrong,
        "examples": examples,
        "versions_above_1": sum(1 for _, v in stored.values() if v > 1),
    }


# ---------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    rid = run_id()
    prefix = f"engage-bench-{rid}:"
    secret = f"bench-{rid}-{os.urandom(8).hex()}"
    started = time.monotonic()
    out: dict[str, Any] = {}
    profiles: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:
        data_dir, db, redis_url = services_for_run(stack, args, "postgres", rid, prefix)
        print(
            f"leaderboards: {db.label}, Redis {redis_url.split('@')[-1]}, {args.members:,} members; "
            f"reads over {args.connections} connections, {args.warmup:g} s warm-up + {args.seconds:g} s "
            "per phase" + (" (rebuild and server under cProfile)" if args.profile else ""),
            flush=True,
        )

        # 1. Content, schema, members and their scores.
        content = write_content(data_dir / "content")
        env = engage_env(
            db,
            redis_url,
            prefix,
            data_dir,
            jwt_secret=secret,
            ENGAGE_CONTENT_DIR=str(content),
            ENGAGE_RATE_LIMIT_MEMBER_PER_MINUTE="100000000",
        )
        validation = engage_cli(env, "content", "validate", str(content)).strip().splitlines()
        out["content"] = validation[-1] if validation else "valid"
        engage_cli(env, "migrate")
        from server.db import utcnow
        from server.leaderboards.periods import span_at

        now = utcnow()
        span = span_at(bench_board(), now)
        assert span is not None and span.end is not None
        print(f"  content: {out['content']}; loading {args.members:,} members and scores ...", flush=True)
        load, initial = run_async(load_scores(pg_dsn(db), span, now, args.members, args.seed, args.chunk))
        out["load"] = load
        print(
            f"  loaded {load['score_rows']:,} score rows of {BOARD_ID} {span.key} in {load['seconds']:.1f} s "
            f"(COPY {load['copy_seconds']:.1f} s, indexes {load['index_seconds']:.1f} s; "
            f"ANALYZE {load['analyze_seconds']:.1f} s)",
            flush=True,
        )

        # 2. Rebuild the Redis index from SQL, then check it.
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        profiles["rebuild"] = RESULTS_DIR / "leaderboards.rebuild.prof"
        out["rebuild"] = timed_cli(
            env, ["leaderboards", "rebuild", BOARD_ID], profiles["rebuild"] if args.profile else None
        )
        print(f"  rebuild: exit {out['rebuild']['exit']} in {out['rebuild']['seconds']:.1f} s", flush=True)
        if out["rebuild"]["exit"] != 0:
            raise RuntimeError(f"rebuild failed:\n{out['rebuild']['stderr']}")
        out["check_after_rebuild"] = timed_cli(env, ["leaderboards", "check", BOARD_ID])
        c = out["check_after_rebuild"]
        print(f"  check: exit {c['exit']} in {c['seconds']:.1f} s", flush=True)

        # 3. Reads: the baselines, then the real server.
        t0 = time.monotonic()
        picks = random.Random(args.seed + 1).sample(range(args.members), min(args.tokens, args.members))
        tokens = issue_tokens(secret, data_dir, [member_id(i) for i in picks], data_dir / "readers.tokens")
        out["tokens"] = {"members": len(picks), "seconds_to_issue": round(time.monotonic() - t0, 1)}

        base = baseline_server(redis_url, prefix)
        stack.callback(base.stop)
        base.start()
        base_pid = base.pid
        print("  baseline: POST award (1 Redis write), as checkin_path ...", flush=True)
        award = f"--port {base.port} --members 1000 --member-prefix bm-{rid}- --run-id {rid}-{base.port}"
        out["baseline_award"] = run_loadgen(award.split(), args, base_pid, BENCH_API_KEY="")
        print("  baseline: GET /health ...", flush=True)
        out["baseline_get"] = run_loadgen(["--port", str(base.port), "--get", "/health"], args, base_pid)
        base.stop()

        def start_server(tag: str, **extra: str) -> ServerProcess:
            """The real server (under cProfile with --profile: one profile for reads, one for writes)."""
            profiles[tag] = RESULTS_DIR / f"leaderboards.{tag}.prof"
            server_env = {**env, **extra}
            if args.profile:
                profiles[tag].unlink(missing_ok=True)
                server = profiled_server(server_env, free_port(), profiles[tag])
            else:
                server = engage_server("engage", server_env, free_port())
            stack.callback(server.stop)
            return server.start()

        def stop_server(server: ServerProcess) -> None:
            if args.profile:
                stop_profiled(server)
            server.stop()

        api_key = create_api_key(env)
        server = start_server("reads")
        port, server_pid = server.port, server.pid
        print("  server: GET /health ...", flush=True)
        out["server_health"] = run_loadgen(["--port", str(port), "--get", "/health"], args, server_pid)
        print(f"  reads: each of the {len(picks):,} members once (first sight) ...", flush=True)
        readers = tokens.read_text().split()
        out["first_sight"] = run_async(first_sight(port, readers, AROUND_PATH, args.connections))
        for phase, path, pattern in (("top", TOP_PATH, TENTH), ("around", AROUND_PATH, NO_RANK)):
            print(f"  reads: GET {path} ...", flush=True)
            options = ["--port", str(port), "--tokens", str(tokens), "--get", path, "--count-body", pattern]
            options += ["--max-requests", str(args.max_requests)]
            out[phase] = run_loadgen(options, args, server_pid)
        stop_server(server)
        # The top 10 again, every read from Redis: a server with the page cache off.
        server = start_server("reads_uncached", ENGAGE_LEADERBOARD_PAGE_CACHE_SECONDS="0")
        uncached_pid = server.pid
        run_async(first_sight(server.port, readers, TOP_PATH, args.connections))  # members known, as above
        print(f"  reads: GET {TOP_PATH} (page cache off) ...", flush=True)
        options = [
            "--port",
            str(server.port),
            "--tokens",
            str(tokens),
            "--get",
            TOP_PATH,
            "--count-body",
            TENTH,
        ]
        options += ["--max-requests", str(args.max_requests)]
        out["top_uncached"] = run_loadgen(options, args, uncached_pid)
        stop_server(server)

        # 4. Score writes, then everything they wrote, in SQL and in Redis.
        print(
            f"  writes: POST /v1/events, {args.batch_size} {EVENT_TYPE} events a batch, "
            f"{args.write_connections} connections ...",
            flush=True,
        )
        # A server of its own, so that a profile holds the writes only.
        server = start_server("writes")
        writes_pid = server.pid
        writes = Writes(
            port=server.port,
            api_key=api_key,
            members=args.members,
            batch_size=args.batch_size,
            connections=args.write_connections,
            seconds=args.seconds,
            warmup=args.warmup,
            max_batches=args.max_batches,
            tag=f"w{rid}",
            watch_pids=[writes_pid],
        )
        out["writes"], tally = run_async(drive_writes(writes))
        left, waited = run_async(wait_outbox_empty(pg_dsn(db), 60))
        out["writes"]["outbox_left"] = left
        out["writes"]["outbox_wait_s"] = round(waited, 2)
        out["writes"]["verification"] = run_async(verify_writes(pg_dsn(db), span.key, initial, tally))
        stop_server(server)
        out["check_after_writes"] = timed_cli(env, ["leaderboards", "check", BOARD_ID])

    if args.profile:
        out["profiles"] = {k: profile_top(p) for k, p in profiles.items() if p.exists()}
    out["span_still_current"] = span_at(bench_board(), utcnow()).key == span.key  # type: ignore[union-attr]
    out["wall_seconds"] = round(time.monotonic() - started, 1)
    out["label"] = db.label
    out["names"] = {base_pid: "baseline", server_pid: "server", uncached_pid: "server", writes_pid: "server"}
    return out


# ---------------------------------------------------------------- report


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a and b else None


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1%}"


def _bad(f: dict[str, Any]) -> int:
    return sum(n for s, n in f["statuses"].items() if not s.startswith("2")) + sum(f["errors"].values())


def _verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def report(out: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Print the figures; the targets and whether each is met."""
    load, scores = out["load"], out["load"]["scores"]
    print(
        f"\n  setup: {load['members']:,} members + {load['score_rows']:,} score rows of {BOARD_ID} "
        f"{load['period']} in {load['seconds']:.1f} s ({load['rows_per_s']:,} rows/s: generated, COPY "
        f"{load['copy_seconds']:.1f} s, {len(load['indexes_rebuilt'])} secondary indexes rebuilt "
        f"{load['index_seconds']:.1f} s), ANALYZE {load['analyze_seconds']:.1f} s; "
        f"scores: median {scores['median']}, max {scores['max']:,}, "
        f"{scores['distinct']:,} distinct, {scores['members_at_or_below_10']:,} members at 10 or less, "
        f"largest tie {scores['largest_tie']:,} members"
    )
    rb, ck = out["rebuild"], out["check_after_rebuild"]
    for what in (rb, ck):
        print(f"  `{what['command']}`: exit {what['exit']} in {what['seconds']:.2f} s")
        for line in what["output"][:5]:
            print(f"      {line}")

    names = out.pop("names")
    base_award, base_get = out["baseline_award"], out["baseline_get"]
    reference = base_award["ok_rps"]
    phases = (
        ("baseline_app POST award, 1 Redis write (REFERENCE)", base_award),
        ("baseline_app GET /health, no I/O", base_get),
        ("server GET /health (no auth, no I/O)", out["server_health"]),
        ("top 10 (?limit=10)", out["top"]),
        ("top 10, page cache off", out["top_uncached"]),
        ("around me (/me?around=5)", out["around"]),
    )
    rows = []
    for name, f in phases:
        lat = f["latency"]
        rows.append(
            [
                name,
                f["ok_rps"],
                _pct(_ratio(f["ok_rps"], reference)),
                _pct(_ratio(f["ok_rps"], base_get["ok_rps"])),
                lat["p50_ms"],
                lat["p99_ms"],
                _bad(f),
                f["server_cpu_ms"] if f["server_cpu_ms"] is not None else "-",
                f["postgres_cpu_ms"] if f["postgres_cpu_ms"] is not None else "-",
            ]
        )
    print_table(
        f"reads on {out['label']} ({args.connections} connections, closed loop, {args.warmup:g} s warm-up + "
        f"{args.seconds:g} s measured a phase; boards read as {out['tokens']['members']:,} random members)",
        [
            "",
            "req/s",
            "of reference",
            "of GET /health",
            "p50 ms",
            "p99 ms",
            "non-2xx + errors",
            "server CPU ms/req",
            "pg CPU ms/req",
        ],
        rows,
    )
    print("\n  CPU in the measured window, % of one core:")
    for name, f in phases:
        print(f"    {name}: {describe_cpu(f['cpu'], names)}")
        warning = foreign_load_warning(f["cpu"])
        if warning:
            print(f"  {warning} [{name}]")
    cost = base_award["server_cpu_ms"]
    if cost:
        parts = [
            f"{label} {out[k]['server_cpu_ms']:.2f} ms ({out[k]['server_cpu_ms'] / cost:.1f}x)"
            for k, label in (
                ("server_health", "server GET /health"),
                ("top", "top 10"),
                ("top_uncached", "top 10 uncached"),
                ("around", "around me"),
            )
            if out[k]["server_cpu_ms"]
        ]
        print(
            f"  server CPU a request (steadier than req/s on a shared machine) against the reference's "
            f"{cost:.2f} ms: {', '.join(parts)}"
        )
    fs = out["first_sight"]
    print(
        f"  first sight (before the phases above, not in the table): each of the {fs['requests']:,} members' "
        f"first around-me read to the process (one SQL look-up of the member more) in {fs['seconds']:.1f} s, "
        f"{fs['rps']:,.1f} req/s, p50 {fs['latency']['p50_ms']:.2f} ms, "
        f"p99 {fs['latency']['p99_ms']:.2f} ms, statuses {fs['statuses']}, errors {fs['errors'] or 0}"
    )
    top_full = out["top"].get("body_matches", {}).get("in_window", 0)
    no_rank = out["around"].get("body_matches", {}).get("total", 0)
    print(
        f"  top-10 answers with 10 entries: {top_full:,} of {out['top']['ok']:,}; "
        f"around-me answers without the member's rank: {no_rank:,}"
    )

    w = out["writes"]
    v = w["verification"]
    print_table(
        f"score writes: POST /v1/events ({w['connections']} connections, {w['batch_size']} events a batch, "
        f"{args.seconds:g} s measured)",
        ["", "events/s", "batches/s", "p50 ms", "p99 ms", "errors", "server CPU ms/event", "pg CPU ms/event"],
        [
            [
                f"{EVENT_TYPE} (1 score write each)",
                w["events_per_s"],
                w["batches_per_s"],
                w["latency"]["p50_ms"],
                w["latency"]["p99_ms"],
                sum(w["errors"].values()),
                w["server_cpu_ms_per_event"] if w["server_cpu_ms_per_event"] is not None else "-",
                w["postgres_cpu_ms_per_event"] if w["postgres_cpu_ms_per_event"] is not None else "-",
            ]
        ],
    )
    print(f"\n  CPU in the window, % of one core: {describe_cpu(w['cpu'], names)}")
    print(
        f"  outbox: {w['outbox_left']:,} rows left after waiting {w['outbox_wait_s']:.1f} s; "
        f"{w['accepted_events_total']:,} events accepted over the run, "
        f"{w['members_written']:,} members written"
    )
    print(
        f"  SQL scores of {v['members_checked']:,} members written = loaded + sent: "
        f"{'OK' if v['ok'] else 'MISMATCH'} ({v['wrong']} wrong, {v['members_unsure']} left out: "
        "members of failed batches)"
    )
    for example in v["examples"]:
        print(f"      {example}")
    ck2 = out["check_after_writes"]
    print(f"  `{ck2['command']}` after the writes: exit {ck2['exit']} in {ck2['seconds']:.2f} s")
    for line in ck2["output"][:5]:
        print(f"      {line}")
    if not out["span_still_current"]:
        print("  WARNING: the board's week turned during the run: reads and checks saw another period")

    targets: dict[str, dict[str, Any]] = {
        "rebuild_s": {
            "target": TARGET_REBUILD_S,
            "value": rb["seconds"],
            "met": rb["exit"] == 0 and rb["seconds"] < TARGET_REBUILD_S,
        },
        "check_after_rebuild_exit_0": {"value": ck["exit"], "met": ck["exit"] == 0},
    }
    for phase in ("top", "top_uncached", "around"):
        f = out[phase]
        ratio = _ratio(f["ok_rps"], reference)
        targets[phase + "_ratio"] = {
            "target": TARGET_READ_RATIO,
            "of": "baseline_app POST award (1 Redis write)",
            "value": ratio,
            "met": (ratio or 0) >= TARGET_READ_RATIO,
        }
        targets[phase + "_p99_ms"] = {
            "target": TARGET_P99_MS,
            "value": f["latency"]["p99_ms"],
            "met": f["latency"]["p99_ms"] < TARGET_P99_MS,
        }
    targets["writes_verified"] = {"value": v["ok"], "met": v["ok"] and w["outbox_left"] == 0}
    targets["check_after_writes_exit_0"] = {"value": ck2["exit"], "met": ck2["exit"] == 0}

    caveat = " (under cProfile: not a valid measurement)" if args.profile else ""
    t = targets
    print(
        f"\n  target: rebuild of {load['score_rows']:,} scores < {TARGET_REBUILD_S:g} s: "
        f"{_verdict(t['rebuild_s']['met'])} ({rb['seconds']:.1f} s, process start included){caveat}"
    )
    print(f"  target: check exits 0 after the rebuild: {_verdict(t['check_after_rebuild_exit_0']['met'])}")
    for phase, label in (
        ("top", "top-10"),
        ("top_uncached", "top-10 (page cache off)"),
        ("around", "around-me"),
    ):
        f = out[phase]
        print(
            f"  target: {label} reads >= {TARGET_READ_RATIO:.0%} of the reference baseline's req/s: "
            f"{_verdict(t[phase + '_ratio']['met'])} ({_pct(t[phase + '_ratio']['value'])}: "
            f"{f['ok_rps']:,.1f} of {reference:,.1f}; "
            f"{_pct(_ratio(f['ok_rps'], base_get['ok_rps']))} of baseline_app GET /health){caveat}"
        )
        print(
            f"  target: {label} p99 < {TARGET_P99_MS:g} ms at {args.connections} connections: "
            f"{_verdict(t[phase + '_p99_ms']['met'])} ({f['latency']['p99_ms']:.2f} ms){caveat}"
        )
    print(
        f"  writes: {w['events_per_s']:,.1f} score writes/s; stored = sent and outbox drained: "
        f"{'yes' if t['writes_verified']['met'] else 'NO'}; "
        f"check exits 0 after the writes: {_verdict(t['check_after_writes_exit_0']['met'])}"
    )
    if "profiles" in out:
        for name, profile in out["profiles"].items():
            print_profile(profile, f"{name} profile")
    return targets


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_service_args(p)
    p.add_argument("--members", type=int, default=1_000_000, help="members, each with a score row")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    p.add_argument("--connections", type=int, default=8, help="read phases (and baselines)")
    p.add_argument("--tokens", type=int, default=20_000, help="members whose tokens the reads use")
    p.add_argument("--write-connections", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=100, help="score events a POST /v1/events")
    p.add_argument("--max-batches", type=int, default=100_000, help="writes, warm-up included")
    p.add_argument("--max-requests", type=int, default=2_000_000, help="per read phase, warm-up included")
    p.add_argument("--chunk", type=int, default=50_000, help="rows a COPY")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--profile",
        action="store_true",
        help="rebuild and server under cProfile -> bench/results/leaderboards.{rebuild,server}.prof",
    )
    args = p.parse_args(argv)
    if min(args.members, args.tokens, args.connections, args.write_connections, args.batch_size) < 1:
        p.error("--members, --tokens, --connections, --write-connections and --batch-size are at least 1")
    exit_on_sigterm()

    results: dict[str, Any] = {
        "benchmark": "leaderboards",
        "machine": machine(),
        "settings": {
            k: getattr(args, k)
            for k in (
                *("members", "seconds", "warmup", "connections", "tokens", "write_connections"),
                *("batch_size", "max_batches", "max_requests", "seed", "profile"),
            )
        },
    }
    print(f"leaderboards: server at {results['machine']['server_source']}")
    if not postgres_reachable(args.postgres_url):
        print(f"  PostgreSQL is not reachable at {args.postgres_url.split('@')[-1]}: not measured")
        results["skipped"] = "PostgreSQL not reachable"
        write_results("leaderboards", results)
        return
    out = run(args)
    targets = report(out, args)
    results.update(out)
    results["baseline"] = {
        "reference": "POST /v1/members/{id}/points on bench/baseline_app.py (1 Redis INCRBY), as checkin",
        "also": ["GET /health on bench/baseline_app.py (no I/O)", "GET /health on the real server"],
    }
    results["targets"] = targets
    path = write_results("leaderboards.profile" if args.profile else "leaderboards", results)
    print(f"\n  figures: {path.relative_to(ROOT)} ({out['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
