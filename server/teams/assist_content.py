"""Friend help and friend quests as content (`assist` and `friend_quests` of content/teams.yaml).

Placeholder shape; the friend help work fills it in."""

from __future__ import annotations

from typing import Any

from server.content.goals import Strict
from server.content.loader import ContentIssue, ContentStore


class AssistRules(Strict):
    pass


def check_assists(store: ContentStore, rel: str, content: Any) -> list[ContentIssue]:
    """Problems of friend help and friend quests across kinds of content."""
    return []
