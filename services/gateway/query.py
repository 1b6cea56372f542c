"""Read-only queries over gateway-owned tables, for other services (ingest routing, agent settings)."""

import json
import re
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


@dataclass(frozen=True)
class PaymentSettingsView:
    """A tenant's checkout choices, from the `payments` object of its training JSON; unset or invalid is None."""

    success_url: str | None = None
    cancel_url: str | None = None
    stripe_account: str | None = None  # a Stripe Connect account id (acct_...)


_URL = re.compile(r"https?://[^\s]{1,2040}")
_ACCOUNT = re.compile(r"acct_[A-Za-z0-9]{1,250}")


def _matching(value: object, pattern: re.Pattern[str]) -> str | None:
    return value if isinstance(value, str) and pattern.fullmatch(value) else None


def payment_settings(engine: Engine, tenant_id: uuid.UUID) -> PaymentSettingsView:
    """`{"payments": {"success_url": ..., "cancel_url": ..., "stripe_account": "acct_..."}}` in the training JSON."""
    payments = tenant_training(engine, tenant_id).get("payments")
    if not isinstance(payments, dict):
        return PaymentSettingsView()
    return PaymentSettingsView(
        success_url=_matching(payments.get("success_url"), _URL),
        cancel_url=_matching(payments.get("cancel_url"), _URL),
        stripe_account=_matching(payments.get("stripe_account"), _ACCOUNT),
    )


def tenant_name(engine: Engine, tenant_id: uuid.UUID) -> str | None:
    with Session(engine) as session:
        tenant = session.get(Tenant, tenant_id)
        return tenant.name if tenant else None


def account_by_id(engine: Engine, account_id: uuid.UUID) -> ChannelAccountView | None:
    with Session(engine) as session:
        row = session.get(ChannelAccount, account_id)
        return _view(row) if row else None
