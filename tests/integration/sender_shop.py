"""A tenant with one account per channel, a sender pointed at the fake Graph API, and what the sender recorded."""

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from schemas.channel import Author, OutboundMessage
from schemas.envelope import Channel
from sellmesh.db import session_scope
from sellmesh.outbox import OutboxRow
from sellmesh.service import now
from services.gateway.query import account_by_id
from services.ingest.sender import Sender
from services.ingest.store import MessageLog, OutboundSend
from tests.builders import envelope
from tests.fakes import FakeGraphApi


@dataclass
class Shop:
    engine: Engine
    sender: Sender
    graph: FakeGraphApi
    tenant_id: uuid.UUID
    accounts: dict[Channel, uuid.UUID]
    tokens: dict[Channel, str]

    def outbound(
        self, channel: Channel, author: Author = Author.AI, text: str = "Hello!", **fields: Any
    ) -> OutboundMessage:
        return OutboundMessage(
            **envelope(self.tenant_id),
            conversation_id=f"conv-{uuid.uuid4().hex}",
            channel=channel,
            channel_account_id=str(self.accounts[channel]),
            customer_id=str(uuid.uuid4().int)[:13],
            author=author,
            text=text,
            **fields,
        )

    def customer_wrote(self, message: OutboundMessage, hours_ago: float, sent_hours_ago: float | None = None) -> None:
        """An inbound row logged `hours_ago`, sent by the customer `sent_hours_ago` (None: as old as the row's
        log time, as rows from before the column were)."""
        with session_scope(self.engine) as session:
            session.add(
                MessageLog(
                    tenant_id=self.tenant_id,
                    channel=message.channel.value,
                    channel_account_id=self.accounts[message.channel],
                    conversation_id=message.conversation_id,
                    direction="in",
                    channel_message_id=f"in.{uuid.uuid4().hex}",
                    event_id=uuid.uuid4(),
                    kind="text",
                    text="hi",
                    created_at=now() - timedelta(hours=hours_ago),
                    sent_at=None if sent_hours_ago is None else now() - timedelta(hours=sent_hours_ago),
                )
            )

    def row(self, event_id: uuid.UUID) -> OutboundSend:
        row = self.row_or_none(event_id)
        assert row is not None
        return row

    def row_or_none(self, event_id: uuid.UUID) -> OutboundSend | None:
        with Session(self.engine) as session:
            return session.get(OutboundSend, event_id)

    def outbox(self, message: OutboundMessage, topic: str) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            query = (
                select(OutboxRow)
                .where(OutboxRow.topic == topic, OutboxRow.key == message.conversation_id)
                .order_by(col(OutboxRow.id))
            )
            return [json.loads(row.payload) for row in session.exec(query)]

    def sent_log(self, message: OutboundMessage) -> list[MessageLog]:
        with Session(self.engine) as session:
            query = select(MessageLog).where(
                MessageLog.conversation_id == message.conversation_id, MessageLog.direction == "out"
            )
            return list(session.exec(query))

    def external_id(self, channel: Channel) -> str:
        account = account_by_id(self.engine, self.accounts[channel])
        assert account is not None
        return account.external_id
