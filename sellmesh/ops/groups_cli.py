"""`sellmesh groups lag|reset|merge`: how far behind each consumer group is, and moving stopped groups' offsets."""

from datetime import UTC, datetime
from typing import Annotated

import typer

from sellmesh.ops.address import BrokerAddress
from sellmesh.ops.command import DryRun, Format, OutputFormat, Partition, Yes, checked, confirm_or_stop, run
from sellmesh.ops.connection import Cluster
from sellmesh.ops.errors import BadInput
from sellmesh.ops.groups import (
    apply_merge,
    apply_reset,
    lag,
    plan_merge,
    plan_reset,
    refuse_if_any_live,
    refuse_if_live,
)
from sellmesh.ops.moment import parse_moment
from sellmesh.ops.render import json_line, table

groups_app = typer.Typer(help="Consumer groups: lag per partition, and offset resets.", no_args_is_help=True)


@groups_app.command("lag")
def lag_command(
    group: Annotated[str | None, typer.Argument(help="One group; all groups when left out")] = None,
    output: Format = OutputFormat.TABLE,
) -> None:
    """Committed offset, end offset and lag for every partition each group has committed on."""
    run(lambda address: _lag(address, group, output))


async def _lag(address: BrokerAddress, group: str | None, output: OutputFormat) -> None:
    async with Cluster(address) as cluster:
        states, rows = await lag(cluster, group)
    members = {s.name: f"{s.state}/{s.members}" for s in states}
    if output is OutputFormat.JSON:
        for r in rows:
            record = {"group": r.group, "topic": r.topic, "partition": r.partition}
            typer.echo(json_line({**record, "committed": r.committed, "end": r.end, "lag": r.lag}))
        return
    if not rows:
        typer.echo("no committed offsets" + (f" for group {group}" if group else ""))
        return
    typer.echo(
        table(
            ("group", "state/members", "topic", "partition", "committed", "end", "lag"),
            [(r.group, members[r.group], r.topic, r.partition, r.committed, r.end, r.lag) for r in rows],
        )
    )


@groups_app.command("reset")
def reset(
    group: Annotated[str, typer.Argument(help="The consumer group, e.g. orders")],
    topic: Annotated[str, typer.Option(help="The topic whose offsets move")],
    to_time: Annotated[str | None, typer.Option("--to-time", help="The first offset at this time (ISO or 2h)")] = None,
    to_offset: Annotated[int | None, typer.Option("--to-offset", help="This offset")] = None,
    partition: Partition = None,
    yes: Yes = False,
    dry_run: DryRun = False,
) -> None:
    """Print current -> new offsets, then (once confirmed) commit them; refused while the group has members."""
    moment = checked(lambda: _reset_target(to_time=to_time, to_offset=to_offset))
    run(lambda address: _reset(address, group, topic, partition, to_offset, moment, yes=yes, dry_run=dry_run))


def _reset_target(*, to_time: str | None, to_offset: int | None) -> datetime | None:
    if (to_time is None) == (to_offset is None):
        raise BadInput("give exactly one of --to-offset and --to-time")
    if to_offset is not None and to_offset < 0:
        raise BadInput(f"--to-offset must be 0 or more, not {to_offset}")
    return None if to_time is None else parse_moment(to_time, now=datetime.now(UTC))


async def _reset(
    address: BrokerAddress,
    group: str,
    topic: str,
    partition: int | None,
    to_offset: int | None,
    to_time: datetime | None,
    *,
    yes: bool,
    dry_run: bool,
) -> None:
    async with Cluster(address) as cluster:
        moves = await plan_reset(
            cluster, group=group, topic=topic, partition=partition, to_offset=to_offset, to_time=to_time
        )
        typer.echo(f"group {group}, topic {topic}:")
        for m in moves:
            current = "none" if m.current is None else str(m.current)
            typer.echo(f"  partition {m.partition}: {current} -> {m.new}")
        if dry_run:
            return
        await refuse_if_live(cluster, group)
        confirm_or_stop(f"Move {len(moves)} partition offset(s) of group {group}?", yes=yes, nothing_done="no change")
        await apply_reset(cluster, group=group, topic=topic, moves=moves)
    typer.echo("offsets committed; the group starts from them when its consumers start")


@groups_app.command("merge")
def merge(
    sources: Annotated[list[str], typer.Argument(help="The old groups, e.g. agent-order-notices agent-handback")],
    into: Annotated[str, typer.Option("--into", help="The group that takes over their offsets, e.g. agent")],
    yes: Yes = False,
    dry_run: DryRun = False,
) -> None:
    """Give a group the committed offsets of older groups (per partition the lowest), so it starts where they
    stopped: for an upgrade that moves subscriptions into one group. Refused while any of them has members."""
    run(lambda address: _merge(address, sources, into, yes=yes, dry_run=dry_run))


async def _merge(address: BrokerAddress, sources: list[str], into: str, *, yes: bool, dry_run: bool) -> None:
    async with Cluster(address) as cluster:
        moves = await plan_merge(cluster, sources=sources, into=into)
        if not moves:
            typer.echo(f"group {into} already has these offsets; nothing to do")
            return
        typer.echo(f"group {into}:")
        for m in moves:
            current = "none" if m.current is None else str(m.current)
            typer.echo(f"  {m.topic} partition {m.partition}: {current} -> {m.new} (from {m.source})")
        if dry_run:
            return
        await refuse_if_any_live(cluster, [*sources, into])
        confirm_or_stop(f"Commit {len(moves)} partition offset(s) for group {into}?", yes=yes, nothing_done="no change")
        await apply_merge(cluster, sources=sources, into=into, moves=moves)
    typer.echo(f"offsets committed; group {into} starts from them when its consumers start")
