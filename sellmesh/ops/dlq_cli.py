"""`sellmesh dlq list|show|redrive|reingest|purge`: the dead-letter topics, read and worked from the purge mark on."""

import typer

from schemas.topics import dlq_of
from sellmesh.ops.address import BrokerAddress
from sellmesh.ops.command import (
    All,
    By,
    DlqTopic,
    DryRun,
    EventType,
    Format,
    FromOffset,
    Header,
    Key,
    MaxLetters,
    Offset,
    OutputFormat,
    Partition,
    Rate,
    Reason,
    Since,
    Tenant,
    ToOffset,
    Until,
    Yes,
    checked,
    confirm_or_stop,
    filters_of,
    operator,
    range_request,
    run,
)
from sellmesh.ops.connection import Cluster
from sellmesh.ops.dlq import (
    DEAD_LETTER_HEADERS,
    RAW_WEBHOOK_KINDS,
    check_choice,
    original_topic,
    plan_dead_letters,
    purge,
    purge_marks,
    require_dlq_name,
    summaries,
)
from sellmesh.ops.message import Message
from sellmesh.ops.moment import parse_rate
from sellmesh.ops.planning import RangeRequest
from sellmesh.ops.reading import ReadStats, describe_ranges, plan_read, select
from sellmesh.ops.reingest_cli import reingest
from sellmesh.ops.render import MESSAGE_HEADINGS, by_position, dead_letter_record, json_line, message_row, table
from sellmesh.ops.replay import Prepare, Refusal, ReplayItem, copy_to
from sellmesh.ops.replay_cli import confirm_and_publish
from sellmesh.ops.selection import Filters

dlq_app = typer.Typer(
    help="Dead-letter topics: list, show, redrive to the original topic, reingest kept webhooks, purge.",
    no_args_is_help=True,
)


@dlq_app.command("list")
def list_command(output: Format = OutputFormat.TABLE) -> None:
    """Each dead-letter topic with how many messages it holds, how many are purged, how many wait."""
    run(lambda address: _list(address, output))


async def _list(address: BrokerAddress, output: OutputFormat) -> None:
    async with Cluster(address) as cluster:
        found = await summaries(cluster)
    if output is OutputFormat.JSON:
        for s in found:
            typer.echo(json_line({"topic": s.topic, "total": s.total, "purged": s.purged, "waiting": s.waiting}))
        return
    if not found:
        typer.echo("no dead-letter topics")
        return
    typer.echo(table(("topic", "waiting", "purged", "total"), [(s.topic, s.waiting, s.purged, s.total) for s in found]))


