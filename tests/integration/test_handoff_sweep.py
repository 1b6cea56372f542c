"""The handoff sweep on SQLite and PostgreSQL with a clock the test moves: breaches, no-staff, quiet return."""

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from schemas.envelope import Actor, ActorKind, Channel, Envelope
from schemas.handoff import (
    EscalationReason,
    HandoffAssigned,
    HandoffEscalated,
    HandoffReason,
    HandoffResolved,
    ReplyHandoff,
    RequestHandoff,
    SetAvailability,
    SlaBreached,
)
from schemas.registry import adapter_for
from schemas.topics import HANDOFF_EVENTS
from sellmesh.db import session_scope
from sellmesh.metrics import registry
from sellmesh.outbox import OutboxRow
from services.gateway.admin import create_tenant
from services.gateway.store import Tenant
from services.handoff import handlers, mirror
from services.handoff.domain import TicketStatus
from services.handoff.handlers import on_handoff_command
from services.handoff.mode import get_mode, set_mode
from services.handoff.store import HandoffStore, HandoffTicketRow
from services.handoff.sweep import QUIET_NOTE, HandoffSweep
from tests.builders import envelope, inbound_text, record_inbound, resolve_command

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def tenant_with(engine: Engine, handoff: dict[str, Any]) -> uuid.UUID:
    tenant_id, _ = create_tenant(engine, name=f"Sweep test {uuid.uuid4().hex[:6]}")
    with Session(engine) as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        tenant.training = json.dumps({"handoff": handoff})
        session.add(tenant)
        session.commit()
    return tenant_id


def request(tenant: uuid.UUID, conversation: str) -> RequestHandoff:
    return RequestHandoff(
        **envelope(tenant, occurred_at=T0),
        conversation_id=conversation,
        actor=Actor(kind=ActorKind.AI),
        reason=HandoffReason.CUSTOMER_ASKED,
        channel=Channel.WHATSAPP,
        channel_account_id="acc",
        customer_id="c1",
    )


def availability(tenant: uuid.UUID, staff_id: str, available: bool) -> SetAvailability:
    actor = Actor(kind=ActorKind.STAFF, id=staff_id)
    return SetAvailability(**envelope(tenant), actor=actor, staff_id=staff_id, available=available)


def ticket_events(engine: Engine, tenant: uuid.UUID, conversation: str) -> list[Envelope]:
    with Session(engine) as session:
        rows = session.exec(
            select(OutboxRow)
            .where(OutboxRow.topic == HANDOFF_EVENTS, OutboxRow.key == conversation)
            .order_by(col(OutboxRow.id))
        ).all()
    found = [adapter_for(HANDOFF_EVENTS).validate_json(row.payload) for row in rows]
    return [event for event in found if event.tenant_id == tenant]


def status_of(engine: Engine, tenant: uuid.UUID, conversation: str) -> TicketStatus:
    with session_scope(engine) as session:
        return HandoffStore(session).tickets(tenant, conversation)[-1].status


def metric(name: str) -> float:
    return registry.get_sample_value(name) or 0.0


async def test_a_passed_deadline_is_announced_once_and_an_answered_ticket_never(
    migrated_engine: Engine, redis: Redis
) -> None:
    tenant = tenant_with(migrated_engine, {"first_response_seconds": 600, "on_quiet": "human"})
    late, answered = f"late-{uuid.uuid4().hex[:8]}", f"answered-{uuid.uuid4().hex[:8]}"
    ana = f"ana-{uuid.uuid4().hex[:8]}"  # staff ids are unique across tenants
    await on_handoff_command(availability(tenant, ana, True), engine=migrated_engine, redis=redis, at=T0)
    for conversation in (late, answered):
        await on_handoff_command(request(tenant, conversation), engine=migrated_engine, redis=redis, at=T0)
    reply = ReplyHandoff(
        **envelope(tenant), conversation_id=answered, actor=Actor(kind=ActorKind.STAFF, id=ana), text="Hi"
    )
    await on_handoff_command(reply, engine=migrated_engine, redis=redis, at=T0 + timedelta(seconds=300))
    clock = Clock(T0 + timedelta(seconds=599))
    sweep = HandoffSweep(engine=migrated_engine, redis=redis, clock=clock)
    breaches = metric("sellmesh_handoff_sla_breaches_total")
    await sweep.run_once()
    assert not any(isinstance(e, SlaBreached) for e in ticket_events(migrated_engine, tenant, late))
    clock.at = T0 + timedelta(seconds=601)
    for _ in range(2):
        await sweep.run_once()
    [breached] = [e for e in ticket_events(migrated_engine, tenant, late) if isinstance(e, SlaBreached)]
    assert breached.deadline == T0 + timedelta(seconds=600)
    escalations = [e for e in ticket_events(migrated_engine, tenant, late) if isinstance(e, HandoffEscalated)]
    assert [e.reason for e in escalations] == [EscalationReason.SLA_BREACHED]
    assert ticket_events(migrated_engine, tenant, answered)[-1].type == "replied"  # type: ignore[attr-defined]
    assert metric("sellmesh_handoff_sla_breaches_total") == breaches + 1
    with Session(migrated_engine) as session:
        still_open = session.exec(select(HandoffTicketRow).where(HandoffTicketRow.status == "open")).all()
    assert metric("sellmesh_handoffs_open") == len(still_open) > 0


