"""Prometheus metrics of this process, served as text at GET /metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
# The exposition format's media type without its charset: Litestar appends `charset=utf-8` to
# every text/* type, and a second one makes the header invalid.
CONTENT_TYPE = "; ".join(p for p in CONTENT_TYPE_LATEST.split("; ") if not p.startswith("charset="))

HTTP_REQUESTS = Counter(
    "engage_http_requests_total",
    "HTTP requests by route and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "engage_http_request_seconds",
    "HTTP request latency by route",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
LEDGER_ENTRIES = Counter(
    "engage_ledger_entries_total", "Ledger entries written", ["currency", "source"], registry=REGISTRY
)
LEDGER_REPLAYS = Counter(
    "engage_ledger_idempotent_replays_total",
    "Postings answered from an existing idempotency key",
    registry=REGISTRY,
)
EVENTS = Counter("engage_events_total", "Member events received", ["outcome"], registry=REGISTRY)
OUTBOX_APPLIED = Counter("engage_outbox_applied_total", "Outbox rows applied", registry=REGISTRY)
OUTBOX_FAILED = Counter(
    "engage_outbox_failed_total", "Outbox effects that failed", ["kind"], registry=REGISTRY
)
OUTBOX_PENDING = Gauge("engage_outbox_pending", "Outbox rows not yet applied", registry=REGISTRY)
WS_CONNECTIONS = Gauge("engage_ws_connections", "Open member websockets", registry=REGISTRY)
WS_MESSAGES = Counter("engage_ws_messages_sent_total", "Live messages sent to sockets", registry=REGISTRY)
WS_DROPPED = Counter(
    "engage_ws_slow_clients_dropped_total", "Sockets closed for being slow", registry=REGISTRY
)
RATE_LIMITED = Counter(
    "engage_rate_limited_total", "Requests refused by rate limits", ["scope"], registry=REGISTRY
)
JOB_RUNS = Counter("engage_job_runs_total", "Scheduled job runs", ["job", "outcome"], registry=REGISTRY)
CONTENT_VERSION = Gauge(
    "engage_content_version", "Published content version serving (0: files on disk)", registry=REGISTRY
)
QUEST_COMPLETIONS = Counter(
    "engage_quest_completions_total", "Quests and quest steps completed", ["what"], registry=REGISTRY
)
