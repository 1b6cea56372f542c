"""Tells the customer what the services decided: a payment link, or why a proposed change was refused."""

import uuid

from faststream.kafka import KafkaBroker
from redis.asyncio import Redis

from schemas.channel import Author, OutboundMessage
from schemas.envelope import Actor, ActorKind, Channel, Envelope
from schemas.handoff import HandoffReason, RequestHandoff
from schemas.orders import CatalogChanged, CommandRejected, OrderChanged, RejectionReason
from schemas.payments import PaymentEvent, PaymentLinkCreated, PaymentSucceeded
from schemas.topics import CHANNEL_OUTBOUND, HANDOFF_COMMANDS
from sellmesh.broker import publish
from sellmesh.service import caused_by
from services.agent import memory
from services.agent.metrics import HANDOFFS_REQUESTED
from services.agent.prompt import format_money

REFUSALS = {
    RejectionReason.OUT_OF_STOCK: "Sorry, we don't have enough of that in stock right now.",
    RejectionReason.UNKNOWN_PRODUCT: "Sorry, that product isn't in our catalog.",
    RejectionReason.EMPTY_ORDER: "Your order is empty so far. What would you like?",
    RejectionReason.ORDER_CLOSED: "That order is already closed, so I can't change it. I can start a new one.",
    RejectionReason.ITEM_NOT_IN_ORDER: "That item isn't in your order.",
}
REPEATED_REFUSAL = "I keep getting that wrong, sorry. A person from our team will take over here shortly."
REJECTIONS_BEFORE_HANDOFF = 3
REJECTION_WINDOW_SECONDS = 3600
GENERIC_REFUSAL = "Sorry, I couldn't make that change to your order. A person from our team can help if you like."


class Notices:
    def __init__(self, *, redis: Redis, broker: KafkaBroker) -> None:
        self.redis = redis
        self.broker = broker

    async def on_order_event(self, event: OrderChanged | CommandRejected | CatalogChanged) -> None:
        # Only the AI's own proposals about an order: a refusal of an owner's command is the gateway's to report.
        if not isinstance(event, CommandRejected) or event.actor.kind is not ActorKind.AI or event.order_id is None:
            return
        address = await memory.order_conversation(self.redis, event.tenant_id, event.order_id)
        if address is None:
            return
        # The window's refusals by event id, not a counter: a refusal delivered again (a retry, a redelivery
        # after a crash) counts once and decides again what it decided the first time.
        key = f"agent:rejections:{event.tenant_id}:{address['conversation_id']}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key, str(event.event_id))
            pipe.scard(key)
            pipe.expire(key, REJECTION_WINDOW_SECONDS)
            _, count, _ = await pipe.execute()
        if int(count) < REJECTIONS_BEFORE_HANDOFF:
            await self._tell(event, event.order_id, REFUSALS.get(event.reason, GENERIC_REFUSAL))
            return
        # The AI keeps proposing what the services refuse: a person takes it from here. The count goes only once
        # the request is out: should it fail, the redelivered refusal hands over (the notice, by its derived
        # id, is sent once).
        await self._tell(event, event.order_id, REPEATED_REFUSAL)
        await self._hand_over(event, address)
        await self.redis.delete(key)

    async def _hand_over(self, cause: CommandRejected, address: dict[str, str]) -> None:
        request = RequestHandoff(
            **caused_by(cause, "handoff", producer="agent"),
            conversation_id=address["conversation_id"],
            actor=Actor(kind=ActorKind.AI, id="agent"),
            reason=HandoffReason.REJECTED_COMMAND,
            channel=Channel(address["channel"]),
            channel_account_id=address["channel_account_id"],
            customer_id=address["customer_id"],
            note=f"orders refused the AI's proposals repeatedly; last reason: {cause.reason.value}",
        )
        HANDOFFS_REQUESTED.labels(HandoffReason.REJECTED_COMMAND.value).inc()
        await publish(self.broker, HANDOFF_COMMANDS, request, key=request.conversation_id)

    async def on_payment_event(self, event: PaymentEvent) -> None:
        if isinstance(event, PaymentLinkCreated):
            text = f"Here is your payment link for {format_money(event.amount)}: {event.url}"
        elif isinstance(event, PaymentSucceeded):
            text = f"Thank you! We received your payment of {format_money(event.amount)}."
        else:
            return
        await self._tell(event, event.order_id, text)

    async def _tell(self, cause: Envelope, order_id: uuid.UUID, text: str) -> None:
        address = await memory.order_conversation(self.redis, cause.tenant_id, order_id)
        if address is None:
            return  # not an order the AI started in a conversation
        message = OutboundMessage(
            **caused_by(cause, "notice", producer="agent"),
            conversation_id=address["conversation_id"],
            channel=Channel(address["channel"]),
            channel_account_id=address["channel_account_id"],
            customer_id=address["customer_id"],
            # System facts, not AI chat: they still reach a customer whose conversation a person owns.
            author=Author.SYSTEM,
            text=text,
        )
        await publish(self.broker, CHANNEL_OUTBOUND, message, key=message.conversation_id)
