"""`sellmesh dlq reingest`: the raw webhooks an edge kept, back to the edge's topic once they can be routed.

The edges' code (sellmesh/ops/reingest.py) and the database layer are imported only when the command runs:
they take about a second to import, which every other `sellmesh` command would otherwise pay.
"""

from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated

import typer

from sellmesh.ops.address import BrokerAddress
from sellmesh.ops.command import (
    All,
    By,
    DryRun,
    Header,
    MaxLetters,
    Offset,
    Partition,
    Rate,
    Reason,
    Since,
    Until,
    Yes,
    checked,
    filters_of,
    operator,
    range_request,
    run,
)
from sellmesh.ops.connection import Cluster
from sellmesh.ops.dlq import RAW_WEBHOOK_KINDS, check_choice, plan_dead_letters, raw_webhook_kind
from sellmesh.ops.errors import DatabaseUnavailable
from sellmesh.ops.message import Message
from sellmesh.ops.moment import parse_rate
from sellmesh.ops.planning import RangeRequest
from sellmesh.ops.replay import Refusal, ReplayItem
from sellmesh.ops.replay_cli import confirm_and_publish
from sellmesh.ops.selection import Filters
from sellmesh.settings import MeshSettings

KeptTopic = Annotated[str, typer.Argument(help=" or ".join(sorted(RAW_WEBHOOK_KINDS)))]


def reingest(
    topic: KeptTopic,
    offset: Offset = None,
    reingest_all: All = False,
    reason: Reason = None,
    by: By = None,
    max_count: MaxLetters = 1000,
    rate: Rate = "50/s",
    partition: Partition = None,
    since: Since = None,
    until: Until = None,
    key: Annotated[
        str | None, typer.Option(help="Only this key: the Page, Instagram or WhatsApp number id; the Stripe object id")
    ] = None,
    header: Header = None,
    yes: Yes = False,
    dry_run: DryRun = False,
) -> None:
    """Send raw webhooks an edge kept (no account or tenant then) to the edge's topic, wrapped as the edge wraps
    them, once their account or tenant resolves. Reads the services' database (DATABASE_URL)."""
    kind = checked(lambda: raw_webhook_kind(topic))
    chosen = checked(lambda: filters_of(tenant=None, key=key, event_type=None, header=header))
    request = checked(
        lambda: range_request(partition=partition, from_offset=None, to_offset=None, since=since, until=until)
    )
    per_second = checked(lambda: parse_rate(rate))
    checked(
        lambda: check_choice(
            offset=offset, everything=reingest_all, filters=chosen, request=request, max_count=max_count
        )
    )
    # Only what the edge kept: the topic's other dead letters are messages, for `redrive`.
    filters = replace(chosen, headers=(*chosen.headers, ("x-error-kind", kind)))
    database_url = MeshSettings().effective_database_url
    run(
        lambda address: _reingest(
            address,
            topic,
            database_url=database_url,
            request=request,
            offset=offset,
            filters=filters,
            limit=max_count,
            rate=per_second,
            reason=reason or f"reingest from {topic}",
            by=by or operator(),
            yes=yes,
            dry_run=dry_run,
        )
    )


async def _reingest(
    address: BrokerAddress,
    topic: str,
    *,
    database_url: str,
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
    from sqlalchemy.exc import SQLAlchemyError

    from sellmesh.db import in_thread
    from sellmesh.ops.reingest import KEPT, open_database

    kept = KEPT[topic]
    engine = open_database(database_url)
    at = datetime.now(UTC)

    async def prepare(message: Message) -> ReplayItem | Refusal:
        try:
            return await in_thread(kept.rewrap, engine, message, at)
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(
                f"the database (DATABASE_URL) failed a lookup ({type(exc).__name__}); is it the services' database?"
            ) from None

    try:
        async with Cluster(address) as cluster:
            plan = await plan_dead_letters(
                cluster, kept.dlq, request=request, offset=offset, filters=filters, limit=limit, prepare=prepare
            )
            if plan.items:
                await cluster.require_topic(kept.topic)
    finally:
        engine.dispose()
    if not plan.matched:
        typer.echo(f"reingest takes the dead letters with x-error-kind={kept.kind}; `dlq redrive` sends the others")
    return await confirm_and_publish(address, plan, reason=reason, by=by, rate=rate, yes=yes, dry_run=dry_run)
