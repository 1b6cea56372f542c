"""The Stripe sandbox on a port and a Redis of its own, in a thread of the load generator's process.

Every mesh process serves the sandbox at `/sandbox/stripe` when no `STRIPE_API_BASE` is set, which is what a
demo wants. A benchmark does not: the sandbox's work (creating, retrieving and paying sessions) would be counted
as the payments service's CPU and its Redis commands as the mesh's. Here it runs beside the fake Graph API,
outside the mesh, and `STRIPE_API_BASE` points the mesh at it.
"""

import threading
import time
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI
from redis.asyncio import Redis

from sellmesh.localbroker import free_port
from sellmesh.sandbox.stripe import StripeSandbox


@dataclass
class FakeStripeApi:
    """`api_base` is what the mesh's `STRIPE_API_BASE` takes; `base_url` serves the test hooks (`_test/...`)."""

    redis_url: str
    port: int = field(default_factory=free_port)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/sandbox/stripe"

    def start(self) -> "FakeStripeApi":
        # The client connects on first use, in the server thread's event loop, the only loop that uses it.
        sandbox = StripeSandbox(Redis.from_url(self.redis_url), base_url=self.base_url)
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        app.include_router(sandbox.router())
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-stripe-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake Stripe API did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
