"""Event ingestion: accepted member events per second through `POST /v1/events`, with and without quests.

The real server (`python -m server.cli serve` after `migrate`, one process) takes batches of
`--batch-size` (100) member events from the brand's systems, sent with an API key over
`--concurrency` keep-alive loopback connections (closed loop, one batch in flight per connection,
for `--seconds` after a `--warmup`). Each batch is a realistic mix of `purchase` (amount,
category, channel), `product_viewed` (category, product id), `share`, `review_posted` and
`store_visit` events, each with an event id of its own and `occurred_at` = now, spread over
random members of `--members` (10,000), created beforehand (`PUT /v1/members/{id}`, with a mix of
IANA time zones and tiers) in a setup phase that is not timed.

`POST /v1/events` stores the batch and, once it has committed, applies the dispatch (quest
progress, ledger rewards and the purchase earning rule, live messages) before it answers: what is
measured includes the quest engine. Each database is measured twice in the same run, each time with
a database, a Redis and a content directory of its own (a copy of content/):

1. baseline: the same load with no quests (an empty quests/ folder; purchases still earn points);
2. quests: 50 quests written by this benchmark (quests/bench.yaml): count, sum, distinct and streak
   goals, `where` filters, once / daily / weekly / monthly periods, 3-step chains, repeats
   (`times: 3`), a tier-only quest and a prerequisite. Targets are large enough that most members
   stay in progress for the run (progress writes are what is measured); some quests complete.

Right after the load (the server still running) the stored events are compared, in SQL, with their
dispatch receipts: a claim on an outbox row lasts 30 s and the drain only takes lapsed ones, so an
event dispatched by then was dispatched inside its own request. Quest progress rows and
completions are counted, and `GET /v1/quests` is read for a few members with their member token
(`engage token`). The target: at least 5,000 accepted events/s, with the quests, on one process
with PostgreSQL.

`--profile` runs the measured server under cProfile (`python -m cProfile -o FILE -m server.cli
serve`; py-spy is not a dependency of this project), restarted after the setup so that the profile
holds the load, stopped with SIGINT so that it writes its file, and prints the 25 functions first
by cumulative and by own (total) time of the quests phase. The profiler slows the server down: the
figures of a profiled run are not the ones to judge.

    python -m bench.event_ingest [--database postgresql|sqlite|both] [--seconds 20] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pstats
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench.infra import (
    LOOPBACK,
    RESULTS_DIR,
    ROOT,
    ServerProcess,
    SqlDatabase,
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
    postgres_reachable,
    print_table,
    run_id,
    services_for_run,
    stop_process,
    write_results,
)
from bench.loadgen import BatchLoad, create_members, drive_batches, run_async

TARGET_EVENTS_PER_S = 5_000

# ---------------------------------------------------------------- what members and events look like

ZONES = (
    ("UTC", 10),
    ("Europe/Paris", 14),
    ("Europe/London", 10),
    ("Europe/Berlin", 8),
    ("America/New_York", 12),
    ("America/Chicago", 5),
    ("America/Los_Angeles", 8),
    ("America/Sao_Paulo", 6),
    ("Asia/Tokyo", 6),
    ("Asia/Kolkata", 6),
    ("Asia/Singapore", 4),
    ("Australia/Sydney", 5),
    ("Pacific/Auckland", 2),
    ("Africa/Lagos", 4),
)
TIERS = (("regular", 60), ("silver", 25), ("gold", 12), ("diamond", 3))
EVENT_MIX = (
    ("product_viewed", 40),
    ("purchase", 30),
    ("store_visit", 12),
    ("share", 10),
    ("review_posted", 8),
)
CATEGORIES = (
    ("clothing", 16),
    ("shoes", 12),
    ("grocery", 12),
    ("beauty", 10),
    ("home", 9),
    ("electronics", 8),
    ("sports", 8),
    ("bags", 6),
    ("books", 6),
    ("toys", 5),
    ("gifts", 5),
    ("garden", 3),
)
CHANNELS = (("online", 45), ("store", 35), ("app", 20))
NETWORKS = (("instagram", 35), ("whatsapp", 25), ("facebook", 20), ("tiktok", 12), ("x", 8))
RATINGS = ((5, 45), (4, 30), (3, 12), (2, 6), (1, 7))
STORES = 40
PRODUCTS = 5_000


class Weighted:
    """A fixed weighted choice, drawn with one random number."""

    def __init__(self, pairs: tuple[tuple[Any, int], ...]) -> None:
        self.values = [v for v, _ in pairs]
        self.cumulative: list[int] = []
        total = 0
        for _, w in pairs:
            total += w
            self.cumulative.append(total)
        self.total = total

    def draw(self, rng: random.Random) -> Any:
        x = rng.random() * self.total
        for value, edge in zip(self.values, self.cumulative, strict=True):
            if x < edge:
                return value
        return self.values[-1]


_ZONE, _TIER, _TYPE = Weighted(ZONES), Weighted(TIERS), Weighted(EVENT_MIX)
_CATEGORY, _CHANNEL = Weighted(CATEGORIES), Weighted(CHANNELS)
_NETWORK, _RATING = Weighted(NETWORKS), Weighted(RATINGS)


def event_properties(event_type: str, rng: random.Random) -> dict[str, Any]:
    if event_type == "purchase":
        # A long tail of spend: a median near 30, one order in ten above 100.
        amount = round(min(5_000.0, max(1.0, rng.lognormvariate(3.4, 0.9))), 2)
        return {"amount": amount, "category": _CATEGORY.draw(rng), "channel": _CHANNEL.draw(rng)}
    if event_type == "product_viewed":
        return {"category": _CATEGORY.draw(rng), "product_id": f"p-{rng.randrange(PRODUCTS)}"}
    if event_type == "store_visit":
        return {"store_id": f"store-{rng.randrange(1, STORES + 1):03d}"}
    if event_type == "share":
        return {"network": _NETWORK.draw(rng)}
    return {"rating": _RATING.draw(rng), "product_id": f"p-{rng.randrange(PRODUCTS)}"}


def batch_body(rng: random.Random, size: int, members: list[str], id_prefix: str) -> tuple[bytes, list[str]]:
    """A batch of `size` events over random members (JSON), and those members."""
    occurred_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    events = []
    who = []
    for k in range(size):
        member = members[rng.randrange(len(members))]
        event_type = _TYPE.draw(rng)
        who.append(member)
        events.append(
            {
                "event_id": f"{id_prefix}-{k}",
                "member_id": member,
                "type": event_type,
                "occurred_at": occurred_at,
                "properties": event_properties(event_type, rng),
            }
        )
    return json.dumps({"events": events}, separators=(",", ":")).encode(), who


# ---------------------------------------------------------------- the quests


QUESTS_YAML = """\
# Written by bench/event_ingest.py: 50 quests over the event types the benchmark sends.
# Most targets take a member more events than a run gives them (about 10 each at 5,000 events/s),
# so that their runs stay in progress and every event is a progress write; a few complete quickly
# (a big order, a review a month up to three times, store visits, the onboarding chain).
quests:
  # --- purchases
  - id: weekly-online-orders
    title: Ten online orders this week
    period: weekly
    goal: {event: purchase, count: 10, where: "channel == 'online' and amount >= 10"}
    reward: {points: 40, growth: 5}
    remaining_text: {one: 1 more online order, other: "{remaining} more online orders"}
  - id: weekly-spend
    title: Spend 1,500 this week
    period: weekly
    goal: {event: purchase, sum: amount, target: 1500}
    reward: {points: 50, growth: 10}
    remaining_text: "{remaining} more to spend this week"
  - id: monthly-spend
    title: Spend 5,000 this month
    period: monthly
    goal: {event: purchase, sum: amount, target: 5000}
    reward: {points: 150, growth: 20}
  - id: big-order
    title: One order of 100 or more
    goal: {event: purchase, count: 1, where: "amount >= 100"}
    reward: {points: 30}
  - id: fashion-month
    title: Eight fashion orders this month
    period: monthly
    goal: {event: purchase, count: 8, where: {category: [shoes, bags, clothing]}}
    reward: {points: 60}
  - id: app-orders-today
    title: Three app orders today
    period: daily
    goal: {event: purchase, count: 3, where: "channel == 'app'"}
    reward: {points: 20}
  - id: store-shopper
    title: Six store orders this week
    period: weekly
    goal: {event: purchase, count: 6, where: "channel == 'store'"}
    reward: {points: 40}
  - id: category-explorer
    title: Buy in eight departments
    goal: {event: purchase, distinct: category, target: 8}
    reward: {points: 80, growth: 10}
  - id: purchase-streak
    title: Order five days in a row
    goal: {event: purchase, streak: 5}
    reward: {points: 70}
  - id: weekly-category-mix
    title: Five departments this week
    period: weekly
    goal: {event: purchase, distinct: category, target: 5, where: "amount >= 20"}
    reward: {points: 45}
  - id: repeat-buyer
    title: Four orders of 25 or more
    period: weekly
    times: 3
    goal: {event: purchase, count: 4, where: "amount >= 25"}
    reward: {points: 25}
  - id: gift-giver
    title: Spend 400 on gifts this month
    period: monthly
    goal: {event: purchase, sum: amount, target: 400, where: {category: gifts}}
    reward: {points: 40}
  - id: tech-fan
    title: Spend 2,500 on electronics online or in the app
    goal:
      event: purchase
      sum: amount
      target: 2500
      where: "category == 'electronics' and channel != 'store'"
    reward: {points: 100, growth: 10}
  - id: beauty-week
    title: Five beauty orders this week
    period: weekly
    goal: {event: purchase, count: 5, where: {category: beauty}}
    reward: {points: 30}
  - id: small-treats
    title: Five small treats today
    period: daily
    goal: {event: purchase, count: 5, where: "amount < 15"}
    reward: {points: 10}
  - id: digital-month
    title: Fifteen online or app orders this month
    period: monthly
    goal: {event: purchase, count: 15, where: "channel in ['online', 'app']"}
    reward: {points: 80}
  - id: home-and-garden
    title: Home and garden, both this month
    period: monthly
    goal: {event: purchase, distinct: category, target: 2, where: {category: [home, garden]}}
    reward: {points: 30}
  - id: gold-spend
    title: Three orders of 50 this week
    description: For Gold and Diamond members.
    period: weekly
    tiers: [gold, diamond]
    goal: {event: purchase, count: 3, where: "amount >= 50"}
    reward: {points: 60}
  - id: loyal-regular
    title: Ten orders after getting started
    requires: [onboarding]
    goal: {event: purchase, count: 10}
    reward: {points: 120, growth: 15}
  - id: online-not-grocery
    title: Twelve online orders beyond groceries this month
    period: monthly
    goal: {event: purchase, count: 12, where: "channel == 'online' and not (category in ['grocery'])"}
    reward: {points: 60}
  # --- product views
  - id: daily-browse
    title: Browse ten products today
    period: daily
    goal: {event: product_viewed, count: 10}
    reward: {points: 5}
  - id: explorer
    title: Look around ten departments
    goal: {event: product_viewed, distinct: category, target: 10}
    reward: {points: 60, growth: 10}
    remaining_text: {one: 1 more department to discover, other: "{remaining} more departments to discover"}
  - id: weekly-browse
    title: Forty product pages this week
    period: weekly
    goal: {event: product_viewed, count: 40}
    reward: {points: 20}
  - id: gadget-window
    title: Eight gadgets this week
    period: weekly
    goal: {event: product_viewed, count: 8, where: {category: electronics}}
    reward: {points: 10}
  - id: browse-streak
    title: Browse seven days in a row
    goal: {event: product_viewed, streak: 7}
    reward: {points: 40}
  - id: monthly-browser
    title: A hundred product pages this month
    period: monthly
    goal: {event: product_viewed, count: 100}
    reward: {points: 50}
  - id: style-scout
    title: Twelve fashion pages this week
    period: weekly
    goal: {event: product_viewed, count: 12, where: "category in ['shoes', 'bags', 'clothing']"}
    reward: {points: 15}
  - id: readers-corner
    title: Six books or toys this week
    period: weekly
    goal: {event: product_viewed, count: 6, where: "category == 'books' or category == 'toys'"}
    reward: {points: 10}
  - id: weekly-departments
    title: Six departments this week
    period: weekly
    goal: {event: product_viewed, distinct: category, target: 6}
    reward: {points: 15}
  - id: product-hunter
    title: Twenty-five different products
    goal: {event: product_viewed, distinct: product_id, target: 25}
    reward: {points: 50}
  # --- shares
  - id: share-twice
    title: Share twice this week
    period: weekly
    goal: {event: share, count: 2}
    reward: {points: 10}
  - id: social-butterfly
    title: Share on four networks
    goal: {event: share, distinct: network, target: 4}
    reward: {points: 40}
  - id: insta-month
    title: Five Instagram shares this month
    period: monthly
    goal: {event: share, count: 5, where: {network: instagram}}
    reward: {points: 25}
  - id: daily-sharer
    title: Three shares today
    period: daily
    goal: {event: share, count: 3}
    reward: {points: 10}
  - id: share-streak
    title: Share three days in a row
    goal: {event: share, streak: 3}
    reward: {points: 20}
  # --- reviews
  - id: reviewer
    title: Write a review
    description: Earn for up to three a month.
    period: monthly
    times: 3
    goal: {event: review_posted, count: 1, where: "rating >= 1"}
    reward: {points: 15, growth: 3}
  - id: five-stars
    title: Three five-star reviews this week
    period: weekly
    goal: {event: review_posted, count: 3, where: "rating == 5"}
    reward: {points: 20}
  - id: critic
    title: Ten reviews
    goal: {event: review_posted, count: 10}
    reward: {points: 60}
  - id: honest-feedback
    title: Four reviews of three stars or less this month
    period: monthly
    goal: {event: review_posted, count: 4, where: "rating <= 3"}
    reward: {points: 20}
  - id: review-variety
    title: Review five different products
    goal: {event: review_posted, distinct: product_id, target: 5}
    reward: {points: 40}
  # --- store visits
  - id: store-week
    title: Two store visits this week
    period: weekly
    times: 3
    goal: {event: store_visit, count: 2}
    reward: {points: 15}
  - id: store-hopper
    title: Visit five different stores
    goal: {event: store_visit, distinct: store_id, target: 5}
    reward: {points: 50}
  - id: store-regular
    title: Eight store visits this month
    period: monthly
    goal: {event: store_visit, count: 8}
    reward: {points: 40}
  - id: visit-streak
    title: Visit a store four days in a row
    goal: {event: store_visit, streak: 4}
    reward: {points: 30}
  - id: flagship
    title: Three flagship visits this month
    period: monthly
    goal: {event: store_visit, count: 3, where: {store_id: [store-001, store-002, store-003]}}
    reward: {points: 30}
  # --- 3-step chains
  - id: onboarding
    title: Get started
    steps:
      - id: look-around
        title: Look at three products
        goal: {event: product_viewed, count: 3}
        reward: {points: 5}
      - {id: tell-a-friend, title: Share something, goal: {event: share, count: 1}, reward: {points: 10}}
      - id: first-order
        title: An order of 20 or more
        goal: {event: purchase, count: 1, where: "amount >= 20"}
        reward: {points: 20}
        remaining_text: 1 more order to unlock the welcome coupon
    reward: {points: 100, growth: 10}
  - id: big-spender
    title: Big spender of the week
    period: weekly
    steps:
      - id: spend-200
        title: Spend 200
        goal: {event: purchase, sum: amount, target: 200}
        reward: {points: 10}
      - id: spend-800
        title: Spend 800 more
        goal: {event: purchase, sum: amount, target: 800}
        reward: {points: 30}
      - id: spend-2000
        title: Spend 2,000 more
        goal: {event: purchase, sum: amount, target: 2000}
        reward: {points: 80}
        remaining_text: "{remaining} more to the top of the week"
    reward: {points: 200, growth: 20}
  - id: community-voice
    title: Community voice
    period: monthly
    steps:
      - id: first-review
        title: Write a review
        goal: {event: review_posted, count: 1}
        reward: {points: 10}
      - {id: spread-the-word, title: Share three times, goal: {event: share, count: 3}, reward: {points: 15}}
      - id: trusted-reviewer
        title: Five good reviews
        goal: {event: review_posted, count: 5, where: "rating >= 4"}
        reward: {points: 40}
    reward: {points: 120, growth: 12}
  - id: in-store-journey
    title: In-store journey
    steps:
      - {id: drop-by, title: Visit a store twice, goal: {event: store_visit, count: 2}, reward: {points: 10}}
      - id: buy-in-store
        title: Three orders in a store
        goal: {event: purchase, count: 3, where: "channel == 'store'"}
        reward: {points: 30}
      - id: store-departments
        title: Four departments in store
        goal: {event: purchase, distinct: category, target: 4, where: "channel == 'store'"}
        reward: {points: 50}
    reward: {points: 150, growth: 15}
  - id: collector
    title: Collector
    steps:
      - id: window-shop
        title: Browse five departments
        goal: {event: product_viewed, distinct: category, target: 5}
        reward: {points: 10}
      - id: mixed-basket
        title: Buy in three departments
        goal: {event: purchase, distinct: category, target: 3}
        reward: {points: 30}
      - id: spend-800-total
        title: Spend 800
        goal: {event: purchase, sum: amount, target: 800}
        reward: {points: 60}
    reward: {points: 150, growth: 15}
