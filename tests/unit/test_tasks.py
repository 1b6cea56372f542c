"""Background loops wait on an event or a poll (`tasks.wait_set`), and a stop always stops them."""

import asyncio
import contextlib

from sellmesh.tasks import cancel_and_wait, wait_set


async def test_wait_set_says_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_set(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_set(event, 5.0) is True


async def test_a_loop_woken_as_it_is_stopped_still_stops() -> None:
    # The wake-up and the cancellation land in one turn of the loop: asyncio.wait_for (Python 3.11) returned
    # normally then, and the polling loop ran on while its stop waited for it.
    event = asyncio.Event()
    rounds = 0

    async def poll() -> None:
        nonlocal rounds
        while True:
            await wait_set(event, 10.0)
            event.clear()
            rounds += 1

    task = asyncio.create_task(poll())
    await asyncio.sleep(0.01)
    event.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1.0)
    if not done:
        with contextlib.suppress(asyncio.CancelledError):
            await cancel_and_wait(task)
    assert done and task.cancelled() and rounds == 0
