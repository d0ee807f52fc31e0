"""What the teams react to: member events counted by team goals and friend quests."""

from __future__ import annotations

from server.events.pipeline import OnEvents, Reactions
from server.teams import assists, friend_quests, goals

REACTIONS = Reactions(
    events=(
        OnEvents(goals.count_contributions, goals.wants),
        # Friend quests: both members' events to one total (the partner held with the member).
        OnEvents(friend_quests.count_friend_quests, friend_quests.wants, friend_quests.partners),
    ),
    effects={"team_payout": goals.apply_payouts},
    # Friend help: each counted help about the asker (quests and team goals count it), and about the helper.
    emits=assists.EMITS,
)
