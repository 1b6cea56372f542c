"""Which asyncio event loop the long-running commands (`sellmesh up`, `sellmesh run`) use.

uvloop by default: alternating the two loops five times on two cores (200 customers as fast as the mesh takes
them, `docs/performance.md`), the mesh spent 52.3 against 58.0 ms of CPU per inbound message on average and
answered 24.4 against 22.6 msgs/s, ahead in four rounds of five; every hop is socket work (broker, Redis,
PostgreSQL, HTTP) and scheduling, which uvloop does in C. `SELLMESH_EVENT_LOOP=asyncio` goes back
to the standard loop, for debugging with asyncio's own tools or on a platform without uvloop.
"""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")

EventLoopName = Literal["uvloop", "asyncio"]


def loop_factory(name: EventLoopName) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], *, loop: EventLoopName) -> T:
    """`asyncio.run` on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(main)
