"""Composition root: builds the connections once, wires the chosen services, serves HTTP and /metrics."""

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from sellmesh.broker import make_broker
from sellmesh.db import make_engine, run_migrations
from sellmesh.health import Health
from sellmesh.http_metrics import HttpMetricsMiddleware
from sellmesh.infra import EmbeddedInfra, Endpoints
from sellmesh.lag import LagCollector, subscribed_groups
from sellmesh.metrics import metrics_endpoint
from sellmesh.redis import make_redis
from sellmesh.sandbox.graph import GraphSandbox
from sellmesh.sandbox.stripe import StripeSandbox
from sellmesh.service import MeshContext, ServiceParts, build_services
from sellmesh.settings import SANDBOX_STRIPE_WEBHOOK_SECRET, MeshSettings
from sellmesh.subscriber import RedisDedup, RetryPolicy

log = logging.getLogger(__name__)

SERVICE_NAMES = ("ingest", "agent", "orders", "payments", "handoff", "gateway")


def load_service(name: str) -> Callable[[MeshContext], ServiceParts]:
    if name not in SERVICE_NAMES:
        raise ValueError(f"unknown service {name!r}; choose from {', '.join(SERVICE_NAMES)}")
    module = importlib.import_module(f"services.{name}.app")
    build: Callable[[MeshContext], ServiceParts] = module.build
    return build


def build_http_app(ctx: MeshContext, parts: Sequence[ServiceParts], *, sandboxes: bool, health: Health) -> FastAPI:
    # /openapi.json is the owners' API (served by the gateway); webhooks and sandboxes are not a public contract.
    app = FastAPI(title="sellmesh", version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None)
    for part in parts:
        for router in part.routers:
            app.include_router(router)
    app.add_route("/metrics", metrics_endpoint, methods=["GET"])
    app.add_middleware(HttpMetricsMiddleware)
    app.add_route("/healthz", health.healthz, methods=["GET"])
    app.add_route("/readyz", health.readyz, methods=["GET"])
    if sandboxes:
        if ctx.settings.meta_graph_base_url is None:
            app.include_router(GraphSandbox(ctx.redis).router())
        if ctx.settings.stripe_api_base is None:
            app.include_router(stripe_sandbox(ctx).router())
    return app


def stripe_sandbox(ctx: MeshContext) -> StripeSandbox:
    """The sandbox signs its webhooks with the secret this mesh verifies them with (the sandbox's own by default)."""
    settings = ctx.settings
    return StripeSandbox(
        ctx.redis,
        base_url=settings.public_base_url,
        webhook_url=settings.sandbox_stripe_webhook_url,
        webhook_secret=settings.stripe_webhook_signing_secret or SANDBOX_STRIPE_WEBHOOK_SECRET,
        http=ctx.http,
    )