async def test_a_ticket_nobody_could_take_is_escalated_once_then_assigned_when_someone_is_free(
    migrated_engine: Engine, redis: Redis
) -> None:
    tenant = tenant_with(migrated_engine, {"on_quiet": "human", "first_response_seconds": 86400})
    conversation, bo = f"waiting-{uuid.uuid4().hex[:8]}", f"bo-{uuid.uuid4().hex[:8]}"
    await on_handoff_command(availability(tenant, bo, False), engine=migrated_engine, redis=redis, at=T0)
    await on_handoff_command(request(tenant, conversation), engine=migrated_engine, redis=redis, at=T0)
    sweep = HandoffSweep(engine=migrated_engine, redis=redis, clock=Clock(T0 + timedelta(minutes=5)))
    await sweep.run_once()
    escalated = [e for e in ticket_events(migrated_engine, tenant, conversation) if isinstance(e, HandoffEscalated)]
    assert [e.reason for e in escalated] == [EscalationReason.NO_STAFF_AVAILABLE]
    await on_handoff_command(availability(tenant, bo, True), engine=migrated_engine, redis=redis, at=T0)
    await sweep.run_once()
    await sweep.run_once()
    events = ticket_events(migrated_engine, tenant, conversation)
    assert [e.staff_id for e in events if isinstance(e, HandoffAssigned)] == [bo]
    assert sum(isinstance(e, HandoffEscalated) for e in events) == 1


def customer_wrote(engine: Engine, tenant: uuid.UUID, conversation: str, at: datetime) -> None:
    record_inbound(engine, inbound_text(tenant, conversation, "anyone?", sent_at=at))


