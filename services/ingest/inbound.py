"""The normalizer: channel.raw.v1 → message log + channel.inbound.v1 / channel.delivery.v1 (via the outbox)."""

import json
import logging
import uuid

from faststream.kafka import KafkaBroker
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError
from sqlmodel import Session, select

from schemas.channel import DeliveryState, DeliveryStatus, InboundMessage, RawWebhook, content_text
from schemas.envelope import Actor, ActorKind
from schemas.handoff import HandoffReason, RequestHandoff
from schemas.topics import CHANNEL_DELIVERY, CHANNEL_INBOUND, CHANNEL_RAW, HANDOFF_COMMANDS, dlq_of
from sellmesh.broker import envelope_headers
from sellmesh.db import in_thread, session_scope
from sellmesh.logging import log_context
from sellmesh.metrics import INGEST_ITEMS_KEPT, INGEST_MESSAGES
from sellmesh.outbox import add_to_outbox
from sellmesh.service import derived_id, now
from sellmesh.subscriber import ERROR_TEXT_LIMIT, Handled, PermanentError
from services.gateway.query import ChannelAccountView, find_channel_account_async
from services.ingest.normalize import ParsedMessage, ParsedStatus, Unparsed, parse_webhook
from services.ingest.routing import UnroutableWebhook
from services.ingest.send_log import tagged_send
from services.ingest.store import OutboundSend, log_message, logged_before

log = logging.getLogger(__name__)


def conversation_id(account: ChannelAccountView, customer_id: str) -> str:
    """Stable per (tenant, account, customer); a hash, so no phone number rides in keys or logs."""
    return str(derived_id("conversation", account.tenant_id, account.id, customer_id))