"""
QUEST_COUNT = len(yaml.safe_load(QUESTS_YAML)["quests"])
BADGE_COUNT = 100


def badges_yaml(count: int = BADGE_COUNT) -> str:
    """`count` badges over the event types the benchmark sends, in every kind of criterion: count,
    sum, distinct and streak goals with filters, levels, quests completed (of the bench quests),
    check-in streaks, tiers, other badges held, hidden ones, limited editions and repeatable ones.
    Like the quests, most targets take more events than a run gives a member."""
    quest_ids = [q["id"] for q in yaml.safe_load(QUESTS_YAML)["quests"]]
    goals = [
        "{event: purchase, count: %d}",
        "{event: purchase, count: %d, where: \"channel == 'online'\"}",
        "{event: purchase, sum: amount, target: %d}",
        "{event: product_viewed, distinct: category, target: %d}",
        "{event: product_viewed, count: %d, where: {category: [shoes, bags]}}",
        "{event: share, count: %d}",
        '{event: review_posted, count: %d, where: "rating >= 4"}',
        "{event: store_visit, streak: %d}",
        "{event: store_visit, distinct: store_id, target: %d}",
    ]
    lines = [
        "# Written by bench/event_ingest.py: badges over the event types the benchmark sends.",
        "badges:",
    ]
    for i in range(count):
        bid = f"bench-badge-{i:03d}"
        kind = i % 10
        extra = ""
        if kind < 7:
            goal = goals[i % len(goals)]
            n = 3 if "streak" in goal else 8 if "distinct" in goal else 2000 if "sum" in goal else 25 + i
            criteria = "{goal: " + (goal % n) + "}"
            if i % 3 == 0 and "streak" not in goal and "distinct" not in goal:
                criteria = "{goal: " + (goal % 5) + "}"
                extra = f"\n    levels: [{{name: bronze, target: 5}}, {{name: silver, target: {n}}}, " + (
                    f"{{name: gold, target: {n * 4}}}]"
                )
            if i % 11 == 0:
                extra += "\n    hidden: true"
            if i % 13 == 0:
                extra += '\n    available: {start: "2026-01-01T00:00:00", end: "2030-01-01T00:00:00"}'
        elif kind == 7:
            criteria = f"{{quest: {quest_ids[i % len(quest_ids)]}}}"
            if i % 2:
                extra = "\n    repeatable: true"
        elif kind == 8:
            criteria = "{tier: gold}" if i % 2 else "{streak: 7}"
        else:
            criteria = "{badges: {count: 3}}"
        lines.append(
            f"  - id: {bid}\n    name: Bench badge {i}\n    criteria: {criteria}\n"
            f"    reward: {{points: 5, growth: 1}}{extra}"
        )
    return "\n".join(lines) + "\n"


def write_content(dest: Path, with_quests: bool, with_badges: bool = False) -> Path:
    """A copy of content/ whose quests/ and badges/ folders hold only the benchmark's, or nothing."""
    shutil.copytree(ROOT / "content", dest)
    for folder in ("quests", "badges"):
        shutil.rmtree(dest / folder, ignore_errors=True)
        (dest / folder).mkdir()
    if with_quests:
        (dest / "quests" / "bench.yaml").write_text(QUESTS_YAML)
    if with_badges:
        (dest / "badges" / "bench.yaml").write_text(badges_yaml())
    return dest


