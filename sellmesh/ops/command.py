"""What every on-call command shares: the options people type, the broker session, and error reporting."""

import asyncio
import getpass
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, TypeVar

import typer
from aiokafka.errors import KafkaError

from sellmesh.logging import configure_logging
from sellmesh.ops.address import BrokerAddress, resolve_broker
from sellmesh.ops.errors import OpsError
from sellmesh.ops.moment import parse_moment
from sellmesh.ops.planning import RangeRequest
from sellmesh.ops.selection import Filters, build_filters
from sellmesh.settings import MeshSettings

T = TypeVar("T")


class OutputFormat(StrEnum):
    JSON = "json"
    TABLE = "table"


Partition = Annotated[int | None, typer.Option(help="Only this partition")]
FromOffset = Annotated[int | None, typer.Option("--from-offset", help="First offset (inclusive)")]
ToOffset = Annotated[int | None, typer.Option("--to-offset", help="Last offset (inclusive)")]
Since = Annotated[str | None, typer.Option(help="From this time: ISO 8601 or an age like 2h, 30m, 3d")]
Until = Annotated[str | None, typer.Option(help="Up to this time (exclusive): ISO 8601 or an age like 1h")]
Tenant = Annotated[str | None, typer.Option(help="Only this tenant id")]
Key = Annotated[str | None, typer.Option(help="Only this Kafka key (conversation or order id)")]
EventType = Annotated[str | None, typer.Option("--event-type", help="Only this envelope `type`")]
Header = Annotated[list[str] | None, typer.Option("--header", help="Only messages with header name=value (repeatable)")]
Format = Annotated[OutputFormat, typer.Option("--format", help="json (one object per line) or table")]
Yes = Annotated[bool, typer.Option("--yes", help="Do it without asking")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show the plan and stop")]
DlqTopic = Annotated[str, typer.Argument(help="A dead-letter topic, e.g. orders.commands.v1.dlq")]
Offset = Annotated[int | None, typer.Option(help="Only the dead letter at this offset")]
All = Annotated[bool, typer.Option("--all", help="Every dead letter not yet purged")]
By = Annotated[str | None, typer.Option(help="Who; kept in x-replay-by (default: your login)")]
Rate = Annotated[str, typer.Option(help="At most this many messages per second, e.g. 50/s")]
Reason = Annotated[str | None, typer.Option(help="Why; kept in x-replay-reason")]
MaxLetters = Annotated[int, typer.Option("--max", help="Take at most this many dead letters")]


def run(action: Callable[[BrokerAddress], Awaitable[T]]) -> T:
    """Resolve the broker and run `action`; operator errors become a message and an exit code."""
    settings = MeshSettings()
    configure_logging(settings.sellmesh_log_level)
    # These commands report broker failures themselves, in one line; aiokafka's own retry logs are noise here.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(_resolved(settings, action))
    except OpsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KafkaError as exc:
        typer.echo(f"error: the broker failed the request: {exc!r}", err=True)
        raise typer.Exit(3) from None


async def _resolved(settings: MeshSettings, action: Callable[[BrokerAddress], Awaitable[T]]) -> T:
    return await action(resolve_broker(settings))


def checked(build: Callable[[], T]) -> T:
    """Parse options before touching the broker, so a typo fails fast with the same message and code."""
    try:
        return build()
    except OpsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None


def range_request(
    *, partition: int | None, from_offset: int | None, to_offset: int | None, since: str | None, until: str | None
) -> RangeRequest:
    now = datetime.now(UTC)
    request = RangeRequest(
        partition=partition,
        from_offset=from_offset,
        to_offset=to_offset,
        since=None if since is None else parse_moment(since, now=now),
        until=None if until is None else parse_moment(until, now=now),
    )
    request.check()
    return request


def filters_of(*, tenant: str | None, key: str | None, event_type: str | None, header: list[str] | None) -> Filters:
    return build_filters(tenant=tenant, key=key, event_type=event_type, headers=header)


def confirm_or_stop(question: str, *, yes: bool, nothing_done: str) -> None:
    if yes:
        return
    if not typer.confirm(question, default=False):
        typer.echo(f"cancelled: {nothing_done}", err=True)
        raise typer.Exit(1)


def operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