async def test_a_customer_who_writes_while_the_sweep_works_through_its_batch_keeps_the_person(
    migrated_engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's snapshot said quiet; by this ticket's turn the customer had written (the AI skipped the message:
    a person owned the conversation). Handing back now would leave the message unanswered."""
    tenant = tenant_with(migrated_engine, {"quiet_return_seconds": 1800, "first_response_seconds": 86400})
    conversation = f"quiet-{uuid.uuid4().hex[:8]}"
    await on_handoff_command(request(tenant, conversation), engine=migrated_engine, redis=redis, at=T0)
    clock = Clock(T0 + timedelta(minutes=45))
    sweep = HandoffSweep(engine=migrated_engine, redis=redis, clock=clock)
    snapshot = sweep._open_tickets

    def then_the_customer_writes() -> Any:
        tickets = snapshot()
        customer_wrote(migrated_engine, tenant, conversation, clock.at)
        return tickets

    monkeypatch.setattr(sweep, "_open_tickets", then_the_customer_writes)
    await sweep.run_once()
    assert status_of(migrated_engine, tenant, conversation) is TicketStatus.OPEN
    assert await get_mode(redis, tenant, conversation) == "human"


async def test_a_ticket_opened_after_the_quiet_one_was_resolved_is_not_handed_back(
    migrated_engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's snapshot found the ticket quiet; by its turn an owner had resolved it and a new request (a
    refund, say) had opened another. The quiet return is about the first ticket only."""
    tenant = tenant_with(migrated_engine, {"quiet_return_seconds": 1800, "first_response_seconds": 86400})
    conversation = f"quiet-{uuid.uuid4().hex[:8]}"
    await on_handoff_command(request(tenant, conversation), engine=migrated_engine, redis=redis, at=T0)
    clock = Clock(T0 + timedelta(minutes=45))
    sweep = HandoffSweep(engine=migrated_engine, redis=redis, clock=clock)
    snapshot = sweep._open_tickets

    async def resolved_and_opened_again() -> None:
        await on_handoff_command(
            resolve_command(tenant, conversation), engine=migrated_engine, redis=redis, at=clock.at
        )
        again = request(tenant, conversation)
        await on_handoff_command(again, engine=migrated_engine, redis=redis, at=clock.at)

    def then_a_new_ticket_opens() -> Any:
        tickets = snapshot()
        asyncio.run_coroutine_threadsafe(resolved_and_opened_again(), loop).result()
        return tickets

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(sweep, "_open_tickets", then_a_new_ticket_opens)
    await sweep.run_once()
    assert status_of(migrated_engine, tenant, conversation) is TicketStatus.OPEN
    assert await get_mode(redis, tenant, conversation) == "human"


async def test_a_request_committed_while_the_sweep_hands_back_keeps_the_mirror_human(
    migrated_engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep's quiet return runs outside the conversation's partition: a new request for the conversation
    commits and mirrors `human` between the sweep's commit and its own mirror write, which must not win."""
    tenant = tenant_with(migrated_engine, {"quiet_return_seconds": 1800, "first_response_seconds": 86400})
    conversation = f"quiet-{uuid.uuid4().hex[:8]}"
    await on_handoff_command(request(tenant, conversation), engine=migrated_engine, redis=redis, at=T0)
    real = handlers.mode.set_mode
    pending = [request(tenant, conversation).model_copy(update={"occurred_at": T0 + timedelta(hours=1)})]

    async def write(client: Redis, tenant_id: uuid.UUID, conversation_id: str, value: str, **handback: Any) -> None:
        if value == "ai" and pending:  # the sweep's write, late: the customer asked for a person meanwhile
            await on_handoff_command(pending.pop(), engine=migrated_engine, redis=redis, at=T0 + timedelta(hours=1))
        await real(client, tenant_id, conversation_id, value, **handback)

    monkeypatch.setattr(handlers.mode, "set_mode", write)
    sweep = HandoffSweep(engine=migrated_engine, redis=redis, clock=Clock(T0 + timedelta(minutes=45)))
    await sweep.run_once()
    assert not pending  # the interleaving happened
    assert status_of(migrated_engine, tenant, conversation) is TicketStatus.OPEN  # the new request's ticket
    assert await get_mode(redis, tenant, conversation) == "human"


async def test_a_conversation_handed_back_while_the_mirror_is_rebuilt_is_not_left_silent(
    migrated_engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica starting in a rolling deploy rebuilds the mirror from a read of the human conversations; another
    replica hands one back (and deletes its key) between that read and the rebuild's write of it."""
    tenant = tenant_with(migrated_engine, {"first_response_seconds": 86400})
    conversation = f"rebuild-{uuid.uuid4().hex[:8]}"
    await on_handoff_command(request(tenant, conversation), engine=migrated_engine, redis=redis, at=T0)
    real = mirror._human_conversations
    reads: list[int] = []

    def read(engine: Engine) -> list[tuple[uuid.UUID, str]]:
        found = real(engine)
        if not reads:  # right after the rebuild's first read, the other replica resolves the ticket
            resolve = resolve_command(tenant, conversation).model_copy(update={"occurred_at": T0})
            asyncio.run_coroutine_threadsafe(
                on_handoff_command(resolve, engine=migrated_engine, redis=redis, at=T0), loop
            ).result()
        reads.append(len(found))
        return found

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(mirror, "_human_conversations", read)
    await mirror.reconcile_mode_mirror(engine=migrated_engine, redis=redis)
    assert status_of(migrated_engine, tenant, conversation) is TicketStatus.RESOLVED
    assert await get_mode(redis, tenant, conversation) == "ai"


async def test_a_conversation_handed_to_a_person_while_stale_keys_are_swept_keeps_its_key(
    migrated_engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lasting "human" no ticket backs is deleted by the reconcile; a request for that conversation commits
    (and writes its key) between the reconcile's read of the table and that delete."""
    tenant = tenant_with(migrated_engine, {"first_response_seconds": 86400})
    conversation = f"stale-{uuid.uuid4().hex[:8]}"
    await set_mode(redis, tenant, conversation, "human")  # left behind by a handback whose delete failed
    real = mirror._human_conversations
    reads: list[int] = []

    def read(engine: Engine) -> list[tuple[uuid.UUID, str]]:
        found = real(engine)
        if not reads:
            asyncio.run_coroutine_threadsafe(
                on_handoff_command(request(tenant, conversation), engine=migrated_engine, redis=redis, at=T0), loop
            ).result()
        reads.append(len(found))
        return found

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(mirror, "_human_conversations", read)
    await mirror.reconcile_mode_mirror(engine=migrated_engine, redis=redis)
    assert status_of(migrated_engine, tenant, conversation) is TicketStatus.OPEN
    assert await get_mode(redis, tenant, conversation) == "human"
    assert await redis.pttl(f"mode:{tenant}:{conversation}") == -1


async def test_a_request_that_joins_an_open_ticket_keeps_it_from_going_back_to_the_ai_while_quiet(
    migrated_engine: Engine, redis: Redis
) -> None:
    """Payments asks for a person (money reached a cancelled order) on a ticket nobody wrote on for 25 minutes:
    the quiet return five minutes later would hand the conversation back with the refund unmade."""
    tenant = tenant_with(migrated_engine, {"quiet_return_seconds": 1800, "first_response_seconds": 86400})
    conversation = f"noted-{uuid.uuid4().hex[:8]}"
    await on_handoff_command(request(tenant, conversation), engine=migrated_engine, redis=redis, at=T0)
    refund = request(tenant, conversation).model_copy(
        update={"reason": HandoffReason.PAYMENT_MISMATCH, "actor": Actor(kind=ActorKind.SYSTEM, id="payments")}
    )
    joined = T0 + timedelta(minutes=25)
    await on_handoff_command(refund, engine=migrated_engine, redis=redis, at=joined)
    await HandoffSweep(engine=migrated_engine, redis=redis, clock=Clock(T0 + timedelta(minutes=31))).run_once()
    assert status_of(migrated_engine, tenant, conversation) is TicketStatus.OPEN
    assert await get_mode(redis, tenant, conversation) == "human"
    await HandoffSweep(engine=migrated_engine, redis=redis, clock=Clock(joined + timedelta(minutes=31))).run_once()
    assert status_of(migrated_engine, tenant, conversation) is TicketStatus.RESOLVED  # quiet since the request


async def test_a_quiet_conversation_goes_back_to_the_ai_unless_the_tenant_keeps_it_with_people(
    migrated_engine: Engine, redis: Redis
) -> None:
    to_ai = tenant_with(migrated_engine, {"quiet_return_seconds": 1800, "first_response_seconds": 86400})
    keep = tenant_with(migrated_engine, {"quiet_return_seconds": 1800, "on_quiet": "human"})
    conversation = f"quiet-{uuid.uuid4().hex[:8]}"
    for tenant in (to_ai, keep):
        await on_handoff_command(request(tenant, conversation), engine=migrated_engine, redis=redis, at=T0)
        customer_wrote(migrated_engine, tenant, conversation, T0 + timedelta(minutes=10))
    clock = Clock(T0 + timedelta(minutes=39))
    sweep = HandoffSweep(engine=migrated_engine, redis=redis, clock=clock)
    await sweep.run_once()  # 29 minutes since the customer's last message: not quiet yet
    assert status_of(migrated_engine, to_ai, conversation) is TicketStatus.OPEN
    clock.at = T0 + timedelta(minutes=41)
    await sweep.run_once()
    await sweep.run_once()
    resolved = [e for e in ticket_events(migrated_engine, to_ai, conversation) if isinstance(e, HandoffResolved)]
    assert [e.note for e in resolved] == [QUIET_NOTE]
    assert await get_mode(redis, to_ai, conversation) == "ai"
    assert status_of(migrated_engine, keep, conversation) is TicketStatus.OPEN
    assert await get_mode(redis, keep, conversation) == "human"


async def test_tickets_nobody_closes_do_not_keep_newer_ones_of_any_tenant_from_the_sweep(
    migrated_engine: Engine, redis: Redis
) -> None:
    neglected = tenant_with(migrated_engine, {"first_response_seconds": 600, "on_quiet": "human"})
    for n in range(2):  # older, and never resolved
        await on_handoff_command(
            request(neglected, f"old-{n}-{uuid.uuid4().hex[:8]}"), engine=migrated_engine, redis=redis, at=T0
        )
    other = tenant_with(migrated_engine, {"first_response_seconds": 600, "on_quiet": "human"})
    late = f"late-{uuid.uuid4().hex[:8]}"
    opened = T0 + timedelta(minutes=1)
    await on_handoff_command(request(other, late), engine=migrated_engine, redis=redis, at=opened)
    sweep = HandoffSweep(engine=migrated_engine, redis=redis, clock=Clock(opened + timedelta(hours=1)), batch=2)
    # The database may hold other tests' open tickets too: every page of them is read in turn.
    with Session(migrated_engine) as session:
        still_open = len(session.exec(select(HandoffTicketRow).where(HandoffTicketRow.status == "open")).all())
    for _ in range(still_open // sweep.batch + 1):
        await sweep.run_once()
    assert any(isinstance(e, SlaBreached) for e in ticket_events(migrated_engine, other, late))