# ---------------------------------------------------------------- setup: members


async def create_profiled_members(
    port: int, api_key: str, member_ids: list[str], seed: int
) -> tuple[Counter[str], Counter[str]]:
    """PUT every member with a time zone and a tier; (zones used, tiers used)."""
    rng = random.Random(seed)
    profiles = {
        m: {"display_name": f"Bench {m}", "timezone": _ZONE.draw(rng), "tier": _TIER.draw(rng)}
        for m in member_ids
    }
    await create_members([port], api_key, member_ids, profiles=profiles)
    return Counter(p["timezone"] for p in profiles.values()), Counter(p["tier"] for p in profiles.values())


# ---------------------------------------------------------------- the load


@dataclass
class Load:
    port: int
    api_key: str
    members: list[str]
    batch_size: int
    concurrency: int
    seconds: float
    warmup: float
    max_batches: int
    tag: str  # unique per run: event ids start with it
    watch_pids: list[int]
    seed: int = 1


async def drive(load: Load) -> tuple[dict[str, Any], Counter[str]]:
    """Closed loop: each connection sends a batch, waits for its answer, sends the next."""
    by_member: Counter[str] = Counter()  # accepted events, whole run

    def make(rng: random.Random, tag: str) -> tuple[bytes, list[str]]:
        return batch_body(rng, load.batch_size, load.members, tag)

    def settle(who: list[str], out: dict[str, Any] | None) -> None:
        if out is not None and int(out["accepted"]) == len(who) and not out["rejected"]:
            by_member.update(who)

    tally = await drive_batches(
        BatchLoad(
            port=load.port,
            api_key=load.api_key,
            connections=load.concurrency,
            seconds=load.seconds,
            warmup=load.warmup,
            max_batches=load.max_batches,
            tag=load.tag,
            watch_pids=load.watch_pids,
            make=make,
            settle=settle,
            seed=load.seed,
        )
    )
    batches = len(tally.latencies)
    ok = tally.statuses.get(200, 0)
    figures = {
        "concurrency": load.concurrency,
        "batch_size": load.batch_size,
        "warmup_s": load.warmup,
        "seconds": load.seconds,
        "batches": batches,
        "batches_ok": ok,
        "accepted_events": tally.accepted,
        "events_per_s": round(tally.accepted / load.seconds, 1),
        "batches_per_s": round(ok / load.seconds, 1),
        "latency": latency_summary(tally.latencies),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "errors": dict(tally.errors),
        "failed_batches": batches - ok + sum(n for k, n in tally.errors.items() if not k.startswith("http_")),
        "rejected_events": dict(tally.rejected),
        "duplicates": tally.duplicates,
        "issued_batches_total": tally.issued,
        "accepted_events_total": tally.accepted_total,
        "cpu": tally.cpu,
    }
    return figures, by_member


