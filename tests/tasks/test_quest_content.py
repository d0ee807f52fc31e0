"""Quest content: every problem found across files, named by file, line and field."""

from __future__ import annotations

import pytest

from server.app import install
from server.content.loader import json_schemas, load, validate_files
from tests.support import ROOT
from tests.tasks.quest_support import quest_files

install()


def problems(quests_yaml: str, **others: str) -> list[tuple[str, int, str, str]]:
    _, issues = validate_files(quest_files(quests_yaml, **others), "content")
    return [(i.file, i.line, i.field, i.message) for i in issues]


def one_problem(quests_yaml: str, **others: str) -> tuple[int, str, str]:
    found = problems(quests_yaml, **others)
    assert len(found) == 1, found
    _, line, field, message = found[0]
    return line, field, message


def test_repository_quests_are_valid():
    store = load(ROOT / "content")
    quests = store.get("quests").quests
    assert {"first-week", "daily-check-in", "weekly-spend", "explorer", "holiday-2026"} <= set(quests)
    assert quests["first-week"].is_chain and len(quests["first-week"].all_steps) == 3


def test_unknown_event_type():
    line, field, message = one_problem(
        """quests:
  - id: a
    title: A
    goal: {event: purchse, count: 1}
"""
    )
    assert (line, field) == (4, "quests.0.goal.event")
    assert "unknown event type `purchse`" in message


def test_step_requiring_a_missing_step():
    line, field, message = one_problem(
        """quests:
  - id: a
    title: A
    steps:
      - id: one
        title: One
        goal: {event: purchase, count: 1}
      - id: two
        title: Two
        requires: [three]
        goal: {event: purchase, count: 1}
"""
    )
    assert (line, field) == (10, "quests.0.steps.1.requires")
    assert "missing step `three`" in message


def test_cycle_in_step_prerequisites():
    found = problems(
        """quests:
  - id: a
    title: A
    steps:
      - id: one
        title: One
        requires: [two]
        goal: {event: purchase, count: 1}
      - id: two
        title: Two
        goal: {event: purchase, count: 1}
"""
    )
    assert [(line, field) for _, line, field, _ in found] == [(4, "quests.0.steps")]
    assert "cycle: one -> two -> one" in found[0][3]


def test_cycle_across_quests_and_missing_quest():
    found = problems(
        """quests:
  - id: a
    title: A
    requires: [b]
    goal: {event: purchase, count: 1}
  - id: b
    title: B
    requires: [a, ghost]
    goal: {event: purchase, count: 1}
"""
    )
    messages = {(line, m) for _, line, _, m in found}
    assert (8, "requires a missing quest `ghost`") in messages
    assert any(line == 4 and "cycle: a -> b -> a" in m for line, m in messages)


def test_window_ending_before_it_starts():
    line, field, message = one_problem(
        """quests:
  - id: a
    title: A
    available:
      start: 2026-12-24T00:00:00
      end: 2026-12-20T00:00:00
      timezone: Europe/Paris
    goal: {event: purchase, count: 1}
"""
    )
    assert (line, field) == (4, "quests.0.available")
    assert "ends before it starts" in message


def test_reward_naming_an_unknown_badge_and_unknown_tier():
    found = problems(
        """quests:
  - id: a
    title: A
    tiers: [platinum]
    goal: {event: purchase, count: 1}
    reward: {points: 5, badge: golden-cart}
"""
    )
    assert {(line, field) for _, line, field, _ in found} == {
        (4, "quests.0.tiers"),
        (6, "quests.0.reward.badge"),
    }
    assert any("unknown badge `golden-cart`" in m for *_, m in found)


def test_filters_are_checked_against_the_event_catalogue():
    found = problems(
        """quests:
  - id: a
    title: A
    goal: {event: purchase, count: 1, where: "colour == 'red'"}
  - id: b
    title: B
    goal: {event: purchase, count: 1, where: "amount >= 'ten'"}
  - id: c
    title: C
    goal: {event: purchase, sum: category, target: 3}
  - id: d
    title: D
    goal: {event: checkin.completed, count: 1, where: "streak >= 7"}
"""
    )
    assert [(line, field) for _, line, field, _ in found] == [
        (4, "quests.0.goal.where"),
        (7, "quests.1.goal.where"),
        (10, "quests.2.goal.sum"),
    ]
    assert "no property `colour`" in found[0][3]
    assert "`amount` is a number; it is compared with 'ten'" in found[1][3]
    assert "a sum needs a number" in found[2][3]


