"""`sellmesh topics`: creates every topic and its dead-letter topic with the layout in `topology.py`."""

from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from sellmesh.topology import every_topic, layout_of

# Kafka's TOPIC_ALREADY_EXISTS: another creator (a second job run) won the race, which is fine.
TOPIC_ALREADY_EXISTS = 36


@dataclass
class TopicReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    # topic -> (partitions laid out, partitions found); never changed automatically, see deploy/README.md.
    mismatched: dict[str, tuple[int, int]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatched and not self.failed


def new_topic(topic: str, *, replication_factor: int) -> NewTopic:
    layout = layout_of(topic)
    return NewTopic(
        name=topic,
        num_partitions=layout.partitions,
        replication_factor=replication_factor,
        topic_configs={"retention.ms": str(layout.retention_ms), "cleanup.policy": "delete"},
    )


async def ensure_topics(bootstrap_servers: str, *, replication_factor: int) -> TopicReport:
    """Create what is missing; report, never repartition, what exists with another partition count.

    Adding partitions moves keys to other partitions, which breaks per-conversation and per-order
    ordering while old messages drain: an operator does that on purpose, not a start-up job.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="sellmesh-topics")
    await admin.start()
    try:
        report = TopicReport()
        present = set(await admin.list_topics())
        missing = [t for t in every_topic() if t not in present]
        if missing:
            response = await admin.create_topics([new_topic(t, replication_factor=replication_factor) for t in missing])
            for name, code, *rest in response.topic_errors:
                if code in (0, TOPIC_ALREADY_EXISTS):
                    report.created.append(name)
                else:
                    report.failed[name] = f"error {code}: {rest[0] if rest else ''}"
        report.existing = [t for t in every_topic() if t in present]
        # An empty list would describe every topic on the cluster, including ones that are not ours.
        described_topics = await admin.describe_topics(report.existing) if report.existing else []
        ours = set(every_topic())
        for described in described_topics:
            if str(described["topic"]) in ours:
                _check_partitions(report, described)
        return report
    finally:
        await admin.close()


def _check_partitions(report: TopicReport, described: dict[str, Any]) -> None:
    name = str(described["topic"])
    found = len(described["partitions"])
    wanted = layout_of(name).partitions
    if found != wanted:
        report.mismatched[name] = (wanted, found)
