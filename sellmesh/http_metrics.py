"""Counts and times every HTTP request by route template, so ids in paths never become label values."""

import time

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sellmesh.metrics import HTTP_REQUESTS, HTTP_SECONDS

# Scrapes and probes would otherwise dominate the request counts and latency of every worker.
UNCOUNTED_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in UNCOUNTED_PATHS:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees when the app raises before answering

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = route_template(scope)
            method = str(scope.get("method", ""))
            HTTP_REQUESTS.labels(route, method, str(status)).inc()
            HTTP_SECONDS.labels(route, method).observe(time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The matched route's path (`/v1/orders/{order_id}`); the router fills in `scope["route"]`."""
    route = scope.get("route")
    if isinstance(route, BaseRoute):
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return path
    return "unmatched"
