"""Team members and their API keys (owners manage them; a key is shown once, at creation)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Response

from schemas.handoff import SetAvailability
from schemas.topics import HANDOFF_COMMANDS
from sellmesh.db import in_thread
from sellmesh.service import now
from services.gateway.auth import Principal
from services.gateway.bus import envelope_for
from services.gateway.context import Gateway
from services.gateway.models import IssuedKey, KeyOut, Keys, MemberIn, MemberOut, Members
from services.gateway.problems import ProblemError
from services.gateway.team import add_member, issue_member_key, member_keys, members, remove_member, revoke_key


def router(gw: Gateway) -> APIRouter:
    api = gw.router("team")

    @api.get("/team", response_model=Members)
    async def team(principal: Annotated[Principal, gw.require("team.read")]) -> Members:
        rows = await in_thread(members, gw.engine, principal.tenant_id)
        return Members(members=[MemberOut.model_validate(row, from_attributes=True) for row in rows])

    @api.post("/team", response_model=MemberOut, status_code=201)
    async def add(body: MemberIn, principal: Annotated[Principal, gw.require("team.write")]) -> MemberOut:
        """Add a person; handoff learns of them at once (as unavailable until they say otherwise)."""
        row = await in_thread(
            lambda: add_member(gw.engine, principal.tenant_id, name=body.name, email=body.email, role=body.role)
        )
        # Handoff keeps its own roster from these commands; without it a staff take-over is `unknown_staff`.
        joined = SetAvailability(**envelope_for(principal), staff_id=str(row.id), available=False)
        await gw.bus.send(HANDOFF_COMMANDS, joined, key=str(row.id), target=str(row.id))
        return MemberOut.model_validate(row, from_attributes=True)

    @api.delete("/team/{member_id}", status_code=204, response_class=Response)
    async def remove(member_id: uuid.UUID, principal: Annotated[Principal, gw.require("team.write")]) -> Response:
        """Remove the member; every key of theirs stops working at once, and handoff assigns them no new ticket."""
        if member_id == principal.member_id:
            raise ProblemError(409, "you cannot remove yourself", kind="conflict")
        if not await in_thread(lambda: remove_member(gw.engine, principal.tenant_id, member_id, at=now())):
            raise ProblemError(404, "member not found")
        # Handoff's roster learns only from these commands: left available, a removed member would keep being
        # given new tickets they can no longer see, and as assigned tickets nobody would escalate them.
        gone = SetAvailability(**envelope_for(principal), staff_id=str(member_id), available=False)
        await gw.bus.send(HANDOFF_COMMANDS, gone, key=str(member_id), target=str(member_id))
        return Response(status_code=204)

    @api.get("/team/{member_id}/keys", response_model=Keys)
    async def keys(member_id: uuid.UUID, principal: Annotated[Principal, gw.require("keys.manage")]) -> Keys:
        rows = await in_thread(member_keys, gw.engine, principal.tenant_id, member_id)
        if rows is None:
            raise ProblemError(404, "member not found")
        return Keys(keys=[KeyOut.model_validate(row, from_attributes=True) for row in rows])

    @api.post("/team/{member_id}/keys", response_model=IssuedKey, status_code=201)
    async def issue(member_id: uuid.UUID, principal: Annotated[Principal, gw.require("keys.manage")]) -> IssuedKey:
        """A new key with the member's role. The plaintext is in this answer only; only its hash is kept."""
        issued = await in_thread(issue_member_key, gw.engine, principal.tenant_id, member_id)
        if issued is None:
            raise ProblemError(404, "member not found")
        key, plaintext = issued
        return IssuedKey(**KeyOut.model_validate(key, from_attributes=True).model_dump(), api_key=plaintext)

    @api.delete("/keys/{key_id}", status_code=204, response_class=Response)
    async def revoke(key_id: uuid.UUID, principal: Annotated[Principal, gw.require("keys.manage")]) -> Response:
        """Revoke a key; the next request with it is refused."""
        if not await in_thread(lambda: revoke_key(gw.engine, principal.tenant_id, key_id, at=now())):
            raise ProblemError(404, "key not found")
        return Response(status_code=204)

    return api
