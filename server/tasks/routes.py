from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter

from server.context import Context
from server.tasks.quests import member_quests
from server.tasks.schemas import QuestOut, QuestsOut


class QuestsController(Controller):
    path = "/v1/quests"
    tags = ["quests"]

    @get("/", operation_id="listQuests")
    async def list_quests(self, ctx: Context, current_member: str) -> QuestsOut:
        """Every task and quest chain, as the member sees them now: status, progress and what is left."""
        quests = await member_quests(ctx, current_member)
        return QuestsOut(quests=quests, content_version=ctx.content.version)

    @get("/{quest_id:str}", operation_id="getQuest")
    async def get_quest(
        self, ctx: Context, current_member: str, quest_id: Annotated[str, Parameter(max_length=64)]
    ) -> QuestOut:
        """One quest with each of its steps."""
        return (await member_quests(ctx, current_member, only=quest_id))[0]