def test_a_filter_that_does_not_parse_names_its_column():
    line, field, message = one_problem(
        """quests:
  - id: a
    title: A
    goal: {event: purchase, count: 1, where: "amount >= "}
"""
    )
    assert (line, field) == (4, "quests.0.goal.where")
    assert "column" in message


@pytest.mark.parametrize(
    "goal, expected",
    [
        ("{event: purchase}", "exactly one of count, sum, distinct or streak"),
        ("{event: purchase, count: 1, streak: 2}", "exactly one of count, sum, distinct or streak"),
        ("{event: purchase, sum: amount}", "a sum goal needs a target"),
        ("{event: purchase, count: 2, target: 3}", "drop `target`"),
        ("{event: purchase, count: 0}", "greater than or equal to 1"),
    ],
)
def test_goal_shapes(goal, expected):
    line, _, message = one_problem(f"quests:\n  - id: a\n    title: A\n    goal: {goal}\n")
    assert line == 4 and expected in message


def test_duplicate_ids_across_files():
    found = problems(
        "quests:\n  - id: a\n    title: A\n    goal: {event: purchase, count: 1}\n",
        **{"quests/other.yaml": "quests:\n  - id: a\n    title: Again\n    goal: {event: share, count: 1}\n"},
    )
    assert [(file, line, field) for file, line, field, _ in found] == [
        ("content/quests/test.yaml", 2, "quests.0.id")
    ]


def test_event_catalogue_problems():
    found = problems(
        "quests: []\n",
        **{
            "events.yaml": "types:\n  checkin.completed: {}\n  Bad-Type: {}\n  review:\n"
            "    properties:\n      stars: {type: string, min: 1}\n"
        },
    )
    fields = {(line, field) for _, line, field, _ in found}
    assert (6, "types.review.properties.stars") in fields  # min on a string
    assert (3, "types.Bad-Type.[key]") in fields


def test_json_schema_covers_quests_and_events():
    schemas = json_schemas()
    assert {"quests", "events.yaml", "checkin.yaml", "earning.yaml"} <= set(schemas)
    quest = schemas["quests"]["$defs"]["Quest"]
    assert {"id", "title", "goal", "steps", "period", "available", "tiers"} <= set(quest["properties"])


def test_remaining_text_templates_are_checked():
    found = problems(
        """quests:
  - id: a
    title: A
    goal: {event: purchase, count: 2}
    remaining_text: "{remaining.real} more"
  - id: b
    title: B
    goal: {event: purchase, count: 2}
    remaining_text: {one: "{remaining} more", other: "{left} more"}
  - id: c
    title: C
    goal: {event: purchase, count: 2}
    remaining_text: "{remaining} more {"
  - id: d
    title: D
    goal: {event: purchase, count: 2}
    remaining_text: "{remaining} of {target}, {{literally}}"
"""
    )
    assert [(line, field) for _, line, field, _ in found] == [
        (5, "quests.0.remaining_text"),
        (9, "quests.1.remaining_text.other"),
        (13, "quests.2.remaining_text"),
    ]
    assert "not {remaining.real}" in found[0][3]


def test_filters_on_values_that_never_come_and_streaks_longer_than_their_period():
    found = problems(
        """quests:
  - id: a
    title: A
    goal: {event: purchase, count: 1, where: "channel == 'onlin'"}
  - id: b
    title: B
    goal: {event: purchase, count: 1, where: "channel.kind == 'web'"}
  - id: c
    title: C
    period: weekly
    goal: {event: checkin.completed, streak: 8}
"""
    )
    assert [(line, field) for _, line, field, _ in found] == [
        (4, "quests.0.goal.where"),
        (7, "quests.1.goal.where"),
        (11, "quests.2.goal.streak"),
    ]
    assert "`channel` is never 'onlin' (its values: online, store, app)" in found[0][3]
    assert "a weekly quest cannot hold a streak of 8 days" in found[2][3]
    line, field, message = one_problem(
        "quests:\n  - id: d\n    title: D\n"
        "    goal: {event: product_viewed, distinct: category, target: 100000}\n"
    )
    assert (line, field) == (4, "quests.0.goal") and "at most 10,000" in message
