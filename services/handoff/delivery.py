"""Delivers queued notifications to each tenant's webhook, with backoff; never on a handler's path.

Two replicas may post the same row at once (no row lock, like the outbox relay): receivers dedup by
`X-Sellmesh-Event-Id`. The URL and secret are read at send time, so a rotated secret applies at once.
"""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

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
    backoff_seconds,
    signed_headers,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    status: str
    error: str = ""


class NotificationDelivery:
    def __init__(
        self,
        *,
        engine: Engine,
        http: httpx.AsyncClient,
        max_attempts: int = 8,
        poll_seconds: float = 1.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], datetime] = now,
    ) -> None:
        self.engine = engine
        self.http = http
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
        body = row.payload.encode()
        headers = signed_headers(settings.notify_secret, int(self.clock().timestamp()), body, row.event_id)
        try:
            response = await self.http.post(
                settings.notify_url, content=body, headers=headers, timeout=self.timeout_seconds
            )
        except httpx.HTTPError as exc:
            # The type only: the message may quote the URL, which can carry a token in its query string.
            return Attempt(PENDING, type(exc).__name__)
        if response.is_success:
            return Attempt(DELIVERED)
        return Attempt(PENDING, f"HTTP {response.status_code}")

    def _record(self, row: HandoffNotificationRow, attempt: Attempt) -> None:
        at = self.clock()
        with session_scope(self.engine) as session:
            stored = session.get(HandoffNotificationRow, row.id)
            if stored is None or stored.status != PENDING:
                return
            stored.attempts += 1
            stored.last_error = attempt.error
            if attempt.status == DELIVERED:
                stored.status, stored.delivered_at = DELIVERED, at
                outcome = "delivered"
            elif attempt.status == DROPPED:
                stored.status, outcome = DROPPED, "dropped"
            elif stored.attempts >= self.max_attempts:
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
        await cancel_and_wait(self._task)
        self._task = None
