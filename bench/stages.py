"""Where a reply's time goes: the stages a customer's message crosses, read off the topics after a run.

Every record carries the time its producer sent it, and every envelope the time its producer made it, so the
records of one message chain up: the webhook's raw record, the inbound message it caused, the first reply with
the inbound message's correlation id, and that reply's `sent` delivery status. The gaps between them are:

- `normalize`: the raw record sent → the inbound message made (a broker hop, parsing, dedup, the message log);
- `agent`: the inbound record sent → the reply made (a broker hop, the burst buffer, the model, the guardrails);
- `send`: the reply's record sent → its `sent` status made (a broker hop, the sender's claim, the Send API call).

What is left of the end-to-end latency is the webhook's own HTTP exchange and the publishes between stages.
Timestamps come from each process's clock: on one machine they compare; across hosts, clock skew adds in.
"""

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.load import percentile
from schemas.topics import CHANNEL_DELIVERY, CHANNEL_INBOUND, CHANNEL_OUTBOUND, CHANNEL_RAW

TOPICS = (CHANNEL_RAW, CHANNEL_INBOUND, CHANNEL_OUTBOUND, CHANNEL_DELIVERY)
STAGES = ("normalize", "agent", "send")
READ_SECONDS = 60.0


@dataclass(frozen=True)
class Stamped:
    """One record of a channel topic, reduced to what chains it to the others."""

    topic: str
    sent_ms: float  # the record's timestamp: when its producer sent it
    made_ms: float  # the envelope's occurred_at
    event_id: str
    correlation_id: str
    causation_id: str | None
    state: str | None  # a delivery status's state


def stamped(topic: str, timestamp_ms: int, value: bytes | None) -> Stamped | None:
    """The record as a `Stamped`, or None for a value that is not an envelope (nothing to chain)."""
    try:
        envelope: Any = json.loads(value or b"")
        made = datetime.fromisoformat(envelope["occurred_at"].replace("Z", "+00:00")).timestamp() * 1000
        return Stamped(
            topic=topic,
            sent_ms=float(timestamp_ms),
            made_ms=made,
            event_id=str(envelope["event_id"]),
            correlation_id=str(envelope["correlation_id"]),
            causation_id=envelope.get("causation_id"),
            state=envelope.get("state"),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def stage_latencies(records: Iterable[Stamped]) -> dict[str, list[float]]:
    """Each stage's latencies in ms, one per inbound message whose whole chain is among `records`."""
    raw: dict[str, Stamped] = {}
    inbound: list[Stamped] = []
    first_reply: dict[str, Stamped] = {}
    sent: dict[str, Stamped] = {}
    for record in records:
        if record.topic == CHANNEL_RAW:
            raw[record.event_id] = record
        elif record.topic == CHANNEL_INBOUND:
            inbound.append(record)
        elif record.topic == CHANNEL_OUTBOUND:
            earlier = first_reply.get(record.correlation_id)
            if earlier is None or record.made_ms < earlier.made_ms:
                first_reply[record.correlation_id] = record
        elif record.topic == CHANNEL_DELIVERY and record.state == "sent" and record.causation_id:
            sent.setdefault(record.causation_id, record)
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for message in inbound:
        webhook = raw.get(message.causation_id or "")
        reply = first_reply.get(message.correlation_id)
        status = sent.get(reply.event_id) if reply else None
        if webhook is None or reply is None or status is None:
            continue  # a message the window cut, or one a person answered
        stages["normalize"].append(message.made_ms - webhook.sent_ms)
        stages["agent"].append(reply.made_ms - message.sent_ms)
        stages["send"].append(status.made_ms - reply.sent_ms)
    return stages


def summary(stages: Mapping[str, list[float]]) -> str:
    """`normalize 8/21/74 agent 25/75/183 send 17/57/84`: each stage's p50/p95/p99 in ms."""
    return " ".join(
        f"{stage} " + "/".join(f"{percentile(values, q):.0f}" for q in (0.5, 0.95, 0.99))
        for stage, values in stages.items()
        if values
    )


async def end_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    """Where each channel topic's partitions end now: the start of a window to read later."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # fills the metadata that partitions_for_topic reads
        partitions = [TopicPartition(t, p) for t in TOPICS for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return ends
    finally:
        await consumer.stop()


async def read_since(bootstrap: str, start: Mapping[TopicPartition, int]) -> list[Stamped]:
    """Every record of the channel topics from `start` (from `end_offsets`) to where they end now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = list(start)
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, start[tp])
        records: list[Stamped] = []
        remaining = {tp for tp in partitions if ends[tp] > start[tp]}
        deadline = time.monotonic() + READ_SECONDS
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"records of {sorted(map(str, remaining))} not read in {READ_SECONDS:.0f} s")
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, fetched in batch.items():
                for record in fetched:
                    if record.offset < ends[tp] and (one := stamped(tp.topic, record.timestamp, record.value)):
                        records.append(one)
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return records
    finally:
        await consumer.stop()
