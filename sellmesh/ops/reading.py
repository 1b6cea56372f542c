"""Reads a topic for the tools: checks the topic, plans the offset ranges, decodes and filters."""

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from sellmesh.ops.connection import Cluster
from sellmesh.ops.message import Message
from sellmesh.ops.planning import PartitionRange, RangeRequest, plan_ranges
from sellmesh.ops.selection import Filters


@dataclass
class ReadStats:
    scanned: int = 0
    matched: int = 0


async def plan_read(
    cluster: Cluster, topic: str, request: RangeRequest, *, floor: Mapping[int, int] | None = None
) -> list[PartitionRange]:
    request.check()
    partitions = await cluster.require_topic(topic)
    marks = await cluster.watermarks(topic, partitions)
    since = None if request.since is None else await cluster.offsets_at(topic, marks, request.since)
    until = None if request.until is None else await cluster.offsets_at(topic, marks, request.until)
    return plan_ranges(request, watermarks=marks, since_offsets=since, until_offsets=until, floor=floor)


async def select(
    cluster: Cluster, topic: str, ranges: list[PartitionRange], filters: Filters, stats: ReadStats
) -> AsyncIterator[Message]:
    async for message in cluster.read(topic, ranges):
        stats.scanned += 1
        if filters.matches(message):
            stats.matched += 1
            yield message


def describe_ranges(ranges: list[PartitionRange]) -> str:
    shown = [f"p{r.partition}:{r.start}-{r.stop - 1}" for r in ranges if r.size > 0]
    return ", ".join(shown) if shown else "nothing in range"
