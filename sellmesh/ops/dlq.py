"""Dead-letter topics: what waits in each, where a dead letter goes back to, and purging.

Brokers without DeleteRecords (the embedded one) cannot drop records, so purging here is a mark:
the group `sellmesh-dlq` commits a "purged up to" offset per partition, and `dlq list`, `show`
and `redrive` start from it. Nothing consumes as that group; it only holds the marks.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from schemas.topics import CHANNEL_RAW, DLQ_SUFFIX, PAYMENTS_STRIPE, dlq_of
from sellmesh.ops.connection import Cluster
from sellmesh.ops.errors import BadInput, Refused
from sellmesh.ops.message import ORIGINAL_TOPIC_HEADER, Message
from sellmesh.ops.planning import RangeRequest, Watermarks
from sellmesh.ops.reading import ReadStats, plan_read, select
from sellmesh.ops.replay import Prepare, ReplayPlan, plan_replay
from sellmesh.ops.selection import Filters

log = logging.getLogger(__name__)

DLQ_GROUP = "sellmesh-dlq"
# Added by the subscriber when it dead-letters; a redriven message goes back without them.
DEAD_LETTER_HEADERS = frozenset(
    {
        "x-error-kind",
        "x-error-type",
        "x-error-message",
        ORIGINAL_TOPIC_HEADER,
        "x-original-partition",
        "x-original-offset",
        "x-consumer-group",
        "x-handler",
        "x-attempts",
        "x-failed-at",
    }
)

# The edges keep a webhook they cannot route as the provider's raw bytes, under these kinds
# (services/ingest/webhook.py, services/payments/webhook.py): `dlq reingest` sends them back, `redrive` cannot.
RAW_WEBHOOK_KINDS = {dlq_of(CHANNEL_RAW): "unknown_channel_account", dlq_of(PAYMENTS_STRIPE): "unresolved_tenant"}


@dataclass(frozen=True)
class DlqSummary:
    topic: str
    total: int
    purged: int
    waiting: int


def require_dlq_name(topic: str) -> None:
    if not topic.endswith(DLQ_SUFFIX):
        raise BadInput(f"{topic!r} is not a dead-letter topic (they end in {DLQ_SUFFIX}); see `sellmesh dlq list`")


async def purge_marks(cluster: Cluster, topic: str, partitions: Sequence[int]) -> dict[int, int]:
    committed = await cluster.committed(DLQ_GROUP, [(topic, p) for p in partitions])
    return {partition: offset for (_, partition), offset in committed.items()}


async def summaries(cluster: Cluster) -> list[DlqSummary]:
    found: list[DlqSummary] = []
    for topic in await cluster.topics():
        if not topic.endswith(DLQ_SUFFIX):
            continue
        partitions = await cluster.require_topic(topic)
        marks = await cluster.watermarks(topic, partitions)
        purged_to = await purge_marks(cluster, topic, partitions)
        found.append(summarise(topic, marks, purged_to))
    return found


def summarise(topic: str, marks: Mapping[int, Watermarks], purged_to: Mapping[int, int]) -> DlqSummary:
    total = sum(m.high - m.low for m in marks.values())
    waiting = sum(m.high - min(m.high, max(m.low, purged_to.get(p, m.low))) for p, m in marks.items())
    return DlqSummary(topic, total, total - waiting, waiting)


def raw_webhook_kind(topic: str) -> str:
    """The `x-error-kind` of the raw webhooks kept in `topic`; bad input for a topic no edge keeps them in."""
    kind = RAW_WEBHOOK_KINDS.get(topic)
    if kind is None:
        raise BadInput(
            f"`dlq reingest` takes {' or '.join(sorted(RAW_WEBHOOK_KINDS))} (the raw webhooks the edges kept), "
            f"not {topic!r}; `sellmesh dlq redrive` sends other dead letters back"
        )
    return kind


def original_topic(message: Message) -> str:
    """Where a dead letter came from: the subscriber's header, else the name without `.dlq`."""
    return message.header_map.get(ORIGINAL_TOPIC_HEADER) or message.topic.removesuffix(DLQ_SUFFIX)


def single_offset(
    offset: int, *, partition: int | None, marks: Mapping[int, Watermarks], purged_to: Mapping[int, int]
) -> RangeRequest:
    """The one record `--offset` names; with several partitions holding that offset, `--partition` must say which."""
    holding = [p for p, m in sorted(marks.items()) if m.low <= offset < m.high and (partition in (None, p))]
    if not holding:
        where = f"partition {partition}" if partition is not None else "any partition"
        raise BadInput(f"offset {offset} is not in {where} of this topic")
    if len(holding) > 1:
        raise BadInput(f"offset {offset} exists in partitions {holding}; add --partition")
    [chosen] = holding
    if offset < purged_to.get(chosen, 0):
        raise Refused(f"offset {offset} of partition {chosen} was purged (purged up to {purged_to[chosen]})")
    return RangeRequest(partition=chosen, from_offset=offset, to_offset=offset)


def check_choice(
    *, offset: int | None, everything: bool, filters: Filters, request: RangeRequest, max_count: int
) -> None:
    """A redrive or reingest must say which dead letters: one offset, a narrowed range, or everything."""
    narrowed = not filters.empty or request.partition is not None or request.since or request.until
    if offset is None and not everything and not narrowed:
        raise BadInput(
            "say which dead letters: --offset N, filters (--key, --header, ...), --partition, a time, or --all"
        )
    if offset is not None and everything:
        raise BadInput("--offset and --all cannot be combined")
    if offset is not None and offset < 0:
        raise BadInput(f"--offset must be 0 or more, not {offset}")
    if max_count < 1:
        raise BadInput(f"--max must be 1 or more, not {max_count}")


async def plan_dead_letters(
    cluster: Cluster,
    topic: str,
    *,
    request: RangeRequest,
    offset: int | None,
    filters: Filters,
    limit: int,
    prepare: Prepare,
) -> ReplayPlan:
    """The dead letters chosen (`--offset`, or the range and filters) from the purge mark on, each prepared."""
    partitions = await cluster.require_topic(topic)
    purged_to = await purge_marks(cluster, topic, partitions)
    if offset is not None:
        marks = await cluster.watermarks(topic, partitions)
        request = single_offset(offset, partition=request.partition, marks=marks, purged_to=purged_to)
    ranges = await plan_read(cluster, topic, request, floor=purged_to)
    chosen = select(cluster, topic, ranges, filters, ReadStats())
    return await plan_replay(chosen, source=topic, prepare=prepare, limit=limit)


async def purge(
    cluster: Cluster, topic: str, *, marks: Mapping[int, Watermarks] | None = None
) -> dict[int, tuple[int, int]]:
    """Move the purge mark of every partition to its end as `marks` read it (by default, now); returns
    partition -> (old mark, new mark). Given the ends the operator was shown, a letter that came after is not
    purged unseen."""
    partitions = await cluster.require_topic(topic)
    marks = marks if marks is not None else await cluster.watermarks(topic, partitions)
    purged_to = await purge_marks(cluster, topic, partitions)
    moves = {p: (purged_to.get(p, m.low), m.high) for p, m in marks.items()}
    forward = {p: new for p, (old, new) in moves.items() if new > old}
    if forward:
        await cluster.commit(DLQ_GROUP, topic, forward)
        log.info("dead letters purged", extra={"topic": topic, "purged_up_to": forward})
    return moves
