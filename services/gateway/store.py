"""Gateway-owned tables: tenants, their channel accounts (with secrets) and API keys."""

import uuid
from datetime import UTC, datetime

from sqlalchemy import Text, UniqueConstraint
from sqlmodel import Column, Field, SQLModel


def _now() -> datetime:
    return datetime.now(UTC)


class Tenant(SQLModel, table=True):
    __tablename__ = "gateway_tenants"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=200)
    # Training controls (tone, language, FAQ, policies) as JSON; the agent reads them via query.py.
    training: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))
    # Signs the handoff notification webhook (HMAC-SHA256); a secret: never logged, never returned.
    notify_secret: str = Field(default="", max_length=128)
    created_at: datetime = Field(default_factory=_now)


class ChannelAccount(SQLModel, table=True):
    """A business's Instagram account, Facebook Page or WhatsApp number, and how to talk to it."""

    __tablename__ = "gateway_channel_accounts"
    __table_args__ = (UniqueConstraint("channel", "external_id", name="uq_channel_account_external"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="gateway_tenants.id", index=True)
    channel: str = Field(max_length=16)
    # Page id, Instagram professional account id, or WhatsApp phone_number_id.
    external_id: str = Field(max_length=64)
    display_name: str = Field(default="", max_length=200)
    # Secrets: write-only through the API, never logged, never returned.
    app_secret: str = Field(max_length=256)
    verify_token: str = Field(max_length=256, index=True)
    access_token: str = Field(max_length=1024)
    created_at: datetime = Field(default_factory=_now)


class ApiKey(SQLModel, table=True):
    """A person's key: only the SHA-256 of the secret is kept, with a visible prefix to tell keys apart."""

    __tablename__ = "gateway_api_keys"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="gateway_tenants.id", index=True)
    prefix: str = Field(max_length=32, unique=True)
    secret_hash: str = Field(max_length=64)
    role: str = Field(max_length=16)
    person: str = Field(default="", max_length=200)
    # The team member the key belongs to (gateway_team_members.id); None only for keys made before 0007.
    member_id: uuid.UUID | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=_now)
    revoked_at: datetime | None = None
