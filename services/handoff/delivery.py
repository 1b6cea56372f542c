"""Delivers queued notifications to each tenant's webhook, with backoff; never on a handler's path.

Two replicas may post the same row at once (no row lock, like the outbox relay): receivers dedup by
`X-Sellmesh-Event-Id`. The URL and secret are read at send time, so a rotated secret applies at once.

A tenant chooses the URL and the POST leaves from inside the cluster, so only https to public addresses is
delivered (`allow_local` lifts both, for receivers on a developer's machine). The addresses are checked as
the connection is opened, and the connection goes to the addresses checked: a check made before the request
would let a DNS name answer with a public address first and a private one when the connection resolves it.
"""

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
import httpcore
import httpx
from sqlalchemy import Engine
from sqlmodel import col, select

from sellmesh.db import in_thread, session_scope
from sellmesh.logging import log_context
from sellmesh.service import now
from sellmesh.tasks import cancel_and_wait
from services.gateway.query import handoff_settings
from services.handoff.metrics import NOTIFICATIONS
from services.handoff.notification import (
    DELIVERED,
    DROPPED,
    FAILED,
    PENDING,
    HandoffNotificationRow,
    address_refusal,
    backoff_seconds,
    signed_headers,
)

log = logging.getLogger(__name__)

# (host, port) -> the host's addresses
Resolver = Callable[[str, int], Awaitable[list[str]]]
ERROR_LIMIT = 300  # the length of handoff_notifications.last_error


class DestinationRefused(Exception):
    """The URL names a place notifications may not go; asking again will not change that."""


