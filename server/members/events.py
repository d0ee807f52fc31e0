"""The events members tells the other domains about, so that no domain imports it to hear of a change."""

from __future__ import annotations

from server.events.pipeline import Emits, Reactions

REACTIONS = Reactions(
    emits={
        "member.timezone_changed": Emits({"timezone": "string", "previous": "string"}),
        # A member's name, tier, team or sign-up date changed: read the profile again.
        "member.profile_changed": Emits(),
    },
)
