"""Composition of the handoff service: the command subscriber, the inbox read model, the sweep, webhook
delivery, its outbox relay, and the mode mirror's reconcile."""

from schemas.handoff import HandoffCommand
from schemas.topics import CHANNEL_INBOUND, CHANNEL_OUTBOUND, HANDOFF_COMMANDS
from sellmesh.service import MeshContext, ServiceParts
from services.handoff.delivery import NotificationDelivery
from services.handoff.handlers import on_handoff_command
from services.handoff.inbox import InboxWriter
from services.handoff.mirror import MirrorReconciler
from services.handoff.settings import HandoffServiceSettings
from services.handoff.sweep import HandoffSweep


def build(ctx: MeshContext) -> ServiceParts:
    settings = HandoffServiceSettings()
    relay = ctx.relay("handoff")
    mirror = MirrorReconciler(engine=ctx.engine, redis=ctx.redis, interval_seconds=settings.mirror_reconcile_seconds)
    sweep = HandoffSweep(engine=ctx.engine, redis=ctx.redis, interval_seconds=settings.sweep_interval_seconds)
    delivery = NotificationDelivery(
        engine=ctx.engine,
        allow_local=settings.notify_allow_local,
        max_attempts=settings.notify_max_attempts,
        poll_seconds=settings.notify_poll_seconds,
        timeout_seconds=settings.notify_timeout_seconds,
    )

    async def on_command(command: HandoffCommand) -> None:
        await on_handoff_command(command, engine=ctx.engine, redis=ctx.redis)

    inbox = InboxWriter(ctx.engine)

    # Keeps the Redis dedup: a `request` writes `human` to the mode mirror before its transaction, so a
    # redelivered old request would silence the AI for a moment before its duplicate check.
    ctx.subscribe(HANDOFF_COMMANDS, group="handoff", name="handoff_command", handler=on_command)
    # The inbox read model: what a person working the queue sees of each conversation. Its rows are unique by
    # event id, so a redelivered message changes nothing and needs no dedup lookup; the rows of messages handled
    # at once, from both subscriptions, share a transaction (`sellmesh/group_insert.py`).
    ctx.subscribe(CHANNEL_INBOUND, group="handoff", name="inbox_inbound", handler=inbox.on_inbound, idempotent=True)
    ctx.subscribe(
        CHANNEL_OUTBOUND,
        group="handoff",
        name="inbox_outbound",
        handler=inbox.on_outbound,
        idempotent=True,
    )
    return ServiceParts(
        name="handoff",
        relays=[relay],
        on_start=[mirror.start, sweep.start, delivery.start],
        on_stop=[mirror.stop, sweep.stop, delivery.stop],
    )
