from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import HeaderParameter, Parameter

from server.checkins import service
from server.checkins.schemas import CalendarOut, CheckinOut, MakeupIn, StreakOut
from server.context import Context


class CheckinsController(Controller):
    path = "/v1"
    tags = ["check-ins"]

    @post("/checkins", operation_id="checkIn", status_code=200)
    async def check_in(self, ctx: Context, current_member: str) -> CheckinOut:
        """Today's check-in in the member's time zone; a repeat the same date awards nothing and says so."""
        return await service.check_in(ctx, current_member)

    @get("/checkins", operation_id="getCheckinCalendar")
    async def calendar(
        self,
        ctx: Context,
        current_member: str,
        month: str | None = Parameter(default=None, pattern=r"^.{0,20}$"),
    ) -> CalendarOut:
        """The month's calendar (`month=YYYY-MM`, default the current local month) and the streak."""
        return await service.calendar(ctx, current_member, month)

    @post("/checkins/makeup", operation_id="makeUpCheckin", status_code=200)
    async def make_up(self, ctx: Context, current_member: str, data: MakeupIn) -> StreakOut:
        """A paid check-in for an earlier missed date of the current month."""
        return await service.make_up(ctx, current_member, data.date)

    @post("/streak/freezes", operation_id="buyStreakFreeze", status_code=200)
    async def buy_freeze(
        self,
        ctx: Context,
        current_member: str,
        idempotency_key: Annotated[
            str | None, HeaderParameter(name="Idempotency-Key", max_length=100)
        ] = None,
    ) -> StreakOut:
        """Buy one freeze with points; send an `Idempotency-Key` header to make retries safe."""
        return await service.buy_freeze(ctx, current_member, idempotency_key)

    @post("/streak/repair", operation_id="repairStreak", status_code=200)
    async def repair(self, ctx: Context, current_member: str) -> StreakOut:
        """Restore a broken streak within the grace period, for its price."""
        return await service.repair(ctx, current_member)
