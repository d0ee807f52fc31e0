"""The rules without storage: periods in a board's zone, the tie-break encoding, league moves, and
what content is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.content.loader import read_files, validate_files
from server.errors import ProblemError
from server.leaderboards import keys
from server.leaderboards.content import Board, League
from server.leaderboards.leagues import moves
from server.leaderboards.periods import Span, previous_span, resolve, span_at, span_of_key
from tests.leaderboards.support import boards_store
from tests.support import ROOT


def board(**fields: object) -> Board:
    return Board.model_validate({"id": "b", "name": "B", "metric": "points", **fields})


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_periods_turn_at_midnight_in_the_boards_zone() -> None:
    auckland = board(period="daily", zone="Pacific/Auckland")
    # 10:59 UTC on the 23rd is 23:59 in Auckland (UTC+13 in November); a minute later it is the 24th.
    assert span_at(auckland, utc(2026, 11, 23, 10, 59)).key == "2026-11-23"  # type: ignore[union-attr]
    turned = span_at(auckland, utc(2026, 11, 23, 11, 0))
    assert turned is not None and turned.key == "2026-11-24" and turned.start == utc(2026, 11, 23, 11, 0)
    assert turned.end == utc(2026, 11, 24, 11, 0)
    weekly = board(period="weekly", zone="America/Los_Angeles")
    # Monday 00:00 in Los Angeles is 08:00 UTC: the ISO week turns there, not at UTC midnight.
    assert span_at(weekly, utc(2026, 11, 30, 7, 59)).key == "2026-W48"  # type: ignore[union-attr]
    assert span_at(weekly, utc(2026, 11, 30, 8, 0)).key == "2026-W49"  # type: ignore[union-attr]
    monthly = board(period="monthly", zone="Europe/Paris")
    december = span_at(monthly, utc(2026, 11, 30, 23, 0))
    assert december is not None and december.key == "2026-12" and december.start == utc(2026, 11, 30, 23, 0)
    # A day with a clock change is 23 or 25 hours long.
    paris = board(period="daily", zone="Europe/Paris")
    spring = span_of_key(paris, "2026-03-29")
    assert spring is not None and spring.length == timedelta(hours=23)


def test_seasons_all_time_and_previous_periods() -> None:
    seasons = board(
        period="season",
        zone="UTC",
        seasons=[
            {"id": "winter", "start": "2026-12-01", "end": "2027-03-01"},
            {"id": "autumn", "start": "2026-09-01", "end": "2026-11-01"},
        ],
    )
    assert span_at(seasons, utc(2026, 12, 24)).key == "winter"  # type: ignore[union-attr]
    assert span_at(seasons, utc(2026, 11, 24)) is None  # between seasons
    assert previous_span(seasons, utc(2026, 11, 24)).key == "autumn"  # type: ignore[union-attr]
    forever = board(period="all_time")
    assert span_at(forever, utc(2026, 11, 24)) == Span("all", utc(2020, 1, 1), None)
    assert previous_span(forever, utc(2026, 11, 24)) is None
    weekly = board(period="weekly")
    assert previous_span(weekly, utc(2026, 11, 24)).key == "2026-W47"  # type: ignore[union-attr]
    assert previous_span(weekly, utc(2027, 1, 1)).key == "2026-W52"  # type: ignore[union-attr]


def test_a_request_names_a_period_by_name_date_or_word() -> None:
    weekly = board(period="weekly", zone="Europe/Paris")
    now = utc(2026, 11, 24, 12)
    assert resolve(weekly, "current", now).key == "2026-W48"
    assert resolve(weekly, "previous", now).key == "2026-W47"
    assert resolve(weekly, "2026-W40", now).key == "2026-W40"
    assert resolve(weekly, "2026-11-18", now).key == "2026-W47"  # a date: the week holding it
    for bad, code in (
        ("2026-W60", "invalid_period"),
        ("W48", "invalid_period"),
        ("2026-W49", "future_period"),
    ):
        with pytest.raises(ProblemError) as caught:
            resolve(weekly, bad, now)
        assert caught.value.code == code


def test_tie_break_encoding_orders_by_score_then_time_exactly() -> None:
    span = Span("2026-W48", utc(2026, 11, 23), utc(2026, 11, 30))
    early, late = (
        keys.slot_of(span, utc(2026, 11, 23, 0, 0, 1)),
        keys.slot_of(span, utc(2026, 11, 29, 23, 59)),
    )
    assert 0 <= early < late < keys.SLOTS
    # A week's slot is under 40 ms: events a tenth of a second apart are told apart.
    assert keys.slot_of(span, utc(2026, 11, 24, 12, 0, 0)) < keys.slot_of(
        span, datetime(2026, 11, 24, 12, 0, 0, 100_000, UTC)
    )
    big = keys.MAX_SCORE
    for order in ("desc", "asc"):
        values = [
            keys.encode(s, t, order)
            for s, t in ((big, early), (big, late), (big - 1, early), (1, early), (0, late), (-big, early))
        ]
        # Every value is exact in a double (what a sorted set stores).
        assert all(float(v) == v and abs(v) < 2**53 for v in values)
    desc = sorted([(keys.encode(s, t, "desc"), (s, t)) for s in (5, 6) for t in (early, late)], reverse=True)
    assert [p for _, p in desc] == [(6, early), (6, late), (5, early), (5, late)]
    asc = sorted([(keys.encode(s, t, "asc"), (s, t)) for s in (5, 6) for t in (early, late)])
    assert [p for _, p in asc] == [(5, early), (5, late), (6, early), (6, late)]
    # Beyond the bound the order saturates (the exact score stays in SQL and in the API).
    assert keys.encode(big + 10, early, "desc") == keys.encode(big, early, "desc")


def test_league_moves_shrink_with_a_partial_cohort() -> None:
    league = League(size=30, promote=5, demote=5)
    assert moves(league, 30) == (5, 5)
    assert moves(league, 12) == (2, 2)
    assert moves(league, 1) == (1, 0)
    assert moves(League(size=4, promote=2, demote=2), 4) == (2, 2)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("  - {id: x, name: X, metric: {event: nosuch}}", "unknown event type `nosuch`"),
        ("  - {id: x, name: X, metric: {event: purchase, value: channel}}", "a value needs a number"),
        ("  - {id: x, name: X, metric: {event: purchase, value: missing}}", "has no property `missing`"),
        ("  - {id: x, name: X, metric: {event: purchase, where: 'amount >'}}", "where"),
        ("  - {id: x, name: X, metric: points, period: daily, league: {}}", "a league board turns weekly"),
        ("  - {id: x, name: X, metric: points, period: season}", "a season board lists its seasons"),
        (
            "  - {id: x, name: X, metric: points, period: season, seasons: "
            "[{id: a, start: 2026-01-01, end: 2026-03-01}, {id: b, start: 2026-02-01, end: 2026-04-01}]}",
            "overlap",
        ),
        ("  - {id: x, name: X, metric: points, zone: Mars/Olympus}", "not an IANA time zone"),
        (
            "  - {id: x, name: X, metric: points, league: {size: 4, promote: 3, demote: 2}}",
            "more than a cohort",
        ),
        ("  - {id: x, name: X, metric: points}\n  - {id: x, name: Y, metric: growth}", "already used"),
        ("  - {id: x, name: X, metric: karma}", "metric"),
    ],
)
def test_bad_board_content_is_refused_with_its_place(yaml_text: str, message: str) -> None:
    files = read_files(ROOT / "content")
    files["leaderboards.yaml"] = "boards:\n" + yaml_text + "\n"
    _, issues = validate_files(files, "test")
    assert issues, "content was accepted"
    assert any(message in str(i) and i.file.endswith("leaderboards.yaml") and i.line >= 2 for i in issues), (
        issues
    )


def test_the_demo_boards_are_valid() -> None:
    from server.app import install

    install()  # the server's own event types (check-ins, quests) are declared by their domains
    store = boards_store((ROOT / "content" / "leaderboards.yaml").read_text())
    ids = [b.id for b in store.get("leaderboards").boards]
    assert {"weekly-points", "weekly-league", "longest-streak"} <= set(ids)
