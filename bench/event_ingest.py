"""Event ingestion: accepted member events per second through `POST /v1/events`, with and without
quests and badges.

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
measured includes the quest and badge engines. Each database is measured three times in the same
run, each time with a database, a Redis and a content directory of its own (a copy of content/):

1. baseline: the same load with no quests (an empty quests/ folder; purchases still earn points);
2. quests: 50 quests written by this benchmark (quests/bench.yaml): count, sum, distinct and streak
   goals, `where` filters, once / daily / weekly / monthly periods, 3-step chains, repeats
   (`times: 3`), a tier-only quest and a prerequisite. Targets are large enough that most members
   stay in progress for the run (progress writes are what is measured); some quests complete;
3. badges: the same 50 quests and 100 badges written by this benchmark (badges/bench.yaml): the
   target's configuration.

Right after the load (the server still running) the stored events are compared, in SQL, with their
dispatch receipts: a claim on an outbox row lasts 30 s and the drain only takes lapsed ones, so an
event dispatched by then was dispatched inside its own request. Quest progress rows and
completions are counted, and `GET /v1/quests` is read for a few members with their member token
(`engage token`). The target: at least 5,000 accepted events/s with the 50 quests and 100 badges,
on one process with PostgreSQL.

Then the checks (bench/checks.py), for each measurement: the outbox drained, every event the server
accepted stored and dispatched once (a receipt in `dispatched_events` per event of a type something
listens to), `engage ledger verify` clean and the boards equal to SQL (`engage leaderboards
check`). The run exits 1 when a check fails.

`--profile` samples each measured server with py-spy over the measured window
(bench/results/event_ingest.<db>.<phase>.pyspy.txt, collapsed stacks) and prints where the CPU went
with the quests and badges. py-spy costs the server a little: judge the figures of a run without it.

    python -m bench.event_ingest [--database postgresql|sqlite|both] [--seconds 20] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
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
    print_profile,
    print_table,
    run_id,
    services_for_run,
    sql_rows,
    write_results,
)
from bench.loadgen import BatchLoad, create_members, drive_batches, run_async

TARGET_EVENTS_PER_S = 5_000  # with the 50 quests and 100 badges, one server process, PostgreSQL

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


def stored_rows(db: SqlDatabase, tag: str) -> dict[str, list[tuple[Any, ...]]]:
    """The QUERIES on the run's database (the server may still be running)."""
    return sql_rows(db, QUERIES, tag + "-%")


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


# ---------------------------------------------------------------- one measurement

# The measurements of a database, in order: (with the bench quests, with the bench badges).
PHASES = {"baseline": (False, False), "quests": (True, False), "badges": (True, True)}
PHASE_NAMES = {
    "baseline": "baseline (no quests)",
    "quests": f"{QUEST_COUNT} quests",
    "badges": f"{QUEST_COUNT} quests + {BADGE_COUNT} badges",
}
TARGET_PHASE = "badges"


