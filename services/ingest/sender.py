"""The sender: channel.outbound.v1 → the Graph API, refusing AI messages for conversations a person owns."""

import logging
import uuid

import httpx
from redis.asyncio import Redis
from sqlalchemy import Engine
from sqlmodel import Session

from schemas.channel import Author, DeliveryState, DeliveryStatus, OutboundMessage
from schemas.topics import CHANNEL_DELIVERY
from sellmesh.db import in_thread, session_scope
from sellmesh.outbox import add_to_outbox
from sellmesh.service import derived_id, now
from services.gateway.query import ChannelAccountView, account_by_id
from services.handoff.query import conversation_mode
from services.ingest.graph_client import SendRejected, SendTarget, send_text
from services.ingest.store import MessageLog, OutboundSend

log = logging.getLogger(__name__)


class Sender:
    def __init__(self, *, engine: Engine, redis: Redis, http: httpx.AsyncClient, graph_base_url: str) -> None:
        self.engine = engine
        self.redis = redis
        self.http = http
        self.graph_base_url = graph_base_url

    async def on_outbound(self, message: OutboundMessage) -> None:
        previous = await in_thread(self._previous_status, message.event_id)
        if previous in ("sent", "refused", "failed"):
            return
        # Second lock of two (the agent is the first): a person owns this conversation.
        if (
            message.author is Author.AI
            and await conversation_mode(self.redis, message.tenant_id, message.conversation_id) == "human"
        ):
            await in_thread(self._finish, message, "refused", None, "conversation is in human mode")
            log.info("ai message refused: conversation in human mode")
            return
        account = await in_thread(account_by_id, self.engine, uuid.UUID(message.channel_account_id))
        if account is None or account.tenant_id != message.tenant_id:
            await in_thread(self._finish, message, "failed", None, "channel account not found for tenant")
            return
        await in_thread(self._claim, message)
        try:
            provider_id = await send_text(
                self.http, base_url=self.graph_base_url, target=self._target(account, message), text=message.text
            )
        except SendRejected as exc:
            await in_thread(self._finish, message, "failed", None, str(exc))
            return
        await in_thread(self._finish, message, "sent", provider_id, "")

    @staticmethod
    def _target(account: ChannelAccountView, message: OutboundMessage) -> SendTarget:
        return SendTarget(
            channel=message.channel,
            account_external_id=account.external_id,
            access_token=account.access_token,
            customer_id=message.customer_id,
        )

    def _previous_status(self, event_id: uuid.UUID) -> str | None:
        with Session(self.engine) as session:
            row = session.get(OutboundSend, event_id)
            return row.status if row else None

    def _claim(self, message: OutboundMessage) -> None:
        with session_scope(self.engine) as session:
            if session.get(OutboundSend, message.event_id) is None:
                session.add(
                    OutboundSend(
                        event_id=message.event_id,
                        tenant_id=message.tenant_id,
                        conversation_id=message.conversation_id,
                        author=message.author.value,
                        status="sending",
                    )
                )

    def _finish(self, message: OutboundMessage, status: str, provider_id: str | None, error: str) -> None:
        with session_scope(self.engine) as session:
            row = session.get(OutboundSend, message.event_id) or OutboundSend(
                event_id=message.event_id,
                tenant_id=message.tenant_id,
                conversation_id=message.conversation_id,
                author=message.author.value,
                status=status,
            )
            row.status, row.provider_message_id, row.error, row.updated_at = status, provider_id, error[:500], now()
            session.add(row)
            if status == "refused":
                return
            if provider_id is not None:
                session.add(
                    MessageLog(
                        tenant_id=message.tenant_id,
                        channel=message.channel.value,
                        channel_account_id=uuid.UUID(message.channel_account_id),
                        conversation_id=message.conversation_id,
                        direction="out",
                        channel_message_id=provider_id,
                        event_id=message.event_id,
                        kind="text",
                        text=message.text,
                    )
                )
            state = DeliveryState.SENT if status == "sent" else DeliveryState.FAILED
            delivery = DeliveryStatus(
                event_id=derived_id("delivery", message.event_id, state.value),
                tenant_id=message.tenant_id,
                correlation_id=message.correlation_id,
                causation_id=message.event_id,
                occurred_at=now(),
                producer="ingest",
                conversation_id=message.conversation_id,
                channel=message.channel,
                message_id=provider_id or str(message.event_id),
                state=state,
                error_detail=error[:500] or None,
            )
            add_to_outbox(session, topic=CHANNEL_DELIVERY, event=delivery, key=message.conversation_id)
