"""Team goals as content (the `goals` of content/teams.yaml), in the quests' goal language.

Placeholder shape; the team goals' work fills it in."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from server.content.goals import ID_RE, Strict
from server.content.loader import ContentIssue, ContentStore


class TeamGoal(Strict):
    id: str = Field(pattern=ID_RE)
    kind: str = Field(max_length=64)
    name: str = Field(max_length=100)


def check_goals(store: ContentStore, rel: str, content: Any) -> list[ContentIssue]:
    """Problems of the team goals across kinds of content (events, badges, team kinds)."""
    return []
