"""Read-only queries over gateway-owned tables, for other services (ingest routing, agent settings)."""

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from services.gateway.store import ChannelAccount, Tenant


@dataclass(frozen=True)
class ChannelAccountView:
    """Routing facts about one connected account; carries secrets, so never log or return it."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    channel: str
    external_id: str
    app_secret: str
    access_token: str

    def __repr__(self) -> str:
        return f"ChannelAccountView(id={self.id}, tenant_id={self.tenant_id}, channel={self.channel})"


def _view(row: ChannelAccount) -> ChannelAccountView:
    return ChannelAccountView(
        id=row.id,
        tenant_id=row.tenant_id,
        channel=row.channel,
        external_id=row.external_id,
        app_secret=row.app_secret,
        access_token=row.access_token,
    )


def find_channel_account(engine: Engine, *, channel: str, external_id: str) -> ChannelAccountView | None:
    with Session(engine) as session:
        query = select(ChannelAccount).where(
            ChannelAccount.channel == channel, ChannelAccount.external_id == external_id
        )
        row = session.exec(query).first()
        return _view(row) if row else None


def verify_token_known(engine: Engine, token: str) -> bool:
    """True when some connected account was configured with this webhook verify token."""
    if not token:
        return False
    with Session(engine) as session:
        return session.exec(select(ChannelAccount.id).where(ChannelAccount.verify_token == token)).first() is not None


def tenant_training(engine: Engine, tenant_id: uuid.UUID) -> dict[str, Any]:
    """The tenant's training controls (tone, language, FAQ, policies); empty for an unknown tenant."""
    with Session(engine) as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            return {}
        data = json.loads(tenant.training or "{}")
        return data if isinstance(data, dict) else {}


def tenant_name(engine: Engine, tenant_id: uuid.UUID) -> str | None:
    with Session(engine) as session:
        tenant = session.get(Tenant, tenant_id)
        return tenant.name if tenant else None


def account_by_id(engine: Engine, account_id: uuid.UUID) -> ChannelAccountView | None:
    with Session(engine) as session:
        row = session.get(ChannelAccount, account_id)
        return _view(row) if row else None
