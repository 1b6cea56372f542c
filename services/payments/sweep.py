"""The periodic sweep that catches what webhooks missed: Stripe's event list since a checkpoint, and open
attempts past their expiry, each through the same reconciler.

Two sweeps may run at once (replicas): the reconciler is idempotent and never moves an attempt
backwards, and a checkpoint only advances from the version it was read at.
"""

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from sellmesh.db import in_thread, session_scope
from sellmesh.service import derived_id, now
from sellmesh.tasks import cancel_and_wait
from services.payments.reconciler import Outcome, Reconciler
from services.payments.settlement import Cause
from services.payments.store import PaymentAttemptRow, PaymentStore
from services.payments.stripe_event import HANDLED_TYPES, MalformedEvent, read_event
from services.payments.stripe_gateway import CheckoutRejected, StripeGateway
from services.payments.tables import SweepCheckpointRow

log = logging.getLogger(__name__)

PLATFORM: Final = "platform"
EVENT_HISTORY: Final = timedelta(days=30)  # Stripe lists only the last 30 days of events


@dataclass
class SweepReport:
    events: int = 0
    stale: int = 0
    applied: int = 0
    failed: int = 0
    checkpoints_moved: int = 0


class Sweep:
    def __init__(
        self,
        *,
        reconciler: Reconciler,
        stripe: StripeGateway,
        engine: Engine,
        interval_seconds: float,
        overlap_seconds: int,
        lookback_seconds: int,
        clock: Callable[[], datetime] = now,
        stale_batch: int = 100,
    ) -> None:
        self.reconciler = reconciler
        self.stripe = stripe
        self.engine = engine
        self.interval_seconds = interval_seconds
        self.overlap_seconds = overlap_seconds
        self.lookback_seconds = lookback_seconds
        self.clock = clock
        self.stale_batch = stale_batch
        # Where the next page of stale attempts starts (the last one read: its expiry and id); None: the oldest.
        # Attempts that stay open for good (a disconnected account, a bank debit pending for days) must not take
        # every run's page while newer ones wait behind them.
        self._stale_after: tuple[datetime, int] | None = None
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> SweepReport:
        report = SweepReport()
        try:
            await self.sweep_events(report)
        except Exception:
            # Only the list of accounts can fail here (each account's own failure stays its own): the stale
            # attempts are a separate net and are swept all the same.
            log.exception("payments sweep could not list its accounts")
            report.failed += 1
        await self.sweep_stale(report)
        return report

    async def sweep_events(self, report: SweepReport) -> None:
        """Each account's events since its checkpoint (minus the overlap), through the reconciler. An account
        Stripe refuses (disconnected by its business, say) is logged and counted; the others are swept."""
        for scope, (account, tenant_id) in (await in_thread(self._scopes)).items():
            try:
                await self._sweep_events(scope, account, tenant_id, report)
            except Exception:
                log.exception(
                    "payments sweep could not read an account's events; its checkpoint stays for the next run",
                    extra={"tenant_id": tenant_id, "stripe_account": account or PLATFORM},
                )
                report.failed += 1

    async def _sweep_events(
        self, scope: str, account: str | None, tenant_id: uuid.UUID | None, report: SweepReport
    ) -> None:
        started = int(self.clock().timestamp())
        through, version = await in_thread(self._checkpoint, scope, tenant_id, started - self.lookback_seconds)
        events = await self.stripe.list_events(
            since=through - self.overlap_seconds, types=HANDLED_TYPES, account=account
        )
        failed = 0
        for body in events:
            try:
                signal = read_event(body)
            except MalformedEvent as exc:
                log.warning("unreadable event in Stripe's list", extra={"error": str(exc)})
                continue
            if signal is None:
                continue
            report.events += 1
            through = max(through, min(signal.created, started))  # an event "from the future" is not a reason to skip
            cause = Cause(derived_id("stripe-event", signal.event_id), None, signal.event_id, source="sweep")
            try:
                outcome = await self.reconciler.reconcile(signal, cause=cause, tenant_id=signal.tenant_id)
            except CheckoutRejected as exc:  # Stripe refuses to show the object: asking again will not help
                log.error("stripe refused an object the sweep asked for", extra={"error": str(exc)[:300]})
                continue
            except Exception:
                log.exception("sweep could not reconcile an event; the checkpoint stays for the next run")
                failed += 1
                continue
            report.applied += outcome is Outcome.APPLIED
        report.failed += failed
        # The checkpoint follows Stripe's clock (the newest event listed, never past ours), so skew cannot skip events.
        if not failed and await in_thread(self._move, scope, version, through):
            report.checkpoints_moved += 1

    async def sweep_stale(self, report: SweepReport) -> None:
        """Open attempts past their expiry, re-read from Stripe: whatever their events said or did not say. A page
        of `stale_batch` a run, each page after the last; after a short page the next run starts again."""
        rows = await in_thread(self._stale)
        last = rows[-1] if len(rows) == self.stale_batch else None
        self._stale_after = (last.expires_at, last.id) if last is not None and last.id is not None else None
        for row in rows:
            report.stale += 1
            cause = Cause(derived_id("sweep", row.checkout_session_id), None, None, source="sweep")
            try:
                session = await self.stripe.retrieve_session(row.checkout_session_id, account=row.stripe_account)
                report.applied += await self.reconciler.settle(row, session, cause=cause) is Outcome.APPLIED
            except Exception:
                log.exception("sweep could not reconcile an expired attempt", extra={"attempt_id": row.id})
                report.failed += 1

    def _scopes(self) -> dict[str, tuple[str | None, uuid.UUID | None]]:
        with session_scope(self.engine) as session:
            accounts = PaymentStore(session).connect_accounts(since=self.clock() - EVENT_HISTORY)
        return {PLATFORM: (None, None), **{account: (account, tenant) for account, tenant in accounts.items()}}

    def _checkpoint(self, scope: str, tenant_id: uuid.UUID | None, start: int) -> tuple[int, int]:
        with session_scope(self.engine) as session:
            row = PaymentStore(session).checkpoint(scope)
            if row is not None:
                return row.created_through, row.version
        try:
            with session_scope(self.engine) as session:
                fresh = SweepCheckpointRow(
                    scope=scope, tenant_id=tenant_id, created_through=start, version=0, updated_at=self.clock()
                )
                session.add(fresh)
            return start, 0
        except IntegrityError:  # a concurrent sweep created it first
            return self._checkpoint(scope, tenant_id, start)

    def _move(self, scope: str, version: int, through: int) -> bool:
        with session_scope(self.engine) as session:
            moved = PaymentStore(session).move_checkpoint(
                scope, version=version, created_through=through, at=self.clock()
            )
        if not moved:
            log.info("another sweep moved the checkpoint first", extra={"scope": scope})
        return moved

    def _stale(self) -> list[PaymentAttemptRow]:
        with session_scope(self.engine) as session:
            return PaymentStore(session).stale_open(now=self.clock(), limit=self.stale_batch, after=self._stale_after)

    async def run(self) -> None:
        while True:
            try:
                report = await self.run_once()
                if report.events or report.stale:
                    log.info("payments sweep done", extra={"report": report.__dict__})
            except Exception:
                log.exception("payments sweep failed; trying again next interval")
            await asyncio.sleep(self.interval_seconds)

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="payments-sweep")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
