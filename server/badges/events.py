"""What badges and tiers react to: member events (badges) and growth posted (tiers)."""

from __future__ import annotations

from server.badges.service import progress_badges, wants
from server.badges.tiers import count_growth, counting
from server.events.pipeline import Emits, OnEvents, OnPosted, Reactions

REACTIONS = Reactions(
    # Every event type a badge's criterion counts, under the content serving now.
    events=(OnEvents(progress_badges, wants),),
    # Growth goes into the member's month and dimension; a member who qualifies moves up at once.
    posted=(OnPosted(count_growth, counting),),
    emits={
        "badge.earned": Emits(
            {"badge_id": "string", "level": "integer", "round": "integer"}, nouns=("badge", "badges")
        ),
        "tier.changed": Emits(
            {"tier": "string", "previous": "string", "direction": "string", "reason": "string"},
            nouns=("tier change", "tier changes"),
        ),
    },
)
