"""Background tasks of a service (outbox relay, schedulers, sweeps): cancelled and awaited the same way."""

import asyncio
import contextlib


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel `task` and wait until it has stopped, so shutdown never leaves it running."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def wait_set(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` have passed; True when it is set.

    For loops that wake on an event or a poll. `asyncio.wait_for` (Python 3.11) returns normally when its event
    is set in the same turn of the loop as the task is cancelled, so the cancellation is lost and the loop runs on:
    a shutdown waiting for it hung (an agent scheduler, woken by a due burst as it was stopped). `asyncio.timeout`
    lets every cancellation through.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
            return True
    return event.is_set()
