"""The handoff inbox read model on both databases: exact under redelivery, unread counts, tenant walls."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from schemas.channel import Author, InboundMessage, OutboundMessage, TextContent
from schemas.envelope import Actor, ActorKind, Channel
from schemas.handoff import HandoffReason, RequestHandoff
from sellmesh.db import session_scope
from services.handoff.handlers import apply_command
from services.handoff.query import open_inbox
from services.handoff.store import HandoffTicketRow
from tests.builders import envelope, record_inbound, record_outbound, resolve_command

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def inbound(tenant: uuid.UUID, conversation: str, text: str, at: datetime) -> InboundMessage:
    return InboundMessage(
        **envelope(tenant),
        conversation_id=conversation,
        channel=Channel.WHATSAPP,
        channel_account_id="acc",
        customer_id="c1",
        message_id=f"wamid.{uuid.uuid4().hex}",
        sent_at=at,
        content=TextContent(text=text),
    )


def outbound(tenant: uuid.UUID, conversation: str, author: Author, text: str, at: datetime) -> OutboundMessage:
    return OutboundMessage(
        **envelope(tenant, occurred_at=at),
        conversation_id=conversation,
        channel=Channel.WHATSAPP,
        channel_account_id="acc",
        customer_id="c1",
        author=author,
        text=text,
    )


def open_ticket(engine: Engine, tenant: uuid.UUID, conversation: str) -> None:
    with session_scope(engine) as session:
        session.add(
            HandoffTicketRow(
                id=str(uuid.uuid4()),
                tenant_id=tenant,
                conversation_id=conversation,
                channel="whatsapp",
                channel_account_id="acc",
                customer_id="c1",
                status="open",
                reason=HandoffReason.CUSTOMER_ASKED.value,
                notes="[]",
                opened_at=NOW - timedelta(minutes=5),
            )
        )


def test_inbox_is_exact_under_redelivery_and_counts_unread_since_a_person_wrote(migrated_engine: Engine) -> None:
    tenant, conversation = uuid.uuid4(), f"conv-{uuid.uuid4().hex[:8]}"
    open_ticket(migrated_engine, tenant, conversation)
    first = inbound(tenant, conversation, "I want a person", NOW - timedelta(minutes=6))
    for _ in range(3):
        record_inbound(migrated_engine, first)
    record_outbound(
        migrated_engine, outbound(tenant, conversation, Author.HUMAN, "Hi, Anna here", NOW - timedelta(minutes=4))
    )
    record_inbound(migrated_engine, inbound(tenant, conversation, "great, thanks", NOW - timedelta(minutes=3)))
    [entry] = open_inbox(migrated_engine, tenant, now=NOW)
    assert [m.text for m in entry.messages] == ["I want a person", "Hi, Anna here", "great, thanks"]
    assert entry.unread == 1
    assert entry.waiting_seconds == 0  # a person has answered
    assert open_inbox(migrated_engine, uuid.uuid4(), now=NOW) == []


def test_waiting_time_runs_until_a_person_answers(migrated_engine: Engine) -> None:
    tenant, conversation = uuid.uuid4(), f"conv-{uuid.uuid4().hex[:8]}"
    open_ticket(migrated_engine, tenant, conversation)
    record_inbound(migrated_engine, inbound(tenant, conversation, "hello?", NOW - timedelta(minutes=6)))
    record_outbound(
        migrated_engine,
        outbound(tenant, conversation, Author.SYSTEM, "A person will answer", NOW - timedelta(minutes=5)),
    )
    [entry] = open_inbox(migrated_engine, tenant, now=NOW)
    assert entry.waiting_seconds == 300
    assert entry.unread == 1


def test_a_request_that_joins_an_open_ticket_is_shown_with_its_note(migrated_engine: Engine) -> None:
    """A refund Stripe refused, a reply that did not reach the customer: joined to the ticket a person already
    works, told nowhere else."""
    tenant, conversation = uuid.uuid4(), f"conv-{uuid.uuid4().hex[:8]}"

    def request(reason: HandoffReason, note: str) -> RequestHandoff:
        return RequestHandoff(
            **envelope(tenant),
            conversation_id=conversation,
            actor=Actor(kind=ActorKind.SYSTEM, id="payments"),
            reason=reason,
            channel=Channel.WHATSAPP,
            channel_account_id="acc",
            customer_id="c1",
            note=note,
        )

    apply_command(migrated_engine, request(HandoffReason.CUSTOMER_ASKED, "wants a person"), NOW - timedelta(minutes=5))
    joined = request(HandoffReason.PAYMENT_MISMATCH, "Stripe refused to refund: the customer's money is not back")
    apply_command(migrated_engine, joined, NOW)
    [entry] = open_inbox(migrated_engine, tenant, now=NOW)
    assert entry.reason == HandoffReason.CUSTOMER_ASKED.value
    assert entry.notes == [
        "wants a person",
        "payment_mismatch: Stripe refused to refund: the customer's money is not back",
    ]
    assert entry.last_requested_at == NOW
    # Closed again: an open ticket past its deadline would be swept by later tests on this database.
    apply_command(migrated_engine, resolve_command(tenant, conversation), NOW)
    assert open_inbox(migrated_engine, tenant, now=NOW) == []
