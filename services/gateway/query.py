"""Read-only queries over gateway-owned tables, for other services (ingest routing, agent settings)."""

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine
from sqlmodel import Session, select

from sellmesh.db import in_thread
from sellmesh.readcache import ReadCache, clear_on_writes
from services.gateway.store import ChannelAccount, Tenant

# Tenants and channel accounts are read for nearly every message (routing, sending, the agent's prompt,
# handoff rules) and change rarely. A change committed here clears the cache at once; other processes
# see it within this many seconds.
SETTINGS_TTL_SECONDS = 5.0
_ACCOUNTS: ReadCache["ChannelAccountView"] = ReadCache(ttl_seconds=SETTINGS_TTL_SECONDS)
_TENANTS: ReadCache["TenantView"] = ReadCache(ttl_seconds=SETTINGS_TTL_SECONDS)
clear_on_writes((Tenant, ChannelAccount), _ACCOUNTS, _TENANTS)


@dataclass(frozen=True)
class TenantView:
    name: str
    training: str  # JSON text: parsed per call, so no caller can change what the next one reads
    notify_secret: str

    def __repr__(self) -> str:
        return f"TenantView(name={self.name!r})"


def _tenant(engine: Engine, tenant_id: uuid.UUID) -> TenantView | None:
    def load() -> TenantView | None:
        with Session(engine) as session:
            row = session.get(Tenant, tenant_id)
            return TenantView(row.name, row.training or "{}", row.notify_secret) if row else None

    return _TENANTS.get(engine, tenant_id, load)


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
    def load() -> ChannelAccountView | None:
        with Session(engine) as session:
            query = select(ChannelAccount).where(
                ChannelAccount.channel == channel, ChannelAccount.external_id == external_id
            )
            row = session.exec(query).first()
            return _view(row) if row else None

    return _ACCOUNTS.get(engine, (channel, external_id), load)


async def find_channel_account_async(engine: Engine, *, channel: str, external_id: str) -> ChannelAccountView | None:
    """`find_channel_account` on the event loop: a fresh cached account costs no worker thread."""
    cached = _ACCOUNTS.fresh(engine, (channel, external_id))
    if cached is not None:
        return cached
    return await in_thread(lambda: find_channel_account(engine, channel=channel, external_id=external_id))


def verify_token_known(engine: Engine, token: str) -> bool:
    """True when some connected account was configured with this webhook verify token."""
    if not token:
        return False
    with Session(engine) as session:
        return session.exec(select(ChannelAccount.id).where(ChannelAccount.verify_token == token)).first() is not None


def tenant_training(engine: Engine, tenant_id: uuid.UUID) -> dict[str, Any]:
    """The tenant's training controls (tone, language, FAQ, policies); empty for an unknown tenant."""
    return _training(_tenant(engine, tenant_id))


def _training(tenant: "TenantView | None") -> dict[str, Any]:
    if tenant is None:
        return {}
    data = json.loads(tenant.training)
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
    tenant = _tenant(engine, tenant_id)
    return tenant.name if tenant else None


def account_by_id(engine: Engine, account_id: uuid.UUID) -> ChannelAccountView | None:
    def load() -> ChannelAccountView | None:
        with Session(engine) as session:
            row = session.get(ChannelAccount, account_id)
            return _view(row) if row else None

    return _ACCOUNTS.get(engine, account_id, load)


async def account_by_id_async(engine: Engine, account_id: uuid.UUID) -> ChannelAccountView | None:
    """`account_by_id` on the event loop: a fresh cached account costs no worker thread."""
    return _ACCOUNTS.fresh(engine, account_id) or await in_thread(account_by_id, engine, account_id)


async def tenant_training_async(engine: Engine, tenant_id: uuid.UUID) -> dict[str, Any]:
    """`tenant_training` on the event loop: a fresh cached tenant costs no worker thread."""
    cached = _TENANTS.fresh(engine, tenant_id)
    return _training(cached) if cached is not None else await in_thread(tenant_training, engine, tenant_id)


async def tenant_name_async(engine: Engine, tenant_id: uuid.UUID) -> str | None:
    """`tenant_name` on the event loop: a fresh cached tenant costs no worker thread."""
    cached = _TENANTS.fresh(engine, tenant_id)
    return cached.name if cached is not None else await in_thread(tenant_name, engine, tenant_id)


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"([01]\d|2[0-3]):[0-5]\d|24:00")
ON_QUIET = frozenset({"ai", "human"})


@dataclass(frozen=True)
class HandoffSettings:
    """A tenant's handoff choices, from the `handoff` object of its training JSON; invalid values fall back.

    `business_hours` is one (weekday 0=Monday, "HH:MM" opens, "HH:MM" closes) per open day, or empty for
    always open; `notify_secret` signs the notification webhook, so never log or return it.
    """

    first_response_seconds: int = 900
    business_hours: tuple[tuple[int, str, str], ...] = ()
    timezone: str = "UTC"
    quiet_return_seconds: int = 3600
    on_quiet: str = "ai"
    notify_url: str | None = None
    notify_secret: str = ""

    def __repr__(self) -> str:
        return (
            f"HandoffSettings(first_response_seconds={self.first_response_seconds}, "
            f"business_hours={self.business_hours}, timezone={self.timezone!r}, "
            f"quiet_return_seconds={self.quiet_return_seconds}, on_quiet={self.on_quiet!r}, "
            f"notify_url={self.notify_url!r})"
        )


def _seconds(value: object, default: int) -> int:
    # bool is an int in Python; `true` is not a number of seconds.
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 30 * 24 * 3600:
        return value
    return default


def _timezone(value: object) -> str:
    if not isinstance(value, str) or not value:
        return "UTC"
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return value


def _business_hours(value: object) -> tuple[tuple[int, str, str], ...]:
    """`{"mon": ["09:00", "17:00"], ...}`: days left out are closed; nothing valid at all means always open."""
    if not isinstance(value, dict):
        return ()
    windows = []
    for day, span in value.items():
        if day not in DAYS or not isinstance(span, list | tuple) or len(span) != 2:
            continue
        opens, closes = span
        if not all(isinstance(t, str) and _CLOCK.fullmatch(t) for t in (opens, closes)) or opens >= closes:
            continue
        windows.append((DAYS.index(day), opens, closes))
    return tuple(sorted(windows))


def handoff_settings(engine: Engine, tenant_id: uuid.UUID) -> HandoffSettings:
    """`{"handoff": {"first_response_seconds", "business_hours", "timezone", "quiet_return_seconds",
    "on_quiet", "notify_url"}}` in the training JSON, plus the tenant's `notify_secret`."""
    tenant = _tenant(engine, tenant_id)
    if tenant is None:
        return HandoffSettings()
    data = json.loads(tenant.training)
    secret = tenant.notify_secret
    handoff = data.get("handoff") if isinstance(data, dict) else None
    if not isinstance(handoff, dict):
        return HandoffSettings(notify_secret=secret)
    on_quiet = handoff.get("on_quiet")
    return HandoffSettings(
        first_response_seconds=_seconds(handoff.get("first_response_seconds"), 900),
        business_hours=_business_hours(handoff.get("business_hours")),
        timezone=_timezone(handoff.get("timezone")),
        quiet_return_seconds=_seconds(handoff.get("quiet_return_seconds"), 3600),
        on_quiet=on_quiet if isinstance(on_quiet, str) and on_quiet in ON_QUIET else "ai",
        notify_url=_matching(handoff.get("notify_url"), _URL),
        notify_secret=secret,
    )
