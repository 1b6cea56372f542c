"""Topic names. Nobody types a topic name inline; a breaking change is a new version here."""

from typing import Final

CHANNEL_RAW: Final = "channel.raw.v1"
CHANNEL_INBOUND: Final = "channel.inbound.v1"
CHANNEL_OUTBOUND: Final = "channel.outbound.v1"
CHANNEL_DELIVERY: Final = "channel.delivery.v1"
ORDERS_COMMANDS: Final = "orders.commands.v1"
ORDERS_EVENTS: Final = "orders.events.v1"
PAYMENTS_STRIPE: Final = "payments.stripe.v1"
PAYMENTS_EVENTS: Final = "payments.events.v1"
HANDOFF_COMMANDS: Final = "handoff.commands.v1"
HANDOFF_EVENTS: Final = "handoff.events.v1"

ALL_TOPICS: Final = (
    CHANNEL_RAW,
    CHANNEL_INBOUND,
    CHANNEL_OUTBOUND,
    CHANNEL_DELIVERY,
    ORDERS_COMMANDS,
    ORDERS_EVENTS,
    PAYMENTS_STRIPE,
    PAYMENTS_EVENTS,
    HANDOFF_COMMANDS,
    HANDOFF_EVENTS,
)

DLQ_SUFFIX: Final = ".dlq"


def dlq_of(topic: str) -> str:
    """The dead-letter topic that keeps what a consumer of `topic` could not process."""
    return f"{topic}{DLQ_SUFFIX}"
