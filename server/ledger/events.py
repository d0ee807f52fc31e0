"""What the ledger reacts to: purchases and the named events its earning rules pay for."""

from __future__ import annotations

from server.events.pipeline import OnEvents, Reactions
from server.ledger.earning import check_purchase, earn_from_events, wants

REACTIONS = Reactions(
    events=(OnEvents(earn_from_events, wants),),
    properties={"purchase": check_purchase},
)
