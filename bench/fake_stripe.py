"""The Stripe sandbox on a port and a Redis of its own, in a thread of the load generator's process.

Every mesh process serves the sandbox at `/sandbox/stripe` when no `STRIPE_API_BASE` is set, which is what a
demo wants. A benchmark does not: the sandbox's work (creating, retrieving and paying sessions) would be counted
as the payments service's CPU and its Redis commands as the mesh's. Here it runs beside the fake Graph API,
outside the mesh, and `STRIPE_API_BASE` points the mesh at it.
"""

from dataclasses import dataclass, field

from fastapi import FastAPI
from redis.asyncio import Redis

from sellmesh.localbroker import free_port
from sellmesh.sandbox.stripe import StripeSandbox
from sellmesh.sandbox.threaded_server import ThreadedServer


@dataclass
class FakeStripeApi:
    """`api_base` is what the mesh's `STRIPE_API_BASE` takes; `base_url` serves the test hooks (`_test/...`)."""

    redis_url: str
    port: int = field(default_factory=free_port)
    _served: ThreadedServer | None = None

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
        self._served = ThreadedServer(app, port=self.port, name="fake-stripe-api")
        self._served.start()
        return self

    def stop(self) -> None:
        if self._served is not None:
            self._served.stop()
