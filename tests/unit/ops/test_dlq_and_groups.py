"""Pure parts of the dead-letter and consumer-group tools: counts, the one-offset choice, reset plans."""

from typing import cast

import pytest

from sellmesh.ops.connection import Cluster
from sellmesh.ops.dlq import DEAD_LETTER_HEADERS, original_topic, purge, require_dlq_name, single_offset, summarise
from sellmesh.ops.errors import BadInput, Refused
from sellmesh.ops.groups import OffsetMove, plan_moves
from sellmesh.ops.message import message_of
from sellmesh.ops.planning import RangeRequest, Watermarks

MARKS = {0: Watermarks(0, 5), 1: Watermarks(2, 4), 2: Watermarks(0, 0)}


def test_summary_counts_what_waits_after_the_purge_mark() -> None:
    summary = summarise("a.v1.dlq", MARKS, {0: 3, 1: 9})
    assert (summary.total, summary.purged, summary.waiting) == (7, 5, 2)
    assert summarise("a.v1.dlq", MARKS, {}).waiting == 7


def test_single_offset_finds_the_one_partition_holding_it() -> None:
    assert single_offset(4, partition=None, marks=MARKS, purged_to={}) == RangeRequest(0, 4, 4)
    assert single_offset(3, partition=1, marks=MARKS, purged_to={}) == RangeRequest(1, 3, 3)


def test_single_offset_refuses_ambiguous_missing_and_purged_offsets() -> None:
    with pytest.raises(BadInput, match=r"exists in partitions \[0, 1\]; add --partition"):
        single_offset(3, partition=None, marks=MARKS, purged_to={})
    with pytest.raises(BadInput, match="offset 9 is not in any partition"):
        single_offset(9, partition=None, marks=MARKS, purged_to={})
    with pytest.raises(Refused, match="was purged"):
        single_offset(1, partition=0, marks=MARKS, purged_to={0: 2})


def test_a_dead_letter_goes_back_to_its_header_topic_else_the_name_without_dlq() -> None:
    headed = message_of(
        topic="x.v1.dlq",
        partition=0,
        offset=0,
        timestamp_ms=0,
        key=None,
        value=b"",
        headers=[("x-original-topic", b"y.v1")],
    )
    bare = message_of(topic="x.v1.dlq", partition=0, offset=0, timestamp_ms=0, key=None, value=b"", headers=[])
    assert (original_topic(headed), original_topic(bare)) == ("y.v1", "x.v1")
    assert "x-error-message" in DEAD_LETTER_HEADERS and "tenant_id" not in DEAD_LETTER_HEADERS


def test_only_dlq_topics_are_dead_letter_topics() -> None:
    require_dlq_name("orders.commands.v1.dlq")
    with pytest.raises(BadInput, match="not a dead-letter topic"):
        require_dlq_name("orders.commands.v1")


def test_reset_plan_moves_each_partition_to_the_offset_or_the_time() -> None:
    current = {0: 5, 1: 3}
    by_offset = plan_moves(marks=MARKS, current=current, partition=0, to_offset=2, time_offsets=None)
    assert by_offset == [OffsetMove(0, 5, 2)]
    by_time = plan_moves(marks=MARKS, current=current, partition=None, to_offset=None, time_offsets={0: 1, 1: 4, 2: 0})
    assert by_time == [OffsetMove(0, 5, 1), OffsetMove(1, 3, 4), OffsetMove(2, None, 0)]


def test_reset_plan_refuses_offsets_outside_a_partition_and_unclear_targets() -> None:
    with pytest.raises(BadInput, match="outside partition 1, which holds 2 to 4"):
        plan_moves(marks=MARKS, current={}, partition=1, to_offset=1, time_offsets=None)
    with pytest.raises(BadInput, match="exactly one"):
        plan_moves(marks=MARKS, current={}, partition=None, to_offset=None, time_offsets=None)
    with pytest.raises(BadInput, match="partition 5 does not exist"):
        plan_moves(marks=MARKS, current={}, partition=5, to_offset=0, time_offsets=None)


class GrowingDlq:
    """A dead-letter topic of one partition that receives a letter between two reads of its ends."""

    def __init__(self) -> None:
        self.high = 2
        self.commits: list[dict[int, int]] = []

    async def require_topic(self, topic: str) -> list[int]:
        return [0]

    async def watermarks(self, topic: str, partitions: list[int]) -> dict[int, Watermarks]:
        marks = {0: Watermarks(low=0, high=self.high)}
        self.high += 1  # a redriven message failed again and came back meanwhile
        return marks

    async def committed(self, group: str, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {}

    async def commit(self, group: str, topic: str, offsets: dict[int, int]) -> None:
        self.commits.append(offsets)


async def test_a_purge_marks_only_the_letters_the_operator_was_shown() -> None:
    dlq = GrowingDlq()
    shown = await dlq.watermarks("orders.commands.v1.dlq", [0])  # what the prompt counted: 2 letters
    moves = await purge(cast(Cluster, dlq), "orders.commands.v1.dlq", marks=shown)
    assert moves == {0: (0, 2)} and dlq.commits == [{0: 2}]  # the third letter, come since, still waits


def test_a_header_without_a_value_reads_as_empty() -> None:
    message = message_of(
        topic="x.v1",
        partition=0,
        offset=0,
        timestamp_ms=0,
        key=None,
        value=b"",
        headers=[("trace", None)],  # type: ignore[list-item]
    )
    assert message.headers == (("trace", b""),)
