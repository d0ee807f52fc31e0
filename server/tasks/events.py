"""What quests react to, and the event they tell the other domains."""

from __future__ import annotations

from server.events.pipeline import Emits, OnEvents, Reactions
from server.tasks.quests import progress_quests, wants

REACTIONS = Reactions(
    # Every event type a quest's goal names, under the content serving now.
    events=(OnEvents(progress_quests, wants),),
    emits={
        "quest.completed": Emits(
            {"quest_id": "string", "period": "string", "round": "integer"},
            nouns=("completed quest", "completed quests"),
        )
    },
)
