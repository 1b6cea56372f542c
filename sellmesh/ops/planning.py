"""Turns what the operator asked for (partition, offsets, times) into a half-open offset range per partition."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sellmesh.ops.errors import BadInput


@dataclass(frozen=True)
class Watermarks:
    """The offsets a partition holds now: `low` is the first kept, `high` the next to be written."""

    low: int
    high: int


@dataclass(frozen=True)
class PartitionRange:
    """Offsets `start` (inclusive) to `stop` (exclusive) of one partition."""

    partition: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return max(0, self.stop - self.start)


@dataclass(frozen=True)
class RangeRequest:
    """What the operator typed; `to_offset` is inclusive, as people say "offsets 10 to 20"."""

    partition: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    def check(self) -> None:
        for name, value in (("--partition", self.partition), ("--from-offset", self.from_offset)):
            if value is not None and value < 0:
                raise BadInput(f"{name} must be 0 or more, not {value}")
        if self.to_offset is not None and self.to_offset < 0:
            raise BadInput(f"--to-offset must be 0 or more, not {self.to_offset}")
        if self.from_offset is not None and self.to_offset is not None and self.from_offset > self.to_offset:
            raise BadInput(f"--from-offset {self.from_offset} is after --to-offset {self.to_offset}")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise BadInput(f"--since {self.since.isoformat()} is after --until {self.until.isoformat()}")


def plan_ranges(
    request: RangeRequest,
    *,
    watermarks: Mapping[int, Watermarks],
    since_offsets: Mapping[int, int] | None = None,
    until_offsets: Mapping[int, int] | None = None,
    floor: Mapping[int, int] | None = None,
) -> list[PartitionRange]:
    """Intersect every bound given; `since_offsets`/`until_offsets` are the first offsets at those times.

    `floor` is a lower bound kept by the tools themselves (a purged dead-letter topic's mark).
    """
    request.check()
    partitions = sorted(watermarks)
    if request.partition is not None:
        if request.partition not in watermarks:
            raise BadInput(
                f"partition {request.partition} does not exist; the topic has partitions {_span(partitions)}"
            )
        partitions = [request.partition]
    ranges: list[PartitionRange] = []
    for partition in partitions:
        marks = watermarks[partition]
        starts = [marks.low]
        stops = [marks.high]
        if request.from_offset is not None:
            starts.append(request.from_offset)
        if request.to_offset is not None:
            stops.append(request.to_offset + 1)
        if since_offsets is not None:
            starts.append(since_offsets.get(partition, marks.high))
        if until_offsets is not None:
            stops.append(until_offsets.get(partition, marks.high))
        if floor is not None and partition in floor:
            starts.append(floor[partition])
        start, stop = max(starts), min(stops)
        ranges.append(PartitionRange(partition, start, max(start, stop)))
    return ranges


def _span(partitions: list[int]) -> str:
    if not partitions:
        return "(none)"
    if partitions == list(range(partitions[0], partitions[-1] + 1)):
        return f"{partitions[0]}-{partitions[-1]}"
    return ", ".join(map(str, partitions))
