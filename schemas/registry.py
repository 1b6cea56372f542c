"""Which message family travels on which topic: the one place that maps a topic to its schema."""

from typing import Any, Final

from pydantic import TypeAdapter

from schemas import topics
from schemas.channel import DeliveryStatus, InboundMessage, OutboundMessage, RawWebhook
from schemas.handoff import HandoffCommand, HandoffEvent
from schemas.orders import OrderCommand, OrderEvent
from schemas.payments import PaymentEvent, StripeEventReceived

TOPIC_SCHEMAS: Final[dict[str, Any]] = {
    topics.CHANNEL_RAW: RawWebhook,
    topics.CHANNEL_INBOUND: InboundMessage,
    topics.CHANNEL_OUTBOUND: OutboundMessage,
    topics.CHANNEL_DELIVERY: DeliveryStatus,
    topics.ORDERS_COMMANDS: OrderCommand,
    topics.ORDERS_EVENTS: OrderEvent,
    topics.PAYMENTS_STRIPE: StripeEventReceived,
    topics.PAYMENTS_EVENTS: PaymentEvent,
    topics.HANDOFF_COMMANDS: HandoffCommand,
    topics.HANDOFF_EVENTS: HandoffEvent,
}

_ADAPTERS: Final[dict[str, TypeAdapter[Any]]] = {topic: TypeAdapter(schema) for topic, schema in TOPIC_SCHEMAS.items()}


def adapter_for(topic: str) -> TypeAdapter[Any]:
    """The validator for messages on `topic`; raises KeyError for a topic outside the contract."""
    return _ADAPTERS[topic]
