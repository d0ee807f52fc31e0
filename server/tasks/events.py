"""What quests react to (member events, friends' help), and the event they tell the other domains."""

from __future__ import annotations

from server.events.pipeline import Emits, OnEvents, Reactions, of_types
from server.tasks.quests import progress_helped_steps, progress_quests, wants

REACTIONS = Reactions(
    # Every event type a quest's goal names, under the content serving now.
    events=(
        OnEvents(progress_quests, wants),
        # Friends' help on a step (server.teams' friend help emits it about the asker).
        OnEvents(progress_helped_steps, of_types("assist.helped")),
    ),
    emits={
        "quest.completed": Emits(
            {"quest_id": "string", "period": "string", "round": "integer"},
            nouns=("completed quest", "completed quests"),
        )
    },
)
