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
