"""The tier names the game knows: the ladder's (content/tiers.yaml), else the default ladder."""

from __future__ import annotations

from server.content.loader import ContentStore

DEFAULT_TIERS = ("regular", "silver", "gold", "diamond")


def tier_names(store: ContentStore | None) -> list[str]:
    """The ladder's tier ids, lowest first; `store` is the content serving (or being checked), None
    for a command that runs without content."""
    tiers = store.get("tiers") if store is not None else None
    return list(tiers.ids()) if tiers is not None else list(DEFAULT_TIERS)
