"""Bearer API key authentication: every request resolves to one tenant, one role and one team member.

The key is looked up on every request (no cache), so a revoked key or a removed member stops
working at once. Only the key's visible prefix ever reaches a log line.
"""

import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from sellmesh.db import in_thread
from services.gateway.keys import key_matches, parse_prefix
from services.gateway.permissions import allowed
from services.gateway.problems import ProblemError
from services.gateway.ratelimit import RateLimiter
from services.gateway.store import ApiKey
from services.gateway.tables import TeamMember

MAX_KEY_LENGTH = 200
_BEARER = HTTPBearer(auto_error=False, description="An API key: `sm_<prefix>_<secret>`")


@dataclass(frozen=True)
class Principal:
    tenant_id: uuid.UUID
    role: str
    key_id: uuid.UUID
    member_id: uuid.UUID | None

    @property
    def actor_id(self) -> str:
        """Who commands name as the actor; handoff knows people by their member id."""
        return str(self.member_id or self.key_id)


def lookup_key(engine: Engine, plaintext: str) -> Principal | None:
    prefix = parse_prefix(plaintext)
    if prefix is None:
        return None
    with Session(engine) as session:
        query = select(ApiKey).where(ApiKey.prefix == prefix, col(ApiKey.revoked_at).is_(None))
        row = session.exec(query).first()
        if row is None or not key_matches(plaintext, row.secret_hash):
            return None
        if row.member_id is not None:
            member = session.get(TeamMember, row.member_id)
            if member is None or member.removed_at is not None or member.tenant_id != row.tenant_id:
                return None
        return Principal(tenant_id=row.tenant_id, role=row.role, key_id=row.id, member_id=row.member_id)


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, detail, kind="unauthorized", headers={"WWW-Authenticate": "Bearer"})


class Authenticator:
    """The FastAPI dependencies that authenticate, rate-limit and authorize a request."""

    def __init__(self, engine: Engine, limiter: RateLimiter) -> None:
        self.engine = engine
        self.limiter = limiter

    async def principal(
        self, request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]
    ) -> Principal:
        token = credentials.credentials.strip() if credentials is not None else ""
        if not token or len(token) > MAX_KEY_LENGTH:
            raise _unauthorized("missing or malformed bearer API key")
        found = await in_thread(lookup_key, self.engine, token)
        if found is None:
            raise _unauthorized("unknown or revoked API key")
        request.state.tenant_id = found.tenant_id
        request.state.key_prefix = parse_prefix(token)
        wait = await self.limiter.retry_after(found.key_id, now=time.time())
        if wait is not None:
            raise ProblemError(
                429,
                f"rate limit of {self.limiter.limit} requests per {self.limiter.window_seconds} s reached",
                kind="rate-limited",
                headers={"Retry-After": str(wait)},
            )
        return found

    def require(self, action: str) -> Any:
        """A dependency answering the principal when its role may take `action`, else 403."""

        async def authorized(principal: Annotated[Principal, Depends(self.principal)]) -> Principal:
            authorize(principal, action)
            return principal

        return Depends(authorized)


def authorize(principal: Principal, action: str) -> None:
    """403 unless the principal's role may take `action` (see permissions.PERMISSIONS)."""
    if not allowed(principal.role, action):
        raise ProblemError(403, f"the {principal.role} role may not {action}", kind="forbidden")
