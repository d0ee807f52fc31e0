"""Referrals: the landing page of a shared link against the baseline, and the claim path.

With a database (PostgreSQL by default: a database of the run's own, created and dropped; or
`--database sqlite`), a Redis (an own redis-server on a free port by default) and a data directory
of the run's own, the repository's content as it is (nothing is published):

1. setup: `--referrers` (2,000) members with a display name go straight into SQL, and each gets
   its generated code from the server's own `ensure_code` (in transactions of 100 members, from
   this process). The friends who claim are loaded later, before the claim phase (4);
2. load over HTTP, with bench/loadgen.py in a process of its own (closed loop, the same
   `--connections` keep-alive connections, warm-up and measured seconds for every phase), one
   phase at a time:
     a. the baselines, bench/baseline_app.py under uvicorn as the other benchmarks run it: the
        award request (`POST /v1/members/{id}/points`, one Redis INCRBY), the REFERENCE of the
        target as in bench/leaderboards.py and the README, and `GET /health` (its simplest GET,
        no I/O), whose ratio is printed as well;
     b. the real server's `GET /health` (no authentication, no I/O: the floor of its stack);
     c. the landing page `GET /r/{code}` (public, HTML), for a random code of the referrers'
        per request, as a phone's browser opens it (an iPhone Safari User-Agent and Accept
        headers, no cookies). A process looks a code's owner up in SQL the first time it sees the
        code and remembers it for 30 s: before the phase each code's page is read once, timed on
        its own as "first sight" (as bench/leaderboards.py does for members), so that the phase
        measures the pages of codes the process knows (with `--seconds` past about 20, it also
        holds their look-ups again). Each click is buffered and written to `referral_clicks`
        about once a second, in the phase too. After the phase, once the buffer has been written,
        the rows in `referral_clicks` must equal the landing answers 200 (first sight, warm-up
        and measured window);
     d. the claim path on a fresh server: `POST /v1/referrals/claim` by a brand system (`X-Api-Key`)
        for `{"code", "member_id"}`, each request for a friend never claimed before (closed loop:
        the friends are used once each, in order), who signed up up to 13 days ago and claims the
        code of a random referrer; no `ip` or `device_id` is sent. The friends are inserted into
        SQL up front, enough for 1.5 times the reference's rate over the phase (`--max-claims` at
        most). A claim is one SQL transaction: the code, a lock on both members, their rows, the
        fraud checks (more than 4 claims on a referrer's codes in an hour add to the risk score;
        a claim held for review is still 201) and the referral row, with a live message to the
        referrer through the outbox. After it, `referrals` must hold exactly one row per answer
        201, each naming the referrer whose code was sent.

bench/loadgen.py can vary only the bearer token of a GET per request, not its path or headers; this
script runs it (`python -m bench.referrals --as-loadgen landing|claim ...`) with its request
builder swapped for the landing page's or the claim's, so that the load, its figures and their
CPU accounting are the very ones of the baseline phases: the "tokens" it picks among are the
codes (landing) or `friend,code` pairs, each used once (claims).

The target: the landing page serves at least 50% of the reference baseline's requests/s, in the
same run. `--profile` runs the servers under cProfile and prints their top functions (the figures
of a profiled run are not the ones to judge).

    python -m bench.referrals [--database postgres|sqlite] [--seconds 10] [--connections 8]
                              [--referrers 2000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.checkin_path import run_loadgen
from bench.event_ingest import print_profile, profile_top, profiled_server, stop_profiled
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
from bench.leaderboards import FIRST_NAMES
from bench.loadgen import NOW, HttpConnection, HttpError, run_async

TARGET_RATIO = 0.50
# Friends loaded for the claim phase: this many times the reference's rate over the phase.
FRIEND_HEADROOM = 1.5
# A phone opening a link shared in a chat: Safari on an iPhone.
USER_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
PAGE = 'id="code"'  # in a landing answer 200 (the page of a code), not in the 404/410 pages
CREATED = '"already_claimed":false'  # a claim's first answer (201)


# ---------------------------------------------------------------- the load generator, re-targeted


def landing_request(port: int, path: str, code: str = "") -> bytes:
    """`GET {path}{code}` as a phone's browser sends it (bench.loadgen.get_request's signature)."""
    return (
        b"GET %s%s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: %s\r\nAccept: %s\r\n"
        b"Accept-Language: en-GB,en;q=0.9\r\n\r\n"
    ) % (path.encode(), code.encode(), LOOPBACK.encode(), port, USER_AGENT.encode(), ACCEPT.encode())


def claim_request(port: int, pair: str) -> bytes:
    """`POST /v1/referrals/claim` by API key for `friend,code` (bench.loadgen.checkin_request's signature)."""
    friend, code = pair.split(",", 1)
    body = b'{"code":"%s","member_id":"%s"}' % (code.encode(), friend.encode())
    return (
        b"POST /v1/referrals/claim HTTP/1.1\r\nHost: %s:%d\r\nX-Api-Key: %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    ) % (LOOPBACK.encode(), port, os.environ["BENCH_API_KEY"].encode(), len(body), body)


def as_loadgen(kind: str, argv: list[str]) -> None:
    """bench.loadgen's main with its request builder swapped: `landing` or `claim`."""
    from bench import loadgen

    if kind == "landing":
        loadgen.get_request = landing_request  # type: ignore[assignment]
    elif kind == "claim":
        loadgen.checkin_request = claim_request  # type: ignore[assignment]
    else:
        raise SystemExit(f"--as-loadgen: unknown kind {kind!r}")
    loadgen.main(argv)


def run_retargeted(
    kind: str, options: list[str], args: argparse.Namespace, watch_pid: int, **env: str
) -> dict[str, Any]:
    """bench.checkin_path.run_loadgen, with `as_loadgen(kind)` in the process of its own."""
    return run_loadgen(options, args, watch_pid, module=["bench.referrals", "--as-loadgen", kind], **env)


async def first_sight(port: int, codes: list[str], connections: int) -> dict[str, Any]:
    """Each code's landing page once (over `connections`): the process looks each owner up in SQL."""
    pending = list(reversed(codes))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    pages = 0

    async def worker() -> None:
        nonlocal pages
        conn = HttpConnection(LOOPBACK, port)
        try:
            while pending:
                raw = landing_request(port, "/r/", pending.pop())
                t = NOW()
                try:
                    status, body = await conn.request(raw)
                except (OSError, HttpError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors[type(exc).__name__] += 1
                    conn.close()
                    continue
                latencies.append(NOW() - t)
                statuses[status] += 1
                pages += status == 200 and PAGE.encode() in body
        finally:
            conn.close()

    t0 = NOW()
    await asyncio.gather(*(worker() for _ in range(connections)))
    wall = NOW() - t0
    return {
        "requests": len(latencies),
        "pages_200": pages,
        "seconds": round(wall, 2),
        "rps": round(len(latencies) / wall, 1) if wall else None,
        "latency": latency_summary(latencies),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(errors),
    }


# ---------------------------------------------------------------- SQL, through the server's own code


def server_settings(db: SqlDatabase, redis_url: str, prefix: str, data_dir: Path, secret: str) -> Any:
    from server.config import Settings

    return Settings(
        database_url=db.url,
        redis_url=redis_url,
        redis_prefix=prefix,
        data_dir=data_dir,
        content_dir=ROOT / "content",
        jwt_secret=secret,
    )


@contextlib.asynccontextmanager
async def server_context(settings: Any) -> Any:
    """A Context as the CLI builds one (SQL and the content serving; Redis not started)."""
    from server.app import install
    from server.content.service import startup_content
    from server.context import Context
    from server.db import Database
    from server.redis import RedisHandle

    install()
    handle = RedisHandle(settings)
    ctx = Context(settings=settings, db=Database(settings), redis=handle)
    try:
        ctx.content = await startup_content(settings.content_dir, ctx.db)
        yield ctx
    finally:
        await ctx.db.dispose()
        await handle.close()


def _member_rows(
    ids: list[str], rng: random.Random, oldest: timedelta, newest: timedelta
) -> list[dict[str, Any]]:
    from server.db import utcnow

    now = utcnow()
    span = (oldest - newest).total_seconds()
    rows = []
    for mid in ids:
        signed_up = now - newest - timedelta(seconds=rng.random() * span)
        rows.append(
            {
                "id": mid,
                "display_name": f"{rng.choice(FIRST_NAMES)} {chr(65 + rng.randrange(26))}.",
                "timezone": "UTC",
                "signed_up_at": signed_up,
                "created_at": signed_up,
                "updated_at": signed_up,
            }
        )
    return rows


async def _insert_members(ctx: Any, rows: list[dict[str, Any]], chunk: int = 5_000) -> None:
    import sqlalchemy as sa

    from server.members.models import Member

    for lo in range(0, len(rows), chunk):
        async with ctx.db.transaction() as session:
            await session.execute(sa.insert(Member.__table__), rows[lo : lo + chunk])


async def load_referrers(settings: Any, ids: list[str], seed: int) -> tuple[dict[str, str], dict[str, float]]:
    """The referrers (signed up 1 month to 3 years ago) and their generated codes: {member: code}."""
    from server.referrals.service import active_code, ensure_code

    rows = _member_rows(ids, random.Random(seed), timedelta(days=3 * 365), timedelta(days=30))
    codes: dict[str, str] = {}
    async with server_context(settings) as ctx:
        t0 = time.monotonic()
        await _insert_members(ctx, rows)
        t1 = time.monotonic()
        for lo in range(0, len(ids), 100):
            async with ctx.db.transaction() as session:
                for mid in ids[lo : lo + 100]:
                    code = active_code(await ensure_code(ctx, session, mid))
                    assert code is not None
                    codes[mid] = code.display
        t2 = time.monotonic()
    return codes, {"members_s": round(t1 - t0, 2), "codes_s": round(t2 - t1, 2)}


async def load_friends(settings: Any, ids: list[str], seed: int) -> float:
    """The friends: members who signed up between 1 hour and 13 days ago (in the claim window)."""
    rows = _member_rows(ids, random.Random(seed), timedelta(days=13), timedelta(hours=1))
    async with server_context(settings) as ctx:
        t0 = time.monotonic()
        await _insert_members(ctx, rows)
        return time.monotonic() - t0


async def count_clicks(settings: Any, expected: int, patience: float) -> dict[str, Any]:
    """Rows in `referral_clicks`, polled until they reach `expected` (and again 1.5 s later) or stop
    growing for 3 s."""
    import sqlalchemy as sa

    from server.referrals.models import ReferralClick

    t = ReferralClick.__table__
    async with server_context(settings) as ctx:
        t0 = last_change = time.monotonic()
        seen, settled = -1, False
        while True:
            async with ctx.db.session() as session:
                rows = int((await session.execute(sa.select(sa.func.count()).select_from(t))).scalar_one())
                bots = int(
                    (
                        await session.execute(sa.select(sa.func.count()).select_from(t).where(t.c.bot))
                    ).scalar_one()
                )
            now = time.monotonic()
            if rows != seen:
                seen, last_change = rows, now
            if rows >= expected or now - last_change > 3 or now - t0 > patience:
                if rows >= expected and not settled:
                    # Once more after another flush could have come: a click written twice shows.
                    settled = True
                    await asyncio.sleep(1.5)
                    continue
                return {"rows": rows, "bots": bots, "waited_s": round(now - t0, 1)}
            await asyncio.sleep(0.25)


async def check_referrals(settings: Any, friend_prefix: str, sent: dict[str, str]) -> dict[str, Any]:
    """The `referrals` rows of this run's friends: how many, by status, and whose referrer is wrong."""
    import sqlalchemy as sa

    from server.referrals.models import Referral

    t = Referral.__table__
    async with server_context(settings) as ctx, ctx.db.session() as session:
        rows = (
            await session.execute(
                sa.select(t.c.friend_id, t.c.referrer_id, t.c.status, t.c.risk_score).where(
                    t.c.friend_id.like(friend_prefix + "%")
                )
            )
        ).all()
    wrong = [r.friend_id for r in rows if sent.get(r.friend_id) != r.referrer_id]
    return {
        "rows": len(rows),
        "by_status": dict(Counter(r.status for r in rows)),
        "risk_scores": dict(sorted(Counter(int(r.risk_score) for r in rows).items())),
        "wrong_referrer": len(wrong),
        "wrong_examples": wrong[:5],
    }


# ---------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    rid = run_id()
    prefix = f"engage-bench-{rid}:"
    secret = f"bench-{rid}-{os.urandom(8).hex()}"
    started = time.monotonic()
    out: dict[str, Any] = {}
    profiles: dict[str, Path] = {}
    names: dict[int, str] = {}
    with contextlib.ExitStack() as stack:
        data_dir, db, redis_url = services_for_run(stack, args, args.database, rid, prefix)
        print(
            f"referrals: {db.label}, Redis {redis_url.split('@')[-1]}, {args.referrers:,} referrers; "
            f"{args.connections} connections, {args.warmup:g} s warm-up + {args.seconds:g} s per phase"
            + (" (servers under cProfile)" if args.profile else ""),
            flush=True,
        )
        env = engage_env(db, redis_url, prefix, data_dir, jwt_secret=secret)
        engage_cli(env, "migrate")
        settings = server_settings(db, redis_url, prefix, data_dir, secret)

        # 1. Referrers and their codes.
        referrers = [f"rr-{rid}-{i}" for i in range(args.referrers)]
        codes, took = run_async(load_referrers(settings, referrers, args.seed))
        out["setup"] = {"referrers": len(codes), "distinct_codes": len(set(codes.values())), **took}
        print(
            f"  setup: {len(codes):,} referrers in {took['members_s']:.1f} s, their codes (ensure_code) "
            f"in {took['codes_s']:.1f} s",
            flush=True,
        )
        codes_file = data_dir / "codes.txt"
        codes_file.write_text("\n".join(codes.values()) + "\n")

        # 2a. The baselines.
        base = baseline_server(redis_url, prefix)
        stack.callback(base.stop)
        base.start()
        names[base.pid] = "baseline"
        print("  baseline: POST award (1 Redis write), the reference ...", flush=True)
        award = f"--port {base.port} --members 1000 --member-prefix bm-{rid}- --run-id {rid}-{base.port}"
        award += f" --max-requests {args.max_requests}"
        out["baseline_award"] = run_loadgen(award.split(), args, base.pid, BENCH_API_KEY="")
        print("  baseline: GET /health ...", flush=True)
        health = ["--get", "/health", "--max-requests", str(args.max_requests)]
        out["baseline_get"] = run_loadgen(["--port", str(base.port), *health], args, base.pid)
        base.stop()

        def start_server(tag: str) -> ServerProcess:
            """The real server (under cProfile with --profile: one profile a server)."""
            profiles[tag] = RESULTS_DIR / f"referrals.{tag}.prof"
            if args.profile:
                RESULTS_DIR.mkdir(parents=True, exist_ok=True)
                profiles[tag].unlink(missing_ok=True)
                server = profiled_server(env, free_port(), profiles[tag])
            else:
                server = engage_server("engage", env, free_port())
            stack.callback(server.stop)
            server.start()
            names[server.pid] = "server"
            return server

        def stop_server(server: ServerProcess) -> None:
            if args.profile:
                stop_profiled(server)
            server.stop()

        api_key = create_api_key(env)

        # 2b, c. The real server: GET /health, then the landing page.
        server = start_server("landing")
        print("  server: GET /health ...", flush=True)
        out["server_health"] = run_loadgen(["--port", str(server.port), *health], args, server.pid)
        print(f"  landing: each of the {len(codes):,} codes once (first sight) ...", flush=True)
        first = out["first_sight"] = run_async(
            first_sight(server.port, list(codes.values()), args.connections)
        )
        print(f"  landing: GET /r/{{code}}, a random one of {len(codes):,} codes a request ...", flush=True)
        options = ["--port", str(server.port), "--get", "/r/", "--tokens", str(codes_file)]
        options += ["--count-body", PAGE, "--max-requests", str(args.max_requests)]
        landing = out["landing"] = run_retargeted("landing", options, args, server.pid)
        answered = first["pages_200"] + landing["body_matches"]["total"]
        clicks = run_async(count_clicks(settings, answered, 30))
        clicks["answered_200"] = answered
        clicks["ok"] = clicks["rows"] == answered
        out["clicks"] = clicks
        print(
            f"  clicks: {clicks['rows']:,} rows in referral_clicks, {answered:,} landing answers 200 "
            f"(after {clicks['waited_s']:.1f} s)",
            flush=True,
        )
        stop_server(server)

        # 2d. Claims, on a fresh server, by friends loaded now.
        wanted = out["baseline_award"]["ok_rps"] * (args.warmup + args.seconds) * FRIEND_HEADROOM
        n_friends = max(1_000, min(args.max_claims, math.ceil(wanted) + args.connections))
        friends = [f"rf-{rid}-{i}" for i in range(n_friends)]
        rng = random.Random(args.seed + 1)
        sent = {f: rng.choice(referrers) for f in friends}
        loading = run_async(load_friends(settings, friends, args.seed + 2))
        out["friends"] = {"members": n_friends, "seconds_to_load": round(loading, 1)}
        pairs = data_dir / "claims.txt"
        pairs.write_text("\n".join(f"{f},{codes[sent[f]]}" for f in friends) + "\n")
        server = start_server("claims")
        print(
            f"  claims: POST /v1/referrals/claim by API key, each by one of {n_friends:,} fresh friends "
            f"(loaded in {loading:.1f} s) ...",
            flush=True,
        )
        options = ["--port", str(server.port), "--tokens", str(pairs), "--tokens-once"]
        options += ["--count-body", CREATED, "--max-requests", str(n_friends)]
        claims = out["claims"] = run_retargeted("claim", options, args, server.pid, BENCH_API_KEY=api_key)
        stop_server(server)
        stored = run_async(check_referrals(settings, f"rf-{rid}-", sent))
        created = claims["body_matches"]["total"]
        stored["created_answers"] = created
        stored["ok"] = stored["rows"] == created and stored["wrong_referrer"] == 0
        out["referrals"] = stored

    if args.profile:
        out["profiles"] = {k: profile_top(p) for k, p in profiles.items() if p.exists()}
    out["label"] = db.label
    out["names"] = names
    out["wall_seconds"] = round(time.monotonic() - started, 1)
    return out


# ---------------------------------------------------------------- report


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a and b else None


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1%}"


def _bad(f: dict[str, Any]) -> int:
    errors = sum(n for k, n in f["errors"].items() if k != "tokens_exhausted")
    return sum(n for s, n in f["statuses"].items() if not s.startswith("2")) + errors


def _verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def _cpu(value: float | None) -> object:
    return value if value is not None else "-"


def report(out: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Print the figures; the target and the checks, and whether each holds."""
    names = {int(k): v for k, v in out.pop("names").items()}
    award, base_get = out["baseline_award"], out["baseline_get"]
    reference = award["ok_rps"]
    landing, claims = out["landing"], out["claims"]
    phases = (
        ("baseline_app POST award, 1 Redis write (REFERENCE)", award),
        ("baseline_app GET /health, no I/O", base_get),
        ("server GET /health (no auth, no I/O)", out["server_health"]),
        ("landing GET /r/{code}", landing),
        ("claim POST /v1/referrals/claim", claims),
    )
    rows = [
        [
            name,
            f["ok_rps"],
            _pct(_ratio(f["ok_rps"], reference)),
            _pct(_ratio(f["ok_rps"], base_get["ok_rps"])),
            f["latency"]["p50_ms"],
            f["latency"]["p99_ms"],
            _bad(f),
            _cpu(f["server_cpu_ms"]),
            _cpu(f["postgres_cpu_ms"]),
        ]
        for name, f in phases
    ]
    print_table(
        f"referrals on {out['label']} ({args.connections} connections, closed loop, "
        f"{args.warmup:g} s warm-up + {args.seconds:g} s measured a phase; "
        f"landing over {out['setup']['distinct_codes']:,} codes, "
        f"claims by {out['friends']['members']:,} fresh friends, each once)",
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
    cost = award["server_cpu_ms"]
    if cost:
        parts = [
            f"{label} {f['server_cpu_ms']:.3f} ms ({f['server_cpu_ms'] / cost:.1f}x)"
            for label, f in (
                ("server GET /health", out["server_health"]),
                ("landing", landing),
                ("claim", claims),
            )
            if f["server_cpu_ms"]
        ]
        print(
            f"  server CPU a request (steadier than req/s on a shared machine) against the reference's "
            f"{cost:.3f} ms: {', '.join(parts)}"
        )
    for name, f in phases:
        odd = {s: n for s, n in f["statuses"].items() if not s.startswith("2")}
        if odd or f["errors"]:
            print(f"  {name}: statuses {f['statuses']}, errors {f['errors'] or 0}")
    if claims["errors"].get("tokens_exhausted"):
        print(
            f"  WARNING: the {out['friends']['members']:,} fresh friends ran out before the end of the claim "
            "phase: its rate is understated (raise --max-claims)"
        )

    fs = out["first_sight"]
    print(
        f"  first sight (before the landing phase, not in the table): each of the {fs['requests']:,} codes' "
        f"first page from the process (one SQL look-up of the code more) in {fs['seconds']:.1f} s, "
        f"{fs['rps']:,.1f} req/s, p50 {fs['latency']['p50_ms']:.2f} ms, "
        f"p99 {fs['latency']['p99_ms']:.2f} ms, statuses {fs['statuses']}, errors {fs['errors'] or 0}"
    )
    c = out["clicks"]
    print(
        f"\n  clicks: {c['rows']:,} rows in referral_clicks ({c['bots']:,} marked as bots) for "
        f"{c['answered_200']:,} landing answers 200 (first sight, then the phase with its warm-up), "
        f"counted {c['waited_s']:.1f} s after it: " + ("OK" if c["ok"] else "MISMATCH")
    )
    if not c["ok"]:
        print(
            f"  !!! CLICKS MISMATCH: {c['rows'] - c['answered_200']:+,} rows against the answers 200 "
            "(clicks lost or doubled; connection errors in the phase: "
            f"{sum(landing['errors'].values())}) !!!"
        )
    r = out["referrals"]
    print(
        f"  claims: {r['rows']:,} rows in referrals for {r['created_answers']:,} answers 201 (warm-up "
        f"included); by status {r['by_status']}; risk scores {r['risk_scores']}; "
        f"with another referrer than the code sent: {r['wrong_referrer']}: "
        + ("OK" if r["ok"] else "MISMATCH")
    )
    if not r["ok"]:
        print(
            f"  !!! REFERRALS MISMATCH: {r['rows'] - r['created_answers']:+,} rows against the answers 201, "
            f"{r['wrong_referrer']} with the wrong referrer {r['wrong_examples']} !!!"
        )

    ratio = _ratio(landing["ok_rps"], reference)
    ratio_get = _ratio(landing["ok_rps"], base_get["ok_rps"])
    targets = {
        "landing_ratio": {
            "target": TARGET_RATIO,
            "of": "baseline_app POST award (1 Redis write)",
            "value": ratio,
            "met": (ratio or 0) >= TARGET_RATIO,
        },
        "landing_ratio_of_baseline_get": {
            "target": TARGET_RATIO,
            "of": "baseline_app GET /health (no I/O)",
            "value": ratio_get,
            "met": (ratio_get or 0) >= TARGET_RATIO,
        },
        "clicks_stored": {"value": c["rows"], "expected": c["answered_200"], "met": c["ok"]},
        "claims_stored": {"value": r["rows"], "expected": r["created_answers"], "met": r["ok"]},
    }
    caveat = " (under cProfile: not a valid measurement)" if args.profile else ""
    print(
        f"\n  target: landing page >= {TARGET_RATIO:.0%} of the reference baseline's req/s: "
        f"{_verdict(targets['landing_ratio']['met'])} ({_pct(ratio)}: {landing['ok_rps']:,.1f} of "
        f"{reference:,.1f}){caveat}"
    )
    print(
        f"  (against baseline_app GET /health, no I/O: {_pct(ratio_get)}, "
        f"{_verdict(targets['landing_ratio_of_baseline_get']['met'])}; against the server's own GET /health: "
        f"{_pct(_ratio(landing['ok_rps'], out['server_health']['ok_rps']))})"
    )
    print(
        f"  claims: {claims['ok_rps']:,.1f} req/s ({claims['body_matches']['in_window'] / args.seconds:,.1f} "
        f"created/s), p50 {claims['latency']['p50_ms']:.2f} ms, p99 {claims['latency']['p99_ms']:.2f} ms; "
        f"stored = answered: {'yes' if r['ok'] else 'NO'}"
    )
    if "profiles" in out:
        for name, profile in out["profiles"].items():
            print_profile(profile, f"{name} server profile")
    return targets


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    add_service_args(p)
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    p.add_argument("--connections", type=int, default=8, help="every phase")
    p.add_argument("--referrers", type=int, default=2_000, help="members with a code")
    p.add_argument("--max-claims", type=int, default=200_000, help="fresh friends loaded, at most")
    p.add_argument("--max-requests", type=int, default=2_000_000, help="per phase, warm-up included")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--profile",
        action="store_true",
        help="servers under cProfile -> bench/results/referrals.{landing,claims}.prof",
    )
    args = p.parse_args(argv)
    if min(args.referrers, args.connections, args.max_claims) < 1 or args.seconds <= 0:
        p.error("--referrers, --connections, --max-claims and --seconds are positive")
    exit_on_sigterm()

    results: dict[str, Any] = {
        "benchmark": "referrals",
        "machine": machine(),
        "settings": {
            k: getattr(args, k)
            for k in (
                *("database", "seconds", "warmup", "connections", "referrers"),
                *("max_claims", "max_requests", "seed", "profile"),
            )
        },
    }
    print(f"referrals: server at {results['machine']['server_source']}")
    if args.database == "postgres" and not postgres_reachable(args.postgres_url):
        print(f"  PostgreSQL is not reachable at {args.postgres_url.split('@')[-1]}: not measured")
        results["skipped"] = "PostgreSQL not reachable"
        write_results("referrals", results)
        return
    out = run(args)
    targets = report(out, args)
    results.update(out)
    results["baseline"] = {
        "reference": (
            "POST /v1/members/{id}/points on bench/baseline_app.py (1 Redis INCRBY), as bench/leaderboards.py"
        ),
        "also": ["GET /health on bench/baseline_app.py (no I/O)", "GET /health on the real server"],
    }
    results["targets"] = targets
    name = "referrals" + (".sqlite" if args.database == "sqlite" else "")
    name += ".profile" if args.profile else ""
    path = write_results(name, results)
    print(f"\n  figures: {path.relative_to(ROOT)} ({out['wall_seconds']:.0f} s)")
    if not (targets["clicks_stored"]["met"] and targets["claims_stored"]["met"]):
        raise SystemExit("referrals: the stored clicks or referrals do not match the answers (see above)")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--as-loadgen":
        as_loadgen(sys.argv[2], sys.argv[3:])
    else:
        main()
