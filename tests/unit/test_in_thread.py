"""`in_thread`: database work off the event loop keeps the caller's context, and a cancel waits for it to end."""

import asyncio
import contextvars
import threading

import pytest

from sellmesh.db import in_thread

field: contextvars.ContextVar[str] = contextvars.ContextVar("field", default="unset")


async def test_the_work_runs_in_another_thread_with_the_callers_context() -> None:
    field.set("tenant-a")
    seen = await in_thread(lambda: (field.get(), threading.current_thread() is threading.main_thread()))
    assert seen == ("tenant-a", False)


async def test_errors_reach_the_caller() -> None:
    def fails() -> None:
        raise ValueError("no such row")

    with pytest.raises(ValueError, match="no such row"):
        await in_thread(fails)


async def test_a_cancelled_caller_waits_for_the_work_to_end() -> None:
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def slow() -> None:
        started.set()
        release.wait(5)
        finished.append("done")

    task = asyncio.create_task(in_thread(slow))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    await asyncio.sleep(0.05)
    # Cancelled, yet still waiting: clean-up that undoes the work must not run beside it.
    assert not task.done()
    task.cancel()  # a second cancel does not cut the wait short either
    await asyncio.sleep(0.05)
    assert not task.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == ["done"]
