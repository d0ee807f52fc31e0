"""What the teams react to: member events counted by team goals and friend quests."""

from __future__ import annotations

from server.events.pipeline import Reactions

REACTIONS = Reactions()
