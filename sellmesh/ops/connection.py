"""The few admin, fetch, commit and produce calls the on-call tools make to the broker."""

import difflib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from sellmesh.ops.address import BrokerAddress
from sellmesh.ops.errors import BrokerUnavailable, Refused, UnknownGroup, UnknownTopic
from sellmesh.ops.message import Message, message_of
from sellmesh.ops.moment import to_millis
from sellmesh.ops.planning import PartitionRange, Watermarks

REQUEST_TIMEOUT_MS = 10_000
# A read stops with an error, rather than hang, when the broker sends nothing new for this long.
READ_IDLE_SECONDS = 15.0


@dataclass(frozen=True)
class GroupState:
    name: str
    state: str
    members: int


class Cluster:
    """`async with Cluster(address) as cluster:` an admin client and a group-less consumer for reads."""

    def __init__(self, address: BrokerAddress) -> None:
        self.address = address
        servers = address.bootstrap_servers
        self.admin = AIOKafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=REQUEST_TIMEOUT_MS)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=servers, enable_auto_commit=False, request_timeout_ms=REQUEST_TIMEOUT_MS
        )

    async def __aenter__(self) -> "Cluster":
        try:
            await self.admin.start()
            await self.consumer.start()
        except KafkaError as exc:
            await self._close()
            raise BrokerUnavailable(
                f"cannot reach the broker at {self.address.bootstrap_servers} (from {self.address.source}): {exc}"
            ) from None
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def topics(self) -> list[str]:
        return sorted(await self.admin.list_topics())

    async def require_topic(self, topic: str) -> list[int]:
        """The topic's partitions. Checked against the topic list first: a metadata request for a
        missing topic makes brokers with auto-creation (the embedded one) create it."""
        existing = await self.topics()
        if topic not in existing:
            near = difflib.get_close_matches(topic, existing, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise UnknownTopic(f"topic {topic!r} does not exist{hint}")
        [described] = await self.admin.describe_topics([topic])
        return sorted(int(p["partition"]) for p in described["partitions"])

    async def watermarks(self, topic: str, partitions: Sequence[int]) -> dict[int, Watermarks]:
        tps = [TopicPartition(topic, p) for p in partitions]
        low = await self.consumer.beginning_offsets(tps)
        high = await self.consumer.end_offsets(tps)
        return {tp.partition: Watermarks(int(low[tp]), int(high[tp])) for tp in tps}

    async def offsets_at(self, topic: str, marks: Mapping[int, Watermarks], moment: datetime) -> dict[int, int]:
        """The first offset at or after `moment` in each partition; the end when nothing is that late.

        Kafka answers "nothing" with no offset; the embedded broker answers with timestamp -1.
        """
        when = to_millis(moment)
        found = await self.consumer.offsets_for_times({TopicPartition(topic, p): when for p in marks})
        offsets: dict[int, int] = {}
        for tp, hit in found.items():
            offsets[tp.partition] = marks[tp.partition].high if hit is None or hit.timestamp < 0 else hit.offset
        return offsets

    async def read(self, topic: str, ranges: Sequence[PartitionRange]) -> AsyncIterator[Message]:
        """Yield each partition's range in offset order (partitions interleave), decoded."""
        pending = {r.partition: r for r in ranges if r.size > 0}
        if not pending:
            return
        tps = {p: TopicPartition(topic, p) for p in pending}
        self.consumer.assign(list(tps.values()))
        for partition, planned in pending.items():
            self.consumer.seek(tps[partition], planned.start)
        last_progress = time.monotonic()
        while pending:
            batch = await self.consumer.getmany(*(tps[p] for p in pending), timeout_ms=500)
            for tp, records in batch.items():
                wanted = pending.get(tp.partition)
                if wanted is None:
                    continue
                last_progress = time.monotonic()
                for record in records:
                    if record.offset >= wanted.stop:
                        break
                    yield message_of(
                        topic=topic,
                        partition=record.partition,
                        offset=record.offset,
                        timestamp_ms=record.timestamp,
                        key=record.key,
                        value=record.value,
                        headers=record.headers,
                    )
            for partition in list(pending):
                if await self.consumer.position(tps[partition]) >= pending[partition].stop:
                    del pending[partition]
            if pending and time.monotonic() - last_progress > READ_IDLE_SECONDS:
                stuck = ", ".join(f"{p} (to offset {r.stop})" for p, r in sorted(pending.items()))
                raise BrokerUnavailable(f"the broker stopped sending {topic} partition(s) {stuck}")

    async def groups(self) -> list[str]:
        return sorted(str(group[0]) for group in await self.admin.list_consumer_groups())

    async def require_group(self, group: str) -> None:
        known = await self.groups()
        if group not in known:
            near = difflib.get_close_matches(group, known, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise UnknownGroup(f"consumer group {group!r} is not known to the broker{hint}")

    async def describe_group(self, group: str) -> GroupState:
        [response] = await self.admin.describe_consumer_groups([group])
        described = response.groups[0]
        # DescribeGroups v0-v2 rows: (error_code, group, state, protocol_type, protocol, members)
        return GroupState(name=group, state=str(described[2]), members=len(described[5]))

    async def committed(self, group: str, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The group's committed offsets for these partitions; partitions without one are left out.

        Partitions are always named: the embedded broker's answer to "all of the group's offsets"
        cannot be decoded by aiokafka.
        """
        if not partitions:
            return {}
        tps = [TopicPartition(topic, p) for topic, p in partitions]
        found = await self.admin.list_consumer_group_offsets(group, partitions=tps)
        return {(tp.topic, tp.partition): int(meta.offset) for tp, meta in found.items() if meta.offset >= 0}

    async def commit(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Commit as a group-less member (generation -1); brokers accept that only while the group is empty."""
        committer = AIOKafkaConsumer(
            bootstrap_servers=self.address.bootstrap_servers,
            group_id=group,
            enable_auto_commit=False,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
        )
        await committer.start()
        try:
            committer.assign([TopicPartition(topic, p) for p in offsets])
            await committer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in offsets.items()})
        except CommitFailedError:
            raise Refused(
                f"the broker refused the commit for group {group!r}: it has members; stop them first"
            ) from None
        finally:
            await committer.stop()


async def start_producer(address: BrokerAddress) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(
        bootstrap_servers=address.bootstrap_servers,
        enable_idempotence=address.enable_idempotence,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
    )
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        hint = (
            "; a broker without idempotent producers (the embedded one) needs KAFKA_ENABLE_IDEMPOTENCE=false"
            if address.enable_idempotence
            else ""
        )
        raise BrokerUnavailable(f"cannot start a producer on {address.bootstrap_servers}: {exc!r}{hint}") from None
    return producer
