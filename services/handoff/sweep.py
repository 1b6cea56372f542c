"""The periodic handoff sweep: quiet tickets back to the AI, first-response deadlines, tickets nobody took.

Everything it emits has an id derived from the ticket, and each escalation is marked on the ticket
in the same transaction as its events, so replicas sweeping at once emit each one once.
"""

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from redis.asyncio import Redis
from sqlalchemy import Engine, and_, func
from sqlmodel import Session, col, select

from schemas.envelope import Actor, ActorKind
from schemas.handoff import AssignHandoff, ResolveHandoff
from sellmesh.db import after_key, in_thread, session_scope
from sellmesh.logging import log_context
from sellmesh.service import derived_id, new_id, now
from sellmesh.tasks import cancel_and_wait
from services.gateway.query import HandoffSettings, handoff_settings
from services.handoff.domain import Ticket, TicketStatus
from services.handoff.events import PRODUCER, Queued, no_staff_events, queue, sla_breach_events
from services.handoff.handlers import on_handoff_command
from services.handoff.inbox import InboxMessageRow
from services.handoff.metrics import ESCALATIONS, OPEN, QUIET_RETURNS, SLA_BREACHES
from services.handoff.sla import is_quiet
from services.handoff.staff import HandoffStaffRow
from services.handoff.store import HandoffStore, HandoffTicketRow, as_utc, to_ticket

log = logging.getLogger(__name__)

SWEEPER = Actor(kind=ActorKind.SYSTEM, id="handoff-sweep")
QUIET_NOTE = "returned after quiet period"


@dataclass
class SweepReport:
    open: int = 0
    returned: int = 0
    breached: int = 0
    assigned: int = 0
    no_staff: int = 0


@dataclass(frozen=True)
class OpenTicket:
    ticket: Ticket
    last_activity: datetime