class Normalizer:
    def __init__(self, *, engine: Engine, broker: KafkaBroker) -> None:
        self.engine = engine
        self.broker = broker

    async def on_raw_webhook(self, raw: RawWebhook) -> Handled | None:
        try:
            items = parse_webhook(json.loads(raw.body))
        except (ValueError, UnroutableWebhook) as exc:
            raise PermanentError(f"raw body is not a routable Meta webhook: {exc}") from exc
        problems: list[str] = []
        # A redelivered webhook finds every message it carries logged already. Statuses are published again
        # on every delivery (the next stage drops them by their ids), so a webhook with any counts as handled.
        messages = repeated = statuses = 0
        for item in items:
            if isinstance(item, Unparsed):
                problems.append(f"{item.channel.value}:{item.account_external_id}: {item.reason}")
                continue
            account = await find_channel_account_async(
                self.engine, channel=item.channel.value, external_id=item.account_external_id
            )
            if account is None:
                problems.append(f"{item.channel.value}:{item.account_external_id}: unknown channel account")
                continue
            if not raw.signed_for(str(account.id)):
                # Another account's secret verified this body: an entry for this one could be anyone's words.
                problems.append(
                    f"{item.channel.value}:{item.account_external_id}: its account did not sign the webhook"
                )
                continue
            with log_context(tenant_id=account.tenant_id):
                try:
                    if isinstance(item, ParsedMessage):
                        messages += 1
                        repeated += not await self._message(raw, account, item)
                    else:
                        statuses += 1
                        await in_thread(self._status, raw, account, item)
                except (ValidationError, DataError) as exc:
                    # This item can never be taken (a field our events refuse, a value the database refuses):
                    # kept with the body, while the webhook's other items are answered.
                    where = f"{item.channel.value}:{item.account_external_id}"
                    problems.append(f"{where}: {type(exc).__name__}: {exc}"[:300])
        if problems:
            await self._keep(raw, problems)
        return Handled.DUPLICATE if messages and repeated == messages and not (statuses or problems) else None

    async def _keep(self, raw: RawWebhook, problems: list[str]) -> None:
        """Items nobody can route or read: counted, logged and kept in the DLQ with the whole body."""
        INGEST_ITEMS_KEPT.inc(len(problems))
        headers = {
            **envelope_headers(raw),
            "x-error-kind": "unroutable_items",
            "x-error-message": "; ".join(problems)[:ERROR_TEXT_LIMIT],
            "x-original-topic": CHANNEL_RAW,
        }
        await self.broker.publish(
            raw.model_dump_json().encode(),
            topic=dlq_of(CHANNEL_RAW),
            key=raw.channel_account_id.encode(),
            headers=headers,
        )
        log.warning("webhook items kept in DLQ", extra={"problems": problems[:5]})

    async def _message(self, raw: RawWebhook, account: ChannelAccountView, item: ParsedMessage) -> bool:
        """True when the message is new. The message log's unique key is the whole dedup: a redelivered
        webhook costs one insert that fails, where a Redis mark in front of it cost two round trips a message."""
        new = await in_thread(self._record_message, raw, account, item)
        if new:
            INGEST_MESSAGES.labels(item.channel.value, "echo" if item.is_echo else "in").inc()
        return new

    def _record_message(self, raw: RawWebhook, account: ChannelAccountView, item: ParsedMessage) -> bool:
        """Logs the message and queues what it causes, in one transaction; False when it was logged before."""
        conversation = conversation_id(account, item.customer_id)
        event_id = derived_id("inbound", account.tenant_id, item.channel.value, item.message_id)
        direction = "echo" if item.is_echo else "in"
        try:
            with session_scope(self.engine) as session:
                log_message(
                    session,
                    tenant_id=account.tenant_id,
                    channel=item.channel.value,
                    channel_account_id=account.id,
                    conversation_id=conversation,
                    direction=direction,
                    channel_message_id=item.message_id,
                    event_id=event_id,
                    kind=item.content.kind,
                    text=content_text(item.content),
                    # Echoes are ours and never open the window; a customer's message opens it from when sent.
                    sent_at=None if item.is_echo else item.sent_at,
                )
                if item.is_echo:
                    if not self._sent_by_us(session, account.tenant_id, item.message_id, item.send_id):
                        add_to_outbox(
                            session,
                            topic=HANDOFF_COMMANDS,
                            event=self._takeover(raw, account, item, conversation),
                            key=conversation,
                        )
                    return True
                message = InboundMessage(
                    event_id=event_id,
                    tenant_id=account.tenant_id,
                    correlation_id=event_id,
                    causation_id=raw.event_id,
                    occurred_at=now(),
                    producer="ingest",
                    conversation_id=conversation,
                    channel=item.channel,
                    channel_account_id=str(account.id),
                    customer_id=item.customer_id,
                    message_id=item.message_id,
                    sent_at=item.sent_at,
                    content=item.content,
                )
                add_to_outbox(session, topic=CHANNEL_INBOUND, event=message, key=conversation)
            return True
        except IntegrityError:
            with self.engine.connect() as connection:
                repeated = logged_before(
                    connection,
                    tenant_id=account.tenant_id,
                    channel=item.channel.value,
                    direction=direction,
                    channel_message_id=item.message_id,
                )
            if not repeated:
                raise  # not the unique key: retried, then kept in the DLQ, never dropped as a duplicate
            log.info("duplicate channel message ignored", extra={"channel": item.channel.value})
            return False

    @staticmethod
    def _sent_by_us(session: Session, tenant_id: uuid.UUID, message_id: str, send_id: str | None) -> bool:
        """One of the tenant's sends (the AI's, the system's, or a person's reply through us), by the message id
        Meta gave back, or by the send id it carried: the send row is claimed before the post and its message id
        recorded after it, so an echo or a status can come first, and a send that stopped mid-way never learns
        it. A message a person wrote from the business's own phone or inbox is no send of ours."""
        mine = (OutboundSend.provider_message_id == message_id, OutboundSend.tenant_id == tenant_id)
        if session.exec(select(OutboundSend.event_id).where(*mine)).first():
            return True
        send = tagged_send(send_id) if send_id else None
        row = session.get(OutboundSend, send) if send is not None else None
        return row is not None and row.tenant_id == tenant_id

    @staticmethod
    def _undelivered(
        raw: RawWebhook, account: ChannelAccountView, item: ParsedStatus, conversation: str
    ) -> RequestHandoff:
        return RequestHandoff(
            event_id=derived_id("undelivered", account.tenant_id, item.message_id),
            tenant_id=account.tenant_id,
            correlation_id=raw.correlation_id,
            causation_id=raw.event_id,
            occurred_at=now(),
            producer="ingest",
            conversation_id=conversation,
            actor=Actor(kind=ActorKind.SYSTEM, id="ingest"),
            # The closest reason for "this channel could not carry the message" (as the sender's refusals).
            reason=HandoffReason.CHANNEL_WINDOW_CLOSED,
            channel=item.channel,
            channel_account_id=str(account.id),
            customer_id=item.customer_id,
            note=f"the channel accepted a reply and then reported it undelivered ({item.error_code or 'no code'})",
        )

    @staticmethod
    def _takeover(
        raw: RawWebhook, account: ChannelAccountView, item: ParsedMessage, conversation: str
    ) -> RequestHandoff:
        """A person answered from the business's phone or inbox: the AI must stop for this conversation."""
        return RequestHandoff(
            event_id=derived_id("takeover", account.tenant_id, item.message_id),
            tenant_id=account.tenant_id,
            correlation_id=raw.correlation_id,
            causation_id=raw.event_id,
            occurred_at=now(),
            producer="ingest",
            conversation_id=conversation,
            actor=Actor(kind=ActorKind.SYSTEM, id="ingest"),
            reason=HandoffReason.HUMAN_REPLIED_ON_CHANNEL,
            channel=item.channel,
            channel_account_id=str(account.id),
            customer_id=item.customer_id,
        )

    def _status(self, raw: RawWebhook, account: ChannelAccountView, item: ParsedStatus) -> None:
        conversation = conversation_id(account, item.customer_id)
        status = DeliveryStatus(
            event_id=derived_id("delivery", account.tenant_id, item.message_id, item.state.value),
            tenant_id=account.tenant_id,
            correlation_id=raw.correlation_id,
            causation_id=raw.event_id,
            occurred_at=now(),
            producer="ingest",
            conversation_id=conversation,
            channel=item.channel,
            message_id=item.message_id,
            state=item.state,
            error_code=item.error_code,
        )
        with session_scope(self.engine) as session:
            add_to_outbox(session, topic=CHANNEL_DELIVERY, event=status, key=conversation)
            if item.state is DeliveryState.FAILED and self._sent_by_us(
                session, account.tenant_id, item.message_id, item.send_tag
            ):
                # Accepted, then not delivered (WhatsApp reports it later): the customer has no answer, and the
                # delivery status alone reaches nobody; a person is asked, or the one at work is told.
                add_to_outbox(
                    session,
                    topic=HANDOFF_COMMANDS,
                    event=self._undelivered(raw, account, item, conversation),
                    key=conversation,
                )
