"""How each topic is laid out on a real cluster: partitions and retention, in this one place.

Topic creation (`sellmesh topics`), the Kubernetes autoscalers (a consumer group never gets more
useful replicas than its topic has partitions) and deploy/README.md all follow these numbers.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from schemas.topics import (
    ALL_TOPICS,
    CHANNEL_DELIVERY,
    CHANNEL_INBOUND,
    CHANNEL_OUTBOUND,
    CHANNEL_RAW,
    DLQ_SUFFIX,
    HANDOFF_COMMANDS,
    HANDOFF_EVENTS,
    ORDERS_COMMANDS,
    ORDERS_EVENTS,
    PAYMENTS_EVENTS,
    PAYMENTS_STRIPE,
    dlq_of,
)

DAY_MS: Final = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicLayout:
    partitions: int
    retention_days: int

    @property
    def retention_ms(self) -> int:
        return self.retention_days * DAY_MS


# Conversation-keyed topics carry the agent's work (a model call per message) and the sender's
# rate-limited Graph calls: the most partitions, so those groups can scale widest. Order-keyed
# topics are cheap per message. Raw webhooks and Stripe events are kept 14 days so a normalizer or
# reconciler bug can be fixed and the topic replayed; derived topics can be rebuilt from them.
TOPIC_LAYOUT: Final[Mapping[str, TopicLayout]] = {
    CHANNEL_RAW: TopicLayout(partitions=6, retention_days=14),
    CHANNEL_INBOUND: TopicLayout(partitions=12, retention_days=7),
    CHANNEL_OUTBOUND: TopicLayout(partitions=12, retention_days=7),
    CHANNEL_DELIVERY: TopicLayout(partitions=6, retention_days=7),
    ORDERS_COMMANDS: TopicLayout(partitions=6, retention_days=7),
    ORDERS_EVENTS: TopicLayout(partitions=6, retention_days=7),
    PAYMENTS_STRIPE: TopicLayout(partitions=3, retention_days=14),
    PAYMENTS_EVENTS: TopicLayout(partitions=6, retention_days=7),
    HANDOFF_COMMANDS: TopicLayout(partitions=3, retention_days=7),
    HANDOFF_EVENTS: TopicLayout(partitions=3, retention_days=7),
}

# Dead letters wait for a person: kept longest, and one partition is plenty for what should be rare.
DLQ_LAYOUT: Final = TopicLayout(partitions=1, retention_days=30)


def layout_of(topic: str) -> TopicLayout:
    if topic.endswith(DLQ_SUFFIX):
        return DLQ_LAYOUT
    return TOPIC_LAYOUT[topic]


def every_topic() -> list[str]:
    """Each topic and its dead-letter topic, in the order they are created."""
    return [name for topic in ALL_TOPICS for name in (topic, dlq_of(topic))]