async def resolve_host(host: str, port: int) -> list[str]:
    found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """Opens a connection only when every address of the host is public, and then to those addresses."""

    def __init__(
        self, *, allow_local: bool, resolve: Resolver = resolve_host, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.allow_local = allow_local
        self.resolve = resolve
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self.allow_local:
            return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        addresses = await self._addresses(host, port, timeout)
        # Every address, not just the first: a name with one public and one private record is no public host.
        refusals = [refusal for refusal in map(address_refusal, addresses) if refusal is not None]
        if refusals:
            raise DestinationRefused(f"the host resolves to a {refusals[0]}")
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # there was at least one address
        raise failure

    async def _addresses(self, host: str, port: int, seconds: float | None) -> list[str]:
        # A lookup that fails may work later (a DNS outage): a connect error, retried with backoff.
        try:
            with anyio.fail_after(seconds):
                addresses = await self.resolve(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout("the host name did not resolve in time") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"the host name did not resolve: {exc.strerror or exc}") from exc
        if not addresses:
            raise httpcore.ConnectError("the host name has no address")
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationRefused("notifications never go to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport over a connection pool that opens connections through `backend`."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        super().__init__(trust_env=False)
        # httpx's transport takes no network backend, but its pool does; the rest is httpx's request handling.
        self._pool = httpcore.AsyncConnectionPool(ssl_context=httpx.create_ssl_context(), network_backend=backend)


def notification_client(backend: httpcore.AsyncNetworkBackend) -> httpx.AsyncClient:
    # No proxy from the environment (a proxy would make the connection the backend checks), no redirects
    # (a 3xx would send the request on to wherever it names).
    return httpx.AsyncClient(transport=_GuardedTransport(backend), trust_env=False, follow_redirects=False)


@dataclass(frozen=True)
class Attempt:
    status: str
    error: str = ""


class NotificationDelivery:
    def __init__(
        self,
        *,
        engine: Engine,
        allow_local: bool = False,
        resolve: Resolver = resolve_host,
        network: httpcore.AsyncNetworkBackend | None = None,
        max_attempts: int = 8,
        poll_seconds: float = 1.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], datetime] = now,
    ) -> None:
        """`resolve` and `network` stand in for DNS and sockets in tests; `allow_local` is for local receivers."""
        self.engine = engine
        self.allow_local = allow_local
        # A client of its own: the address check lives in its connections, which the shared client lacks.
        self.http = notification_client(PublicOnlyBackend(allow_local=allow_local, resolve=resolve, inner=network))
        self.max_attempts = max_attempts
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    def _due(self, limit: int = 20) -> list[HandoffNotificationRow]:
        with session_scope(self.engine) as session:
            query = (
                select(HandoffNotificationRow)
                .where(HandoffNotificationRow.status == PENDING, HandoffNotificationRow.next_attempt_at <= self.clock())
                .order_by(col(HandoffNotificationRow.id))
                .limit(limit)
            )
            return list(session.exec(query))

    async def deliver_once(self) -> int:
        """Try every due notification once; returns how many were tried."""
        rows = await in_thread(self._due)
        for row in rows:
            with log_context(tenant_id=row.tenant_id, event_id=row.event_id):
                attempt = await self._post(row)
                await in_thread(self._record, row, attempt)
        return len(rows)

    async def _post(self, row: HandoffNotificationRow) -> Attempt:
        settings = await in_thread(handoff_settings, self.engine, row.tenant_id)
        if settings.notify_url is None:
            return Attempt(DROPPED, "the tenant no longer has a notify_url")
        scheme_refusal = self._scheme_refusal(settings.notify_url)
        if scheme_refusal is not None:
            return Attempt(FAILED, scheme_refusal)
        body = row.payload.encode()
        headers = signed_headers(settings.notify_secret, int(self.clock().timestamp()), body, row.event_id)
        try:
            response = await self.http.post(
                settings.notify_url, content=body, headers=headers, timeout=self.timeout_seconds
            )
        except DestinationRefused as exc:
            return Attempt(FAILED, f"refused: {exc}")
        except httpx.HTTPError as exc:
            # The type only: the message may quote the URL, which can carry a token in its query string.
            return Attempt(PENDING, type(exc).__name__)
        if response.is_success:
            return Attempt(DELIVERED)
        return Attempt(PENDING, f"HTTP {response.status_code}")

    def _scheme_refusal(self, url: str) -> str | None:
        try:
            scheme = httpx.URL(url).scheme
        except httpx.InvalidURL:
            return "refused: notify_url is not a valid URL"
        if scheme == "https" or (scheme == "http" and self.allow_local):
            return None
        # Plain http would carry the conversation's details, and the signature, readable on the way.
        return f"refused: notify_url uses {scheme or 'no scheme'}; only https is delivered"

    def _record(self, row: HandoffNotificationRow, attempt: Attempt) -> None:
        at = self.clock()
        with session_scope(self.engine) as session:
            stored = session.get(HandoffNotificationRow, row.id)
            if stored is None or stored.status != PENDING:
                return
            stored.attempts += 1
            stored.last_error = attempt.error[:ERROR_LIMIT]
            if attempt.status == DELIVERED:
                stored.status, stored.delivered_at = DELIVERED, at
                outcome = "delivered"
            elif attempt.status == DROPPED:
                stored.status, outcome = DROPPED, "dropped"
            elif attempt.status == FAILED or stored.attempts >= self.max_attempts:
                stored.status, outcome = FAILED, "failed"
            else:
                stored.next_attempt_at = at + timedelta(seconds=backoff_seconds(stored.attempts))
                outcome = "retry"
            session.add(stored)
        NOTIFICATIONS.labels(outcome).inc()
        if outcome in ("retry", "failed"):
            log.warning(
                "handoff notification not delivered",
                extra={"outcome": outcome, "attempts": stored.attempts, "error": attempt.error},
            )

    async def run(self) -> None:
        while True:
            try:
                await self.deliver_once()
            except Exception:
                log.exception("handoff notification delivery failed; trying again next poll")
            await asyncio.sleep(self.poll_seconds)

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="handoff-notifications")

    async def stop(self) -> None:
        """Final: the client closes with it."""
        await cancel_and_wait(self._task)
        self._task = None
        await self.http.aclose()
