"""The /v1 API: every route module under one problem-answering route class, and its OpenAPI document."""

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.routing import Match

from services.gateway.context import Gateway
from services.gateway.problems import PROBLEM_MEDIA_TYPE, ProblemError
from services.gateway.routes import account, analytics, catalog, channels, commands, conversations, orders, team

ROUTE_MODULES = (account, team, channels, catalog, orders, commands, conversations, analytics)
TITLE = "sellmesh owners' API"
VERSION = "1.0.0"
DESCRIPTION = (
    "Bearer API keys (`sm_<prefix>_<secret>`) per team member; roles owner and staff. Reads come from the "
    "services' query modules; writes are commands answered 202 with a command id (GET /v1/commands/{id}). "
    "Every error is application/problem+json; every response carries X-Request-Id."
)
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def resource_routes(gw: Gateway) -> list[APIRoute]:
    routes: list[APIRoute] = []
    for module in ROUTE_MODULES:
        routes.extend(r for r in module.router(gw).routes if isinstance(r, APIRoute))
    return routes


def api_router(gw: Gateway) -> APIRouter:
    api = APIRouter(route_class=gw.route_class)
    routers = [module.router(gw) for module in ROUTE_MODULES]
    known = [route for router in routers for route in router.routes if isinstance(route, APIRoute)]
    for router in routers:
        api.include_router(router)

    # Last, so it only sees paths no resource route matched: a problem document instead of a bare 404/405.
    @api.api_route("/v1/{path:path}", methods=_METHODS, include_in_schema=False)
    async def unmatched(request: Request, path: str) -> Response:
        if any(route.matches(request.scope)[0] is Match.PARTIAL for route in known):
            raise ProblemError(405, f"{request.method} is not allowed here", kind="method-not-allowed")
        raise ProblemError(404, "no such resource", kind="not-found")

    return api


def openapi_document(gw: Gateway) -> dict[str, Any]:
    document = get_openapi(title=TITLE, version=VERSION, description=DESCRIPTION, routes=resource_routes(gw))
    return _problems_as_problem_json(document)


def _problems_as_problem_json(document: dict[str, Any]) -> dict[str, Any]:
    """FastAPI files additional responses under application/json; ours are application/problem+json."""
    for path in document.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                schema = content.get("application/json", {}).get("schema", {})
                if status[0] in "45" and schema.get("$ref", "").endswith("/Problem"):
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": schema}}
    return document


def openapi_router(gw: Gateway) -> APIRouter:
    api = APIRouter(route_class=gw.route_class)
    document: dict[str, Any] = {}

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        # Built on first request, not at start: every process with a gateway would otherwise pay for it.
        if not document:
            document.update(openapi_document(gw))
        return JSONResponse(document)

    return api