def cpu_figures(figures: dict[str, Any], server_pid: int) -> None:
    """Server and PostgreSQL CPU in the window: % of one core, and ms per batch."""
    cpu = figures.get("cpu", {})
    pct = cpu.get("watched_pct_of_one_core", {}).get(str(server_pid))
    pg = cpu.get("pct_of_one_core_by_group", {}).get("postgres")
    per_s = figures["batches_per_s"]
    figures["server_cpu_pct_of_one_core"] = pct
    figures["server_cpu_ms_per_batch"] = round(pct * 10 / per_s, 2) if pct and per_s else None
    figures["postgres_cpu_ms_per_batch"] = round(pg * 10 / per_s, 2) if pg and per_s else None


# ---------------------------------------------------------------- what was stored


QUERIES = {
    "events_by_type": (
        "SELECT e.type, count(*), count(d.event_id) FROM member_events e "
        "LEFT JOIN dispatched_events d ON d.event_id = e.event_id WHERE e.event_id LIKE {p} GROUP BY e.type"
    ),
    "outbox": (
        "SELECT kind, count(*), sum(CASE WHEN attempts > 0 THEN 1 ELSE 0 END) FROM outbox GROUP BY kind"
    ),
    "quest_runs": (
        "SELECT count(*), count(DISTINCT member_id), "
        "sum(CASE WHEN completions = 0 AND CAST(state AS TEXT) NOT IN ('{{}}', '') THEN 1 ELSE 0 END), "
        "sum(CASE WHEN completions > 0 THEN 1 ELSE 0 END), coalesce(sum(completions), 0) FROM quest_runs"
    ),
    "completions_by_quest": (
        "SELECT quest_id, sum(completions) FROM quest_runs WHERE completions > 0 "
        "GROUP BY quest_id ORDER BY 2 DESC"
    ),
    "progress_by_quest": "SELECT quest_id, count(*) FROM quest_runs GROUP BY quest_id",
    "ledger": "SELECT source, count(*) FROM ledger_entries GROUP BY source",
    "outbox_errors": (
        "SELECT kind, last_error, count(*) FROM outbox WHERE attempts > 0 GROUP BY kind, last_error "
        "ORDER BY 3 DESC"
    ),
}


