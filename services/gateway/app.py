"""Composition of the gateway: the owners' /v1 API on the shared HTTP port."""

from sellmesh.service import MeshContext, ServiceParts
from services.gateway.api import api_router


def build(ctx: MeshContext) -> ServiceParts:
    return ServiceParts(name="gateway", routers=[api_router(ctx)])
