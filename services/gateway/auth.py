"""Bearer API key authentication: every request resolves to one tenant and one role."""

import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, HTTPException, Request
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from sellmesh.db import in_thread
from services.gateway.keys import key_matches, parse_prefix
from services.gateway.store import ApiKey


@dataclass(frozen=True)
class Principal:
    tenant_id: uuid.UUID
    role: str
    key_id: uuid.UUID


def lookup_key(engine: Engine, plaintext: str) -> Principal | None:
    prefix = parse_prefix(plaintext)
    if prefix is None:
        return None
    with Session(engine) as session:
        query = select(ApiKey).where(ApiKey.prefix == prefix, col(ApiKey.revoked_at).is_(None))
        row = session.exec(query).first()
        if row is None or not key_matches(plaintext, row.secret_hash):
            return None
        return Principal(tenant_id=row.tenant_id, role=row.role, key_id=row.id)


def principal_dependency(engine: Engine) -> Any:
    async def authenticate(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token or len(token) > 200:
            raise HTTPException(401, "missing or malformed bearer API key", headers={"WWW-Authenticate": "Bearer"})
        principal = await in_thread(lookup_key, engine, token.strip())
        if principal is None:
            raise HTTPException(401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
        return principal

    return Depends(authenticate)