@dlq_app.command("show")
def show(
    topic: DlqTopic,
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
    """Print dead letters not yet purged: the error, the headers and the message."""
    checked(lambda: require_dlq_name(topic))
    request = checked(
        lambda: range_request(
            partition=partition, from_offset=from_offset, to_offset=to_offset, since=since, until=until
        )
    )
    filters = checked(lambda: filters_of(tenant=tenant, key=key, event_type=event_type, header=header))
    run(lambda address: _show(address, topic, request, filters, output))


async def _show(
    address: BrokerAddress, topic: str, request: RangeRequest, filters: Filters, output: OutputFormat
) -> None:
    stats = ReadStats()
    async with Cluster(address) as cluster:
        partitions = await cluster.require_topic(topic)
        ranges = await plan_read(cluster, topic, request, floor=await purge_marks(cluster, topic, partitions))
        messages = select(cluster, topic, ranges, filters, stats)
        if output is OutputFormat.JSON:
            async for message in messages:
                typer.echo(json_line(dead_letter_record(message)))
        else:
            found = [m async for m in messages]
            rows = [message_row(m, dead_letter=True) for m in sorted(found, key=by_position)]
            typer.echo(table(MESSAGE_HEADINGS, rows))
    typer.echo(f"{stats.matched} of {stats.scanned} dead letter(s) in {topic} ({describe_ranges(ranges)})", err=True)


@dlq_app.command("redrive")
def redrive(
    topic: DlqTopic,
    offset: Offset = None,
    redrive_all: All = False,
    reason: Reason = None,
    by: By = None,
    max_count: MaxLetters = 1000,
    rate: Rate = "50/s",
    partition: Partition = None,
    since: Since = None,
    until: Until = None,
    tenant: Tenant = None,
    key: Key = None,
    event_type: EventType = None,
    header: Header = None,
    yes: Yes = False,
    dry_run: DryRun = False,
) -> None:
    """Publish dead letters back to their original topic: original bytes and key, error headers removed.

    A dead letter whose bytes do not decode as a message of that topic is refused, named, and kept."""
    checked(lambda: require_dlq_name(topic))
    filters = checked(lambda: filters_of(tenant=tenant, key=key, event_type=event_type, header=header))
    request = checked(
        lambda: range_request(partition=partition, from_offset=None, to_offset=None, since=since, until=until)
    )
    per_second = checked(lambda: parse_rate(rate))
    checked(
        lambda: check_choice(
            offset=offset, everything=redrive_all, filters=filters, request=request, max_count=max_count
        )
    )
    run(
        lambda address: _redrive(
            address,
            topic,
            request=request,
            offset=offset,
            filters=filters,
            limit=max_count,
            rate=per_second,
            reason=reason or f"redrive from {topic}",
            by=by or operator(),
            yes=yes,
            dry_run=dry_run,
        )
    )


def _redrive_copy() -> Prepare:
    """The dead letter as it was, to its original topic; a raw webhook an edge kept is pointed to reingest."""
    copy = copy_to(original_topic)

    async def prepare(message: Message) -> ReplayItem | Refusal:
        prepared = await copy(message)
        kind = message.header_map.get("x-error-kind")
        raw_kind = RAW_WEBHOOK_KINDS.get(dlq_of(original_topic(message)))
        if isinstance(prepared, Refusal) and kind is not None and kind == raw_kind:
            return Refusal(message, f"a raw webhook the edge kept ({kind}), not a message: `sellmesh dlq reingest`")
        return prepared

    return prepare


async def _redrive(
    address: BrokerAddress,
    topic: str,
    *,
    request: RangeRequest,
    offset: int | None,
    filters: Filters,
    limit: int,
    rate: float,
    reason: str,
    by: str,
    yes: bool,
    dry_run: bool,
) -> int:
    async with Cluster(address) as cluster:
        plan = await plan_dead_letters(
            cluster, topic, request=request, offset=offset, filters=filters, limit=limit, prepare=_redrive_copy()
        )
        for target in plan.per_target:
            await cluster.require_topic(target)
    return await confirm_and_publish(
        address, plan, reason=reason, by=by, rate=rate, yes=yes, dry_run=dry_run, drop_headers=DEAD_LETTER_HEADERS
    )


dlq_app.command("reingest")(reingest)


@dlq_app.command("purge")
def purge_command(topic: DlqTopic, yes: Yes = False) -> None:
    """Mark every dead letter in the topic as handled: list, show and redrive skip them from then on."""
    checked(lambda: require_dlq_name(topic))
    run(lambda address: _purge(address, topic, yes=yes))


async def _purge(address: BrokerAddress, topic: str, *, yes: bool) -> None:
    async with Cluster(address) as cluster:
        partitions = await cluster.require_topic(topic)
        marks = await cluster.watermarks(topic, partitions)
        purged_to = await purge_marks(cluster, topic, partitions)
        waiting = sum(m.high - max(m.low, purged_to.get(p, m.low)) for p, m in marks.items())
        typer.echo(f"{waiting} dead letter(s) in {topic} will be marked purged")
        if waiting <= 0:
            return
        confirm_or_stop(f"Purge {waiting} dead letter(s)?", yes=yes, nothing_done="nothing was purged")
        # Up to the ends counted above: letters arriving while the operator answered were not among them.
        moves = await purge(cluster, topic, marks=marks)
    for p, (old, new) in sorted(moves.items()):
        typer.echo(f"partition {p}: purged up to {old} -> {new}")
