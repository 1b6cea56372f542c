"""Channel accounts: connected with their tokens and secrets, which are never returned."""

from typing import Annotated

from fastapi import APIRouter

from sellmesh.db import in_thread
from services.gateway.auth import Principal
from services.gateway.channels import AlreadyConnected, accounts, connect
from services.gateway.context import Gateway
from services.gateway.models import ChannelAccountIn, ChannelAccountOut, ChannelAccounts
from services.gateway.problems import ProblemError


def router(gw: Gateway) -> APIRouter:
    api = gw.router("channels")

    @api.get("/channel-accounts", response_model=ChannelAccounts)
    async def listed(principal: Annotated[Principal, gw.require("channels.read")]) -> ChannelAccounts:
        rows = await in_thread(accounts, gw.engine, principal.tenant_id)
        return ChannelAccounts(accounts=[ChannelAccountOut.model_validate(r, from_attributes=True) for r in rows])

    @api.post("/channel-accounts", response_model=ChannelAccountOut, status_code=201)
    async def connect_account(
        body: ChannelAccountIn, principal: Annotated[Principal, gw.require("channels.connect")]
    ) -> ChannelAccountOut:
        """Connect a WhatsApp number, Facebook Page or Instagram account; its webhooks route here at once."""
        try:
            row = await in_thread(
                lambda: connect(
                    gw.engine,
                    principal.tenant_id,
                    channel=body.channel,
                    external_id=body.external_id,
                    display_name=body.display_name,
                    app_secret=body.app_secret,
                    verify_token=body.verify_token,
                    access_token=body.access_token,
                )
            )
        except AlreadyConnected as exc:
            raise ProblemError(409, str(exc), kind="already-connected") from None
        return ChannelAccountOut.model_validate(row, from_attributes=True)

    return api
