"""Analytics per day over a range: conversations, AI replies and cost, handoffs, orders, revenue, conversion."""

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from sellmesh.db import in_thread
from sellmesh.service import now
from services.gateway.analytics import MAX_DAYS, tenant_analytics
from services.gateway.auth import Principal
from services.gateway.commerce_models import Analytics
from services.gateway.context import Gateway
from services.gateway.problems import ProblemError


def router(gw: Gateway) -> APIRouter:
    api = gw.router("analytics")

    @api.get("/analytics", response_model=Analytics)
    async def analytics(
        principal: Annotated[Principal, gw.require("analytics.read")],
        since: Annotated[date | None, Query(description="First day (UTC), default 6 days before `until`")] = None,
        until: Annotated[date | None, Query(description="Last day (UTC), default today")] = None,
    ) -> Analytics:
        last = until or now().date()
        first = since or last - timedelta(days=6)
        if first > last or (last - first).days >= MAX_DAYS or first.year < 2000 or last.year > 2999:
            raise ProblemError(
                422,
                f"since must be on or before until, at most {MAX_DAYS} days, in years 2000 to 2999",
                kind="validation",
            )
        return await in_thread(lambda: tenant_analytics(gw.engine, principal.tenant_id, since=first, until=last))

    return api
