"""Every goal of the demo content reads in the game's words: what is left of a quest's step or a
badge, and what a badge takes, never name an event type or a property as the code spells them."""

from __future__ import annotations

import re

from server.app import install
from server.badges.content import Badge
from server.badges.service import _remaining
from server.content.goals import Goal, goal_phrase, remaining_text
from server.content.loader import load
from server.events.catalog import EventCatalog
from tests.support import ROOT


def _raw_names(events: EventCatalog, goal: Goal) -> set[str]:
    """The words a sentence about `goal` must not hold: its event type and property as spelt in
    the code, unless the catalogue's own noun for them is that same word."""
    names = {goal.event} - set(events.nouns_for(goal.event))
    if goal.property:
        names |= {goal.property} - set(events.property_nouns(goal.event, goal.property))
    return names


def _assert_reads_well(text: str, raw: set[str], where: str) -> None:
    assert not re.search(r"\b[a-z]+[._][a-z_.]+\b", text), f"{where}: {text!r} holds an identifier"
    for name in raw:
        assert not re.search(rf"\b{re.escape(name)}\b", text), f"{where}: {text!r} names `{name}`"


def _amounts(target: float) -> list[float]:
    """Progress to render a goal at: none yet, some, one short of its target."""
    return sorted({x for x in (0.0, 1.0, target / 2, target - 1, target - 0.5) if 0 <= x < target})


def test_every_demo_goal_reads_in_the_games_words():
    install()
    store = load(ROOT / "content")
    events: EventCatalog = store.get("events")
    checked = 0
    for quest in store.get("quests").quests.values():
        for step in quest.all_steps:
            goal = step.goal
            raw = _raw_names(events, goal)
            for progress in _amounts(goal.goal_target):
                for template in (step.remaining_text, None):
                    text = remaining_text(events, goal, template, progress)
                    _assert_reads_well(text, raw, f"quest {quest.id}, step {step.id}")
                    checked += 1
    badge: Badge
    for badge in store.get("badges").badges.values():
        goal = badge.criteria.goal if badge.criteria is not None else None
        raw = _raw_names(events, goal) if goal is not None else set()
        for level in range(1, badge.level_count + 1):
            _assert_reads_well(badge.narrative(events, level), raw, f"badge {badge.id} criteria")
            if badge.criteria is None:
                continue
            target = badge.targets[level - 1]
            for progress in _amounts(target):
                text = _remaining(events, badge, progress, target, level - 1)
                _assert_reads_well(text, raw, f"badge {badge.id}")
                checked += 1
    assert checked > 50


def test_sentences_use_the_catalogues_nouns_and_units():
    install()
    store = load(ROOT / "content")
    events: EventCatalog = store.get("events")
    count = Goal(event="checkin.completed", count=10)
    assert goal_phrase(events, count, 9, more=True) == "9 more check-ins"
    assert goal_phrase(events, count, 1, more=True) == "1 more check-in"
    spend = Goal(event="purchase", sum="amount", target=1000)
    assert remaining_text(events, spend, None, 0) == "1,000 more in spend"
    assert goal_phrase(events, spend, 1234.5) == "1,234.5 in spend"
    products = Goal(event="review_posted", distinct="product_id", target=5)
    assert remaining_text(events, products, None, 3) == "2 more different products"
    assert remaining_text(events, products, None, 4) == "1 more different product"
    streak = Goal(event="checkin.completed", streak=5)
    assert remaining_text(events, streak, None, 4) == "1 more day in a row"
    priced = EventCatalog.model_validate(
        {
            "types": {
                "purchase": {
                    "noun": "order",
                    "properties": {
                        "amount": {"type": "number", "noun": "spend", "unit": "€"},
                        "kilometres": {"type": "number", "noun": "distance", "unit": "km"},
                        "store_id": {"type": "string"},
                    },
                }
            }
        }
    )
    assert remaining_text(priced, spend, None, 950) == "€50 more in spend"
    far = Goal(event="purchase", sum="kilometres", target=42)
    assert remaining_text(priced, far, None, 0) == "42 km more in distance"
    # Without nouns in the catalogue, words made from the names: never the names themselves.
    stores = Goal(event="purchase", distinct="store_id", target=3)
    assert remaining_text(priced, stores, None, 0) == "3 more different stores"