class Mesh:
    """Runs `services` in this process: `async with Mesh(settings, ["ingest", ...]) as mesh: ...`."""

    def __init__(
        self,
        settings: MeshSettings,
        services: Sequence[str],
        *,
        serve_http: bool = True,
        on_built: Callable[[], None] | None = None,
    ) -> None:
        """`on_built` runs once every service and the HTTP app are built, before anything is served or consumed:
        what exists then lives as long as the process (the CLI freezes it out of the garbage collector's way)."""
        self.settings = settings
        self.service_names = list(services)
        self.serve_http = serve_http
        self.on_built = on_built
        self._stack = AsyncExitStack()
        self.ctx: MeshContext | None = None
        self.app: FastAPI | None = None
        self.endpoints: Endpoints | None = None
        self.health: Health | None = None

    async def __aenter__(self) -> "Mesh":
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        s = self.settings
        builders = [load_service(name) for name in self.service_names]
        endpoints = self._stack.enter_context(EmbeddedInfra(s))
        self.endpoints = endpoints
        engine = make_engine(endpoints.database_url)
        self._stack.callback(engine.dispose)
        await asyncio.to_thread(run_migrations, engine)
        redis = make_redis(endpoints.redis_url)
        self._stack.push_async_callback(redis.aclose)
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0))
        self._stack.push_async_callback(http.aclose)
        broker = make_broker(
            bootstrap_servers=endpoints.kafka_bootstrap_servers,
            enable_idempotence=endpoints.kafka_enable_idempotence,
            client_id=f"sellmesh-{'-'.join(self.service_names)}",
            create_topics=s.kafka_create_topics,
        )
        ctx = MeshContext(
            settings=s,
            endpoints=endpoints,
            broker=broker,
            engine=engine,
            redis=redis,
            dedup=RedisDedup(redis, ttl_seconds=s.sellmesh_dedup_ttl_seconds),
            retry=RetryPolicy(attempts=s.sellmesh_handler_attempts, base_seconds=s.sellmesh_retry_base_seconds),
            http=http,
        )
        self.ctx = ctx
        parts = build_services(ctx, builders)
        # Every process serves the sandboxes it would otherwise call (their state is in Redis), so a
        # service run alone reaches them at its own port.
        self.health = health = Health(broker, [p.name for p in parts])
        self.app = build_http_app(ctx, parts, sandboxes=True, health=health)
        if self.on_built is not None:
            self.on_built()
        # Connect the producer, then the HTTP edge, so webhooks are accepted while consumers join.
        await broker.connect()
        if self.serve_http:
            await self._serve_http(self.app)
        await broker.start()
        # Shutdown runs these callbacks in reverse: consumers stop first (each finishes and commits
        # its message in flight), then the services' hooks, then relays publish what handlers left
        # in the outbox, and only then does the producer they all need close.
        self._stack.push_async_callback(broker.stop)
        for part in parts:
            for relay in part.relays:
                relay.start()
                self._stack.push_async_callback(relay.stop)
            for hook in part.on_start:
                await hook()
            for hook in part.on_stop:
                self._stack.push_async_callback(hook)
        self._stack.push_async_callback(self._stop_consuming)
        await self._start_lag_collector(endpoints)
        health.started = True
        log.info("mesh started", extra={"services": self.service_names, "port": s.sellmesh_http_port})

    async def _start_lag_collector(self, endpoints: Endpoints) -> None:
        """Every worker reports the lag of the consumer groups it runs, so lag is seen wherever the consumers are."""
        assert self.ctx is not None
        groups = subscribed_groups(self.ctx.broker)
        if groups:
            lag = LagCollector(bootstrap_servers=endpoints.kafka_bootstrap_servers, groups=groups)
            await lag.start()
            self._stack.push_async_callback(lag.stop)

    async def _stop_consuming(self) -> None:
        """Stop fetching; wait (up to the broker's graceful timeout) for in-flight messages to commit."""
        assert self.ctx is not None and self.health is not None
        self.health.draining = True
        log.info("draining", extra={"services": self.service_names})
        await stop_subscribers(list(self.ctx.broker.subscribers), within=CONSUMER_STOP_SECONDS)

    async def _serve_http(self, app: FastAPI) -> None:
        config = uvicorn.Config(
            app,
            host=self.settings.sellmesh_http_host,
            port=self.settings.sellmesh_http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
            # Parsed in C: h11, uvicorn's pure-Python parser, took 0.45-0.62 ms of CPU a webhook against 0.26-0.27.
            http="httptools",
        )
        server = _Server(config)
        task = asyncio.create_task(server.serve(), name="http")
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.02)

        async def stop() -> None:
            server.should_exit = True
            await task

        self._stack.push_async_callback(stop)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()


class _Server(uvicorn.Server):
    """Leaves SIGTERM to the process: uvicorn would otherwise stop serving at once, before the drain."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


# FastStream waits up to its graceful timeout (10 s) for the message in hand; aiokafka's stop then leaves the
# group. A stop that takes longer is stuck (a consumer whose loop stood still past its session, say, waiting on
# its own rejoin), and must not hold the rest of shutdown: the relays, the producer, the process's exit.
CONSUMER_STOP_SECONDS = 30.0


async def stop_subscribers(subscribers: Sequence[Any], *, within: float) -> None:
    """Stop every subscriber at once, each given at most `within` seconds; one that fails or is stuck is logged
    and the rest still stop. What a stuck one had not committed is delivered again and dropped by its dedup."""

    async def stop(subscriber: Any) -> None:
        await asyncio.wait_for(subscriber.stop(), timeout=within)

    outcomes = await asyncio.gather(*(stop(sub) for sub in subscribers), return_exceptions=True)
    for subscriber, outcome in zip(subscribers, outcomes, strict=True):
        if isinstance(outcome, Exception):
            log.warning(
                "consumer did not stop cleanly",
                extra={
                    "subscriber": getattr(subscriber, "title_", None) or repr(subscriber),
                    "stuck": isinstance(outcome, TimeoutError),
                },
                exc_info=outcome,
            )


@asynccontextmanager
async def running_mesh(settings: MeshSettings, services: Sequence[str] = SERVICE_NAMES) -> AsyncIterator[Mesh]:
    async with Mesh(settings, services) as mesh:
        yield mesh
