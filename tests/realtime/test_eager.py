"""`run_eagerly`: a socket's writer runs at once, and becomes a task only when it has to wait."""

from __future__ import annotations

import asyncio

import pytest

from server.realtime.hub import run_eagerly


async def test_a_coroutine_that_never_waits_needs_no_task() -> None:
    done: list[int] = []

    async def write() -> None:
        done.append(1)

    assert run_eagerly(write()) is None
    assert done == [1]


async def test_a_coroutine_that_waits_carries_on_as_a_task_with_what_it_waited_for() -> None:
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()
    got: list[object] = []

    async def write() -> None:
        got.append("before")
        got.append(await first)
        await asyncio.sleep(0)  # a bare yield
        try:
            await second
        except ValueError as exc:
            got.append(str(exc))

    task = run_eagerly(write())
    assert task is not None and got == ["before"]
    first.set_result("written")
    second.set_exception(ValueError("peer gone"))
    await asyncio.wait_for(task, 5)
    assert got == ["before", "written", "peer gone"]


async def test_cancelling_the_task_cancels_the_coroutine() -> None:
    never = asyncio.get_running_loop().create_future()
    cleaned: list[bool] = []

    async def write() -> None:
        try:
            await never
        finally:
            cleaned.append(True)

    task = run_eagerly(write())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True]
    assert not never.cancelled()  # what it waited for belongs to someone else