def run_phase(kind: str, phase: str, args: argparse.Namespace) -> dict[str, Any]:
    """One server with the content of `phase`, on a database, a Redis and a content dir of its own:
    the load, what was stored right after it, then the checks."""
    with_quests, with_badges = PHASES[phase]
    rid = run_id()
    prefix = f"engage-bench-{rid}:"
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
        profile = Profile(
            server.pid, RESULTS_DIR / f"event_ingest.{db.kind}.{phase}.pyspy.txt", args.warmup, args.seconds
        )
        with profile if args.profile else contextlib.nullcontext():
            figures, by_member = run_async(drive(load))
        cpu_figures(figures, server.pid)
        # Right after the last answer, before any drain could have taken a claimed row (30 s).
        stored = stored_summary(stored_rows(db, load.tag))
        sample = [m for m, _ in by_member.most_common(args.sample_members // 2)]
        rng = random.Random(3)
        others = [m for m in by_member if m not in sample]
        sample += rng.sample(others, min(len(others), args.sample_members - len(sample)))
        views = member_views(env, port, sample) if with_quests else []
        server_pid = server.pid

        # The checks: the outbox drained while the server runs; the rest once it stopped.
        print(f"  {phase}: checking ...", flush=True)
        done = [checks.outbox_drained(db)]
        server.stop()
        done += checks.cli_checks(env)
        # Every type has quests; without them, purchases surely have a listener (the earning rule).
        listened = {t for t, _ in EVENT_MIX} if with_quests else {"purchase"}
        # A batch cut off or answered with an error may have been stored all the same.
        unanswered = args.batch_size * sum(n for k, n in figures["errors"].items() if k != "hard_deadline")
        done.append(
            checks.events_dispatched(
                db, load.tag + "-", figures["accepted_events_total"], listened, unanswered
            )
        )

    result: dict[str, Any] = {
        "phase": phase,
        "database": db.kind,
        "label": db.label,
        "quests": QUEST_COUNT if with_quests else 0,
        "badges": BADGE_COUNT if with_badges else 0,
        "members": args.members,
        "member_zones": dict(zones.most_common()),
        "member_tiers": dict(tiers.most_common()),
        "setup_s": round(setup_s, 1),
        "load": figures,
        "stored": stored,
        "member_views": views,
        "events_per_member": round(sum(by_member.values()) / max(1, args.members), 2),
        "server_pid": server_pid,
        "checks": checks.as_json(done),
        "checks_ok": checks.all_ok(done),
        "profiled": args.profile,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    if args.profile:
        result["profile"] = profile.summary()
    return result


def run_database(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"\nevent_ingest on {kind}: {args.concurrency} connections, batches of {args.batch_size}, "
        f"{args.members:,} members, {args.warmup:g} s warm-up + {args.seconds:g} s per measurement"
        + (" (py-spy attached to the server)" if args.profile else ""),
        flush=True,
    )
    phases = {phase: run_phase(kind, phase, args) for phase in PHASES}
    rate = {phase: r["load"]["events_per_s"] for phase, r in phases.items()}
    run: dict[str, Any] = {
        "database": kind,
        **phases,
        "ratio": round(rate["quests"] / rate["baseline"], 4) if rate["baseline"] else None,
        "badges_ratio": round(rate["badges"] / rate["quests"], 4) if rate["quests"] else None,
        "target": {
            "events_per_s": TARGET_EVENTS_PER_S,
            "with": PHASE_NAMES[TARGET_PHASE],
            "on": "postgres",
            "applies": kind == "postgres",
            "met": rate[TARGET_PHASE] >= TARGET_EVENTS_PER_S,
        },
        "checks_ok": all(r["checks_ok"] for r in phases.values()),
    }
    report(run, args)
    return run


# ---------------------------------------------------------------- report


def _dispatch_lines(stored: dict[str, Any], dispatched: dict[str, Any]) -> list[str]:
    """Whether every stored event that something listens to was dispatched within its own request
    (`stored`: right after the last answer), the types listened to being those the check found
    dispatched once the outbox drained (`dispatched`: the check's figures)."""
    listened = set(dispatched["listened"]) | {t for t, v in dispatched["by_type"].items() if v["dispatched"]}
    by_type = stored["events_by_type"]
    parts = [f"{t} {v['dispatched']:,}/{v['stored']:,}" for t, v in sorted(by_type.items())]
    wanted = sum(v["stored"] for t, v in by_type.items() if t in listened)
    done = sum(v["dispatched"] for t, v in by_type.items() if t in listened)
    left = stored["outbox_left"].get("dispatch", {"rows": 0, "failed": 0})
    verdict = (
        "all dispatched inside their requests"
        if done == wanted
        else f"{wanted - done:,} not yet ({left['failed']:,} dispatch rows failed, left for the drain)"
    )
    return [
        f"dispatch receipts/stored events right after the last answer: {', '.join(parts)}",
        f"events with a listener ({', '.join(sorted(listened))}): {done:,} of {wanted:,} dispatched -- "
        f"{verdict}; dispatch rows still in the outbox: {left['rows']:,} ({left['failed']:,} failed, "
        "the others applied and awaiting their batched deletion)",
    ]


def _or_dash(value: object) -> object:
    return "-" if value is None else value


def report(run: dict[str, Any], args: argparse.Namespace) -> None:
    base_rate = run["baseline"]["load"]["events_per_s"]
    rows = []
    for phase, name in PHASE_NAMES.items():
        f = run[phase]["load"]
        rows.append(
            [
                name,
                f["events_per_s"],
                f"{f['events_per_s'] / base_rate:.1%}" if base_rate else "-",
                f["batches_per_s"],
                f["latency"]["p50_ms"],
                f["latency"]["p99_ms"],
                f["failed_batches"],
                sum(f["rejected_events"].values()),
                _or_dash(f["server_cpu_pct_of_one_core"]),
                _or_dash(f["server_cpu_ms_per_batch"]),
                _or_dash(f["postgres_cpu_ms_per_batch"]),
            ]
        )
    print_table(
        f"event_ingest on {run['baseline']['label']} ({args.concurrency} connections, "
        f"{args.batch_size} events a batch, {args.members:,} members, {args.seconds:g} s measured)"
        + (" -- py-spy attached to the server" if args.profile else ""),
        [
            "",
            "events/s",
            "of baseline",
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
    print(
        f"\n  with quests / without: {_pct(run['ratio'])}; "
        f"with quests and badges / quests alone: {_pct(run['badges_ratio'])}"
    )
    for phase in PHASES:
        r, f = run[phase], run[phase]["load"]
        cpu = describe_cpu(f["cpu"], {r["server_pid"]: "server"})
        print(f"  CPU in the window, % of one core [{phase}]: {cpu}")
        warning = foreign_load_warning(f["cpu"])
        if warning:
            print(f"{warning} [{phase}]")
        if f["errors"] or f["rejected_events"] or f["duplicates"]:
            print(
                f"  [{phase}] errors {f['errors']}, rejected {f['rejected_events']}, "
                f"duplicates {f['duplicates']}"
            )
        dispatched = next(c["data"] for c in r["checks"] if c["name"] == "events dispatched once")
        for line in _dispatch_lines(r["stored"], dispatched):
            print(f"  [{phase}] {line}")
        for e in r["stored"]["outbox_errors"][:3]:
            print(f"  [{phase}] outbox rows failing ({e['kind']}, {e['rows']:,}): {e['error'][:200]}")
    for phase in ("quests", "badges"):
        s = run[phase]["stored"]
        top = ", ".join(f"{q} {n:,}" for q, n in list(s["completions_by_quest"].items())[:8])
        print(
            f"  [{phase}] quest runs: {s['quest_runs']:,} for {s['quest_run_members']:,} members "
            f"({len(s['runs_by_quest'])} quests), {s['quest_runs_in_progress']:,} in progress, "
            f"{s['quest_runs_completed']:,} with a completion; completions {s['quest_completions']:,}"
            + (f" ({top}, ...)" if top else "")
        )
        print(f"  [{phase}] ledger entries by source: {s['ledger_entries_by_source']}")
    print(f"  [quests] events per member over the run: {run['quests']['events_per_member']:g}")
    for v in run["quests"]["member_views"]:
        print(
            f"  [quests] GET /v1/quests as {v['member_id']}: {v['in_progress']} in progress, "
            f"{v['completed']} completed, of {v['quests']} {v['status']}; e.g. {v['example']}"
        )

    ratio = run["badges_ratio"]
    met = ratio is not None and ratio >= 0.5
    print(
        f"\n  target: the badge engine must not halve the quest engine's figure: {_pct(ratio)} of "
        f"{run['quests']['load']['events_per_s']:,.1f} events/s (quests only, same run): "
        f"{'MET' if met else 'NOT MET'}"
    )
    target = run["target"]
    where = "" if target["applies"] else " (the target is defined on PostgreSQL; this run used SQLite)"
    caveat = " (py-spy attached: judge a run without it)" if args.profile else ""
    print(
        f"  target: >= {TARGET_EVENTS_PER_S:,} events/s on one process with {target['with']}, PostgreSQL: "
        f"{'MET' if target['met'] else 'NOT MET'} "
        f"({run[TARGET_PHASE]['load']['events_per_s']:,.1f} events/s; "
        f"{run['quests']['load']['events_per_s']:,.1f} with the quests alone, {base_rate:,.1f} without)"
        f"{where}{caveat}"
    )
    for phase in PHASES:
        checks.print_checks([checks.Check(**c) for c in run[phase]["checks"]], f"{phase}, {run['database']}")
    if args.profile:
        print_profile(
            run[TARGET_PHASE]["profile"], f"member events, {PHASE_NAMES[TARGET_PHASE]}, {run['database']}"
        )
        others = [run[p]["profile"].get("file", "-") for p in PHASES if p != TARGET_PHASE]
        print(f"\n  the other measurements' profiles: {', '.join(others)}")


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1%}"


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
        help="py-spy the server in each measurement -> bench/results/event_ingest.<db>.<phase>.pyspy.txt",
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
        "with": PHASE_NAMES[TARGET_PHASE],
        "on": "postgres",
        "met": pg["target"]["met"] if "target" in pg else None,
        "profiled": args.profile,
    }
    results["checks_ok"] = all(r["checks_ok"] for r in results["runs"].values() if "checks_ok" in r)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    path = write_results("event_ingest.profile" if args.profile else "event_ingest", results)
    print(f"\n  figures: {path.relative_to(ROOT)} ({results['wall_seconds']:.0f} s)")
    checks.exit_if_failed(
        "event_ingest",
        {
            f"{phase}, {kind}": [checks.Check(**c) for c in r[phase]["checks"]]
            for kind, r in results["runs"].items()
            if "checks_ok" in r
            for phase in PHASES
        },
    )


if __name__ == "__main__":
    main()
