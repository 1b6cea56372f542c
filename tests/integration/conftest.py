"""The Stripe sandbox behind a real socket, optionally beside more routes (the payments webhook)."""

import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, FastAPI
from redis.asyncio import Redis

from sellmesh.localbroker import free_port
from sellmesh.redis import make_redis
from sellmesh.sandbox.stripe import StripeSandbox
from sellmesh.settings import SANDBOX_STRIPE_WEBHOOK_SECRET

KEY = "sk_test_sandbox"
WEBHOOK_SECRET = SANDBOX_STRIPE_WEBHOOK_SECRET


class Clock:
    """The sandbox's clock; tests move it forward to watch sessions lapse."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Sandbox:
    root: str
    clock: Clock
    prefix: str

    @property
    def api(self) -> str:
        return f"{self.root}/sandbox/stripe"

    def hook(self, session_id: str, hook: str = "pay") -> httpx.Response:
        return httpx.post(f"{self.api}/_test/sessions/{session_id}/{hook}", timeout=30)


@contextmanager
def serve_sandbox(
    redis_url: str, *, webhooks: bool = False, routes: Callable[[Redis], list[APIRouter]] | None = None
) -> Iterator[Sandbox]:
    """A sandbox with its own Redis prefix (its event list holds only this test's events), on a free port.

    `webhooks`: the sandbox posts its events, signed, to `/webhooks/stripe` on the same server;
    `routes` adds routers (built with the server's Redis client) beside it.
    """
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    redis = make_redis(redis_url)
    clock = Clock()
    prefix = f"test:stripe:{uuid.uuid4().hex[:10]}:"
    http = httpx.AsyncClient()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await http.aclose()  # both closed on the loop that used them
        await redis.aclose()

    app = FastAPI(lifespan=lifespan)
    sandbox = StripeSandbox(
        redis,
        base_url=root,
        clock=clock,
        prefix=prefix,
        webhook_url=f"{root}/webhooks/stripe" if webhooks else None,
        webhook_secret=WEBHOOK_SECRET,
        http=http,
    )
    app.include_router(sandbox.router())
    for router in routes(redis) if routes else []:
        app.include_router(router)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, name="stripe-sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "sandbox did not start"
        time.sleep(0.02)
    try:
        yield Sandbox(root=root, clock=clock, prefix=prefix)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def sandbox(redis_url: str) -> Iterator[Sandbox]:
    with serve_sandbox(redis_url) as running:
        yield running