class HandoffSweep:
    def __init__(
        self,
        *,
        engine: Engine,
        redis: Redis,
        interval_seconds: float = 15.0,
        clock: Callable[[], datetime] = now,
        # Open tickets a run: a page, oldest first, each run the page after the last one.
        batch: int = 1000,
    ) -> None:
        self.engine = engine
        self.redis = redis
        self.interval_seconds = interval_seconds
        self.clock = clock
        self.batch = batch
        # Where the next page starts (the last ticket read: when it opened, and its id); None: the oldest. Tickets
        # nobody closes (a tenant whose people never resolve) must not take every run's page while newer ones,
        # of any tenant, wait behind them for their SLA, their assignment and their quiet return.
        self._after: tuple[datetime, str] | None = None
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> SweepReport:
        at, report = self.clock(), SweepReport()
        tickets = await in_thread(self._open_tickets)
        report.open = len(tickets)
        settings: dict[uuid.UUID, HandoffSettings] = {}
        for item in tickets:
            ticket = item.ticket
            if ticket.tenant_id not in settings:
                settings[ticket.tenant_id] = await in_thread(handoff_settings, self.engine, ticket.tenant_id)
            with log_context(tenant_id=ticket.tenant_id, correlation_id=ticket.correlation_id, ticket_id=ticket.id):
                await self._sweep_ticket(item, settings[ticket.tenant_id], at, report)
        OPEN.set(await in_thread(self._count_open))
        return report

    def _count_open(self) -> int:
        with session_scope(self.engine) as session:
            query = (
                select(func.count())
                .select_from(HandoffTicketRow)
                .where(HandoffTicketRow.status == TicketStatus.OPEN.value)
            )
            return int(session.exec(query).one())

    async def _sweep_ticket(
        self, item: OpenTicket, settings: HandoffSettings, at: datetime, report: SweepReport
    ) -> None:
        ticket, notify = item.ticket, settings.notify_url is not None
        quiet = settings.quiet_return_seconds
        if (
            settings.on_quiet == "ai"
            and is_quiet(item.last_activity, at, quiet)
            and is_quiet(await in_thread(self._activity_now, ticket), at, quiet)
        ):
            await on_handoff_command(self._quiet_return(ticket, at), engine=self.engine, redis=self.redis, at=at)
            QUIET_RETURNS.inc()
            report.returned += 1
            return
        if await in_thread(self._breach, ticket, at, notify):
            SLA_BREACHES.inc()
            ESCALATIONS.labels("sla_breached").inc()
            report.breached += 1
        if ticket.assigned_to is None:
            if await in_thread(self._someone_available, ticket.tenant_id):
                await on_handoff_command(self._auto_assign(ticket, at), engine=self.engine, redis=self.redis, at=at)
                report.assigned += 1
            elif await in_thread(self._escalate_no_staff, ticket, at, notify):
                ESCALATIONS.labels("no_staff_available").inc()
                report.no_staff += 1

    def _open_tickets(self) -> list[OpenTicket]:
        """A page of open tickets, after the last page's; after a short page the next run starts again."""
        query = select(HandoffTicketRow).where(HandoffTicketRow.status == TicketStatus.OPEN.value)
        if self._after is not None:
            query = query.where(after_key(col(HandoffTicketRow.opened_at), col(HandoffTicketRow.id), self._after))
        with session_scope(self.engine) as session:
            rows = session.exec(
                query.order_by(col(HandoffTicketRow.opened_at), col(HandoffTicketRow.id)).limit(self.batch)
            ).all()
            latest = _latest_messages(session, [row.id for row in rows])
        self._after = (rows[-1].opened_at, rows[-1].id) if len(rows) == self.batch else None
        return [OpenTicket(ticket, _last_activity(ticket, latest.get(ticket.id))) for ticket in map(to_ticket, rows)]

    def _activity_now(self, seen: Ticket) -> datetime:
        """The ticket's last activity read again just before a quiet return: the batch's snapshot may be seconds
        old by a ticket's turn, and a customer who wrote since must not find the conversation handed back with
        their message unanswered (the AI skipped it while a person owned the conversation)."""
        with session_scope(self.engine) as session:
            ticket = HandoffStore(session).ticket(seen.tenant_id, seen.id)
            latest = _latest_messages(session, [seen.id])
        return _last_activity(ticket or seen, latest.get(seen.id))

    def _breach(self, seen: Ticket, at: datetime, notify: bool) -> bool:
        """Mark and announce a passed first-response deadline; False when it is not due or already done."""
        with session_scope(self.engine) as session:
            store = HandoffStore(session)
            ticket = store.ticket(seen.tenant_id, seen.id, lock=True)
            due = ticket.first_response_due_at if ticket is not None else None
            if ticket is None or ticket.status is not TicketStatus.OPEN or due is None or due > at:
                return False
            if ticket.first_replied_at is not None or ticket.sla_breached_at is not None:
                return False
            return _mark(session, replace(ticket, sla_breached_at=at), sla_breach_events, at, notify)

    def _escalate_no_staff(self, seen: Ticket, at: datetime, notify: bool) -> bool:
        with session_scope(self.engine) as session:
            ticket = HandoffStore(session).ticket(seen.tenant_id, seen.id, lock=True)
            if ticket is None or ticket.status is not TicketStatus.OPEN or ticket.assigned_to is not None:
                return False
            if ticket.no_staff_escalated_at is not None:
                return False
            return _mark(session, replace(ticket, no_staff_escalated_at=at), no_staff_events, at, notify)

    def _someone_available(self, tenant_id: uuid.UUID) -> bool:
        with session_scope(self.engine) as session:
            query = select(HandoffStaffRow.staff_id).where(
                HandoffStaffRow.tenant_id == tenant_id, col(HandoffStaffRow.available).is_(True)
            )
            return session.exec(query.limit(1)).first() is not None

    @staticmethod
    def _quiet_return(ticket: Ticket, at: datetime) -> ResolveHandoff:
        return ResolveHandoff(
            event_id=derived_id(ticket.id, "quiet-return"),
            tenant_id=ticket.tenant_id,
            correlation_id=ticket.correlation_id or derived_id(ticket.id, "correlation"),
            occurred_at=at,
            producer=PRODUCER,
            conversation_id=ticket.conversation_id,
            actor=SWEEPER,
            note=QUIET_NOTE,
            # The ticket found quiet, and no other: one opened since (a refund request, say) is not.
            ticket_id=ticket.id,
        )

    @staticmethod
    def _auto_assign(ticket: Ticket, at: datetime) -> AssignHandoff:
        # A fresh id each time: nobody may have been free at the last try, and that try is on record.
        return AssignHandoff(
            event_id=new_id(),
            tenant_id=ticket.tenant_id,
            correlation_id=ticket.correlation_id or derived_id(ticket.id, "correlation"),
            occurred_at=at,
            producer=PRODUCER,
            conversation_id=ticket.conversation_id,
            actor=SWEEPER,
        )

    async def run(self) -> None:
        while True:
            try:
                report = await self.run_once()
                if report.returned or report.breached or report.assigned or report.no_staff:
                    log.info("handoff sweep done", extra={"report": report.__dict__})
            except Exception:
                log.exception("handoff sweep failed; trying again next interval")
            await asyncio.sleep(self.interval_seconds)

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="handoff-sweep")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None


def _mark(
    session: Session, ticket: Ticket, events: Callable[[Ticket, datetime], Queued], at: datetime, notify: bool
) -> bool:
    HandoffStore(session).save_ticket(ticket)
    queue(session, events(ticket, at), key=ticket.conversation_id, notify=notify, at=at)
    return True


def _last_activity(ticket: Ticket, latest_message: datetime | None) -> datetime:
    moments = [ticket.opened_at, ticket.first_replied_at, ticket.last_requested_at, latest_message]
    return max(m for m in moments if m is not None)


def _latest_messages(session: Session, ticket_ids: list[str]) -> dict[str, datetime]:
    """Each open ticket's newest inbox message, either direction: how long the conversation has been quiet."""
    if not ticket_ids:
        return {}
    query = (
        select(HandoffTicketRow.id, func.max(InboxMessageRow.at))
        .join(
            InboxMessageRow,
            and_(
                col(InboxMessageRow.tenant_id) == col(HandoffTicketRow.tenant_id),
                col(InboxMessageRow.conversation_id) == col(HandoffTicketRow.conversation_id),
            ),
        )
        .where(col(HandoffTicketRow.id).in_(ticket_ids))
        .group_by(col(HandoffTicketRow.id))
    )
    return {ticket_id: as_utc(at) for ticket_id, at in session.exec(query).all() if at is not None}
