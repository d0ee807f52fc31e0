"""Every domain of the server: importing them registers their content kinds, handlers, effects and jobs."""

from __future__ import annotations

import importlib
from typing import Any

DOMAIN_MODULES = [
    "server.outbox",
    "server.realtime.hub",
    "server.events.dispatch",
    "server.events.catalog",
    "server.events.jobs",
    "server.ledger.earning",
    "server.ledger.jobs",
    "server.members.events",
    "server.checkins.content",
    "server.checkins.events",
    "server.checkins.jobs",
    "server.tasks.events",
    "server.tasks.jobs",
    "server.tasks.quest_content",
    "server.leaderboards.content",
    "server.leaderboards.index",
    "server.leaderboards.events",
    "server.leaderboards.jobs",
    "server.badges.content",
    "server.badges.events",
    "server.badges.tiers",
    "server.badges.jobs",
    "server.referrals.content",
    "server.referrals.events",
    "server.referrals.jobs",
]


def load() -> None:
    for name in DOMAIN_MODULES:
        importlib.import_module(name)


def route_handlers() -> list[Any]:
    from server.admin.routes import AdminSessionsController, ReferralReviewController
    from server.badges.routes import (
        BadgeGrantsController,
        BadgesController,
        CredentialsController,
        TiersController,
    )
    from server.checkins.routes import CheckinsController
    from server.events.routes import EventsController
    from server.leaderboards.routes import LeaderboardsController
    from server.ledger.routes import LedgerController
    from server.members.routes import MembersController
    from server.ops import health, metrics, ready
    from server.realtime.routes import live
    from server.referrals.routes import LandingController, ReferralsController
    from server.tasks.routes import QuestsController

    return [
        health,
        ready,
        metrics,
        MembersController,
        LedgerController,
        EventsController,
        CheckinsController,
        QuestsController,
        LeaderboardsController,
        BadgesController,
        BadgeGrantsController,
        TiersController,
        CredentialsController,
        AdminSessionsController,
        ReferralsController,
        LandingController,
        ReferralReviewController,
        live,
    ]


def models() -> None:
    """Import every table so that SQLModel's metadata knows them (for migrations)."""
    for name in (
        "server.members.models",
        "server.ledger.models",
        "server.events.models",
        "server.outbox",
        "server.auth",
        "server.admin.models",
        "server.referrals.models",
        "server.scheduler",
        "server.checkins.models",
        "server.tasks.models",
        "server.content.models",
        "server.leaderboards.models",
        "server.badges.models",
    ):
        importlib.import_module(name)
