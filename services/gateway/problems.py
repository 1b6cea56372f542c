"""Every gateway error as application/problem+json (RFC 9457), and an X-Request-Id on every response."""

import logging
import re
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from sellmesh.logging import log_context
from services.gateway.deployment import notify_rules

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-Id"
# A caller's own request id is kept when it is short and plain, so it cannot smuggle text into logs.
_CALLER_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

TITLES: Mapping[int, str] = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """The body of every error response."""

    type: str = Field(description="A URI naming the kind of problem")
    title: str
    status: int
    detail: str
    instance: str = Field(description="The request path")
    request_id: str
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """Raised by routes and dependencies; answered as a problem document with `status`."""

    def __init__(
        self, status: int, detail: str, *, kind: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.headers = dict(headers or {})


def problem_type(status: int, kind: str | None = None) -> str:
    slug = kind or TITLES.get(status, "error").lower().replace(" ", "-")
    return f"urn:sellmesh:problem:{slug}"


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    headers: Mapping[str, str] | None = None,
    errors: list[FieldError] | None = None,
) -> JSONResponse:
    body = Problem(
        type=problem_type(status, kind),
        title=TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        instance=request.url.path,
        request_id=request_id_of(request),
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        headers=dict(headers or {}),
        media_type=PROBLEM_MEDIA_TYPE,
    )


def request_id_of(request: Request) -> str:
    known: str | None = getattr(request.state, "request_id", None)
    if known is None:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        known = given if _CALLER_REQUEST_ID.fullmatch(given) else str(uuid.uuid4())
        request.state.request_id = known
    return known


def _field_errors(exc: RequestValidationError) -> list[FieldError]:
    # The offending input is left out on purpose: it may be a token or an app secret.
    return [
        FieldError(
            loc=[str(p) if not isinstance(p, int) else p for p in e.get("loc", ())], msg=e["msg"], type=e["type"]
        )
        for e in exc.errors()
    ]


def _answer_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = _field_errors(exc)
    if any(e.type == "json_invalid" for e in errors):
        return problem_response(request, 400, "the body is not valid JSON", kind="malformed-json", errors=errors)
    return problem_response(request, 422, "the request does not match the schema", kind="validation", errors=errors)


async def _read_capped(request: Request, limit: int) -> ProblemError | None:
    """Read the body up to `limit` bytes; FastAPI then reuses it. Past the cap nothing is parsed or written."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return ProblemError(413, f"the body is larger than {limit} bytes", kind="body-too-large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return ProblemError(413, f"the body is larger than {limit} bytes", kind="body-too-large")
        chunks.append(chunk)
    request._body = b"".join(chunks)  # Starlette's own cache of the body
    return None


Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


def problem_route_class(*, max_body_bytes: int, notify_allow_local: bool = False) -> type[APIRoute]:
    """An APIRoute that turns every failure of its endpoint into a problem document and logs one line per request.

    Bodies are validated under the deployment's rules (`deployment.py`): `notify_allow_local` is
    HANDOFF_NOTIFY_ALLOW_LOCAL, so the API takes the notify URLs the handoff worker would deliver to."""

    class ProblemRoute(APIRoute):
        def get_route_handler(self) -> Endpoint:
            endpoint = super().get_route_handler()

            async def handle(request: Request) -> Response:
                started = time.perf_counter()
                request_id = request_id_of(request)
                with log_context(request_id=request_id), notify_rules(allow_local=notify_allow_local):
                    response = await _answer(request, endpoint, max_body_bytes)
                    response.headers[REQUEST_ID_HEADER] = request_id
                    log.info(
                        "gateway request",
                        extra={
                            "method": request.method,
                            "route": self.path,
                            "status": response.status_code,
                            "tenant_id": str(getattr(request.state, "tenant_id", "")) or None,
                            "key_prefix": getattr(request.state, "key_prefix", None),
                            "ms": round((time.perf_counter() - started) * 1000, 1),
                        },
                    )
                return response

            return handle

    return ProblemRoute


async def _answer(request: Request, endpoint: Endpoint, max_body_bytes: int) -> Response:
    try:
        too_large = await _read_capped(request, max_body_bytes)
        if too_large is not None:
            raise too_large
        return await endpoint(request)
    except ProblemError as exc:
        return problem_response(request, exc.status, exc.detail, kind=exc.kind, headers=exc.headers)
    except RequestValidationError as exc:
        return _answer_validation(request, exc)
    except HTTPException as exc:  # Starlette's, which FastAPI's subclasses: a body that would not parse is one
        return problem_response(request, exc.status_code, str(exc.detail), headers=exc.headers)
    except Exception:
        log.exception("gateway request failed")
        return problem_response(request, 500, "the request could not be completed", kind="internal")


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": TITLES[status], "content": {PROBLEM_MEDIA_TYPE: {}}}
    for status in (400, 401, 403, 404, 413, 422, 429)
}
