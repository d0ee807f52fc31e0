"""What every path benchmark checks once its load is over, so that a fast figure is never a wrong one.

Each check is a `Check` (a name, ok or not, one line saying what was compared, a few lines of
detail when it failed, its numbers), printed under the figures, written to the results JSON, and
the benchmark exits non-zero when one fails (`exit_if_failed`). In order, for one server's run:

1. `outbox_drained`, while the server still runs: the outbox empty, or holding only rows whose effect
   failed (those are retried by the drain job, and said); bounded by `timeout`. The rows left over
   from the requests (board writes, live messages, dispatch) are applied by then, so what follows
   compares settled state.
2. With the server stopped, `cli_checks`: `engage ledger verify` (every member's hash chain and
   balances from the entries: exit 0 and "OK") and `engage leaderboards check` (every board
   period's Redis index equal to its SQL rows: exit 0, a line "OK" per period).
3. Every accepted event dispatched once: `events_dispatched` for member events (`POST /v1/events`),
   `checkins_dispatched` for the `checkin.completed` event of each first check-in. The dispatch
   writes a receipt per event (`dispatched_events`, keyed by event id) in the transaction that hands
   the event to the domains, and skips an event whose receipt exists: a receipt per accepted event is
   "dispatched", and its key makes it "once".
4. For check-ins, `checkins_stored`: the stored check-ins (and their ledger entries) equal the answers
   that said `already_checked_in: false`: nothing lost, nothing doubled.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.infra import SqlDatabase, engage_cli_run, sql_rows


@dataclass
class Check:
    name: str
    ok: bool
    summary: str  # one line: what was compared, and what was found
    details: list[str] = field(default_factory=list)  # a few lines more, when there is something to say
    data: dict[str, Any] = field(default_factory=dict)  # the figures compared, for the results JSON


# ---------------------------------------------------------------- the outbox


def outbox_drained(db: SqlDatabase, timeout: float = 60.0, poll: float = 0.25) -> Check:
    """Wait (at most `timeout` s, the server running) until the outbox holds no row that has not
    failed: applied rows are deleted in batches a moment after their effect, and a row whose
    writer did not apply it is taken by the drain once its claim lapses (30 s)."""
    queries = {
        "left": "SELECT count(*), coalesce(sum(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), 0) FROM outbox",
        "failing": (
            "SELECT kind, last_error, count(*) FROM outbox WHERE attempts > 0 "
            "GROUP BY kind, last_error ORDER BY 3 DESC"
        ),
    }
    started = time.monotonic()
    while True:
        rows = sql_rows(db, {"left": queries["left"]})
        left, failing = (int(x) for x in rows["left"][0])
        waited = time.monotonic() - started
        if left == failing or waited >= timeout:
            break
        time.sleep(poll)
    pending = left - failing
    details = []
    if failing:
        for kind, error, n in sql_rows(db, {"failing": queries["failing"]})["failing"][:5]:
            details.append(f"{n:,} {kind} rows failing: {(error or '')[:200]}")
    if pending:
        summary = f"{pending:,} rows still not applied after {timeout:g} s ({failing:,} failing besides)"
    elif failing:
        summary = f"{failing:,} rows left after {waited:.1f} s, all failing (retried by the drain)"
    else:
        summary = f"empty after {waited:.1f} s"
    return Check(
        "outbox drained",
        pending == 0,
        summary,
        details,
        {"rows_left": left, "failing": failing, "waited_s": round(waited, 2)},
    )


# ---------------------------------------------------------------- engage's own checks


def _cli_failure(name: str, command: str, done: Any) -> Check:
    said = (done.stdout + done.stderr).strip().splitlines()
    return Check(
        name,
        False,
        f"`engage {command}` exited {done.returncode}",
        said[-12:],
        {"exit_code": done.returncode},
    )


def ledger_verified(env: dict[str, str], timeout: float = 900) -> Check:
    """`engage ledger verify`: exit 0 and its last line "checked N entries of M members: OK"."""
    name, command = "ledger verify", "ledger verify"
    done = engage_cli_run(env, *command.split(), timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    m = re.match(r"checked (\d+) entries of (\d+) members: (.*)$", last)
    if m is None or done.returncode not in (0, 1):
        return _cli_failure(name, command, done)
    ok = done.returncode == 0 and m[3] == "OK"
    data = {"exit_code": done.returncode, "entries": int(m[1]), "members": int(m[2])}
    return Check(name, ok, last, [] if ok else lines[:-1][:10], data)


_BOARD_LINE = re.compile(r"^(\S+) (\S+): (\d+) in SQL, (\d+) in Redis: (.*)$")


def boards_equal_sql(env: dict[str, str], timeout: float = 600) -> Check:
    """`engage leaderboards check`: exit 0, and a line "... OK" for every board period."""
    name, command = "boards = SQL", "leaderboards check"
    done = engage_cli_run(env, *command.split(), timeout=timeout)
    periods = [m for m in map(_BOARD_LINE.match, done.stdout.splitlines()) if m is not None]
    if done.returncode not in (0, 1):
        return _cli_failure(name, command, done)
    drifted = [m[0] for m in periods if m[5] != "OK"]
    rows = sum(int(m[3]) for m in periods)
    ok = done.returncode == 0 and not drifted
    summary = f"`engage leaderboards check`: {len(periods)} board periods, {rows:,} SQL rows: " + (
        "all equal to Redis" if ok else f"{len(drifted)} drifted (exit {done.returncode})"
    )
    details = [] if ok else [line for line in done.stdout.splitlines() if not line.endswith(": OK")][:12]
    data = {
        "exit_code": done.returncode,
        "board_periods": len(periods),
        "sql_rows": rows,
        "drifted": drifted,
        "by_period": {f"{m[1]} {m[2]}": {"sql": int(m[3]), "redis": int(m[4])} for m in periods},
    }
    return Check(name, ok, summary, details, data)


def cli_checks(env: dict[str, str]) -> list[Check]:
    """The ledger and the boards, with the server stopped (nothing moves meanwhile)."""
    return [ledger_verified(env), boards_equal_sql(env)]


# ---------------------------------------------------------------- dispatch


def events_dispatched(
    db: SqlDatabase, id_prefix: str, accepted: int, listened: Collection[str], unanswered: int = 0
) -> Check:
    """Member events whose id starts with `id_prefix`: the events the server said it accepted
    (`accepted`, every answer of the run) all stored, and each stored event with its receipt.

    The dispatch skips an event type nobody listens to under the content serving (no receipt for
    it); which types those are depends on the content, so: every type in `listened` must have all
    its receipts, and any other type all or none of them (some of a type means events lost).
    `unanswered`: events in requests cut off by a connection error (perhaps stored, never answered).
    """
    rows = sql_rows(
        db,
        {
            "by_type": (
                "SELECT e.type, count(*), count(d.event_id) FROM member_events e "
                "LEFT JOIN dispatched_events d ON d.event_id = e.event_id "
                "WHERE e.event_id LIKE {p} GROUP BY e.type ORDER BY e.type"
            ),
            "receipts": "SELECT count(*) FROM dispatched_events WHERE event_id LIKE {p}",
        },
        id_prefix + "%",
    )
    by_type = {t: {"stored": int(n), "dispatched": int(d)} for t, n, d in rows["by_type"]}
    stored = sum(v["stored"] for v in by_type.values())
    dispatched = sum(v["dispatched"] for v in by_type.values())
    stray = int(rows["receipts"][0][0]) - dispatched  # receipts of events never stored
    problems = []
    if not accepted <= stored <= accepted + unanswered:
        problems.append(
            f"the server accepted {accepted:,} events and stored {stored:,}"
            + (f" ({unanswered:,} in requests cut off)" if unanswered else "")
        )
    parts = []
    for t, v in by_type.items():
        n, d = v["stored"], v["dispatched"]
        if d == n:
            parts.append(f"{t} {d:,}/{n:,}")
        elif d == 0 and t not in listened:
            parts.append(f"{t} 0/{n:,} (no listener)")
        else:
            parts.append(f"{t} {d:,}/{n:,}")
            problems.append(f"{t}: {n - d:,} of {n:,} stored events have no dispatch receipt")
    for t in sorted(set(listened) - set(by_type)):
        problems.append(f"{t}: no event of this type stored")
    if stray:
        problems.append(f"{stray:,} dispatch receipts of events that were not stored")
    summary = f"{accepted:,} accepted, {stored:,} stored; receipts/stored: {', '.join(parts) or '-'}"
    data = {
        "accepted": accepted,
        "stored": stored,
        "dispatched": dispatched,
        "stray_receipts": stray,
        "unanswered": unanswered,
        "by_type": by_type,
        "listened": sorted(listened),
    }
    return Check("events dispatched once", not problems, summary, problems, data)


def checkins_dispatched(db: SqlDatabase, member_prefix: str, stored: int | None) -> Check:
    """One `checkin.completed` receipt (`checkin:<member>:<date>`) per stored check-in of the
    members under `member_prefix`."""
    rows = sql_rows(
        db,
        {"receipts": "SELECT count(*) FROM dispatched_events WHERE event_id LIKE {p}"},
        f"checkin:{member_prefix}%",
    )
    receipts = int(rows["receipts"][0][0])
    ok = stored is not None and receipts == stored
    summary = f"checkin.completed receipts {receipts:,} for {_maybe(stored)} stored check-ins"
    details = [] if ok else [f"{(stored or 0) - receipts:,} check-ins without their event's receipt"]
    return Check(
        "check-in events dispatched once", ok, summary, details, {"receipts": receipts, "stored": stored}
    )


# ---------------------------------------------------------------- check-ins


def count_checkins(db: SqlDatabase, member_prefix: str) -> dict[str, int | None]:
    """Of the members under `member_prefix`: check-in rows, their members, ledger points entries."""
    queries = {
        "checkin_days": "SELECT count(*) FROM checkin_days WHERE kind = 'checked_in' AND member_id LIKE {p}",
        "members_with_checkin": "SELECT count(DISTINCT member_id) FROM checkin_days WHERE member_id LIKE {p}",
        "ledger_points_entries": (
            "SELECT count(*) FROM ledger_entries WHERE source = 'checkin' AND currency = 'points' "
            "AND member_id LIKE {p}"
        ),
    }
    counts: dict[str, int | None] = {}
    for what, sql in queries.items():
        try:
            counts[what] = int(sql_rows(db, {what: sql}, member_prefix + "%")[what][0][0])
        except Exception:  # the schema moved on (a column renamed): the day count is what matters
            counts[what] = None
    return counts


def checkins_stored(stored: dict[str, int | None], answered: dict[str, int], unanswered: int = 0) -> Check:
    """Stored check-ins (`count_checkins`) against the answers `already_checked_in: false` of the
    whole run, by phase (`answered`). The repeat phase should answer none: it may, for a member whose
    first request failed, or when the run crosses a midnight (then the member holds two dates, which
    the day count allows for)."""
    expected = sum(answered.values())
    ok = stored["checkin_days"] is not None and all(
        stored[w] in (None, expected) for w in ("checkin_days", "ledger_points_entries")
    )
    by_phase = " + ".join(f"{n:,} {phase}" for phase, n in answered.items())
    summary = (
        f"{_maybe(stored['checkin_days'])} check-in rows ({_maybe(stored['members_with_checkin'])} members, "
        f"{_maybe(stored['ledger_points_entries'])} ledger points entries) for {expected:,} answers "
        f"already_checked_in=false ({by_phase})"
    )
    details = []
    if not ok and unanswered:
        details.append(f"{unanswered:,} requests ended in connection errors: perhaps stored, no answer seen")
    data = {"stored": stored, "answered": answered, "expected": expected, "unanswered": unanswered}
    return Check("stored check-ins = answers", ok, summary, details, data)


def _maybe(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


# ---------------------------------------------------------------- report


def print_checks(checks: Sequence[Check], title: str) -> None:
    print(f"\n  checks [{title}]:")
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"    {'OK  ' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.summary}")
        for line in c.details:
            print(f"          {'':<{width}}  {line}")


def as_json(checks: Sequence[Check]) -> list[dict[str, Any]]:
    return [asdict(c) for c in checks]


def all_ok(checks: Sequence[Check]) -> bool:
    return all(c.ok for c in checks)


def exit_if_failed(benchmark: str, groups: dict[str, Sequence[Check]]) -> None:
    """Exit 1 naming the checks that failed (`groups`: the checks of each server run, by title),
    once the figures and the results file are out."""
    failed = [f"{c.name} [{title}]" for title, checks in groups.items() for c in checks if not c.ok]
    if failed:
        raise SystemExit(f"{benchmark}: {len(failed)} check(s) failed: {', '.join(failed)} (see above)")
    print(f"\n  {benchmark}: all {sum(map(len, groups.values()))} checks OK")
