"""The events members tells the other domains about, so that no domain imports it to hear of a change."""

from __future__ import annotations

from server.events.dispatch import declare_internal

declare_internal("member.timezone_changed", {"timezone": "string", "previous": "string"})
# A member's name, tier, team or sign-up date changed: read the profile again.
declare_internal("member.profile_changed", {})
