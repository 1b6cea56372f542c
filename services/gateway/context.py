"""What every route module of the gateway is built with."""

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from redis.asyncio import Redis
from sqlalchemy import Engine

from services.gateway.auth import Authenticator
from services.gateway.bus import CommandBus
from services.gateway.problems import PROBLEM_RESPONSES


@dataclass(frozen=True)
class Gateway:
    engine: Engine
    redis: Redis
    bus: CommandBus
    auth: Authenticator
    route_class: type[APIRoute]

    def router(self, tag: str) -> APIRouter:
        # Each router carries the problem route class itself: include_router keeps a route's own class.
        return APIRouter(prefix="/v1", tags=[tag], route_class=self.route_class, responses=PROBLEM_RESPONSES)

    def require(self, action: str) -> Any:
        return self.auth.require(action)
