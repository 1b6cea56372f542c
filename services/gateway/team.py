"""Team members and their API keys; a plaintext key exists only in the answer that creates it."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from sellmesh.db import session_scope
from services.gateway.keys import issue_key
from services.gateway.store import ApiKey
from services.gateway.tables import TeamMember


def _utc(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class MemberView:
    id: uuid.UUID
    name: str
    email: str
    role: str
    created_at: datetime


@dataclass(frozen=True)
class KeyView:
    """What may be shown about a key: never its secret or hash."""

    id: uuid.UUID
    member_id: uuid.UUID | None
    prefix: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


def _member(row: TeamMember) -> MemberView:
    created = _utc(row.created_at)
    assert created is not None
    return MemberView(id=row.id, name=row.name, email=row.email, role=row.role, created_at=created)


def _key(row: ApiKey) -> KeyView:
    created = _utc(row.created_at)
    assert created is not None
    return KeyView(
        id=row.id,
        member_id=row.member_id,
        prefix=row.prefix,
        role=row.role,
        created_at=created,
        revoked_at=_utc(row.revoked_at),
    )


def add_member(engine: Engine, tenant_id: uuid.UUID, *, name: str, email: str, role: str) -> MemberView:
    with session_scope(engine) as session:
        row = TeamMember(tenant_id=tenant_id, name=name, email=email, role=role)
        session.add(row)
        session.flush()
        return _member(row)


def _active_member(session: Session, tenant_id: uuid.UUID, member_id: uuid.UUID) -> TeamMember | None:
    row = session.get(TeamMember, member_id)
    if row is None or row.tenant_id != tenant_id or row.removed_at is not None:
        return None
    return row


def members(engine: Engine, tenant_id: uuid.UUID) -> list[MemberView]:
    query = (
        select(TeamMember)
        .where(TeamMember.tenant_id == tenant_id, col(TeamMember.removed_at).is_(None))
        .order_by(col(TeamMember.created_at), col(TeamMember.id))
    )
    with Session(engine) as session:
        return [_member(row) for row in session.exec(query)]


def member(engine: Engine, tenant_id: uuid.UUID, member_id: uuid.UUID) -> MemberView | None:
    with Session(engine) as session:
        row = _active_member(session, tenant_id, member_id)
        return None if row is None else _member(row)


def remove_member(engine: Engine, tenant_id: uuid.UUID, member_id: uuid.UUID, *, at: datetime) -> bool:
    """Remove the member and revoke every key of theirs in one transaction; False when not found."""
    with session_scope(engine) as session:
        row = _active_member(session, tenant_id, member_id)
        if row is None:
            return False
        row.removed_at = at
        session.add(row)
        for key in session.exec(select(ApiKey).where(ApiKey.member_id == member_id, col(ApiKey.revoked_at).is_(None))):
            key.revoked_at = at
            session.add(key)
        return True


def issue_member_key(engine: Engine, tenant_id: uuid.UUID, member_id: uuid.UUID) -> tuple[KeyView, str] | None:
    """A new key for the member with the member's role; returns it with the plaintext, or None when not found."""
    issued = issue_key()
    with session_scope(engine) as session:
        row = _active_member(session, tenant_id, member_id)
        if row is None:
            return None
        key = ApiKey(
            tenant_id=tenant_id,
            prefix=issued.prefix,
            secret_hash=issued.secret_hash,
            role=row.role,
            person=row.name,
            member_id=row.id,
        )
        session.add(key)
        session.flush()
        return _key(key), issued.plaintext


def member_keys(engine: Engine, tenant_id: uuid.UUID, member_id: uuid.UUID) -> list[KeyView] | None:
    with Session(engine) as session:
        if _active_member(session, tenant_id, member_id) is None:
            return None
        query = (
            select(ApiKey)
            .where(ApiKey.tenant_id == tenant_id, ApiKey.member_id == member_id)
            .order_by(col(ApiKey.created_at), col(ApiKey.id))
        )
        return [_key(row) for row in session.exec(query)]


def revoke_key(engine: Engine, tenant_id: uuid.UUID, key_id: uuid.UUID, *, at: datetime) -> bool:
    """Revoke the tenant's key (already revoked is fine); False when not found."""
    with session_scope(engine) as session:
        row = session.get(ApiKey, key_id)
        if row is None or row.tenant_id != tenant_id:
            return False
        if row.revoked_at is None:
            row.revoked_at = at
            session.add(row)
        return True
