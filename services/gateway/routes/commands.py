"""What became of a command the gateway published: pending, accepted, or rejected with a reason."""

import uuid
from typing import Annotated

from fastapi import APIRouter

from sellmesh.db import in_thread
from services.gateway.auth import Principal
from services.gateway.commerce_models import Outcome
from services.gateway.context import Gateway
from services.gateway.outcomes import outcome
from services.gateway.problems import ProblemError


def router(gw: Gateway) -> APIRouter:
    api = gw.router("commands")

    @api.get("/commands/{command_id}", response_model=Outcome)
    async def command(command_id: uuid.UUID, principal: Annotated[Principal, gw.require("commands.read")]) -> Outcome:
        """`pending` until the deciding service's event arrives (some accepted handoff commands emit none)."""
        found = await in_thread(outcome, gw.engine, principal.tenant_id, command_id)
        if found is None:
            raise ProblemError(404, "command not found")
        return Outcome.model_validate(found, from_attributes=True)

    return api