def sql_rows(db: SqlDatabase, tag: str) -> dict[str, list[tuple[Any, ...]]]:
    """The QUERIES on the run's database (the server may still be running)."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    if db.kind == "sqlite":
        conn = sqlite3.connect(db.url.split(":///", 1)[1], timeout=30)
        try:
            for name, sql in QUERIES.items():
                args = (tag + "-%",) if "{p}" in sql else ()
                rows[name] = [tuple(r) for r in conn.execute(sql.format(p="?"), args).fetchall()]
        finally:
            conn.close()
        return rows

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(db.url.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)
        try:
            for name, sql in QUERIES.items():
                args = (tag + "-%",) if "{p}" in sql else ()
                rows[name] = [tuple(r) for r in await conn.fetch(sql.format(p="$1"), *args)]
        finally:
            await conn.close()

    asyncio.run(run())
    return rows


def stored_summary(rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, Any]:
    by_type = {t: {"stored": int(n), "dispatched": int(d)} for t, n, d in rows["events_by_type"]}
    runs, run_members, in_progress, completed_runs, completions = (int(x or 0) for x in rows["quest_runs"][0])
    return {
        "events_by_type": by_type,
        "events_stored": sum(v["stored"] for v in by_type.values()),
        "events_dispatched": sum(v["dispatched"] for v in by_type.values()),
        "outbox_left": {k: {"rows": int(n), "failed": int(f or 0)} for k, n, f in rows["outbox"]},
        "quest_runs": runs,
        "quest_run_members": run_members,
        "quest_runs_in_progress": in_progress,
        "quest_runs_completed": completed_runs,
        "quest_completions": completions,
        "completions_by_quest": {q: int(n) for q, n in rows["completions_by_quest"]},
        "runs_by_quest": {q: int(n) for q, n in rows["progress_by_quest"]},
        "ledger_entries_by_source": {s: int(n) for s, n in rows["ledger"]},
        "outbox_errors": [
            {"kind": k, "error": (e or "")[:300], "rows": int(n)} for k, e, n in rows["outbox_errors"]
        ],
    }


def member_views(env: dict[str, str], port: int, member_ids: list[str]) -> list[dict[str, Any]]:
    """`GET /v1/quests` as each member sees it (member token from `engage token`), summarised."""
    views = []
    for member_id in member_ids:
        lines = [line for line in engage_cli(env, "token", member_id).splitlines() if line.strip()]
        request = urllib.request.Request(
            f"http://{LOOPBACK}:{port}/v1/quests", headers={"Authorization": f"Bearer {lines[-1].strip()}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            quests = json.loads(response.read())["quests"]
        status = Counter(q["status"] for q in quests)
        moving = [q for q in quests if q["status"] == "active" and q["progress"] > 0]
        example = max(moving, key=lambda q: q["progress"] / q["target"], default=None)
        views.append(
            {
                "member_id": member_id,
                "quests": len(quests),
                "in_progress": len(moving),
                "completed": status.get("completed", 0),
                "status": dict(status),
                "example": (
                    f"{example['quest_id']} {example['progress']:g}/{example['target']:g} "
                    f"({example['remaining_text']})"
                    if example
                    else None
                ),
            }
        )
    return views


# ---------------------------------------------------------------- the profiler


def profiled_server(env: dict[str, str], port: int, out: Path) -> ServerProcess:
    """The server under cProfile, which writes `out` when the server exits (after SIGTERM)."""
    argv = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "server.cli", "serve"]
    return ServerProcess(
        "engage-profiled", [*argv, "--host", LOOPBACK, "--port", str(port)], env, port, "/ready"
    )


def stop_profiled(server: ServerProcess, timeout: float = 180) -> None:
    """SIGINT, so that cProfile gets to write its file.

    uvicorn shuts down gracefully on SIGINT and SIGTERM alike, then raises the signal again with the
    default handler: SIGTERM would end the process there, before cProfile writes; SIGINT becomes a
    KeyboardInterrupt, which `server.cli.main` turns into `sys.exit`, which cProfile catches.
    """
    proc = server.proc
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop_process(proc)


def _where(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name  # a built-in: "<method 'execute' of ...>"
    for base in (str(ROOT) + "/", sys.prefix + "/lib/python3.11/site-packages/", sys.base_prefix + "/lib/"):
        if filename.startswith(base):
            filename = filename[len(base) :]
            break
    return f"{filename}:{line}({name})"


def _package(filename: str) -> str:
    """Where a function lives, coarsely: a site package, the server's module, the stdlib, C built-ins."""
    if filename == "~":
        return "(C built-ins)"
    if "/site-packages/" in filename:
        return filename.split("/site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if filename.startswith(str(ROOT / "server") + "/"):
        return "server/" + filename[len(str(ROOT / "server")) + 1 :].split("/", 1)[0].removesuffix(".py")
    return "(stdlib and other)"


def profile_top(path: Path, top: int = 25) -> dict[str, Any]:
    stats = pstats.Stats(str(path))
    entries = []
    by_package: Counter[str] = Counter()
    for func, (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        entries.append({"function": _where(func), "ncalls": nc, "tottime": tt, "cumtime": ct})
        by_package[_package(func[0])] += tt
    return {
        "file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "total_s": round(stats.total_tt, 2),  # type: ignore[attr-defined]
        "by_cumulative": sorted(entries, key=lambda e: -e["cumtime"])[:top],
        "by_total": sorted(entries, key=lambda e: -e["tottime"])[:top],
        "own_time_by_package": {k: round(v, 3) for k, v in by_package.most_common()},
    }


def print_profile(profile: dict[str, Any], title: str) -> None:
    total = profile["total_s"] or 1.0
    for key, label in (("by_cumulative", "cumulative"), ("by_total", "total (own) time")):
        print(
            f"\n  {title}: top {len(profile[key])} by {label} "
            f"(profile {profile['total_s']:.1f} s, wall clock)"
        )
        if key == "by_cumulative":
            print(
                "    (cumulative times of coroutines, and of code around SQLAlchemy's greenlet switches,\n"
                "    also count time spent switched away: they overlap and can exceed the profile;\n"
                "    own time is the sounder guide)"
            )
        print(f"    {'ncalls':>10} {'tottime':>8} {'cumtime':>8} {'own %':>6}  function")
        for e in profile[key]:
            print(
                f"    {e['ncalls']:>10,} {e['tottime']:>8.2f} {e['cumtime']:>8.2f} "
                f"{100 * e['tottime'] / total:>5.1f}%  {e['function']}"
            )
    print(f"\n  {title}: own time by package (of {profile['total_s']:.1f} s)")
    for package, seconds in list(profile["own_time_by_package"].items())[:12]:
        print(f"    {seconds:>8.2f} s {100 * seconds / total:>5.1f}%  {package}")


# ---------------------------------------------------------------- one measurement


def run_phase(
    kind: str, with_quests: bool, args: argparse.Namespace, with_badges: bool = False
) -> dict[str, Any]:
    """One server with (or without) the quests (and the badges), on a database, a Redis and a
    content dir of its own."""
    rid = run_id()
    prefix = f"engage-bench-{rid}:"
    phase = "badges" if with_badges else "quests" if with_quests else "baseline"
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        data_dir, db, redis_url = services_for_run(stack, args, kind, rid, prefix)
        content = write_content(data_dir / "content", with_quests, with_badges)
        secret = f"bench-{rid}-{os.urandom(8).hex()}"
        env = engage_env(db, redis_url, prefix, data_dir, jwt_secret=secret, ENGAGE_CONTENT_DIR=str(content))
        validation = engage_cli(env, "content", "validate", str(content)).strip().splitlines()
        engage_cli(env, "migrate")
        api_key = create_api_key(env)
        port = free_port()
        server = engage_server("engage", env, port)
        stack.callback(server.stop)
        server.start()

        t0 = time.monotonic()
        members = [f"ev-{rid}-{i}" for i in range(args.members)]
        zones, tiers = run_async(create_profiled_members(port, api_key, members, seed=7))
        setup_s = time.monotonic() - t0
        print(
            f"  {phase}: {len(members):,} members created in {setup_s:.1f} s "
            f"({len(zones)} time zones); content: {validation[-1] if validation else 'valid'}",
            flush=True,
        )

        profile_out = RESULTS_DIR / f"event_ingest.{db.kind}.{phase}.prof"
        if args.profile:
            # The profile should hold the load, not the setup: the same server again, under cProfile.
            server.stop()
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            profile_out.unlink(missing_ok=True)
            server = profiled_server(env, port, profile_out)
            stack.callback(server.stop)
            server.start()
        print(f"  {phase}: load running ({args.warmup:g} s warm-up + {args.seconds:g} s) ...", flush=True)
        load = Load(
            port=port,
            api_key=api_key,
            members=members,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            seconds=args.seconds,
            warmup=args.warmup,
            max_batches=args.max_batches,
            tag=f"e{rid}",
            watch_pids=[server.pid],
        )
        figures, by_member = run_async(drive(load))
        cpu_figures(figures, server.pid)
        # Right after the last answer, before any drain could have taken a claimed row (30 s).
        stored = stored_summary(sql_rows(db, load.tag))
        sample = [m for m, _ in by_member.most_common(args.sample_members // 2)]
        rng = random.Random(3)
        others = [m for m in by_member if m not in sample]
        sample += rng.sample(others, min(len(others), args.sample_members - len(sample)))
        views = member_views(env, port, sample) if with_quests else []
        server_pid = server.pid
        if args.profile:
            stop_profiled(server)
        server.stop()

    result: dict[str, Any] = {
        "phase": phase,
        "database": db.kind,
        "label": db.label,
        "quests": QUEST_COUNT if with_quests else 0,
        "members": args.members,
        "member_zones": dict(zones.most_common()),
        "member_tiers": dict(tiers.most_common()),
        "setup_s": round(setup_s, 1),
        "load": figures,
        "stored": stored,
        "member_views": views,
        "events_per_member": round(sum(by_member.values()) / max(1, args.members), 2),
        "server_pid": server_pid,
        "profiled": args.profile,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    if args.profile:
        if profile_out.exists():
            result["profile"] = profile_top(profile_out)
        else:
            result["profile_missing"] = str(profile_out)
    return result


def run_database(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"\nevent_ingest on {kind}: {args.concurrency} connections, batches of {args.batch_size}, "
        f"{args.members:,} members, {args.warmup:g} s warm-up + {args.seconds:g} s per measurement"
        + (" (server under cProfile)" if args.profile else ""),
        flush=True,
    )
    baseline = run_phase(kind, False, args)
    quests = run_phase(kind, True, args)
    badges = run_phase(kind, True, args, with_badges=True)
    b, q = baseline["load"]["events_per_s"], quests["load"]["events_per_s"]
    bq = badges["load"]["events_per_s"]
    run = {
        "database": kind,
        "baseline": baseline,
        "quests": quests,
        "badges": badges,
        "badges_ratio": round(bq / q, 4) if q else None,
        "ratio": round(q / b, 4) if b else None,
        "target": {"events_per_s": TARGET_EVENTS_PER_S, "on": "postgres", "applies": kind == "postgres"},
    }
    run["target"]["met"] = q >= TARGET_EVENTS_PER_S
    report(run, args)
    report_badges(run)
    return run


def report_badges(run: dict[str, Any]) -> None:
    """The badge engine's cost: the same load with the quests and BADGE_COUNT badges, against the
    quests alone, measured in the same run (the badges must not halve it)."""
    quests, badges = run["quests"]["load"], run["badges"]["load"]
    print(
        f"\n  with {QUEST_COUNT} quests + {BADGE_COUNT} badges: {badges['events_per_s']:,.1f} events/s, "
        f"p50 {badges['latency']['p50_ms']} ms, p99 {badges['latency']['p99_ms']} ms, "
        f"server CPU {badges['server_cpu_ms_per_batch']} ms/batch, errors {badges['failed_batches']}"
    )
    stored = run["badges"]["stored"]
    print(f"  [badges] ledger entries by source: {stored['ledger_entries_by_source']}")
    ratio = run["badges_ratio"]
    shown = "-" if ratio is None else f"{ratio:.1%}"
    met = ratio is not None and ratio >= 0.5
    print(
        f"  target: the badge engine must not halve the quest engine's figure: {shown} of "
        f"{quests['events_per_s']:,.1f} events/s (quests only, same run): {'MET' if met else 'NOT MET'}"
    )


# ---------------------------------------------------------------- report


def _dispatch_lines(stored: dict[str, Any], with_quests: bool) -> list[str]:
    """Whether every stored event that something listens to was dispatched within its request."""
    # Without quests only the purchase earning rule listens; the dispatch skips the other types.
    listened = set(stored["events_by_type"]) if with_quests else {"purchase"}
    parts = [f"{t} {v['dispatched']:,}/{v['stored']:,}" for t, v in sorted(stored["events_by_type"].items())]
    wanted = sum(v["stored"] for t, v in stored["events_by_type"].items() if t in listened)
    done = sum(v["dispatched"] for t, v in stored["events_by_type"].items() if t in listened)
    left = stored["outbox_left"].get("dispatch", {"rows": 0, "failed": 0})
    verdict = (
        "all dispatched inside their requests"
        if done == wanted
        else f"{wanted - done:,} not dispatched ({left['failed']:,} dispatch rows failed, left for the drain)"
    )
    return [
        f"dispatch receipts/stored events right after the last answer: {', '.join(parts)}",
        f"events with a listener ({', '.join(sorted(listened))}): {done:,} of {wanted:,} dispatched -- "
        f"{verdict}; dispatch rows still in the outbox: {left['rows']:,} ({left['failed']:,} failed, "
        "the others applied and awaiting their batched deletion)",
    ]


def report(run: dict[str, Any], args: argparse.Namespace) -> None:
    baseline, quests = run["baseline"], run["quests"]
    rows = []
    for name, phase in (("baseline (no quests)", baseline), (f"{QUEST_COUNT} quests", quests)):
        f = phase["load"]
        rows.append(
            [
                name,
                f["events_per_s"],
                f["batches_per_s"],
                f["latency"]["p50_ms"],
                f["latency"]["p99_ms"],
                f["failed_batches"],
                sum(f["rejected_events"].values()),
                f["server_cpu_pct_of_one_core"] if f["server_cpu_pct_of_one_core"] is not None else "-",
                f["server_cpu_ms_per_batch"] if f["server_cpu_ms_per_batch"] is not None else "-",
                f["postgres_cpu_ms_per_batch"] if f["postgres_cpu_ms_per_batch"] is not None else "-",
            ]
        )
    print_table(
        f"event_ingest on {quests['label']} ({args.concurrency} connections, "
        f"{args.batch_size} events a batch, "
        f"{args.members:,} members, {args.seconds:g} s measured)"
        + (" -- UNDER cProfile, not for judging" if args.profile else ""),
        [
            "",
            "events/s",
            "batches/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "rejected",
            "server CPU %",
            "server CPU ms/batch",
            "pg CPU ms/batch",
        ],
        rows,
    )
    ratio = run["ratio"]
    print(f"\n  with quests / without: {'-' if ratio is None else f'{ratio:.1%}'}")
    for name, phase in (("baseline", baseline), ("quests", quests)):
        f = phase["load"]
        names = {phase["server_pid"]: "server"}
        print(f"  CPU in the window, % of one core [{name}]: {describe_cpu(f['cpu'], names)}")
        warning = foreign_load_warning(f["cpu"])
        if warning:
            print(f"{warning} [{name}]")
        if f["errors"] or f["rejected_events"] or f["duplicates"]:
            print(
                f"  [{name}] errors {f['errors']}, rejected {f['rejected_events']}, "
                f"duplicates {f['duplicates']}"
            )
        for line in _dispatch_lines(phase["stored"], phase["quests"] > 0):
            print(f"  [{name}] {line}")
        for e in phase["stored"]["outbox_errors"][:3]:
            print(f"  [{name}] outbox rows failing ({e['kind']}, {e['rows']:,}): {e['error'][:200]}")
    s = quests["stored"]
    top = ", ".join(f"{q} {n:,}" for q, n in list(s["completions_by_quest"].items())[:8])
    print(
        f"  [quests] quest runs: {s['quest_runs']:,} for {s['quest_run_members']:,} members "
        f"({len(s['runs_by_quest'])} quests), {s['quest_runs_in_progress']:,} in progress, "
        f"{s['quest_runs_completed']:,} with a completion; completions {s['quest_completions']:,}"
        + (f" ({top}, ...)" if top else "")
    )
    print(f"  [quests] ledger entries by source: {s['ledger_entries_by_source']}")
    print(f"  [quests] events per member over the run: {quests['events_per_member']:g}")
    for v in quests["member_views"]:
        print(
            f"  [quests] GET /v1/quests as {v['member_id']}: {v['in_progress']} in progress, "
            f"{v['completed']} completed, of {v['quests']} {v['status']}; e.g. {v['example']}"
        )
    met = run["target"]["met"]
    where = "" if run["target"]["applies"] else " (the target is defined on PostgreSQL; this run used SQLite)"
    caveat = " (under cProfile: not a valid measurement)" if args.profile else ""
    print(
        f"  target: >= {TARGET_EVENTS_PER_S:,} events/s on one process with PostgreSQL: "
        f"{'MET' if met else 'NOT MET'} ({quests['load']['events_per_s']:,.1f} events/s "
        f"with the {QUEST_COUNT} quests, "
        f"{baseline['load']['events_per_s']:,.1f} without){where}{caveat}"
    )
    if "profile" in quests:
        print_profile(quests["profile"], f"server profile, {QUEST_COUNT} quests")
        print(f"\n  profiles: {quests['profile']['file']}, {baseline.get('profile', {}).get('file', '-')}")
    elif args.profile:
        print(f"  WARNING: no profile was written ({quests.get('profile_missing')})")


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--database",
        choices=["postgresql", "postgres", "sqlite", "both"],
        default="postgresql",
        help="both: SQLite, then PostgreSQL",
    )
    add_service_args(p)
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per measurement")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    p.add_argument("--concurrency", "--connections", type=int, default=64, help="batches in flight")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--members", type=int, default=10_000)
    p.add_argument("--max-batches", type=int, default=100_000, help="per measurement, warm-up included")
    p.add_argument("--sample-members", type=int, default=5, help="members whose GET /v1/quests is read")
    p.add_argument(
        "--profile",
        action="store_true",
        help="run the server under cProfile -> bench/results/event_ingest.<db>.<phase>.prof; print its top",
    )
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.members < 1 or args.concurrency < 1:
        p.error("--batch-size, --members and --concurrency are at least 1")
    exit_on_sigterm()

    started = time.monotonic()
    kinds = {"postgresql": ["postgres"], "postgres": ["postgres"], "sqlite": ["sqlite"]}.get(
        args.database, ["sqlite", "postgres"]
    )
    results: dict[str, Any] = {
        "benchmark": "event_ingest",
        "machine": machine(),
        "settings": {
            k: getattr(args, k)
            for k in ("seconds", "warmup", "concurrency", "batch_size", "members", "max_batches", "profile")
        },
        "runs": {},
    }
    print(f"event_ingest: server at {results['machine']['server_source']}")
    for kind in kinds:
        if kind == "postgres" and not postgres_reachable(args.postgres_url):
            if args.database != "both":
                raise SystemExit(f"PostgreSQL is not reachable at {args.postgres_url.split('@')[-1]}")
            print(f"\n  PostgreSQL is not reachable at {args.postgres_url.split('@')[-1]}: not measured")
            results["runs"]["postgres"] = {"skipped": "PostgreSQL not reachable"}
            continue
        results["runs"][kind] = run_database(kind, args)
    pg = results["runs"].get("postgres", {})
    results["target"] = {
        "events_per_s": TARGET_EVENTS_PER_S,
        "on": "postgres",
        "met": pg["target"]["met"] if "target" in pg else None,
        "profiled": args.profile,
    }
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    path = write_results("event_ingest.profile" if args.profile else "event_ingest", results)
    print(f"\n  figures: {path.relative_to(ROOT)} ({results['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
