"""Consumer lag and dead-letter depth: committed offsets of this process's groups against partition ends.

Every worker runs one `LagCollector` for the consumer groups it subscribes with, so each
replica reports the same numbers for its group; dashboards and alerts take the max per
(group, topic, partition). It reads offsets only: it never joins a group, so it cannot cause
a rebalance.
"""

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker

from schemas.topics import dlq_of
from sellmesh.metrics import CONSUMER_LAG, DLQ_MESSAGES, LAG_READS
from sellmesh.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# The group whose committed offsets are `sellmesh dlq purge`'s "purged up to" marks (sellmesh/ops/dlq.py):
# a purge keeps the records on brokers without DeleteRecords, so the waiting count starts at the mark.
DLQ_PURGE_GROUP = "sellmesh-dlq"


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    lag: int


def partition_lags(
    group: str,
    partitions: Iterable[TopicPartition],
    *,
    committed: Mapping[TopicPartition, int],
    beginning: Mapping[TopicPartition, int],
    end: Mapping[TopicPartition, int],
) -> list[PartitionLag]:
    """Lag per partition. A partition the group never committed counts from its beginning, because
    the subscribers start from the earliest offset (`auto_offset_reset="earliest"`)."""
    lags = []
    for tp in partitions:
        start = committed.get(tp, -1)
        if start < 0:
            start = beginning.get(tp, 0)
        lags.append(PartitionLag(group, tp.topic, tp.partition, max(0, end.get(tp, 0) - start)))
    return lags


class LagCollector:
    """Refreshes `sellmesh_consumer_lag` and `sellmesh_dlq_messages` every `interval_seconds`."""

    def __init__(
        self, *, bootstrap_servers: str, groups: Mapping[str, frozenset[str]], interval_seconds: float = 5.0
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.groups = groups  # consumer group -> the topics it reads
        self.interval_seconds = interval_seconds
        self._offsets: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def dead_letter_topics(self) -> list[str]:
        return sorted({dlq_of(topic) for topics in self.groups.values() for topic in topics})

    async def start(self) -> None:
        # No group id: this consumer only reads offsets and metadata.
        self._offsets = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False)
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await self._offsets.start()
        await self._admin.start()
        self._task = asyncio.create_task(self._run(), name="lag-collector")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._admin is not None:
            await self._admin.close()
        if self._offsets is not None:
            await self._offsets.stop()

    async def _run(self) -> None:
        while True:
            try:
                await self.collect_once()
                LAG_READS.labels("ok").inc()
            except Exception:
                LAG_READS.labels("error").inc()
                log.warning("could not read consumer offsets", exc_info=True)
            await asyncio.sleep(self.interval_seconds)

    async def collect_once(self) -> None:
        offsets, admin = self._offsets, self._admin
        if offsets is None or admin is None:
            raise RuntimeError("LagCollector.start() was not awaited")
        # Fresh metadata on every pass, so topics created since (a first dead letter) are seen.
        layout = topic_partitions(await admin.describe_topics())
        for group, topics in sorted(self.groups.items()):
            partitions = [tp for topic in sorted(topics) for tp in layout.get(topic, [])]
            if not partitions:
                continue  # nothing was ever published to these topics yet
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
            beginning = await offsets.beginning_offsets(partitions)
            end = await offsets.end_offsets(partitions)
            for lag in partition_lags(
                group,
                partitions,
                committed={tp: meta.offset for tp, meta in committed.items()},
                beginning=beginning,
                end=end,
            ):
                CONSUMER_LAG.labels(lag.group, lag.topic, str(lag.partition)).set(lag.lag)
        for topic in self.dead_letter_topics:
            partitions = layout.get(topic, [])
            waiting = 0
            if partitions:
                marks = await admin.list_consumer_group_offsets(DLQ_PURGE_GROUP, partitions=partitions)
                waiting = sum(
                    lag.lag
                    for lag in partition_lags(
                        DLQ_PURGE_GROUP,
                        partitions,
                        committed={tp: meta.offset for tp, meta in marks.items()},
                        beginning=await offsets.beginning_offsets(partitions),
                        end=await offsets.end_offsets(partitions),
                    )
                )
            # Reported even before the topic exists, so "DLQ not empty" has a series to compare.
            DLQ_MESSAGES.labels(topic).set(waiting)


def topic_partitions(described: Iterable[Mapping[str, Any]]) -> dict[str, list[TopicPartition]]:
    """Topic -> its partitions, from a metadata response (`AIOKafkaAdminClient.describe_topics`)."""
    layout: dict[str, list[TopicPartition]] = {}
    for topic in described:
        if topic.get("error_code", 0) == 0:
            name = str(topic["topic"])
            layout[name] = sorted(TopicPartition(name, int(p["partition"])) for p in topic.get("partitions", []))
    return layout


def subscribed_groups(broker: KafkaBroker) -> dict[str, frozenset[str]]:
    """Consumer group -> topics, for the subscribers registered on `broker` (this process's groups)."""
    groups: dict[str, set[str]] = {}
    for subscriber in broker.subscribers:
        group = getattr(subscriber, "group_id", None)
        topics: list[str] = getattr(subscriber, "topic_names_for_subscribe", [])
        if group:
            groups.setdefault(group, set()).update(topics)
    return {group: frozenset(topics) for group, topics in groups.items()}
