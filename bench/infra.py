"""What the benchmarks need around the load: Redis, a SQL database, server processes, results,
and py-spy on a server process with a summary of where its CPU went.

Everything here cleans up after itself: an own redis-server is stopped, an own PostgreSQL database
is dropped, keys under an own prefix on a shared Redis are deleted, server processes are stopped.
The shared services on this machine are only ever used under names of the run's own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from server.redis import redis_server_binary

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOOPBACK = "127.0.0.1"


def run_id() -> str:
    return uuid.uuid4().hex[:10]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that every `finally` (and ExitStack) still cleans up."""

    def handler(_signum: int, _frame: object) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, handler)


def machine() -> dict[str, Any]:
    """What the figures were measured on: the host, and the server's source (commit, edits)."""
    return {
        "server_source": _server_source(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def _server_source() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        edited = subprocess.run(
            ["git", "status", "--porcelain", "--", "server", "content"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}{' with uncommitted changes' if edited else ''}" if commit else "unknown"


# ---------------------------------------------------------------- Redis


class OwnRedis:
    """A redis-server of the benchmark's own on a free loopback port, without persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="engage-bench-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> OwnRedis:
        self.proc = subprocess.Popen(
            [
                *[redis_server_binary(), "--port", str(self.port), "--bind", LOOPBACK, "--save", ""],
                *["--appendonly", "no", "--dir", self.dir, "--maxclients", "10000"],
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited at start")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((LOOPBACK, self.port), timeout=0.5) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer within 10 s")

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key under `prefix` (on a shared Redis nothing else is touched)."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(client.delete(*batch))
                batch = []
        if batch:
            deleted += int(client.delete(*batch))
    finally:
        client.close()
    return deleted


@contextlib.contextmanager
def redis_for_run(shared_url: str | None, prefix: str) -> Iterator[str]:
    """An own redis-server (default), or a shared one whose keys under `prefix` are deleted after."""
    if shared_url:
        try:
            yield shared_url
        finally:
            delete_prefix(shared_url, prefix)
        return
    own = OwnRedis()
    try:
        own.start()
        yield own.url
    finally:
        own.stop()


# ---------------------------------------------------------------- SQL


def postgres_reachable(admin_url: str) -> bool:
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(admin_url, timeout=2)
        await conn.close()

    try:
        asyncio.run(probe())
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    return True


def _postgres_admin(admin_url: str, sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(admin_url, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@dataclass
class SqlDatabase:
    kind: str  # "postgres" | "sqlite"
    url: str  # what ENGAGE_DATABASE_URL gets
    label: str  # for the report, without credentials


@contextlib.contextmanager
def database_for_run(choice: str, admin_url: str, data_dir: Path, rid: str) -> Iterator[SqlDatabase]:
    """`choice` is auto|postgres|sqlite. PostgreSQL gets a database of the run's own, dropped after."""
    if choice == "auto":
        choice = "postgres" if postgres_reachable(admin_url) else "sqlite"
    if choice == "sqlite":
        path = data_dir / "bench.db"
        yield SqlDatabase("sqlite", f"sqlite+aiosqlite:///{path}", f"SQLite {path.name} (WAL)")
        return
    if not postgres_reachable(admin_url):
        raise SystemExit(f"PostgreSQL is not reachable at {admin_url.split('@')[-1]}")
    name = f"engage_bench_{rid}"
    _postgres_admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        base = admin_url.rsplit("/", 1)[0].split("://", 1)[1]
        yield SqlDatabase("postgres", f"postgresql+asyncpg://{base}/{name}", f"PostgreSQL {name}")
    finally:
        _postgres_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sql_rows(
    db: SqlDatabase, queries: dict[str, str], param: str | None = None
) -> dict[str, list[tuple[Any, ...]]]:
    """Run each of `queries` on the run's database (the server may be running); `{p}` in a query
    stands for `param`, bound as a parameter. The rows of each, by the query's name."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    if db.kind == "sqlite":
        conn = sqlite3.connect(db.url.split(":///", 1)[1], timeout=30)
        try:
            for name, sql in queries.items():
                args = (param,) if "{p}" in sql else ()
                rows[name] = [tuple(r) for r in conn.execute(sql.format(p="?"), args).fetchall()]
        finally:
            conn.close()
        return rows

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(db.url.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)
        try:
            for name, sql in queries.items():
                args = (param,) if "{p}" in sql else ()
                rows[name] = [tuple(r) for r in await conn.fetch(sql.format(p="$1"), *args)]
        finally:
            await conn.close()

    asyncio.run(run())
    return rows


# ---------------------------------------------------------------- processes


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` s. Only ever our own child."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class ServerProcess:
    """An HTTP server in a process of its own, on loopback, ready once `ready_path` answers 200."""

    def __init__(
        self, name: str, argv: Sequence[str], env: dict[str, str], port: int, ready_path: str
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.port = port
        self.ready_path = ready_path
        self.log_path = Path(tempfile.mkstemp(prefix=f"engage-bench-{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0  # kept after stop(), for the report

    def start(self, timeout: float = 60) -> ServerProcess:
        with self.log_path.open("ab") as log:
            # Its own session: a Ctrl-C reaches only the benchmark, which then stops it in order.
            self.proc = subprocess.Popen(
                self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True
            )
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        url = f"http://{LOOPBACK}:{self.port}{self.ready_path}"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready within {timeout} s:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
        with contextlib.suppress(OSError):
            self.log_path.unlink()


def engage_env(
    db: SqlDatabase, redis_url: str, prefix: str, data_dir: Path, jwt_secret: str, **extra: str
) -> dict[str, str]:
    """The environment of `python -m server.cli …` for this run."""
    env = {
        **os.environ,
        "ENGAGE_DATABASE_URL": db.url,
        "ENGAGE_REDIS_URL": redis_url,
        "ENGAGE_REDIS_PREFIX": prefix,
        "ENGAGE_DATA_DIR": str(data_dir),
        "ENGAGE_CONTENT_DIR": str(ROOT / "content"),
        "ENGAGE_JWT_SECRET": jwt_secret,
        "ENGAGE_LOG_LEVEL": "WARNING",
        # The benchmark is one API key sending far more than the production default allows.
        "ENGAGE_RATE_LIMIT_API_KEY_PER_MINUTE": "100000000",
    }
    env.update(extra)
    return env


def engage_cli_run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `python -m server.cli ARGS` to completion, whatever its exit status."""
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def engage_cli(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    """Run `python -m server.cli ARGS` to completion; its stdout (it must exit 0)."""
    done = engage_cli_run(env, *args, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"server.cli {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def engage_server(name: str, env: dict[str, str], port: int) -> ServerProcess:
    argv = [sys.executable, "-m", "server.cli", "serve", "--host", LOOPBACK, "--port", str(port)]
    return ServerProcess(name, argv, env, port, "/ready")


def baseline_server(redis_url: str, prefix: str) -> ServerProcess:
    """bench/baseline_app.py under uvicorn as the benchmarks run it (1 worker, uvloop, httptools)."""
    port = free_port()
    argv = [
        *[sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--host", LOOPBACK, "--port", str(port)],
        *"--workers 1 --loop uvloop --http httptools --no-access-log --log-level warning".split(),
    ]
    env = {**os.environ, "BENCH_REDIS_URL": redis_url, "BENCH_REDIS_PREFIX": prefix + "baseline:"}
    return ServerProcess("baseline", argv, env, port, "/health")


def create_api_key(env: dict[str, str]) -> str:
    lines = [
        line for line in engage_cli(env, "apikey", "create", "--name", "bench").splitlines() if line.strip()
    ]
    return lines[-1].strip()


# ---------------------------------------------------------------- figures


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100); NaN when there are none."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return float(sorted_values[rank - 1])


def latency_summary(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds."""
    ordered = sorted(values_s)
    return {
        "p50_ms": round(percentile(ordered, 50) * 1000, 3),
        "p90_ms": round(percentile(ordered, 90) * 1000, 3),
        "p99_ms": round(percentile(ordered, 99) * 1000, 3),
        "max_ms": round((ordered[-1] if ordered else float("nan")) * 1000, 3),
    }


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in header], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print(
            "  "
            + "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def describe_cpu(cpu: dict[str, Any], names: dict[int, str]) -> str:
    """'server 98.0, postgres 31.2, …' (% of one core) from a load generator's `cpu` figures."""
    parts = []
    for group, pct in sorted(cpu.get("pct_of_one_core_by_group", {}).items(), key=lambda kv: -kv[1]):
        if group.startswith("pid "):
            group = names.get(int(group.split()[1]), group)
        parts.append(f"{group} {pct:.0f}")
    if cpu.get("unattributed_pct_of_one_core"):
        parts.append(f"unattributed {cpu['unattributed_pct_of_one_core']:.0f}")
    busy = cpu.get("machine_busy_pct_of_all_cores")
    return ", ".join(parts) + (
        f"; machine busy {busy:.0f}% of {os.cpu_count()} CPUs" if busy is not None else ""
    )


def foreign_load_warning(cpu: dict[str, Any]) -> str | None:
    """A warning when processes that are not the benchmark's used much CPU in the window."""
    foreign = cpu.get("pct_of_one_core_by_group", {}).get("other", 0.0) + cpu.get(
        "unattributed_pct_of_one_core", 0.0
    )
    if foreign < 25:
        return None
    return (
        f"  WARNING: other work on this machine used about {foreign:.0f}% of one core meanwhile "
        "(other processes, kernel): throughput is lower than on a quiet machine"
    )


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def add_service_args(p: argparse.ArgumentParser) -> None:
    """The options every benchmark shares for where its SQL and Redis live."""
    p.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_ADMIN_URL,
        help="an admin URL: the benchmark creates (and drops) a database of its own there",
    )
    p.add_argument(
        "--redis-url",
        default="",
        help="a shared Redis to use under an own key prefix (default: an own redis-server)",
    )


def services_for_run(
    stack: contextlib.ExitStack, args: argparse.Namespace, database: str, rid: str, prefix: str
) -> tuple[Path, SqlDatabase, str]:
    """A data dir, a database and a Redis of the run's own, all removed when `stack` closes."""
    data_dir = Path(tempfile.mkdtemp(prefix="engage-bench-"))
    stack.callback(shutil.rmtree, data_dir, True)
    db = stack.enter_context(database_for_run(database, args.postgres_url, data_dir, rid))
    redis_url = stack.enter_context(redis_for_run(args.redis_url or None, prefix))
    return data_dir, db, redis_url


# ---------------------------------------------------------------- profiling

PROFILE_RATE = 200  # py-spy samples a second


def py_spy_binary() -> str | None:
    """py-spy from the venv (a dev dependency), else from PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


class Profile:
    """py-spy on a server process for the measured window, as collapsed stacks (py-spy's `raw`
    format: one `frame;frame;...;frame count` line per stack, which speedscope and flamegraph.pl
    open as they are), then a summary of where the CPU went.

    py-spy attaches to the running process (root, or ptrace allowed) and samples it from outside
    without pausing it (`--nonblocking`), `PROFILE_RATE` times a second; idle samples (the event
    loop waiting) are left out, so the shares are of the time the process was busy.
    """

    def __init__(self, pid: int, out: Path, delay: float, seconds: float, rate: int = PROFILE_RATE) -> None:
        self.pid, self.out, self.delay, self.seconds, self.rate = pid, out, delay, seconds, rate
        self.proc: subprocess.Popen[bytes] | None = None
        self.error = ""
        self._timer: threading.Timer | None = None

    def __enter__(self) -> Profile:
        binary = py_spy_binary()
        if binary is None:
            self.error = "py-spy is not installed (a dev dependency: `make install`)"
            return self
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.unlink(missing_ok=True)
        argv = [
            *[binary, "record", "--pid", str(self.pid), "--duration", str(max(1, round(self.seconds)))],
            *["--rate", str(self.rate), "--format", "raw", "--function", "--full-filenames", "--nonblocking"],
            *["--output", str(self.out)],
        ]

        def start() -> None:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        # py-spy has no delayed start: started when the warm-up ends, it samples the measured window.
        self._timer = threading.Timer(self.delay, start)
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join()
        if self.proc is None:
            return
        try:
            _, err = self.proc.communicate(timeout=self.seconds + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=5)
        if self.proc.returncode != 0 or not self.out.exists():
            said = err.decode(errors="replace")[-500:].strip()
            self.error = f"py-spy exited {self.proc.returncode}: {said}"

    def summary(self, top: int = 12) -> dict[str, Any]:
        """Where the samples were, or {"error": ...}; see `summarize_stacks`."""
        if self.error or not self.out.exists():
            return {"error": self.error or f"no profile written to {self.out}"}
        out = summarize_stacks(self.out.read_text(), top)
        out["file"] = str(self.out.relative_to(ROOT)) if self.out.is_relative_to(ROOT) else str(self.out)
        out["seconds"], out["rate"] = self.seconds, self.rate
        return out


_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
_SITE = ("/site-packages/", "/dist-packages/")


def _frame(raw: str) -> tuple[str, str]:
    """(`function (short/path.py:line)`, its package) of a py-spy frame with a full file name."""
    m = _FRAME.match(raw)
    if m is None:
        return raw, "(other)"
    name, path, line = m["name"], m["file"], m["line"]
    server = str(ROOT / "server") + "/"
    if path.startswith(server):
        short = "server/" + path[len(server) :]
        package = "server/" + short.split("/")[1].removesuffix(".py")
    elif any(s in path for s in _SITE):
        short = re.split("|".join(_SITE), path, maxsplit=1)[1]
        package = short.split("/", 1)[0].removesuffix(".py")
    elif path.startswith(str(ROOT) + "/"):
        short = path[len(str(ROOT)) + 1 :]
        package = short.split("/", 1)[0]
    else:
        short = re.sub(r"^.*/lib/python3\.\d+/", "", path)
        package = "(stdlib)" if short != path else "(other)"
    if name == "Runner.run" and short == "asyncio/runners.py":
        # uvloop runs the loop in C, whose time py-spy charges to the last Python frame beneath it.
        package = "(event loop, in C)"
    return f"{name} ({short}{':' + line if line else ''})", package


def summarize_stacks(collapsed: str, top: int = 12) -> dict[str, Any]:
    """Where the CPU went, from collapsed stacks (`frame;...;frame count` a line, root first):

    - `by_package`: own time (the innermost frame of each sample) by package: server/<domain>,
      a library (sqlalchemy, asyncpg, ...), (stdlib);
    - `own`: the functions first by own time, whatever their module;
    - `server_own`: our functions (server/..., less the entry point server/cli.py) first by the
      samples whose innermost server/ frame they are: own time plus the libraries they call;
    - `server_cumulative`: our functions first by the samples they are anywhere in (once a sample);
    - `outside`: the samples with none of our functions in their stack, by where they run: the
      event loop and the framework under `engage serve` (by the package of their innermost frame),
      or a stack py-spy sees without its caller (by its outermost frame): SQLAlchemy runs its ORM
      and engine in a greenlet, whose stack starts at its own root, so a statement's compiling and
      result handling land here rather than under the server/ function that awaited them.

    Shares are % of all samples.
    """
    total = 0
    by_package: Counter[str] = Counter()
    own: Counter[str] = Counter()
    server_own: Counter[str] = Counter()
    server_cum: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")] if stack else [("(no Python frame)", "(none)")]
        leaf, package = frames[-1]
        own[leaf] += n
        by_package[package] += n
        ours = [f for f, p in frames if p.startswith("server/") and p != "server/cli"]
        if ours:
            server_own[ours[-1]] += n
            for f in set(ours):
                server_cum[f] += n
        elif any(p == "server/cli" for _, p in frames):
            outside[f"event loop and framework under `engage serve`, in {package}"] += n
        else:
            outside[f"a stack without its caller, from {frames[0][0]}"] += n

    def share(counter: Counter[str], limit: int) -> list[list[Any]]:
        return [[round(100 * n / total, 1), name] for name, n in counter.most_common(limit)] if total else []

    return {
        "samples": total,
        "by_package": share(by_package, 14),
        "own": share(own, top),
        "server_own": share(server_own, top),
        "server_cumulative": share(server_cum, top),
        "outside_share": round(100 * outside.total() / total, 1) if total else 0.0,
        "outside": share(outside, 8),
    }


def print_profile(summary: dict[str, Any], title: str) -> None:
    """The summary of `Profile.summary` as a few short lists."""
    if "error" in summary:
        print(f"\n  profile [{title}]: none ({summary['error']})")
        return
    busy = summary["samples"] / (summary["rate"] * summary["seconds"]) if summary["seconds"] else 0.0
    print(
        f"\n  where the server's CPU went [{title}]: {summary['samples']:,} samples by py-spy over "
        f"{summary['seconds']:g} s at {summary['rate']} Hz (busy {busy:.0%} of the time); "
        f"collapsed stacks: {summary['file']}"
    )
    print("    own time by package: " + ", ".join(f"{name} {pct:g}%" for pct, name in summary["by_package"]))
    for key, label in (
        ("own", "own time, any module"),
        ("server_own", "server/ code, own time + the libraries it calls"),
        ("server_cumulative", "server/ code, cumulative"),
        ("outside", f"not under a server/ function: {summary['outside_share']:g}% of the samples"),
    ):
        print(f"    {label}:")
        for pct, name in summary[key]:
            print(f"      {pct:>5.1f}%  {name}")
