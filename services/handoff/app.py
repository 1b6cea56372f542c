"""Composition of the handoff service: the command subscriber, its outbox relay, the mode mirror rebuild."""

from schemas.channel import InboundMessage, OutboundMessage
from schemas.topics import CHANNEL_INBOUND, CHANNEL_OUTBOUND, HANDOFF_COMMANDS
from sellmesh.db import in_thread
from sellmesh.service import MeshContext, ServiceParts
from services.handoff.domain import Command
from services.handoff.handlers import on_handoff_command, rebuild_mode_mirror
from services.handoff.inbox import record_inbound, record_outbound


def build(ctx: MeshContext) -> ServiceParts:
    async def on_command(command: Command) -> None:
        await on_handoff_command(command, engine=ctx.engine, redis=ctx.redis)

    async def rebuild_mirror() -> None:
        await rebuild_mode_mirror(engine=ctx.engine, redis=ctx.redis)

    async def on_inbound(message: InboundMessage) -> None:
        await in_thread(record_inbound, ctx.engine, message)

    async def on_outbound(message: OutboundMessage) -> None:
        await in_thread(record_outbound, ctx.engine, message)

    ctx.subscribe(HANDOFF_COMMANDS, group="handoff", name="handoff_command", handler=on_command)
    # The inbox read model: what a person working the queue sees of each conversation.
    ctx.subscribe(CHANNEL_INBOUND, group="handoff-inbox", name="inbox_inbound", handler=on_inbound)
    ctx.subscribe(CHANNEL_OUTBOUND, group="handoff-inbox-outbound", name="inbox_outbound", handler=on_outbound)
    return ServiceParts(name="handoff", relays=[ctx.relay("handoff")], on_start=[rebuild_mirror])
