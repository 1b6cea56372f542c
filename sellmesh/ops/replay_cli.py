"""`sellmesh replay read|publish`: look at any topic, then re-publish chosen messages with replay headers."""

from datetime import UTC, datetime
from typing import Annotated

import typer

from sellmesh.ops.address import BrokerAddress
from sellmesh.ops.command import (
    DryRun,
    EventType,
    Format,
    FromOffset,
    Header,
    Key,
    OutputFormat,
    Partition,
    Since,
    Tenant,
    ToOffset,
    Until,
    Yes,
    checked,
    confirm_or_stop,
    filters_of,
    range_request,
    run,
)
from sellmesh.ops.connection import Cluster, start_producer
from sellmesh.ops.errors import BadInput, Refused
from sellmesh.ops.moment import parse_rate
from sellmesh.ops.planning import RangeRequest
from sellmesh.ops.reading import ReadStats, describe_ranges, plan_read, select
from sellmesh.ops.render import MESSAGE_HEADINGS, by_position, json_line, message_record, message_row, table
from sellmesh.ops.replay import ReplayPlan, copy_to, plan_replay, publish_items
from sellmesh.ops.selection import Filters

replay_app = typer.Typer(
    help="Read any topic by offsets or time, and re-publish chosen messages (original bytes and key).",
    no_args_is_help=True,
)

Topic = Annotated[str, typer.Argument(help="The topic, e.g. orders.commands.v1")]


@replay_app.command("read")
def read(
    topic: Topic,
    partition: Partition = None,
    from_offset: FromOffset = None,
    to_offset: ToOffset = None,
    since: Since = None,
    until: Until = None,
    tenant: Tenant = None,
    key: Key = None,
    event_type: EventType = None,
    header: Header = None,
    output: Format = OutputFormat.JSON,
) -> None:
    """Print the chosen messages, decoded (undecodable ones raw, in base64, with the error). Changes nothing."""
    request = checked(
        lambda: range_request(
            partition=partition, from_offset=from_offset, to_offset=to_offset, since=since, until=until
        )
    )
    filters = checked(lambda: filters_of(tenant=tenant, key=key, event_type=event_type, header=header))
    run(lambda address: _read(address, topic, request, filters, output))


async def _read(
    address: BrokerAddress, topic: str, request: RangeRequest, filters: Filters, output: OutputFormat
) -> None:
    stats = ReadStats()
    async with Cluster(address) as cluster:
        ranges = await plan_read(cluster, topic, request)
        messages = select(cluster, topic, ranges, filters, stats)
        if output is OutputFormat.JSON:
            async for message in messages:
                typer.echo(json_line(message_record(message)))
        else:
            found = [m async for m in messages]
            typer.echo(table(MESSAGE_HEADINGS, [message_row(m) for m in sorted(found, key=by_position)]))
    typer.echo(f"{stats.matched} of {stats.scanned} message(s) read from {topic} ({describe_ranges(ranges)})", err=True)


@replay_app.command("publish")
def publish(
    topic: Topic,
    to: Annotated[str, typer.Option("--to", help="Publish to this topic (may be the same topic)")],
    reason: Annotated[str, typer.Option(help="Why; kept in the x-replay-reason header")],
    by: Annotated[str, typer.Option(help="Who; kept in the x-replay-by header")],
    rate: Annotated[str, typer.Option(help="At most this many messages per second, e.g. 20/s")] = "20/s",
    max_count: Annotated[int, typer.Option("--max", help="Publish at most this many")] = 100,
    partition: Partition = None,
    from_offset: FromOffset = None,
    to_offset: ToOffset = None,
    since: Since = None,
    until: Until = None,
    tenant: Tenant = None,
    key: Key = None,
    event_type: EventType = None,
    header: Header = None,
    yes: Yes = False,
    dry_run: DryRun = False,
) -> None:
    """Show what would be re-published, ask, then publish the original bytes and keys with x-replay-* headers.

    A message that does not decode as a message of the target topic is refused, named, and not published."""
    request = checked(
        lambda: range_request(
            partition=partition, from_offset=from_offset, to_offset=to_offset, since=since, until=until
        )
    )
    filters = checked(lambda: filters_of(tenant=tenant, key=key, event_type=event_type, header=header))
    per_second = checked(lambda: parse_rate(rate))
    checked(lambda: _check_publish(reason=reason, by=by, max_count=max_count))
    run(
        lambda address: replay_topic(
            address,
            topic,
            to=to,
            request=request,
            filters=filters,
            limit=max_count,
            reason=reason,
            by=by,
            rate=per_second,
            yes=yes,
            dry_run=dry_run,
        )
    )


def _check_publish(*, reason: str, by: str, max_count: int) -> None:
    if not reason.strip() or not by.strip():
        raise BadInput("--reason and --by must say why and who")
    if max_count < 1:
        raise BadInput(f"--max must be 1 or more, not {max_count}")


async def replay_topic(
    address: BrokerAddress,
    topic: str,
    *,
    to: str,
    request: RangeRequest,
    filters: Filters,
    limit: int,
    reason: str,
    by: str,
    rate: float,
    yes: bool,
    dry_run: bool = False,
) -> int:
    """Plan, confirm and publish; returns how many were published. The CLI and the safety tests both run this."""
    stats = ReadStats()
    async with Cluster(address) as cluster:
        await cluster.require_topic(to)
        ranges = await plan_read(cluster, topic, request)
        plan = await plan_replay(
            select(cluster, topic, ranges, filters, stats), source=topic, prepare=copy_to(lambda _: to), limit=limit
        )
    return await confirm_and_publish(address, plan, reason=reason, by=by, rate=rate, yes=yes, dry_run=dry_run)


async def confirm_and_publish(
    address: BrokerAddress,
    plan: ReplayPlan,
    *,
    reason: str,
    by: str,
    rate: float,
    yes: bool,
    dry_run: bool,
    drop_headers: frozenset[str] = frozenset(),
) -> int:
    """Print the plan, ask, publish what may be published; then fail (exit 1) if the plan refused any."""
    for line in plan.summary():
        typer.echo(line)
    sent = 0
    if dry_run or not plan.items:
        typer.echo(f"{'dry run: ' if dry_run else ''}nothing was published")
    else:
        refused = f" ({len(plan.refused)} refused will not be)" if plan.refused else ""
        question = f"Publish {len(plan.items)} message(s){refused}?"
        confirm_or_stop(question, yes=yes, nothing_done="nothing was published")
        producer = await start_producer(address)
        try:
            sent = await publish_items(
                producer, plan.items, reason=reason, by=by, at=datetime.now(UTC), rate=rate, drop_headers=drop_headers
            )
        finally:
            await producer.stop()
        typer.echo(f"published {sent} message(s)")
    if plan.refused:
        raise Refused(plan.refusal_error())
    return sent
