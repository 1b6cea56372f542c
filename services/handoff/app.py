"""Composition of the handoff service: the command subscriber, its outbox relay, the mode mirror rebuild."""

from schemas.topics import HANDOFF_COMMANDS
from sellmesh.service import MeshContext, ServiceParts
from services.handoff.domain import Command
from services.handoff.handlers import on_handoff_command, rebuild_mode_mirror


def build(ctx: MeshContext) -> ServiceParts:
    async def on_command(command: Command) -> None:
        await on_handoff_command(command, engine=ctx.engine, redis=ctx.redis)

    async def rebuild_mirror() -> None:
        await rebuild_mode_mirror(engine=ctx.engine, redis=ctx.redis)

    ctx.subscribe(HANDOFF_COMMANDS, group="handoff", name="handoff_command", handler=on_command)
    return ServiceParts(name="handoff", relays=[ctx.relay("handoff")], on_start=[rebuild_mirror])
