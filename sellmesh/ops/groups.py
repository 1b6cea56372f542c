"""Consumer groups: lag per partition, and moving a group's committed offsets while it is stopped."""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sellmesh.ops.connection import Cluster, GroupState
from sellmesh.ops.errors import BadInput, Refused
from sellmesh.ops.planning import Watermarks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LagRow:
    group: str
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


@dataclass(frozen=True)
class OffsetMove:
    partition: int
    current: int | None
    new: int


async def lag(cluster: Cluster, group: str | None) -> tuple[list[GroupState], list[LagRow]]:
    """Every group (or one), and each partition it has committed on, against the partition's end."""
    if group is not None:
        await cluster.require_group(group)
    names = [group] if group is not None else await cluster.groups()
    ends: dict[tuple[str, int], int] = {}
    for topic in await cluster.topics():
        partitions = await cluster.require_topic(topic)
        for partition, marks in (await cluster.watermarks(topic, partitions)).items():
            ends[(topic, partition)] = marks.high
    states: list[GroupState] = []
    rows: list[LagRow] = []
    for name in names:
        states.append(await cluster.describe_group(name))
        committed = await cluster.committed(name, sorted(ends))
        rows += [LagRow(name, t, p, offset, ends[(t, p)]) for (t, p), offset in sorted(committed.items())]
    return states, rows


def plan_moves(
    *,
    marks: Mapping[int, Watermarks],
    current: Mapping[int, int],
    partition: int | None,
    to_offset: int | None,
    time_offsets: Mapping[int, int] | None,
) -> list[OffsetMove]:
    """The new committed offset per partition: an explicit offset (inside the partition) or the one at a time."""
    if (to_offset is None) == (time_offsets is None):
        raise BadInput("give exactly one of --to-offset and --to-time")
    chosen = sorted(marks)
    if partition is not None:
        if partition not in marks:
            raise BadInput(f"partition {partition} does not exist; the topic has partitions {chosen}")
        chosen = [partition]
    moves: list[OffsetMove] = []
    for p in chosen:
        m = marks[p]
        if to_offset is not None:
            if not m.low <= to_offset <= m.high:
                raise BadInput(f"--to-offset {to_offset} is outside partition {p}, which holds {m.low} to {m.high}")
            new = to_offset
        else:
            assert time_offsets is not None
            new = time_offsets[p]
        moves.append(OffsetMove(p, current.get(p), new))
    return moves


async def plan_reset(
    cluster: Cluster,
    *,
    group: str,
    topic: str,
    partition: int | None,
    to_offset: int | None,
    to_time: datetime | None,
) -> list[OffsetMove]:
    await cluster.require_group(group)
    partitions = await cluster.require_topic(topic)
    marks = await cluster.watermarks(topic, partitions)
    committed = await cluster.committed(group, [(topic, p) for p in partitions])
    time_offsets = None if to_time is None else await cluster.offsets_at(topic, marks, to_time)
    current = {p: offset for (_, p), offset in committed.items()}
    return plan_moves(marks=marks, current=current, partition=partition, to_offset=to_offset, time_offsets=time_offsets)


async def refuse_if_live(cluster: Cluster, group: str) -> GroupState:
    """A running member would overwrite the new offsets with its next commit, so the group must be empty."""
    state = await cluster.describe_group(group)
    if state.members:
        raise Refused(
            f"group {group!r} has {state.members} live member(s) (state {state.state}): "
            "stop every process in the group, then run this again"
        )
    return state


async def refuse_if_any_live(cluster: Cluster, groups: Sequence[str]) -> None:
    for group in dict.fromkeys(groups):
        await refuse_if_live(cluster, group)


async def apply_reset(cluster: Cluster, *, group: str, topic: str, moves: list[OffsetMove]) -> None:
    await refuse_if_live(cluster, group)
    offsets = {m.partition: m.new for m in moves}
    await cluster.commit(group, topic, offsets)
    log.info("consumer group offsets reset", extra={"group": group, "topic": topic, "offsets": offsets})


@dataclass(frozen=True)
class MergeMove:
    topic: str
    partition: int
    current: int | None
    new: int
    source: str  # the old group the new offset comes from


async def plan_merge(cluster: Cluster, *, sources: Sequence[str], into: str) -> list[MergeMove]:
    """The offsets `into` takes over from `sources`: per partition, the lowest any of them committed.

    The lowest, so that nothing one source had not finished is skipped; what another had finished beyond it
    is delivered again and skipped by the handlers' dedup marks and unique keys. Partitions no source committed
    on keep what `into` has (list `into` among the sources to have its own offsets count too).
    """
    if not sources:
        raise BadInput("name at least one group to merge")
    for group in sources:
        await cluster.require_group(group)
    partitions = [(topic, p) for topic in await cluster.topics() for p in await cluster.require_topic(topic)]
    chosen: dict[tuple[str, int], tuple[int, str]] = {}
    for group in sources:
        for tp, offset in (await cluster.committed(group, partitions)).items():
            if tp not in chosen or offset < chosen[tp][0]:
                chosen[tp] = (offset, group)
    current = await cluster.committed(into, sorted(chosen))
    return [
        MergeMove(topic, partition, current.get((topic, partition)), offset, source)
        for (topic, partition), (offset, source) in sorted(chosen.items())
        if current.get((topic, partition)) != offset
    ]


async def apply_merge(cluster: Cluster, *, sources: Sequence[str], into: str, moves: list[MergeMove]) -> None:
    """Commit `moves` for `into`, topic by topic; refused while any of the groups has a live member."""
    await refuse_if_any_live(cluster, [*sources, into])
    by_topic: dict[str, dict[int, int]] = {}
    for move in moves:
        by_topic.setdefault(move.topic, {})[move.partition] = move.new
    for topic, offsets in by_topic.items():
        await cluster.commit(into, topic, offsets)
    log.info("consumer groups merged", extra={"group": into, "sources": list(sources), "partitions": len(moves)})
