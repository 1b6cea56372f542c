"""Offset-range planning: every bound the operator gives narrows the range, and impossible ones are refused."""

from datetime import UTC, datetime

import pytest

from sellmesh.ops.errors import BadInput
from sellmesh.ops.planning import PartitionRange, RangeRequest, Watermarks, plan_ranges

MARKS = {0: Watermarks(0, 10), 1: Watermarks(5, 8), 2: Watermarks(0, 0)}


def test_without_bounds_reads_everything_kept() -> None:
    assert plan_ranges(RangeRequest(), watermarks=MARKS) == [
        PartitionRange(0, 0, 10),
        PartitionRange(1, 5, 8),
        PartitionRange(2, 0, 0),
    ]


def test_to_offset_is_inclusive_and_offsets_are_clamped_to_what_the_partition_keeps() -> None:
    ranges = plan_ranges(RangeRequest(from_offset=3, to_offset=6), watermarks=MARKS)
    assert ranges == [PartitionRange(0, 3, 7), PartitionRange(1, 5, 7), PartitionRange(2, 3, 3)]
    assert [r.size for r in ranges] == [4, 2, 0]


def test_one_partition_only() -> None:
    assert plan_ranges(RangeRequest(partition=1), watermarks=MARKS) == [PartitionRange(1, 5, 8)]


def test_time_bounds_and_the_purge_floor_intersect_with_offsets() -> None:
    ranges = plan_ranges(
        RangeRequest(from_offset=2),
        watermarks=MARKS,
        since_offsets={0: 1, 1: 6},
        until_offsets={0: 9, 1: 8},
        floor={0: 4},
    )
    assert ranges[:2] == [PartitionRange(0, 4, 9), PartitionRange(1, 6, 8)]


def test_a_range_past_the_end_is_empty_not_negative() -> None:
    [planned] = plan_ranges(RangeRequest(partition=0, from_offset=50), watermarks=MARKS)
    assert (planned.start, planned.stop, planned.size) == (50, 50, 0)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (RangeRequest(from_offset=9, to_offset=3), "--from-offset 9 is after --to-offset 3"),
        (RangeRequest(from_offset=-1), "--from-offset must be 0 or more"),
        (RangeRequest(to_offset=-2), "--to-offset must be 0 or more"),
        (RangeRequest(partition=-1), "--partition must be 0 or more"),
        (RangeRequest(partition=7), "partition 7 does not exist; the topic has partitions 0-2"),
        (
            RangeRequest(since=datetime(2026, 1, 2, tzinfo=UTC), until=datetime(2026, 1, 1, tzinfo=UTC)),
            "--since .* is after --until",
        ),
    ],
)
def test_refuses_impossible_ranges(request_: RangeRequest, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        plan_ranges(request_, watermarks=MARKS)
