"""A tenant's settings: the training JSON the agent, payments and handoff read, and the notification secret."""

import json
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from sellmesh.db import session_scope
from services.gateway.store import Tenant


def _training(tenant: Tenant) -> dict[str, Any]:
    data = json.loads(tenant.training or "{}")
    return data if isinstance(data, dict) else {}


def read_settings(engine: Engine, tenant_id: uuid.UUID) -> tuple[dict[str, Any], bool] | None:
    """The training JSON and whether a notification secret is set; None for an unknown tenant."""
    with Session(engine) as session:
        tenant = session.get(Tenant, tenant_id)
        return None if tenant is None else (_training(tenant), bool(tenant.notify_secret))


def update_training(engine: Engine, tenant_id: uuid.UUID, changes: Mapping[str, Any]) -> dict[str, Any] | None:
    """Set top-level keys of the training JSON (None removes one) and return the result.

    Nested objects given in `changes` replace the stored ones whole; the row is locked while it is
    rewritten (on PostgreSQL), so two owners saving different keys at once both keep their change.
    """
    with session_scope(engine) as session:
        tenant = session.exec(select(Tenant).where(Tenant.id == tenant_id).with_for_update()).first()
        if tenant is None:
            return None
        training = _training(tenant)
        for key, value in changes.items():
            if value is None:
                training.pop(key, None)
            else:
                training[key] = value
        tenant.training = json.dumps(training, sort_keys=True)
        session.add(tenant)
        return training


def rotate_notify_secret(engine: Engine, tenant_id: uuid.UUID) -> str | None:
    """A new secret for signing handoff notifications; the old one stops being used at once."""
    secret = f"whsec_{secrets.token_urlsafe(32)}"
    with session_scope(engine) as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            return None
        tenant.notify_secret = secret
        session.add(tenant)
    return secret
